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

/* A Handover, whole: OK and *copy (the record, for the answer), or the
 * refusal's code and *why (malloc'd). */
static grpc_status_code handover_run(struct migration *m, const char *id, const char *vf, struct record **copy,
				     char **why)
{
	struct state_snapshot snap = {0};
	const struct inventory_vf *iv;
	struct inventory *inv;
	struct record *r = NULL;
	grpc_status_code code = GRPC_STATUS_RESOURCE_EXHAUSTED;
	char *error = NULL;
	bool again = false;

	*copy = NULL;
	*why = NULL;
	if (!migration_id_valid(id)) {
		(void)agent_fail(why, EINVAL, "migration_id must be 1..%d characters of [A-Za-z0-9._-]", MIGRATION_ID_MAX);
		return GRPC_STATUS_INVALID_ARGUMENT;
	}
	pthread_mutex_lock(&m->lock);
	inv = mig_inventory(m);
	if ((iv = inventory_find(inv, vf)) && (r = handover_locked(m, iv, id, &again, &code, why)) &&
	    (*copy = record_dup(r)) && !again)
		state_file_render(&m->file, &m->reg, &snap);
	pthread_mutex_unlock(&m->lock);
	if (r && !again && (!*copy || mig_write(m, &snap, &error))) {
		/* acknowledged only once it is on disk */
		mig_take_back(m, id, PHASE_HANDED_OVER);
		code = *copy ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_RESOURCE_EXHAUSTED;
		(void)agent_fail(why, EIO, "migration %s: nothing recorded: %s", id, error ? error : "out of memory");
		record_free(*copy);
		*copy = NULL;
	} else if (*copy) {
		if (!again)
			log_info("handed_over", "migration=%s vf=%s action=\"QEMU moves the state; commit resets the VF once "
				 "QEMU has released it\"", (*copy)->id, (*copy)->vf);
		code = GRPC_STATUS_OK;
	} else if (!iv) {
		code = GRPC_STATUS_NOT_FOUND;
		(void)agent_fail(why, ENODEV, "VF %.64s is not on node %s", vf, m->node);
	} else if (!*why) {
		(void)agent_fail(why, ENOMEM, "out of memory");
	}
	free(error);
	inventory_unref(inv);
	return code;
}

void handle_handover(struct migration *m, struct rpc_call *call, const ProtobufCMessage *msg)
{
	const Xevf__Migration__V1__HandoverRequest *req = (const Xevf__Migration__V1__HandoverRequest *)msg;
	Xevf__Migration__V1__MigrationStatus st;
	struct record *copy;
	char *why;
	grpc_status_code code = handover_run(m, req->migration_id, req->vf, &copy, &why);

	if (code == GRPC_STATUS_OK) {
		mig_status_of(copy, "", &st);
		rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&st);
	} else {
		mig_refuse(call, code, "%s", why ? why : "out of memory");
	}
	free(why);
	record_free(copy);
}

int migration_handover(struct migration *m, const char *id, const char *vf, char **why)
{
	struct record *copy;
	grpc_status_code code = handover_run(m, id, vf, &copy, why);

	record_free(copy);
	switch (code) {
	case GRPC_STATUS_OK:
		return 0;
	case GRPC_STATUS_INVALID_ARGUMENT:
		return -EINVAL;
	case GRPC_STATUS_NOT_FOUND:
		return -ENODEV;
	case GRPC_STATUS_ALREADY_EXISTS:
		return -EEXIST;
	case GRPC_STATUS_UNAVAILABLE:
		return -EAGAIN;
	case GRPC_STATUS_RESOURCE_EXHAUSTED:
		return -ENOSPC;
	default: /* FAILED_PRECONDITION: e.g. a VF QEMU cannot migrate */
		return -EOPNOTSUPP;
	}
}
