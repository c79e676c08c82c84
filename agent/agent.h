/* The running agent: device-plugin servers (one per pool), kubelet registration,
 * rescans and signals, driven by one gRPC completion queue on one thread. */
#ifndef XEVF_AGENT_H
#define XEVF_AGENT_H

#include <stdbool.h>

#include "config.h"

/* Settings given on the command line; they win over the config file, also
 * when SIGHUP reloads it. NULL / 0 means "not given". */
struct cli_overrides {
	const char *config_path;
	const char *plugin_dir;
	const char *sysfs_root;
	const char *dev_root;
	const char *log_level;
	const char *resource_name;    /* name of the default pool when the file has none */
	const char *allocation_policy;
	long rescan_interval_ms;
	const char *modules_root;
	const char *kernel_release;
	const char *proc_root;
	const char *http_address;
	const char *status_socket;
	const char *migration_socket;
	const char *migration_address;
	const char *tls_ca;
	const char *tls_cert;
	const char *tls_key;
	const char *state_dir;
	const char *node_name;
	const char *vfio_sim;
	const char *kube_api, *kube_token_file, *kube_ca_file;
	long http_port;      /* meaningful when http_port_set */
	bool http_port_set;
};

/* Loads the file (if any), applies the overrides and checks the result. */
int agent_build_config(const struct cli_overrides *o, struct agent_config *cfg, char **error);

/* Runs until SIGTERM or SIGINT; returns the process exit status. */
int agent_run(const struct cli_overrides *o, struct agent_config *cfg);

#endif
