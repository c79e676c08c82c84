/* The agent's configuration: a JSON file plus command-line flags.
 *
 * The file is read strictly: an unknown key, a value of the wrong type or an
 * invalid value is an error whose message names the key (e.g.
 * "pools[1].resourceName"), so that a typo never silently changes behaviour.
 */
#ifndef XEVF_CONFIG_H
#define XEVF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define XEVF_DEFAULT_RESOURCE "intel.com/xe_vf"
#define XEVF_DEFAULT_PLUGIN_DIR "/var/lib/kubelet/device-plugins"
#define XEVF_DEFAULT_RESCAN_MS 500

enum alloc_policy { ALLOC_PACK, ALLOC_SPREAD };

struct pool_selector {
	char **pf_addresses; /* canonical PCI addresses; empty = any PF */
	size_t n_pf_addresses;
	int *device_ids;     /* VF PCI device ids; empty = any */
	size_t n_device_ids;
	char **drivers;      /* bound driver names; empty = any VFIO driver */
	size_t n_drivers;
};

enum vfio_fallback { FALLBACK_NONE, FALLBACK_VFIO_PCI };

struct pool_config {
	char *resource_name;       /* e.g. intel.com/xe_vf */
	struct pool_selector selector;
	enum alloc_policy policy;
	long num_vfs;              /* VFs to enable on each of the pool's PFs; -1: leave as is */
	enum vfio_fallback fallback; /* when no VFIO variant driver (xe-vfio-pci) exists */
};

struct agent_config {
	struct pool_config *pools;
	size_t npools;
	char *plugin_dir;
	char *sysfs_root;
	char *dev_root;
	char *log_level;
	long rescan_interval_ms;
	char *modules_root;        /* default /lib/modules */
	char *kernel_release;      /* default: the running kernel's */
	char *proc_root;           /* default /proc: to see which VFIO nodes VMs hold */
	char *http_address;        /* default 0.0.0.0 */
	long http_port;            /* default 9480; -1 off; 0 ephemeral */
	char *status_socket;       /* default /run/xevf/status.sock; "" off */
	bool http_port_set;
	/* live migration (migration.h) */
	char *migration_socket;    /* default /run/xevf/migration.sock; "" off */
	char *migration_address;   /* host:port for agent-to-agent calls (mutual TLS); default "" off */
	char *tls_ca, *tls_cert, *tls_key; /* PEM files for migration_address */
	char *state_dir;           /* default /var/lib/xevf: reservations and migrations survive restarts */
	char *node_name;           /* default: the host name */
	char *vfio_sim;            /* tests only: simulated VFIO migration devices with state files here */
	char *kube_api, *kube_token_file, *kube_ca_file; /* kube.h; NULL: in-cluster or none */
};

#define XEVF_DEFAULT_HTTP_PORT 9480
#define XEVF_DEFAULT_STATUS_SOCKET "/run/xevf/status.sock"
#define XEVF_DEFAULT_MIGRATION_SOCKET "/run/xevf/migration.sock"
#define XEVF_DEFAULT_STATE_DIR "/var/lib/xevf"

/* Parses a JSON document into cfg (which it initialises). On failure returns -1
 * and sets *error to a message naming the key; cfg is then empty. */
int config_parse_json(const char *text, size_t len, struct agent_config *cfg, char **error);

/* Reads and parses a file; the message names the file as well. */
int config_load_file(const char *path, struct agent_config *cfg, char **error);

/* Fills what neither the file nor the flags set, and checks the whole. */
int config_finish(struct agent_config *cfg, char **error);

void config_free(struct agent_config *cfg);

/* Deep copy and release of one pool's settings (the struct itself is the caller's). */
int pool_config_copy(struct pool_config *dst, const struct pool_config *src);
void pool_config_free(struct pool_config *c);

/* Kubernetes extended resource name: "<dns-subdomain>/<name>", outside the
 * kubernetes.io domain, name at most 63 characters of [A-Za-z0-9-_.] starting
 * and ending alphanumeric. On false, *why (static text) says what is wrong. */
bool config_valid_resource_name(const char *name, const char **why);

const char *alloc_policy_name(enum alloc_policy p);
bool alloc_policy_parse(const char *name, enum alloc_policy *out);

#endif
