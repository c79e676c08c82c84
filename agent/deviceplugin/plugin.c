/* A pool's device plugin: its life cycle (new, tick, retire, free) and what
 * the daemon asks of it. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "plugin_private.h"
#include "xevf_util.h"

/* A socket that could not be served is tried again after this. */
#define SERVE_RETRY_MS 3000

struct plugin *plugin_new(const struct pool_config *cfg, const char *plugin_dir, grpc_completion_queue *cq,
			  const struct dp_hooks *hooks)
{
	struct plugin *pl = calloc(1, sizeof(*pl));

	if (!pl)
		return NULL;
	pl->cq = cq;
	pl->hooks = *hooks;
	pl->reg.details = grpc_empty_slice();
	if (pool_init(&pl->pool, cfg)) {
		free(pl);
		return NULL;
	}
	pl->endpoint = strdup(pl->pool.socket_name);
	if (!pl->endpoint || xevf_asprintf(&pl->socket_path, "%s/%s", plugin_dir, pl->endpoint) ||
	    xevf_asprintf(&pl->kubelet_socket, "%s/kubelet.sock", plugin_dir)) {
		plugin_free(pl);
		return NULL;
	}
	return pl;
}

void plugin_free(struct plugin *pl)
{
	if (!pl)
		return;
	metrics_forget_pool(pl->pool.cfg.resource_name);
	pool_destroy(&pl->pool);
	grpc_slice_unref(pl->reg.details);
	free(pl->socket_path);
	free(pl->endpoint);
	free(pl->kubelet_socket);
	free(pl);
}

void plugin_retire(struct plugin *pl, const char *why)
{
	pl->retired = true;
	dp_server_stop(pl, why);
	if (pl->reg.in_flight)
		grpc_call_cancel(pl->reg.call, NULL);
}

bool plugin_retired(const struct plugin *pl) { return pl->retired; }

void plugin_kubelet_in_doubt(struct plugin *pl) { pl->reg.in_doubt = true; }

void plugin_serve_now(struct plugin *pl) { pl->reg.next_attempt_ms = 0; }

void plugin_tick(struct plugin *pl, int64_t now, bool stopping)
{
	struct dp_file_id id = {0};

	if (pl->retired)
		return;
	if (pl->state == SERVER_SERVING &&
	    (dp_file_id_of(pl->socket_path, &id) != 0 || !dp_file_id_eq(&id, &pl->socket_id))) {
		/* The kubelet removes every plugin socket when it restarts; so may an
		 * operator. Stop, drain, then serve on a fresh socket (the old server
		 * must be gone first: gRPC unlinks its socket path on shutdown). */
		log_info("socket_removed", "resource=%s socket=%s action=\"re-creating it\"", pl->pool.cfg.resource_name,
			 pl->socket_path);
		dp_server_stop(pl, "socket removed");
	}
	if (pl->state == SERVER_STOPPED && !stopping) {
		if (now < pl->reg.next_attempt_ms)
			return;
		if (dp_server_start(pl) != 0) {
			pl->reg.next_attempt_ms = now + SERVE_RETRY_MS;
			return;
		}
		/* serving: register in the same tick, not one later */
	}
	if (pl->state == SERVER_SERVING)
		dp_register_tick(pl, now);
}

bool plugin_dispatch(struct dp_tag *tag, bool ok)
{
	switch ((enum dp_tag_kind)tag->kind) {
	case TAG_SHUTDOWN:
		((struct plugin *)tag->obj)->shutdown_notified = true;
		return true;
	case TAG_REGISTER:
		dp_register_done(tag->obj, ok);
		return true;
	default:
		return dp_call_dispatch(tag, ok);
	}
}

int64_t plugin_next_due(const struct plugin *pl, bool stopping)
{
	if (pl->retired || stopping)
		return INT64_MAX; /* draining: its completions say when to reap */
	if (pl->state == SERVER_STOPPED)
		return pl->reg.next_attempt_ms;
	/* no kubelet.sock: its creation in the plugin dir wakes the daemon */
	if (pl->state == SERVER_SERVING && !pl->reg.registered && !pl->reg.in_flight && !pl->reg.no_kubelet)
		return pl->reg.next_attempt_ms;
	return INT64_MAX;
}

int plugin_prepare_update(const struct plugin *pl, const struct inventory *inv, bool *taken, struct pool_change *c)
{
	return pool_change_make(&pl->pool, inv, taken, c);
}

bool plugin_apply_update(struct plugin *pl, struct pool_change *c)
{
	if (!pool_change_apply(&pl->pool, c))
		return false;
	dp_push_lists(pl);
	return true;
}

struct pool *plugin_pool(struct plugin *pl) { return &pl->pool; }
const struct pool *plugin_pool_const(const struct plugin *pl) { return &pl->pool; }
const char *plugin_socket_path(const struct plugin *pl) { return pl->socket_path; }
bool plugin_registered(const struct plugin *pl) { return pl->reg.registered && pl->state == SERVER_SERVING; }

void plugin_set_config(struct plugin *pl, const struct pool_config *cfg)
{
	struct pool_config copy;

	if (pool_config_copy(&copy, cfg) == 0) {
		pool_config_free(&pl->pool.cfg);
		pl->pool.cfg = copy;
	}
}
