/* The running agent: the one thread that owns the configuration, the
 * inventory, the pools' device plugins and the allocation ledger. It starts
 * the other threads (preparer, Migration service, HTTP) and reaches them only
 * through their own interfaces. */
#ifndef XEVF_DAEMON_H
#define XEVF_DAEMON_H

#include "config.h"
#include "migration.h"

/* Runs until SIGTERM or SIGINT; returns the process exit status. Takes over cfg. */
int daemon_run(const struct config_overrides *o, struct agent_config *cfg, const struct mig_device_provider *devices);

#endif
