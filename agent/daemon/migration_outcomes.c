#include "migration_outcomes.h"

#include <errno.h>
#include <stdlib.h>

#include "fail.h"
#include "kube_watch.h"
#include "kubevirt.h"
#include "log.h"

struct migration_outcomes {
	struct kube *kube;
	struct migration *migration;
	struct kube_watch *watch;
};

static int on_event(void *ctx, const char *line, size_t len)
{
	struct migration_outcomes *o = ctx;
	struct kubevirt_vmim_event e;
	const char *role = NULL;
	char *error = NULL, *vf = NULL;
	int rc = kubevirt_parse_vmim_event(line, len, &e, &error);

	if (rc < 0) {
		log_warn("kube_watch_unreadable", "reason=\"%s\" action=\"skipping the event\"", error ? error : "?");
		free(error);
		return 0;
	}
	if (rc == 1 && e.outcome != VMIM_IN_PROGRESS &&
	    migration_record_of(o->migration, e.uid, &role, &vf, NULL) == 0) {
		bool commit = e.outcome == VMIM_SUCCEEDED;
		log_info("migration_outcome", "migration=%s vmim=%s/%s outcome=%s%s role=%s vf=%s action=%s", e.uid,
			 e.namespace_, e.name, kubevirt_vmim_outcome_name(e.outcome), e.deleted ? " (deleted)" : "", role, vf,
			 commit ? "commit" : "abort");
		rc = migration_end_when_free(o->migration, e.uid, commit, &error);
		if (rc < 0 && rc != -EINPROGRESS)
			log_warn("migration_outcome_not_applied", "migration=%s vmim=%s/%s outcome=%s reason=\"%s\"", e.uid,
				 e.namespace_, e.name, kubevirt_vmim_outcome_name(e.outcome), error ? error : "?");
		free(error);
	}
	free(vf);
	kubevirt_vmim_event_clear(&e);
	return 0;
}

struct migration_outcomes *migration_outcomes_start(struct kube *k, struct migration *m, char **error)
{
	struct migration_outcomes *o = calloc(1, sizeof(*o));
	const struct kube_watch_spec spec = {
		.unwatched_event = "migration_outcomes_unwatched",
		.unwatched_action = "meanwhile a failed migration's reservation waits for its ttl and a migrated source "
				    "VF for a commit by hand",
		.open = kubevirt_watch_migrations, .on_line = on_event, .ctx = o,
	};

	*error = NULL;
	if (!o) {
		kube_close(k);
		agent_fail(error, ENOMEM, "out of memory");
		return NULL;
	}
	o->kube = k;
	o->migration = m;
	if (!(o->watch = kube_watch_start(k, &spec, error))) {
		kube_close(k);
		free(o);
		return NULL;
	}
	return o;
}

void migration_outcomes_stop(struct migration_outcomes *o)
{
	if (!o)
		return;
	kube_watch_stop(o->watch);
	kube_close(o->kube);
	free(o);
}
