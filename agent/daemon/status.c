/* The agent's published state: the status document behind `xevf-agent
 * status`, the pools' gauges and readiness, built on the daemon's thread
 * when a reader (the HTTP threads) asks for it, not after every change. */
#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"
#include "daemon_private.h"
#include "metrics.h"
#include "xevf_sriov.h"

/* How long a reader waits for the daemon's thread before it reads what was
 * published last (and /healthz sees how old that is). */
#define ASK_WAIT_MS 2000

static json_object *device_json(struct daemon *d, const struct pool_device *dev, int64_t now)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "id", json_object_new_string(dev->id));
	json_object_object_add(o, "pf", json_object_new_string(dev->pf));
	json_object_object_add(o, "numaNode", json_object_new_int(dev->numa_node));
	json_object_object_add(o, "health", json_object_new_string(pool_health_name(dev->healthy)));
	json_object_object_add(o, "reason", dev->reason ? json_object_new_string(dev->reason) : NULL);
	json_object_object_add(o, "driver", dev->driver ? json_object_new_string(dev->driver) : NULL);
	json_object_object_add(o, "migratable", json_object_new_boolean(dev->migratable));
	json_object_object_add(o, "allocatedRecently", json_object_new_boolean(ledger_recent(&d->ledger, dev->id, now)));
	return o;
}

static json_object *pool_json(struct daemon *d, const struct plugin *pl, int64_t now)
{
	const struct pool *pool = plugin_pool_const(pl);
	json_object *p = json_object_new_object(), *devs = json_object_new_array();
	size_t healthy = 0;
	bool registered = plugin_registered(pl);

	for (size_t i = 0; i < pool->ndevs; i++) {
		healthy += pool->devs[i].healthy;
		json_object_array_add(devs, device_json(d, &pool->devs[i], now));
	}
	json_object_object_add(p, "resource", json_object_new_string(pool->cfg.resource_name));
	json_object_object_add(p, "socket", json_object_new_string(plugin_socket_path(pl)));
	json_object_object_add(p, "registered", json_object_new_boolean(registered));
	json_object_object_add(p, "allocations", json_object_new_int64((int64_t)pool->allocations));
	json_object_object_add(p, "devices", devs);
	metrics_set_pool(pool->cfg.resource_name, healthy, pool->ndevs - healthy, registered);
	return p;
}

/* What xe shows of each pool VF's profile (the inventory read it). */
static void publish_profiles(struct daemon *d)
{
	const struct inventory *inv = d->inventory;
	struct metrics_vf_profile *samples;
	size_t n = 0, cap = 0;

	for (size_t i = 0; inv && i < inv->nvfs; i++)
		if (inv->vfs[i].resource)
			cap += inv->vfs[i].vf->nprovisioning;
	if (!(samples = calloc(cap + 1, sizeof(*samples))))
		return;
	for (size_t i = 0; inv && i < inv->nvfs; i++) {
		const struct inventory_vf *iv = &inv->vfs[i];
		for (size_t k = 0; iv->resource && k < iv->vf->nprovisioning; k++) {
			char *value = profile_current_value(iv->vf->provisioning[k].value);
			if (!value)
				continue;
			samples[n++] = (struct metrics_vf_profile){(char *)iv->resource, (char *)iv->vf->addr,
								   iv->vf->provisioning[k].key, value};
		}
	}
	metrics_set_vf_profiles(samples, n);
	for (size_t i = 0; i < n; i++)
		free(samples[i].value);
	free(samples);
}

void daemon_publish(struct daemon *d)
{
	json_object *root = json_object_new_object(), *pools = json_object_new_array();
	int64_t now = clock_mono_ms();

	json_object_object_add(root, "version", json_object_new_string(XEVF_VERSION));
	json_object_object_add(root, "pluginDir", json_object_new_string(d->cfg.plugin_dir));
	for (struct pool_slot *s = d->pools; s; s = s->next) {
		/* one pool at a time: an Allocate waits at most for one pool's part */
		daemon_serving_lock(d);
		if (!plugin_retired(s->plugin))
			json_object_array_add(pools, pool_json(d, s->plugin, now));
		daemon_serving_unlock(d);
	}
	json_object_object_add(root, "pools", pools);
	metrics_set_status(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
	struct preparer_counts counts = preparer_counts(d->preparer);

	metrics_bind_failures(counts.failures);
	metrics_profile_refusals(counts.profile_refusals);
	publish_profiles(d);
}

void daemon_answer_asks(struct daemon *d)
{
	uint64_t asks;

	pthread_mutex_lock(&d->ask_lock);
	asks = d->asks;
	pthread_mutex_unlock(&d->ask_lock);
	if (asks == d->answers)
		return;
	daemon_publish(d);
	metrics_heartbeat(clock_mono_ms());
	pthread_mutex_lock(&d->ask_lock);
	d->answers = asks;
	pthread_cond_broadcast(&d->answered_cond);
	pthread_mutex_unlock(&d->ask_lock);
}

void daemon_ask_publish(void *daemon)
{
	struct daemon *d = daemon;
	struct timespec until;
	uint64_t mine;

	clock_cond_deadline(&until, ASK_WAIT_MS);
	pthread_mutex_lock(&d->ask_lock);
	mine = ++d->asks;
	daemon_wake();
	while (d->answers < mine)
		if (pthread_cond_timedwait(&d->answered_cond, &d->ask_lock, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&d->ask_lock);
}
