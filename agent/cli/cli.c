/* The command line: subcommands as a table, flags from the settings table. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "daemon.h"
#include "log.h"
#include "migrate.h"

enum { OPT_RESOURCE_NAME = 256, OPT_POLICY, OPT_CHECK_CONFIG, OPT_JSON, OPT_SETTING = 1000 };

static int run_agent(const struct cli_args *a, const struct agent_world *world);
static int discover_cmd(const struct cli_args *a, const struct agent_world *world)
{
	(void)world;
	return cli_discover(a);
}
static int status_cmd(const struct cli_args *a, const struct agent_world *world)
{
	(void)world;
	return cli_status(a);
}
static int doctor_cmd(const struct cli_args *a, const struct agent_world *world)
{
	(void)world;
	return cli_doctor(a);
}

/* The subcommands that share the agent's flags; `migrate` has its own. */
static const struct {
	const char *name;
	int (*run)(const struct cli_args *a, const struct agent_world *world);
	bool takes_json;
} commands[] = {
	{NULL, run_agent, false}, /* no subcommand: run the agent */
	{"discover", discover_cmd, true},
	{"status", status_cmd, true},
	{"doctor", doctor_cmd, true},
};

static void print_usage(FILE *out)
{
	fputs("Usage: xevf-agent [OPTIONS]              run the device plugin (default)\n"
	      "       xevf-agent discover [--json] [OPTIONS]\n"
	      "                                         print Xe PFs and VFs with driver and health, then exit\n"
	      "       xevf-agent status [--json] [--status-socket PATH]\n"
	      "                                         ask the running agent for its pools, VFs, health, allocations\n"
	      "       xevf-agent doctor [--json] [OPTIONS]\n"
	      "                                         what stands in the way of live migration, per PF and VF\n"
	      "                                         (exit 3 when a VF cannot migrate)\n"
	      "       xevf-agent migrate COMMAND ...    drive a VF migration between two agents (migrate --help)\n"
	      "       xevf-agent --version | --help\n"
	      "\n"
	      "Options (flags win over the config file):\n"
	      "  -c, --config FILE            JSON configuration file (pools, selectors, paths); re-read on SIGHUP\n"
	      "      --resource-name NAME     resource of the single default pool when the file defines no pools\n"
	      "                               (default " XEVF_DEFAULT_RESOURCE ")\n"
	      "      --allocation-policy P    pack (fewest PFs, default) or spread (most PFs), for every pool\n", out);
	settings_print_help(out);
	fputs("      --check-config           validate the configuration, print it as the agent reads it, exit\n"
	      "      --json                   with discover, status and doctor: machine-readable output\n"
	      "  -V, --version                print the version and exit\n"
	      "  -h, --help                   print this help and exit\n"
	      "\n"
	      "Signals: SIGTERM/SIGINT stop cleanly and remove the plugin sockets; SIGHUP reloads the config.\n"
	      "Exit status: 0 success, 1 runtime failure, 2 bad usage or configuration.\n", out);
}

static struct option *long_options(void)
{
	static const struct option fixed[] = {
		{"config", required_argument, NULL, 'c'},
		{"resource-name", required_argument, NULL, OPT_RESOURCE_NAME},
		{"allocation-policy", required_argument, NULL, OPT_POLICY},
		{"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
		{"json", no_argument, NULL, OPT_JSON},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
	};
	size_t nfixed = sizeof(fixed) / sizeof(fixed[0]), n = settings_count();
	struct option *opts = calloc(nfixed + n + 1, sizeof(*opts));

	if (!opts)
		return NULL;
	memcpy(opts, fixed, sizeof(fixed));
	for (size_t i = 0; i < n; i++)
		opts[nfixed + i] = (struct option){settings_flag(i), required_argument, NULL, OPT_SETTING + (int)i};
	return opts;
}

/* -1 to go on, else the exit status. */
static int take_option(int opt, struct cli_args *a)
{
	char *error = NULL;

	switch (opt) {
	case 'c': a->overrides.config_path = optarg; return -1;
	case OPT_RESOURCE_NAME: a->overrides.resource_name = optarg; return -1;
	case OPT_POLICY: a->overrides.allocation_policy = optarg; return -1;
	case OPT_CHECK_CONFIG: a->check_only = true; return -1;
	case OPT_JSON: a->json = true; return -1;
	case 'V': printf("xevf-agent %s\n", XEVF_VERSION); return 0;
	case 'h': print_usage(stdout); return 0;
	default: break;
	}
	if (opt < OPT_SETTING || (size_t)(opt - OPT_SETTING) >= settings_count()) {
		print_usage(stderr);
		return EXIT_USAGE;
	}
	if (settings_check_flag((size_t)(opt - OPT_SETTING), optarg, &error)) {
		fprintf(stderr, "xevf-agent: %s\n", error ? error : "invalid value");
		free(error);
		return EXIT_USAGE;
	}
	a->overrides.values[opt - OPT_SETTING] = optarg;
	return -1;
}

static int parse_args(int argc, char **argv, struct cli_args *a)
{
	struct option *opts = long_options();
	int opt, rc = -1;

	if (!opts) {
		fprintf(stderr, "xevf-agent: out of memory\n");
		return 1;
	}
	while (rc < 0 && (opt = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1)
		rc = take_option(opt, a);
	free(opts);
	if (rc < 0 && optind < argc) {
		fprintf(stderr, "xevf-agent: unexpected argument '%s'\n", argv[optind]);
		print_usage(stderr);
		rc = EXIT_USAGE;
	}
	return rc;
}

static int run_agent(const struct cli_args *a, const struct agent_world *world)
{
	struct agent_config cfg;
	char *error = NULL;

	if (config_build(&a->overrides, &cfg, &error)) {
		fprintf(stderr, "xevf-agent: configuration error: %s\n", error ? error : "invalid");
		log_error("config_invalid", "reason=\"%s\"", error ? error : "invalid");
		free(error);
		return EXIT_USAGE;
	}
	if (a->check_only) {
		settings_print(&cfg, stdout);
		for (size_t i = 0; i < cfg.npools; i++) {
			char sel[128];
			selector_describe(&cfg.pools[i].selector, sel, sizeof(sel));
			printf("pool %s policy=%s numVFs=%ld %s", cfg.pools[i].resource_name,
			       alloc_policy_name(cfg.pools[i].policy), cfg.pools[i].num_vfs, sel);
			for (int k = 0; k < PROFILE_NKEYS; k++)
				if (cfg.pools[i].profile.values[k])
					printf(" %s=%s", profile_key_info((enum profile_key)k)->file, cfg.pools[i].profile.values[k]);
			putchar('\n');
		}
		config_free(&cfg);
		return 0;
	}
	return daemon_run(&a->overrides, &cfg, world);
}

int cli_main(int argc, char **argv, const struct agent_world *world)
{
	const char **values = calloc(settings_count() + 1, sizeof(*values));
	struct cli_args a = {.overrides = {.values = values}};
	size_t cmd = 0;
	int rc;

	if (!values)
		return 1;
	if (argc > 1 && strcmp(argv[1], "migrate") == 0) {
		free(values);
		return migrate_main(argc - 1, argv + 1);
	}
	for (size_t i = 1; argc > 1 && i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0) {
			cmd = i;
			argv[1] = argv[0];
			argv++;
			argc--;
		}
	rc = parse_args(argc, argv, &a);
	if (rc < 0 && a.json && !commands[cmd].takes_json) {
		fprintf(stderr, "xevf-agent: --json goes with the discover, status and doctor commands\n");
		rc = EXIT_USAGE;
	}
	if (rc < 0)
		rc = commands[cmd].run(&a, world);
	free(values);
	return rc;
}
