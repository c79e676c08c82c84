/* The source side of a migration QEMU carries (a KubeVirt live migration):
 * Handover records it without ever opening the VF, which the VM's QEMU holds.
 * Commit (finish.c) resets the VF once QEMU has released it; Abort leaves it
 * to the VM. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "log.h"
#include "migration_private.h"

/* Lock held: the record (a new one, or the same Handover's again: *again),
 * or NULL and the refusal (*code, *msg). */
static struct record *handover_locked(struct migration *m, const struct inventory_vf *iv, const char *id, bool *again,
				      grpc_status_code *code, char **msg)
{
	struct record *r = registry_find(&m->reg, id), *other = registry_find_vf(&m->reg, iv->vf->addr, -1);

	*again = false;
	*code = GRPC_STATUS_FAILED_PRECONDITION;
	if (iv->vf->driver_kind != XEVF_DRIVER_VFIO_VARIANT) {
		(void)agent_fail(msg, EINVAL, "VF %s is bound to %s: QEMU cannot migrate it (xe-vfio-pci migrates; "
				 "CONFIG_XE_VFIO_PCI is off by default in the kernel)", iv->vf->addr,
				 iv->vf->driver ? iv->vf->driver : "no driver");
		return NULL;
	}
	if (r && r->role == ROLE_SOURCE && r->phase == PHASE_HANDED_OVER && strcmp(r->vf, iv->vf->addr) == 0) {
		*again = true; /* Handover is idempotent */
		return r;
	}
	if (r) {
		*code = GRPC_STATUS_ALREADY_EXISTS;
		(void)agent_fail(msg, EEXIST, "migration %s already exists on node %s (%s %s)", id, m->node, role_name(r->role),
				 phase_name(r->phase));
	} else if (other) {
		(void)agent_fail(msg, EBUSY, "VF %s is in migration %s (%s %s)", iv->vf->addr, other->id, role_name(other->role),
				 phase_name(other->phase));
	} else if (registry_count(&m->reg) >= REGISTRY_ACTIVE_MAX) {
		*code = GRPC_STATUS_RESOURCE_EXHAUSTED;
		(void)agent_fail(msg, ENOSPC, "node %s keeps %d migrations already", m->node, REGISTRY_ACTIVE_MAX);
	} else if ((r = record_new(id, ROLE_SOURCE, iv->vf->addr, PHASE_HANDED_OVER)) &&
		   (r->owner = strdup("local")) && (!iv->resource || (r->resource = strdup(iv->resource)))) {
		registry_add(&m->reg, r);
		return r;
	} else {
		record_free(r);
		*code = GRPC_STATUS_RESOURCE_EXHAUSTED;
	}
	return NULL;
}

void handle_handover(struct migration *m, struct rpc_call *call, const ProtobufCMessage *msg)
{
	const Xevf__Migration__V1__HandoverRequest *req = (const Xevf__Migration__V1__HandoverRequest *)msg;
	Xevf__Migration__V1__MigrationStatus st;
	struct state_snapshot snap = {0};
	const struct inventory_vf *iv;
	struct inventory *inv;
	struct record *r = NULL, *copy = NULL;
	grpc_status_code code = GRPC_STATUS_RESOURCE_EXHAUSTED;
	char *why = NULL, *error = NULL;
	bool again = false;

	if (!migration_id_valid(req->migration_id)) {
		mig_refuse(call, GRPC_STATUS_INVALID_ARGUMENT, "migration_id must be 1..%d characters of [A-Za-z0-9._-]",
			   MIGRATION_ID_MAX);
		return;
	}
	pthread_mutex_lock(&m->lock);
	inv = mig_inventory(m);
	if ((iv = inventory_find(inv, req->vf)) && (r = handover_locked(m, iv, req->migration_id, &again, &code, &why)) &&
	    (copy = record_dup(r)) && !again)
		state_file_render(&m->file, &m->reg, &snap);
	pthread_mutex_unlock(&m->lock);
	if (r && !again && (!copy || mig_write(m, &snap, &error))) {
		/* acknowledged only once it is on disk */
		mig_take_back(m, req->migration_id, PHASE_HANDED_OVER);
		mig_refuse(call, copy ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_RESOURCE_EXHAUSTED,
			   "migration %s: nothing recorded: %s", req->migration_id, error ? error : "out of memory");
	} else if (copy) {
		if (!again)
			log_info("handed_over", "migration=%s vf=%s action=\"QEMU moves the state; commit resets the VF once "
				 "QEMU has released it\"", copy->id, copy->vf);
		mig_status_of(copy, "", &st);
		rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&st);
	} else if (!iv) {
		mig_refuse(call, GRPC_STATUS_NOT_FOUND, "VF %.64s is not on node %s", req->vf, m->node);
	} else {
		mig_refuse(call, code, "%s", why ? why : "out of memory");
	}
	free(why);
	free(error);
	record_free(copy);
	inventory_unref(inv);
}
