/* xevf-agent's command line: the subcommands (run the agent, discover,
 * status, migrate) and their flags. */
#ifndef XEVF_CLI_H
#define XEVF_CLI_H

#include <stdbool.h>

#include "config.h"
#include "daemon.h"

#define EXIT_USAGE 2
/* doctor: something stands in the way of migrating a VF (or there is none) */
#define EXIT_MIGRATION_BLOCKED 3

/* What the command line said. */
struct cli_args {
	struct config_overrides overrides;
	bool json, check_only;
};

/* The whole program; world: what the agent talks to (doubles in tests). */
int cli_main(int argc, char **argv, const struct agent_world *world);

/* discover.c, status.c, doctor.c */
int cli_discover(const struct cli_args *a);
int cli_status(const struct cli_args *a);
int cli_doctor(const struct cli_args *a);

#endif
