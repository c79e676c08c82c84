#include "kubevirt_hooks.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_private.h"
#include "fail.h"
#include "log.h"
#include "migration.h"
#include "nodehooks.h"
#include "xevf_util.h"

/* How long PreMigrationTarget waits for the target pod's reservation that is
 * being made (the source's agent is asked meanwhile). */
#define RESERVATION_WAIT_MS 5000

struct kubevirt_hooks {
	struct daemon *d;
	struct node_hooks *server;
};

/* The VF of resource that pod (of the VMI's namespace) holds here. */
static int pod_vf(struct daemon *d, const struct kubevirt_vmi *v, const char *resource, const char *pod, char **vf,
		  char **why)
{
	char *error = NULL;
	int rc = daemon_held_by_pod(d, resource, v->namespace_, pod, vf, &error);

	if (rc < 0)
		agent_fail(why, -rc, "pod %s/%s: %s", v->namespace_, pod, error ? error : strerror(-rc));
	free(error);
	return rc;
}

static int pre_migration_source(struct daemon *d, const struct kubevirt_vmi *v, const char *resource, char **why)
{
	char *vf = NULL, *error = NULL;
	int rc;

	if (!v->source_pod)
		return agent_fail(why, EINVAL, "VMI %s/%s: status.migrationState.sourcePod is not set", v->namespace_, v->name);
	if ((rc = pod_vf(d, v, resource, v->source_pod, &vf, why)) < 0)
		return rc;
	if ((rc = migration_handover(d->migration, v->migration, vf, &error)) < 0)
		agent_fail(why, -rc, "VMI %s/%s, VF %s: %s", v->namespace_, v->name, vf, error ? error : strerror(-rc));
	free(error);
	free(vf);
	return rc;
}

static int pre_migration_target(struct daemon *d, const struct kubevirt_vmi *v, const char *resource, char **why)
{
	const char *role = NULL;
	char *reserved = NULL, *held = NULL;
	bool claimed = false;
	int rc = migration_record_of(d->migration, v->migration, &role, &reserved, &claimed);

	if (rc == -ENOENT) {
		/* the pod watch may still be asking the source's agent */
		targets_wait_settled(d->targets, resource, RESERVATION_WAIT_MS);
		rc = migration_record_of(d->migration, v->migration, &role, &reserved, &claimed);
	}
	if (rc == -ENOENT)
		return agent_fail(why, ESRCH, "no VF of %s is reserved on node %s for migration %s of VMI %s/%s: none is "
				  "compatible with the source's, or the source's agent could not be asked (the target pod's "
				  "events and the log's migration_target_unmatched say which)", resource,
				  migration_node(d->migration), v->migration, v->namespace_, v->name);
	if (rc < 0)
		return agent_fail(why, -rc, "out of memory");
	if (strcmp(role, "target") != 0) {
		rc = agent_fail(why, EINVAL, "migration %s is this node's as its source (VF %s), not its target", v->migration,
				reserved);
	} else if (v->target_pod && pod_vf(d, v, resource, v->target_pod, &held, why) == 0) {
		if (strcmp(held, reserved) != 0)
			rc = agent_fail(why, EXDEV, "target pod %s/%s got VF %s, not VF %s that was reserved for migration %s "
					"(compatible with the source's and provisioned like it)", v->namespace_, v->target_pod,
					held, reserved, v->migration);
	} else if (!claimed) {
		char *error = *why;
		*why = NULL;
		rc = agent_fail(why, EAGAIN, "VF %s is reserved for migration %s, but the target pod has not got it yet%s%s",
				reserved, v->migration, error ? ": " : "", error ? error : "");
		free(error);
	} else {
		free(*why); /* the pod's VF is not told, but the reservation went to the pod */
		*why = NULL;
	}
	free(reserved);
	free(held);
	return rc;
}

static int post_migration_target(struct daemon *d, const struct kubevirt_vmi *v, char **why)
{
	char *error = NULL;
	int rc = migration_finish(d->migration, v->migration, true, &error);

	if (rc < 0)
		agent_fail(why, -rc, "VMI %s/%s: %s", v->namespace_, v->name, error ? error : strerror(-rc));
	free(error);
	return rc;
}

static int on_hook(void *ctx, enum node_hook_point point, const struct kubevirt_vmi *v, char **why)
{
	struct kubevirt_hooks *h = ctx;
	char *resource = served_resources_first(&h->d->served, v->resources, v->nresources);
	int rc;

	if (!resource)
		return 0; /* no VF of ours in this VMI: nothing to do */
	if (!v->migration) {
		rc = agent_fail(why, EINVAL, "VMI %s/%s: status.migrationState.migrationUid is not set", v->namespace_,
				v->name);
	} else {
		switch (point) {
		case NODE_HOOK_PRE_MIGRATION_SOURCE:
			rc = pre_migration_source(h->d, v, resource, why);
			break;
		case NODE_HOOK_PRE_MIGRATION_TARGET:
			rc = pre_migration_target(h->d, v, resource, why);
			break;
		case NODE_HOOK_POST_MIGRATION_TARGET:
			rc = post_migration_target(h->d, v, why);
			break;
		default:
			rc = 0;
		}
	}
	free(resource);
	return rc;
}

struct kubevirt_hooks *kubevirt_hooks_start(struct daemon *d, const char *socket_path, char **error)
{
	struct kubevirt_hooks *h = calloc(1, sizeof(*h));

	if (!h || !d->migration) {
		agent_fail(error, h ? EINVAL : ENOMEM, "%s", h ? "the node hooks need the Migration service, which is not "
			   "running (see migration_unavailable)" : "out of memory");
		free(h);
		return NULL;
	}
	h->d = d;
	if (!(h->server = node_hooks_start(socket_path, migration_node(d->migration), on_hook, h, error))) {
		free(h);
		return NULL;
	}
	return h;
}

void kubevirt_hooks_stop(struct kubevirt_hooks *h)
{
	if (!h)
		return;
	node_hooks_stop(h->server);
	free(h);
}
