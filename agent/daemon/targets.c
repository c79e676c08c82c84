#include "targets.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fail.h"
#include "kube_watch.h"
#include "kubevirt.h"
#include "log.h"
#include "metrics.h"
#include "xevf_util.h"

/* migrations whose outcome is settled, remembered so that the pod's next
 * MODIFIED event does not start again */
#define SETTLED_MAX 64

/* What came of a target pod: one table of its metric label and the reason
 * of the Event on the pod (none for a failure that may pass). */
enum target_outcome { TARGET_RESERVED, TARGET_NO_COMPATIBLE_VF, TARGET_NOT_MIGRATABLE, TARGET_FAILED };
static const struct {
	const char *name, *event_reason;
} outcomes[] = {
	[TARGET_RESERVED] = {"reserved", "XevfVFReserved"},
	[TARGET_NO_COMPATIBLE_VF] = {"no_compatible_vf", "XevfNoCompatibleVF"},
	[TARGET_NOT_MIGRATABLE] = {"not_migratable", "XevfSourceVFNotMigratable"},
	[TARGET_FAILED] = {"failed", NULL},
};

struct targets {
	struct kube *kube;            /* the watch thread's only */
	struct migration *migration;
	char *peer_namespace, *peer_selector;
	struct kube_watch *watch;
	pthread_mutex_t lock;         /* guards what follows; never held across I/O */
	pthread_cond_t changed;
	bool stopping;
	struct served_resources *served; /* the daemon's */
	char **busy;                  /* resources whose target pod is being handled */
	size_t nbusy;
	char *settled[SETTLED_MAX];   /* a ring of migration ids, nsettled of them */
	size_t nsettled, next_settled;
};

static bool settled(struct targets *t, const char *id)
{
	bool found;

	pthread_mutex_lock(&t->lock);
	found = xevf_strv_index(t->settled, t->nsettled, id) >= 0;
	pthread_mutex_unlock(&t->lock);
	return found;
}

static void settle(struct targets *t, const char *id)
{
	char *copy = strdup(id);

	if (!copy)
		return; /* it may start again; Reserve answers the same */
	pthread_mutex_lock(&t->lock);
	if (t->nsettled < SETTLED_MAX)
		t->nsettled++;
	free(t->settled[t->next_settled]);
	t->settled[t->next_settled] = copy;
	t->next_settled = (t->next_settled + 1) % SETTLED_MAX;
	pthread_mutex_unlock(&t->lock);
}

static void set_busy(struct targets *t, const char *resource, bool busy)
{
	pthread_mutex_lock(&t->lock);
	if (busy) {
		char **grown = realloc(t->busy, (t->nbusy + 1) * sizeof(*grown));
		if (grown) {
			t->busy = grown;
			if ((t->busy[t->nbusy] = strdup(resource)))
				t->nbusy++;
		}
	} else {
		long i = xevf_strv_index(t->busy, t->nbusy, resource);
		if (i >= 0) {
			free(t->busy[i]);
			t->busy[i] = t->busy[--t->nbusy];
		}
	}
	pthread_cond_broadcast(&t->changed);
	pthread_mutex_unlock(&t->lock);
}

void targets_wait_settled(struct targets *t, const char *resource, int wait_ms)
{
	struct timespec until;

	if (!t)
		return;
	clock_cond_deadline(&until, wait_ms);
	pthread_mutex_lock(&t->lock);
	while (!t->stopping && xevf_strv_index(t->busy, t->nbusy, resource) >= 0)
		if (pthread_cond_timedwait(&t->changed, &t->lock, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&t->lock);
}

/* Where the VM runs now, its source pod and that node's agent: the steps of
 * finding the source, each of which may fail with *why. */
struct source {
	char *node, *vmi_uid, *pod, *agent;
};

static void source_clear(struct source *s)
{
	free(s->node);
	free(s->vmi_uid);
	free(s->pod);
	free(s->agent);
}

static int find_source(struct targets *t, const struct kubevirt_target_pod *p, struct source *s, char **why)
{
	char *error = NULL;
	int rc;

	if ((rc = kubevirt_vmi_node(t->kube, p->namespace_, p->vm_name, &s->node, &s->vmi_uid, &error)) < 0) {
		agent_fail(why, -rc, "VMI %s/%s: %s", p->namespace_, p->vm_name, error);
	} else if (strcmp(s->node, kube_node(t->kube)) == 0) {
		rc = agent_fail(why, EALREADY, "VMI %s/%s already runs on this node", p->namespace_, p->vm_name);
	} else if ((rc = kubevirt_source_pod(t->kube, p->namespace_, s->vmi_uid, s->node, &s->pod, &error)) < 0) {
		agent_fail(why, -rc, "the source pod of VMI %s/%s on node %s: %s", p->namespace_, p->vm_name, s->node, error);
	} else if ((rc = kubevirt_peer_agent(t->kube, t->peer_namespace, t->peer_selector, s->node, &s->agent,
					     &error)) < 0) {
		agent_fail(why, -rc, "the agent of node %s (namespace %s, pods %s): %s", s->node, t->peer_namespace,
			   t->peer_selector, error);
	}
	free(error);
	return rc;
}

static void tell(struct targets *t, const struct kubevirt_target_pod *p, enum target_outcome outcome, const char *vf,
		 const char *why)
{
	bool reserved = outcome == TARGET_RESERVED;
	char *message = NULL, *error = NULL;
	int rc;

	metrics_migration_target(outcomes[outcome].name);
	if (reserved) {
		log_info("migration_target_reserved", "migration=%s pod=%s/%s vm=%s vf=%s", p->migration, p->namespace_,
			 p->name, p->vm_name, vf);
		rc = xevf_asprintf(&message, "xevf reserved VF %s on node %s for migration %s", vf, kube_node(t->kube),
				   p->migration);
	} else {
		log_warn("migration_target_unmatched", "migration=%s pod=%s/%s vm=%s outcome=%s reason=\"%s\" "
			 "action=\"the target pod gets any free VF; the migration will fail unless one is compatible\"",
			 p->migration, p->namespace_, p->name, p->vm_name, outcomes[outcome].name, why);
		rc = xevf_asprintf(&message, "xevf found no VF on node %s to take migration %s: %s", kube_node(t->kube),
				   p->migration, why);
	}
	if (rc == 0 && kubevirt_pod_event(t->kube, p, reserved ? "Normal" : "Warning", outcomes[outcome].event_reason,
					  message, &error) < 0)
		log_warn("kube_event_failed", "pod=%s/%s reason=\"%s\"", p->namespace_, p->name, error);
	free(message);
	free(error);
}

/* A pending target pod: find the source and reserve. A failure that may
 * pass (an answer missing, a peer not reachable) is tried again at the
 * pod's next event; a settled outcome is told once. */
static void handle(struct targets *t, const struct kubevirt_target_pod *p, const char *resource)
{
	struct source s = {0};
	char *why = NULL, *vf = NULL;
	int rc;

	set_busy(t, resource, true);
	rc = find_source(t, p, &s, &why);
	if (rc == 0)
		rc = migration_reserve_from_peer(t->migration, s.agent, p->migration, p->namespace_, p->vm_name,
						 p->namespace_, s.pod, resource, &vf, &why);
	if (rc == 0 || rc == -ESRCH || rc == -EOPNOTSUPP) {
		settle(t, p->migration);
		tell(t, p, rc == 0 ? TARGET_RESERVED : rc == -ESRCH ? TARGET_NO_COMPATIBLE_VF : TARGET_NOT_MIGRATABLE, vf,
		     why);
	} else if (rc != -EALREADY) {
		metrics_migration_target(outcomes[TARGET_FAILED].name);
		log_warn("migration_target_unresolved", "migration=%s pod=%s/%s vm=%s reason=\"%s\" action=\"trying again "
			 "at the pod's next change\"", p->migration, p->namespace_, p->name, p->vm_name, why ? why : "?");
	}
	set_busy(t, resource, false);
	free(why);
	free(vf);
	source_clear(&s);
}

static int on_event(void *ctx, const char *line, size_t len)
{
	struct targets *t = ctx;
	struct kubevirt_target_pod p;
	char *error = NULL, *resource;
	int rc = kubevirt_parse_watch_event(line, len, &p, &error);

	if (rc < 0) {
		log_warn("kube_watch_unreadable", "reason=\"%s\" action=\"skipping the event\"", error ? error : "?");
		free(error);
		return 0;
	}
	if (rc == 1 && p.pending && !settled(t, p.migration) &&
	    (resource = served_resources_first(t->served, p.resources, p.nresources))) {
		handle(t, &p, resource);
		free(resource);
	}
	kubevirt_target_pod_clear(&p);
	return 0;
}

struct targets *targets_start(struct kube *k, struct migration *m, struct served_resources *served,
			      const char *peer_namespace, const char *peer_selector, char **error)
{
	struct targets *t = calloc(1, sizeof(*t));
	const struct kube_watch_spec spec = {
		.unwatched_event = "migration_targets_unwatched",
		.unwatched_action = "meanwhile migration target pods get no VF reserved by themselves",
		.open = kubevirt_watch_targets, .on_line = on_event, .ctx = t,
	};

	*error = NULL;
	if (t) {
		t->peer_namespace = peer_namespace && *peer_namespace ? strdup(peer_namespace) : kube_own_namespace();
		t->peer_selector = strdup(peer_selector ? peer_selector : "");
	}
	if (!t || !t->peer_namespace || !t->peer_selector) {
		agent_fail(error, t && !t->peer_namespace ? EINVAL : ENOMEM, "%s",
			   t && !t->peer_namespace ? "the agents' namespace is not known: set peerNamespace (--peer-namespace)"
						    : "out of memory");
		goto fail;
	}
	t->kube = k;
	t->migration = m;
	t->served = served;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->changed, NULL);
	if (!(t->watch = kube_watch_start(k, &spec, error))) {
		pthread_mutex_destroy(&t->lock);
		pthread_cond_destroy(&t->changed);
		goto fail;
	}
	return t;
fail:
	if (t) {
		free(t->peer_namespace);
		free(t->peer_selector);
		free(t);
	}
	kube_close(k);
	return NULL;
}

void targets_stop(struct targets *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->stopping = true;
	pthread_cond_broadcast(&t->changed);
	pthread_mutex_unlock(&t->lock);
	kube_watch_stop(t->watch);
	kube_close(t->kube);
	xevf_strv_free(t->busy, t->nbusy);
	for (size_t i = 0; i < SETTLED_MAX; i++)
		free(t->settled[i]);
	free(t->peer_namespace);
	free(t->peer_selector);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->changed);
	free(t);
}
