/* Commit and Abort: decided under the lock, the device's last step taken
 * without it, the record ended under it again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "migration_private.h"

struct finish {
	bool commit;
	struct record *copy;          /* the record as it was decided on */
	struct mig_dev *dev;          /* claimed, or NULL when no device step is needed */
	struct inventory *inv;
	const char *state;            /* the device's state afterwards */
	bool reset_used;
};

/* Lock held: 0 when the call goes on to the device step; else it has been
 * decided here (*code, *msg or an answer in f->copy with code OK). */
static int decide(struct migration *m, const char *id, const char *caller, struct finish *f, grpc_status_code *code,
		  char **msg)
{
	struct record *r = migration_id_valid(id) ? registry_find(&m->reg, id) : NULL;
	struct record *ended = r || !migration_id_valid(id) ? NULL : registry_find_ended(&m->reg, id);
	const struct record *found = r ? r : ended;

	if (found && !record_may_end(found, caller)) {
		*code = GRPC_STATUS_PERMISSION_DENIED;
		return asprintf(msg, "migration %s on node %s: %s may end only the target reservations it made; the rest "
				"only the node-local socket", found->id, m->node, caller) < 0 ? -ENOMEM : -EACCES;
	}

	*code = GRPC_STATUS_FAILED_PRECONDITION;
	if (ended && !f->commit && ended->phase == PHASE_COMMITTED)
		return asprintf(msg, "migration %s is already committed", ended->id) < 0 ? -ENOMEM : -EALREADY;
	if (ended) { /* Commit and Abort are idempotent */
		f->copy = record_dup(ended);
		*code = GRPC_STATUS_OK;
		return -EALREADY;
	}
	if (!r) {
		*code = GRPC_STATUS_NOT_FOUND;
		return asprintf(msg, "no migration %.128s on node %s", id, m->node) < 0 ? -ENOMEM : -ENOENT;
	}
	if (r->phase == PHASE_SAVING || r->phase == PHASE_RESTORING) {
		if (f->commit)
			return asprintf(msg, "migration %s is %s; wait for it or Abort", r->id, phase_name(r->phase)) < 0 ? -ENOMEM
														 : -EBUSY;
		/* the stream ends at once (also when it waits on a stalled peer) and
		 * its thread recovers the device */
		r->abort_requested = true;
		mig_cancel_stream(r);
		log_info("migration_abort_requested", "migration=%s vf=%s", r->id, r->vf);
		f->copy = record_dup(r);
		*code = GRPC_STATUS_OK;
		return -EINPROGRESS;
	}
	/* a reservation whose pod got the VF commits as it is: QEMU moved the state into it */
	if (f->commit && r->role == ROLE_TARGET && r->phase != PHASE_RESTORED && !(r->phase == PHASE_RESERVED && r->claimed))
		return asprintf(msg, "migration %s: nothing restored yet (%s) and the target pod has not got the VF", r->id,
				phase_name(r->phase)) < 0 ? -ENOMEM : -EINVAL;
	if (f->commit && r->role == ROLE_SOURCE && r->phase != PHASE_SAVED && r->phase != PHASE_HANDED_OVER)
		return asprintf(msg, "migration %s: the state is not saved yet (%s)", r->id, phase_name(r->phase)) < 0 ? -ENOMEM
														    : -EINVAL;
	if (r->phase == PHASE_SAVED || r->phase == PHASE_RESTORED || (f->commit && r->phase == PHASE_HANDED_OVER) ||
	    devices_find(&m->devices, r->vf)) {
		if (!(f->dev = devices_claim(&m->devices, r->vf))) {
			*code = GRPC_STATUS_UNAVAILABLE;
			return asprintf(msg, "migration %s: the device of VF %s is busy with another call", r->id, r->vf) < 0 ? -ENOMEM
															      : -EBUSY;
		}
	}
	f->copy = record_dup(r);
	f->inv = mig_inventory(m);
	return f->copy ? 0 : -ENOMEM;
}

/* Nobody else may use a VF whose state is run, reset or wiped: a VM's QEMU
 * holding it, or a pod that is not the migration's own (its target pod, or
 * the source VM it moves away). */
static int step_allowed(struct migration *m, const struct finish *f, const struct inventory_vf *iv,
			struct xevf_err *err)
{
	const char *busy;

	if (!iv || (!f->commit && f->copy->role == ROLE_SOURCE))
		return 0; /* the source VM keeps running here: nothing is destroyed */
	if (f->copy->role == ROLE_TARGET && f->copy->phase == PHASE_RESERVED)
		return 0; /* a reservation only: its commit leaves the VF to the VM's QEMU, which runs the state it
			   * received; its abort frees the reservation (a target QEMU whose incoming migration failed
			   * may still be exiting). Nothing is touched either way. */
	busy = busy_why_now(m, iv, f->copy->role == ROLE_SOURCE || f->copy->claimed);
	return busy ? xevf_err_set(err, EBUSY, "VF %s is in use: %s; it was left as it is", f->copy->vf, busy) : 0;
}

/* Lock not held: the device's last step. */
static int device_step(struct migration *m, struct finish *f, struct xevf_err *err)
{
	const struct record *r = f->copy;
	const struct inventory_vf *iv = inventory_find(f->inv, r->vf);
	int rc = step_allowed(m, f, iv, err);

	if (rc)
		return rc;
	if (f->dev && !f->dev->open && iv &&
	    (r->phase == PHASE_SAVED || r->phase == PHASE_RESTORED || r->phase == PHASE_HANDED_OVER))
		(void)devices_open(&m->devices, f->dev, iv->vf, m->dev_root, err);
	xevf_err_clear(err);
	if (f->dev && !f->dev->open)
		f->dev = NULL;
	if (f->commit && r->role == ROLE_TARGET && r->phase == PHASE_RESERVED) {
		rc = 0; /* QEMU's: never opened here */
	} else if (f->commit && r->role == ROLE_TARGET) {
		/* run the restored state */
		rc = f->dev ? xevf_mig_walk(&f->dev->dev, XEVF_MIG_RUNNING, err) : -ENODEV;
	} else if (f->dev && !f->commit && r->role == ROLE_SOURCE) {
		/* the VM keeps running here, with its state */
		rc = xevf_mig_recover(&f->dev->dev, XEVF_MIG_RUNNING, &f->reset_used, err);
	} else if (f->dev && (f->commit || r->phase != PHASE_RESERVED)) {
		/* a committed source: the VM runs elsewhere now, its state is wiped and
		 * the VF starts afresh; an aborted target: a restored foreign state
		 * must never run */
		rc = xevf_mig_reset(&f->dev->dev, err);
		f->reset_used = rc == 0;
	}
	if (rc == -ENODEV && !err->msg)
		xevf_err_set(err, ENODEV, "VF %s is gone from the node", r->vf);
	f->state = f->dev ? xevf_mig_state_name(f->dev->dev.state) : "";
	return rc;
}

/* Lock held: the record ends; the device goes back (to close after unlocking). */
static struct mig_dev *conclude(struct migration *m, struct finish *f, int rc, struct state_snapshot *snap)
{
	struct record *r = registry_find(&m->reg, f->copy->id);
	/* after a failed step the device stays as it is, for another try */
	struct mig_dev *to_close = devices_release(&m->devices, f->dev, rc == 0);

	if (rc == 0 && r && mig_move(m, r, f->commit ? PHASE_COMMITTED : PHASE_ABORTED) == 0) {
		log_info(f->commit ? "migration_committed" : "migration_aborted",
			 "migration=%s role=%s vf=%s device_state=%s reset=%s", r->id, role_name(r->role), r->vf, f->state,
			 f->reset_used ? "yes" : "no");
		f->copy->phase = r->phase;
		state_file_render(&m->file, &m->reg, snap);
	} else if (rc == 0 && (r = registry_find_ended(&m->reg, f->copy->id))) {
		f->copy->phase = r->phase; /* another call ended it meanwhile */
	}
	return to_close;
}

/* A Commit or Abort by caller, whole: *code and, unless OK, *msg (malloc'd);
 * f->copy (the record as it ended) and f->state for the answer. The caller
 * frees f->copy and f->inv. */
static int finish_run(struct migration *m, const char *id, const char *caller, struct finish *f,
		      grpc_status_code *code, char **msg)
{
	struct xevf_err err = XEVF_ERR_INIT;
	struct state_snapshot snap = {0};
	int rc;

	pthread_mutex_lock(&m->lock);
	rc = decide(m, id, caller, f, code, msg);
	pthread_mutex_unlock(&m->lock);
	if (rc == 0) {
		struct mig_dev *to_close;
		rc = device_step(m, f, &err);
		pthread_mutex_lock(&m->lock);
		to_close = conclude(m, f, rc, &snap);
		pthread_mutex_unlock(&m->lock);
		devices_close(&m->devices, to_close);
		if (snap.seq)
			(void)mig_write(m, &snap, NULL);
		*code = rc == 0 ? GRPC_STATUS_OK : rc == -EBUSY ? GRPC_STATUS_FAILED_PRECONDITION : GRPC_STATUS_ABORTED;
		if (rc && asprintf(msg, "migration %s: %s", f->copy->id, xevf_err_msg(&err)) < 0)
			*msg = NULL;
	}
	if (*code == GRPC_STATUS_OK && !f->copy)
		*code = GRPC_STATUS_RESOURCE_EXHAUSTED;
	xevf_err_clear(&err);
	return rc;
}

static void finish_call(struct migration *m, struct rpc_call *call, const Xevf__Migration__V1__MigrationRef *req,
			bool commit)
{
	struct finish f = {.commit = commit};
	Xevf__Migration__V1__MigrationStatus st;
	grpc_status_code code;
	char *msg = NULL;
	int rc = finish_run(m, req->migration_id, rpc_call_peer(call), &f, &code, &msg);

	if (code == GRPC_STATUS_OK) {
		mig_status_of(f.copy, f.state ? f.state : "", &st);
		if (rc == -EINPROGRESS)
			st.phase = "aborting";
		rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&st);
	} else {
		mig_refuse(call, code, "%s", msg ? msg : "out of memory");
	}
	free(msg);
	record_free(f.copy);
	inventory_unref(f.inv);
}

int migration_finish(struct migration *m, const char *id, bool commit, char **why)
{
	struct finish f = {.commit = commit};
	grpc_status_code code;
	char *msg = NULL;
	int rc = finish_run(m, id, "local", &f, &code, &msg);

	*why = NULL;
	if (code == GRPC_STATUS_OK) {
		rc = 0;
		free(msg);
	} else {
		rc = rc < 0 ? rc : -EIO;
		*why = msg ? msg : strdup("out of memory");
	}
	record_free(f.copy);
	inventory_unref(f.inv);
	return rc;
}

void handle_commit(struct migration *m, struct rpc_call *call, const ProtobufCMessage *req)
{
	finish_call(m, call, (const Xevf__Migration__V1__MigrationRef *)req, true);
}

void handle_abort(struct migration *m, struct rpc_call *call, const ProtobufCMessage *req)
{
	finish_call(m, call, (const Xevf__Migration__V1__MigrationRef *)req, false);
}

int migration_end_when_free(struct migration *m, const char *id, bool commit, char **why)
{
	int rc = migration_finish(m, id, commit, why);
	struct record *r;

	if (rc != -EBUSY)
		return rc;
	pthread_mutex_lock(&m->lock);
	if ((r = registry_find(&m->reg, id)))
		r->end_when_free = commit ? END_COMMIT : END_ABORT;
	pthread_mutex_unlock(&m->lock);
	if (!r)
		return rc;
	log_info("migration_end_deferred", "migration=%s commit=%s reason=\"%s\" action=\"trying again every second "
		 "until the VF is free\"", id, commit ? "yes" : "no", *why ? *why : "?");
	if (m->wake)
		m->wake();
	return -EINPROGRESS;
}

void mig_retry_deferred_ends(struct migration *m)
{
	char **ids = NULL;
	bool *commits = NULL;
	size_t n = 0, cap = 0;

	pthread_mutex_lock(&m->lock);
	for (struct record *r = m->reg.active; r; r = r->next) {
		if (r->end_when_free == END_NONE)
			continue;
		if (n == cap) {
			size_t grown_cap = cap ? cap * 2 : 4;
			char **grown_ids = realloc(ids, grown_cap * sizeof(*grown_ids));
			bool *grown_commits = grown_ids ? realloc(commits, grown_cap * sizeof(*grown_commits)) : NULL;
			if (grown_ids)
				ids = grown_ids;
			if (!grown_commits)
				break; /* the rest waits for the next tick */
			commits = grown_commits;
			cap = grown_cap;
		}
		if (!(ids[n] = strdup(r->id)))
			break;
		commits[n++] = r->end_when_free == END_COMMIT;
	}
	pthread_mutex_unlock(&m->lock);
	for (size_t i = 0; i < n; i++) {
		char *why = NULL;
		int rc = migration_finish(m, ids[i], commits[i], &why);
		if (rc != -EBUSY) {
			struct record *r;
			pthread_mutex_lock(&m->lock);
			if ((r = registry_find(&m->reg, ids[i])))
				r->end_when_free = END_NONE;
			pthread_mutex_unlock(&m->lock);
			if (rc < 0)
				log_warn("migration_end_failed", "migration=%s commit=%s reason=\"%s\"", ids[i],
					 commits[i] ? "yes" : "no", why ? why : "?");
		}
		free(why);
		free(ids[i]);
	}
	free(ids);
	free(commits);
}
