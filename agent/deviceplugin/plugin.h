/* The device plugin: one gRPC server per pool on a socket in the kubelet's
 * plugin directory, registered with the kubelet, all driven by the daemon's
 * one completion queue on the daemon's thread.
 *
 * It never calls up into the daemon or across into the Migration service:
 * what it needs from them (reservations, the pods waiting on this node) and
 * what it tells them (allocations, changes worth publishing) goes through the
 * hooks the daemon fills in.
 *
 * Threads: completions are dispatched on the serving thread, everything else
 * is called from the daemon's thread; the daemon holds one lock around both,
 * so that the plugin itself is single-threaded code. */
#ifndef XEVF_DP_PLUGIN_H
#define XEVF_DP_PLUGIN_H

#include <grpc/grpc.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "kube.h"
#include "pool.h"
#include "steering.h"

struct dp_hooks {
	void *ctx;
	/* Allocate gave these VFs of resource to containers. */
	void (*allocated)(void *ctx, const char *resource, const char *const *ids, size_t n);
	/* The reservations among ids (malloc'd strings in out[], freed by the
	 * plugin with steer_reservations_free); the count. */
	size_t (*reservations)(void *ctx, char *const *ids, size_t n, struct steer_reservation *out);
	/* Pending pods on this node that want resource: 0, 1 when nobody can
	 * tell (no API server), or -errno with *error. It may wait for the API
	 * server: the plugin calls it holding no pointer into its own state, so
	 * that the daemon may let go of its lock meanwhile. */
	int (*pending_pods)(void *ctx, const char *resource, struct kube_pod **pods, size_t *n, char **error);
	/* The devices of resource that pods' containers hold now, as the
	 * kubelet's PodResources says: ids[i] held by pods[i] ("ns/name"),
	 * malloc'd (xevf_strv_free); 0, or -1 when nobody can tell. Same
	 * contract as pending_pods. May be NULL. */
	int (*held_devices)(void *ctx, const char *resource, char ***ids, char ***pods, size_t *n);
	/* Before a preferred allocation is steered: returns once no reservation
	 * for a pod that asks for resource is on its way (waits a moment at
	 * most). Same contract as pending_pods. May be NULL. */
	void (*settle)(void *ctx, const char *resource);
};

void steer_reservations_free(struct steer_reservation *r, size_t n);

enum server_state { SERVER_STOPPED, SERVER_SERVING, SERVER_DRAINING };

struct plugin;

/* Every completion-queue tag the device plugin uses points at one of these. */
struct dp_tag {
	int kind;
	void *obj;
};

struct plugin *plugin_new(const struct pool_config *cfg, const char *plugin_dir, grpc_completion_queue *cq,
			  const struct dp_hooks *hooks);
void plugin_free(struct plugin *pl);

/* Stops serving for good (pool removed, agent stopping); reap it once drained. */
void plugin_retire(struct plugin *pl, const char *why);
bool plugin_retired(const struct plugin *pl);
/* Keeps the socket alive and registered with the current kubelet
 * (<plugin_dir>/kubelet.sock). */
void plugin_tick(struct plugin *pl, int64_t now, bool stopping);
/* Serve at the next tick, whatever retry was planned (the plugin dir appeared). */
void plugin_serve_now(struct plugin *pl);
/* Something happened to kubelet.sock (the plugin dir's watch says so):
 * register again at the next tick, whatever the socket looks like. */
void plugin_kubelet_in_doubt(struct plugin *pl);
/* A completion for one of the device plugin's tags (tag->obj says whose):
 * true when the daemon should look at the plugin again (registration
 * finished, a server drained). */
bool plugin_dispatch(struct dp_tag *tag, bool ok);
/* When plugin_tick has something to do next (a retry), INT64_MAX when only
 * an event can give it work. */
int64_t plugin_next_due(const struct plugin *pl, bool stopping);
/* Destroys a drained server; true when nothing of the plugin is left running. */
bool plugin_reap(struct plugin *pl);

/* A new snapshot, in two steps: the pool's next device list is made without
 * the serving lock (it reads only what the daemon's thread writes: the pool's
 * settings and devices), then put in place under it, which sends the
 * ListAndWatch streams a new list when the kubelet would see a difference
 * (true then). */
int plugin_prepare_update(const struct plugin *pl, const struct inventory *inv, bool *taken, struct pool_change *c);
bool plugin_apply_update(struct plugin *pl, struct pool_change *c);

struct pool *plugin_pool(struct plugin *pl);
const struct pool *plugin_pool_const(const struct plugin *pl);
const char *plugin_socket_path(const struct plugin *pl);
bool plugin_registered(const struct plugin *pl);
/* Replaces the pool's settings (a reload that keeps the pool). */
void plugin_set_config(struct plugin *pl, const struct pool_config *cfg);

#endif
