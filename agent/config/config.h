/* The agent's configuration: a JSON file plus command-line flags.
 *
 * Every scalar setting is one row of the settings table (settings.c): its JSON
 * key, its flag, its field here, type, default, range and help line. Parsing,
 * flags, --help, --check-config and freeing are all driven by that table.
 * Pools are the one structured setting (config.c, selector.h).
 *
 * The file is read strictly: an unknown key, a value of the wrong type or an
 * invalid value is an error whose message names the key (e.g.
 * "pools[1].resourceName"), so that a typo never silently changes behaviour.
 * Errors follow the agent's convention (fail.h): 0 or -errno plus a message.
 */
#ifndef XEVF_CONFIG_H
#define XEVF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "profile.h"
#include "selector.h"

#define XEVF_DEFAULT_RESOURCE "intel.com/xe_vf"
#define XEVF_DEFAULT_PLUGIN_DIR "/var/lib/kubelet/device-plugins"
#define XEVF_DEFAULT_RESCAN_MS 60000
#define XEVF_DEFAULT_STATUS_SOCKET "/run/xevf/status.sock"
#define XEVF_DEFAULT_POD_RESOURCES_SOCKET "/var/lib/kubelet/pod-resources/kubelet.sock"
#define XEVF_DEFAULT_MIGRATION_SOCKET "/run/xevf/migration.sock"
#define XEVF_DEFAULT_STATE_DIR "/var/lib/xevf"
/* who may call the Migration service over TCP (docs/certificates.md) */
#define XEVF_DEFAULT_PEER_IDENTITIES "urn:xevf:agent,urn:xevf:node:*,urn:xevf:operator"
#define XEVF_DEFAULT_HTTP_PORT 9480

/* An integer setting nobody gave yet (defaults fill it). */
#define CONFIG_UNSET_LONG (-2147483647L - 1)

enum alloc_policy { ALLOC_PACK, ALLOC_SPREAD };
enum vfio_fallback { FALLBACK_NONE, FALLBACK_VFIO_PCI };

struct pool_config {
	char *resource_name;       /* e.g. intel.com/xe_vf */
	struct selector selector;
	enum alloc_policy policy;
	long num_vfs;              /* VFs to enable on each of the pool's PFs; -1: leave as is */
	enum vfio_fallback fallback; /* when no VFIO variant driver (xe-vfio-pci) exists */
	struct vf_profile profile; /* given to the pool's VFs that nobody holds */
};

/* Fields named by the settings table; see settings.c for what each means. */
struct agent_config {
	struct pool_config *pools;
	size_t npools;
	char *plugin_dir;
	char *sysfs_root;
	char *dev_root;
	char *log_level;
	long rescan_interval_ms;
	char *modules_root;
	char *kernel_release;      /* NULL: the running kernel's */
	char *proc_root;
	char *boot_root;
	char *pod_resources_socket; /* "" off */
	char *http_address;
	long http_port;            /* -1 off; 0 ephemeral */
	char *status_socket;       /* "" off */
	char *migration_socket;    /* "" off */
	char *migration_address;   /* "" off */
	char *tls_ca, *tls_cert, *tls_key;
	char *tls_server_name;     /* NULL: the target host */
	char *peer_identities;     /* "uri,prefix*,..." */
	char *state_dir;
	long stream_idle_timeout_ms;
	long max_state_bytes;
	char *node_name;           /* NULL: the host name */
	char *kube_api, *kube_token_file, *kube_ca_file; /* NULL: in-cluster or none */
	long kube_api_allow_http;  /* 0/1: an http:// API server gets the token in clear */
	long migration_targets;    /* 0/1: reserve for KubeVirt's migration target pods by itself */
	long watch_migrations;     /* 0/1: end this node's records by KubeVirt's migration outcomes */
	char *node_hook_socket;    /* KubeVirt's node hooks ("" off) */
	char *peer_namespace;      /* the agents' namespace (NULL: the service account's) */
	char *peer_selector;       /* the agents' pods' label selector */
};

/* Values given on the command line, by the flag's setting; they win over the
 * file, also when SIGHUP reloads it. */
struct config_overrides {
	const char *config_path;
	const char *resource_name;     /* the default pool's name when the file has none */
	const char *allocation_policy; /* for every pool */
	const char **values;           /* settings_count() entries, NULL = not given */
};

/* ---- the settings table (settings.c) ---- */
size_t settings_count(void);
/* The row whose flag is `flag` (without "--"), or -1. */
int settings_find_flag(const char *flag);
/* The flag of row i, and whether it takes a value; for getopt. */
const char *settings_flag(size_t i);
/* --help lines for every flagged setting. */
void settings_print_help(FILE *out);
/* Every setting with its value, as the agent reads it (--check-config). */
void settings_print(const struct agent_config *cfg, FILE *out);
/* A flag's value checked the way the file's would be ("--rescan-interval: ..."). */
int settings_check_flag(size_t i, const char *value, char **error);

/* Marks every setting unset (strings NULL, integers CONFIG_UNSET_LONG). */
void config_init(struct agent_config *cfg);

/* Parses a JSON document into cfg (which it initialises). On failure returns
 * -errno and sets *error to a message naming the key; cfg is then empty. */
int config_parse_json(const char *text, size_t len, struct agent_config *cfg, char **error);

/* Reads and parses a file; the message names the file as well. */
int config_load_file(const char *path, struct agent_config *cfg, char **error);

/* Fills what neither the file nor the flags set, and checks the whole. */
int config_finish(struct agent_config *cfg, char **error);

/* The file (if any) with the overrides applied, finished and checked. */
int config_build(const struct config_overrides *o, struct agent_config *cfg, char **error);

void config_free(struct agent_config *cfg);

/* Deep copy and release of one pool's settings (the struct itself is the caller's). */
int pool_config_copy(struct pool_config *dst, const struct pool_config *src);
void pool_config_free(struct pool_config *c);

/* The PFs that the pools name explicitly (pfAddresses), for discovery:
 * a malloc'd array of borrowed strings. 0 or -ENOMEM. */
int config_pf_addresses(const struct agent_config *cfg, const char ***out, size_t *n);

/* Kubernetes extended resource name: "<dns-subdomain>/<name>", outside the
 * kubernetes.io domain, name at most 63 characters of [A-Za-z0-9-_.] starting
 * and ending alphanumeric. On false, *why (static text) says what is wrong. */
bool config_valid_resource_name(const char *name, const char **why);

const char *alloc_policy_name(enum alloc_policy p);
bool alloc_policy_parse(const char *name, enum alloc_policy *out);

#endif
