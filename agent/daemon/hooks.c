/* What the device plugin asks of the daemon (dp_hooks): the glue between
 * the device plugin and the Migration service, which never meet. These run
 * on the serving thread, holding the serving lock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "daemon_private.h"
#include "fail.h"
#include "log.h"
#include "podresources.h"
#include "xevf_util.h"

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
	rc = podresources_held(d->pod_resources_socket, resource, PODRESOURCES_WAIT_MS, ids, pods, n, &error);
	daemon_serving_lock(d);
	if (rc < 0)
		log_warn("podresources_unavailable", "socket=%s reason=\"%s\" action=\"VFs a pod may still hold are offered "
			 "like the others\"", d->pod_resources_socket, error ? error : "?");
	free(error);
	return rc == 0 ? 0 : -1;
}

int daemon_held_by_pod(void *ctx, const char *resource, const char *pod_namespace, const char *pod_name, char **vf,
		       char **error)
{
	struct daemon *d = ctx;
	char **ids = NULL, **pods = NULL, *want = NULL;
	size_t n = 0;
	int rc;

	*vf = NULL;
	*error = NULL;
	rc = podresources_held(d->pod_resources_socket, resource, PODRESOURCES_WAIT_MS, &ids, &pods, &n, error);
	if (rc == 1)
		return agent_fail(error, ENODEV, "no PodResources socket at %s to tell which VF a pod holds",
				  d->pod_resources_socket);
	if (rc < 0)
		return rc;
	if (asprintf(&want, "%s/%s", pod_namespace, pod_name) < 0)
		want = NULL;
	long i = want ? xevf_strv_index(pods, n, want) : -1;
	if (i >= 0 && !(*vf = strdup(ids[i])))
		rc = agent_fail(error, ENOMEM, "out of memory");
	else if (i < 0)
		rc = agent_fail(error, ENOENT, "holds no VF of %s on this node (the kubelet's PodResources)", resource);
	free(want);
	xevf_strv_free(ids, n);
	xevf_strv_free(pods, n);
	return rc;
}

/* How long an allocation may wait for a migration target pod's reservation
 * (the source's agent and the API server are asked meanwhile). */
#define SETTLE_WAIT_MS 2000

static void settle(void *ctx, const char *resource)
{
	struct daemon *d = ctx;
	char *copy;

	/* a copy: the pool's configuration may change while the lock is let go */
	if (!d->targets || !(copy = strdup(resource)))
		return;
	daemon_serving_unlock(d);
	targets_wait_settled(d->targets, copy, SETTLE_WAIT_MS);
	daemon_serving_lock(d);
	free(copy);
}

void daemon_hooks_init(struct daemon *d)
{
	d->hooks = (struct dp_hooks){d, on_allocated, reservations, pending_pods, held_devices, settle};
}
