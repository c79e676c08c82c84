/* What the daemon's files share. The daemon's state is owned by its thread. */
#ifndef XEVF_DAEMON_PRIVATE_H
#define XEVF_DAEMON_PRIVATE_H

#include <grpc/grpc.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"
#include "http_server.h"
#include "inventory.h"
#include "kube.h"
#include "kube_cache.h"
#include "ledger.h"
#include "plugin.h"
#include "preparer.h"
#include "xevf_roots.h"

/* One pool's device plugin, in configuration order. */
struct pool_slot {
	struct plugin *plugin;
	struct pool_slot *next;
};

struct daemon {
	const struct config_overrides *overrides;
	const struct mig_device_provider *devices;
	struct agent_config cfg;
	struct xevf_roots roots;
	struct preparer *preparer;
	uint64_t prepare_passes_seen;
	char **known_vfs;        /* every VF seen so far: a new one gets prepared */
	size_t nknown_vfs;
	bool known_seeded;       /* the first scan's VFs are not "new" */
	int64_t next_numvfs_retry_ms;
	struct ledger ledger;
	struct inventory *inventory; /* the last published snapshot */
	int uevent_fd;
	grpc_completion_queue *cq;
	struct pool_slot *pools;
	struct dp_hooks hooks;
	char *kubelet_socket;
	int64_t next_rescan_ms;
	char **notes;            /* discovery notes already reported */
	size_t nnotes;
	char *scan_error;        /* last discovery failure already reported */
	bool kubelet_missing_logged;
	bool stopping;
	bool status_dirty;       /* the published status and gauges need refreshing */
	struct http_server *http;
	int plugin_dir_lock;         /* this agent's claim on the plugin dir, -1 until it has it */
	int plugin_dir_watch;        /* inotify on the plugin dir (and its parent while it is missing), -1 without */
	bool plugin_dir_missing;     /* waiting for the kubelet to create it: nothing is served yet */
	char **told_pfs;             /* PFs whose missing provisioning was said */
	size_t ntold_pfs;
	struct migration *migration; /* NULL when the Migration service could not start */
	struct kube_cache *kube;     /* NULL: no API server to tell pods apart */
};

/* daemon.c: roots, log level and kubelet socket from the configuration */
void daemon_apply_settings(struct daemon *d);

/* plugin_dir.c: the claim (0, or -EWOULDBLOCK and the holder's pid when
 * another agent has it) and the watch on kubelet.sock */
int daemon_plugin_dir_claim(struct daemon *d, char *holder, size_t size);
void daemon_plugin_dir_release(struct daemon *d);
void daemon_plugin_dir_watch(struct daemon *d);
void daemon_plugin_dir_events(struct daemon *d);
/* Is the plugin dir there yet? When it has just appeared: claim, watch, serve. */
bool daemon_plugin_dir_ready(struct daemon *d);

/* rescan.c */
void daemon_rescan(struct daemon *d);
void daemon_request_prepare(struct daemon *d, const char *why);

/* reload.c */
void daemon_reload(struct daemon *d);
struct pool_slot *daemon_add_pool(struct daemon *d, const struct pool_config *cfg);

/* status.c */
void daemon_publish(struct daemon *d);

/* hooks.c */
void daemon_hooks_init(struct daemon *d);

#endif
