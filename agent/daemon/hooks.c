/* What the device plugin asks of the daemon (dp_hooks): the glue between
 * the device plugin and the Migration service, which never meet. These run
 * on the serving thread, holding the serving lock. */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "daemon_private.h"
#include "log.h"
#include "podresources.h"

static void on_allocated(void *ctx, const char *resource, const char *const *ids, size_t n)
{
	struct daemon *d = ctx;
	int64_t now = clock_mono_ms();

	(void)resource;
	for (size_t i = 0; i < n; i++) {
		/* the preparer leaves these alone and the Migration service counts
		 * them as in use while their VM starts */
		ledger_record(&d->ledger, ids[i], now);
		if (d->migration)
			migration_claim(d->migration, ids[i]);
	}
}

/* The Migration service's question, answered from the ledger. */
bool daemon_recently_allocated(void *ctx, const char *vf)
{
	struct daemon *d = ctx;

	return ledger_recent(&d->ledger, vf, clock_mono_ms());
}

static size_t reservations(void *ctx, char *const *ids, size_t n, struct steer_reservation *out)
{
	struct daemon *d = ctx;
	size_t found = 0;

	for (size_t i = 0; d->migration && i < n; i++) {
		bool pending = false;
		char *vm_ns = NULL, *vm_name = NULL, *vf;
		if (!migration_reserved_for(d->migration, ids[i], &pending, &vm_ns, &vm_name))
			continue;
		if (!(vf = strdup(ids[i]))) {
			free(vm_ns);
			free(vm_name);
			continue;
		}
		out[found++] = (struct steer_reservation){vf, pending, vm_ns, vm_name};
	}
	return found;
}

/* How long an allocation may wait for a fresh answer of the API server. */
#define KUBE_WAIT_MS 300

static int pending_pods(void *ctx, const char *resource, struct kube_pod **pods, size_t *n, char **error)
{
	struct daemon *d = ctx;
	int rc;

	*pods = NULL;
	*n = 0;
	if (!d->kube)
		return 1;
	/* The answer is fetched on the cache's thread: serving waits a moment at
	 * most, without the lock (the plugin holds nothing of its own meanwhile),
	 * so that the daemon's thread does not wait behind the API server. */
	daemon_serving_unlock(d);
	rc = kube_cache_pods(d->kube, resource, KUBE_WAIT_MS, pods, n, error);
	daemon_serving_lock(d);
	return rc;
}

/* How long an allocation may wait for the kubelet's PodResources. */
#define PODRESOURCES_WAIT_MS 500

static int held_devices(void *ctx, const char *resource, char ***ids, char ***pods, size_t *n)
{
	struct daemon *d = ctx;
	char *error = NULL;
	int rc;

	/* a question to the kubelet: without the serving lock (pending_pods' contract) */
	daemon_serving_unlock(d);
	rc = podresources_held(d->cfg.pod_resources_socket, resource, PODRESOURCES_WAIT_MS, ids, pods, n, &error);
	daemon_serving_lock(d);
	if (rc < 0)
		log_warn("podresources_unavailable", "socket=%s reason=\"%s\" action=\"VFs a pod may still hold are offered "
			 "like the others\"", d->cfg.pod_resources_socket, error ? error : "?");
	free(error);
	return rc == 0 ? 0 : -1;
}

void daemon_hooks_init(struct daemon *d)
{
	d->hooks = (struct dp_hooks){d, on_allocated, reservations, pending_pods, held_devices};
}
