/* Simulated VFIO migration devices for the Migration service of a test build
 * (xevf-agent-sim): one vfio_sim per VF, its content kept in <dir>/<VF>.state
 * so that tests and the demo can write a VF's "memory" and read it back on
 * the other node. Never in the shipped binary. */
#ifndef XEVF_TESTS_SIM_DEVICES_H
#define XEVF_TESTS_SIM_DEVICES_H

#include <stdint.h>

#include "devices.h"

/* A provider whose devices keep their state in dir (borrowed), report flags
 * (XEVF_MIG_F_*) when bound to a migration driver, and report a state size
 * of capacity bytes (0: the largest a simulated device takes). */
void sim_devices_init(struct mig_device_provider *p, const char *dir, uint64_t flags, uint64_t capacity);

#endif
