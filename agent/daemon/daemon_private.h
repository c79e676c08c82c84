/* What the daemon's files share. The daemon's state is owned by its thread
 * (the control loop), except what is marked otherwise. */
#ifndef XEVF_DAEMON_PRIVATE_H
#define XEVF_DAEMON_PRIVATE_H

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"
#include "http_server.h"
#include "inventory.h"
#include "kube.h"
#include "kube_cache.h"
#include "kubevirt_hooks.h"
#include "ledger.h"
#include "migration_outcomes.h"
#include "plugin.h"
#include "preparer.h"
#include "served_resources.h"
#include "targets.h"
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
	int64_t next_numvfs_retry_ms;
	struct ledger ledger;
	struct inventory *inventory; /* the last published snapshot */
	grpc_completion_queue *cq;
	struct pool_slot *pools; /* the list is the daemon's; each plugin's state is under serving_lock */
	struct dp_hooks hooks;
	char *kubelet_socket;
	int64_t next_rescan_ms;  /* the next full discovery (the safety net, or sooner when asked) */
	char *recheck_vf;        /* an event named this VF alone: look at it again, cheaply */
	int64_t next_recheck_ms; /* without uevents: the cheap look, now and then */
	/* The serving thread: it dispatches the completions of cq under
	 * serving_lock, which the daemon's thread takes around every call into
	 * a plugin. */
	pthread_mutex_t serving_lock;
	pthread_t serving_thread;
	/* Readers of the status, metrics or health (HTTP threads) ask the
	 * daemon's thread to publish and wait for its answer. */
	pthread_mutex_t ask_lock;
	pthread_cond_t answered_cond;
	uint64_t asks, answers;
	char **notes;            /* discovery notes already reported */
	size_t nnotes;
	char *scan_error;        /* last discovery failure already reported */
	struct http_server *http;
	char **told_pfs;             /* PFs whose missing provisioning was said */
	size_t ntold_pfs;
	struct migration *migration; /* NULL when the Migration service could not start */
	struct kube_cache *kube;     /* NULL: no API server to tell pods apart */
	struct served_resources served; /* the pools' resources, for the watch and hook threads */
	/* the kubelet's PodResources socket as the agent started with it: read by
	 * the Migration service's and the node hooks' threads, so never changed
	 * (a reload replaces cfg) */
	char *pod_resources_socket;
	struct targets *targets;     /* NULL: no watch of KubeVirt's migration target pods */
	struct migration_outcomes *outcomes; /* NULL: no watch of KubeVirt's migrations */
	size_t migrating_vfs;        /* how many VFs the migrations held at the last look */
	struct kubevirt_hooks *kubevirt_hooks; /* NULL: KubeVirt's node hooks are not served */
	int uevent_fd;
	int vfio_watch;              /* inotify on <dev>/vfio and <dev>/vfio/devices, -1 without */
	int dev_root_wd;             /* ... whose watch of the dev root itself is this */
	int plugin_dir_lock;         /* this agent's claim on the plugin dir, -1 until it has it */
	int plugin_dir_watch;        /* inotify on the plugin dir (and its parent while it is missing), -1 without */
	bool known_seeded;           /* the first scan's VFs are not "new" */
	bool recheck_all;            /* an event moved no device: look at every VF again, cheaply */
	bool numvfs_drift;           /* a PF's VF count differs from its pool's numVFs: retried at next_numvfs_retry_ms */
	bool serving_started;
	bool kubelet_missing_logged;
	bool stopping;
	bool plugin_dir_missing;     /* waiting for the kubelet to create it: nothing is served yet */
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
/* Publishes host as the new inventory (taken over): pools, Migration
 * service, preparer brought up to date. */
void daemon_take_host(struct daemon *d, struct xevf_host *host);
void daemon_request_prepare(struct daemon *d, const char *why);
/* A PF whose VF count drifted from numVFs (the last snapshot says so) is
 * retried through the preparer now and then: the kernel may have refused,
 * e.g. a VF was busy. No discovery of its own. */
void daemon_retry_numvfs(struct daemon *d, int64_t now);

/* reload.c */
void daemon_reload(struct daemon *d);
struct pool_slot *daemon_add_pool(struct daemon *d, const struct pool_config *cfg);

/* serving.c: the wake-up descriptor (an eventfd; async-signal-safe to ring) */
int daemon_wake_open(void);
void daemon_wake(void);
int daemon_wake_fd(void);
void daemon_wake_drain(void);
void daemon_wake_close(void);
int daemon_serving_start(struct daemon *d);
/* After the queue is shut down: waits for the serving thread to see it. */
void daemon_serving_join(struct daemon *d);
void daemon_serving_lock(struct daemon *d);
void daemon_serving_unlock(struct daemon *d);

/* events.c: uevents and the VFIO dir, turned into rescans and rechecks */
/* Uevents from the kernel, or from a local datagram socket at injected_uevents
 * (tests on a simulated host); the VFIO dir watch. */
void daemon_events_open(struct daemon *d, const char *injected_uevents);
void daemon_events_close(struct daemon *d);
void daemon_read_uevents(struct daemon *d, int64_t now);
void daemon_vfio_dir_events(struct daemon *d);
/* The cheap look the events asked for, if any. */
void daemon_recheck(struct daemon *d);
/* A full discovery has looked at everything: no recheck pending. */
void daemon_rechecks_done(struct daemon *d);
/* When the next look without events is due (INT64_MAX: only on events). */
int64_t daemon_events_next_due(const struct daemon *d);

/* status.c: the status and gauges, published when a reader asks */
void daemon_publish(struct daemon *d);
/* Answers the readers waiting (publishes first when any are). */
void daemon_answer_asks(struct daemon *d);
/* For the HTTP threads: asks the daemon's thread to publish and waits for it
 * (a while at most: a stuck loop shows as a stale heartbeat). */
void daemon_ask_publish(void *daemon);

/* hooks.c */
void daemon_hooks_init(struct daemon *d);
/* Was vf given to a container lately (any thread; ctx is the daemon)? */
bool daemon_recently_allocated(void *ctx, const char *vf);
/* Its other question: which VF of resource pod namespace/name holds here
 * (the kubelet's PodResources); migration_settings.held_by_pod. */
/* The pools' resources to the migration targets' watch (after pools change). */
void daemon_served_resources(struct daemon *d);
int daemon_held_by_pod(void *ctx, const char *resource, const char *pod_namespace, const char *pod_name, char **vf,
		       char **error);

#endif
