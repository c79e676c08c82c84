/* The running agent: the one thread that owns the configuration, the
 * inventory, the pools and the allocation ledger, and sleeps until an event
 * (a uevent, a file in the plugin or VFIO dir, a signal, another thread)
 * or a deadline wakes it. It starts the other threads (serving, preparer,
 * Migration service, HTTP) and reaches them only through their own
 * interfaces. */
#ifndef XEVF_DAEMON_H
#define XEVF_DAEMON_H

#include "config.h"
#include "migration.h"

/* What the agent talks to besides the files under its sysfs and dev roots:
 * the real thing in production, doubles in tests. */
struct agent_world {
	const struct mig_device_provider *devices; /* how the Migration service opens VFs */
	const char *injected_uevents; /* NULL: the kernel's uevents; a path: a datagram socket tests send them to */
};

/* Runs until SIGTERM or SIGINT; returns the process exit status. Takes over cfg. */
int daemon_run(const struct config_overrides *o, struct agent_config *cfg, const struct agent_world *world);

#endif
