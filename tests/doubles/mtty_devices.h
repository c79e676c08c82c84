/* Real VFIO migration devices for the agent in the real-kernel migration test
 * (tests/vm/mtty.sh): the VFs of a simulated host stand for the kernel's mtty
 * devices, which are mdevs named by 36-character UUIDs. A map file says which:
 * one line "<VF PCI address> <mdev UUID> <VFIO group>" per VF. Never in the
 * shipped binary. */
#ifndef XEVF_TESTS_MTTY_DEVICES_H
#define XEVF_TESTS_MTTY_DEVICES_H

#include "devices.h"

/* A provider opening /dev/vfio/<group> for the mdev map_file (borrowed) names. */
void mtty_devices_init(struct mig_device_provider *p, const char *map_file);

#endif
