/* The source side of a state stream the agent moves itself (a VF no QEMU
 * holds): SaveState to the caller, and the save behind SendState. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "migration_private.h"
#include "state_stream.h"
#include "xevf_util.h"

#define DEFAULT_CHUNK ((size_t)256 * 1024)
#define MAX_CHUNK ((size_t)4 * 1024 * 1024)

struct save_ctx {
	struct migration *m;
	struct record *rec;            /* stays in the registry while it saves (the device claim keeps it there) */
	const struct save_sink *sink;
	struct state_stream stream;
	const char *id, *vf;
};

static int save_sink(void *ctx, const char *phase, const void *buf, size_t len, struct xevf_err *err)
{
	struct save_ctx *s = ctx;
	Xevf__Migration__V1__StateChunk chunk = XEVF__MIGRATION__V1__STATE_CHUNK__INIT;
	bool abort_requested;

	pthread_mutex_lock(&s->m->lock);
	abort_requested = s->rec->abort_requested;
	pthread_mutex_unlock(&s->m->lock);
	if (abort_requested)
		return xevf_err_set(err, ECANCELED, "migration %s aborted", s->id);
	chunk.migration_id = (char *)s->id;
	chunk.vf = (char *)s->vf;
	chunk.offset = s->stream.offset;
	chunk.data.data = (uint8_t *)buf; /* only read by the packer */
	chunk.data.len = len;
	chunk.phase = (char *)phase;
	if (s->sink->send(s->sink->ctx, (const ProtobufCMessage *)&chunk) < 0)
		return xevf_err_set(err, ECONNRESET, "the receiver of migration %s went away", s->id);
	state_stream_add(&s->stream, buf, len);
	return 0;
}

/* A source migration failed: the device (claimed by the caller, may be NULL)
 * runs again, the record ends. Lock not held. */
static void source_fail(struct migration *m, const char *id, struct mig_dev *d, struct xevf_err *err)
{
	struct xevf_err rerr = XEVF_ERR_INIT;
	struct state_snapshot snap = {0};
	bool reset_used = false;
	const char *state = d ? xevf_mig_state_name(d->dev.state) : "gone";
	struct mig_dev *to_close;
	struct record *r;

	if (d && d->dev.state != XEVF_MIG_RUNNING && xevf_mig_recover(&d->dev, XEVF_MIG_RUNNING, &reset_used, &rerr) < 0)
		log_error("source_recovery_failed", "migration=%s reason=\"%s\"", id, xevf_err_msg(&rerr));
	xevf_err_clear(&rerr);
	if (d)
		state = xevf_mig_state_name(d->dev.state);
	log_warn("save_failed", "migration=%s vf=%s reason=\"%s\" device_state=%s", id, d ? d->addr : "?",
		 xevf_err_msg(err), state);
	xevf_err_set(err, err->errnum, "%s (the source VF is %s)", xevf_err_msg(err), state);
	pthread_mutex_lock(&m->lock);
	if ((r = registry_find(&m->reg, id))) {
		(void)mig_move(m, r, r->abort_requested ? PHASE_ABORTED : PHASE_FAILED);
		state_file_render(&m->file, &m->reg, &snap);
	}
	to_close = devices_release(&m->devices, d, true);
	pthread_mutex_unlock(&m->lock);
	devices_close(&m->devices, to_close);
	if (snap.seq)
		(void)mig_write(m, &snap, NULL);
}

/* Lock held: may vf's state be saved for migration id? Claims its device. */
static struct mig_dev *save_check(struct migration *m, const char *id, const char *vf_addr,
				  const struct inventory_vf *iv, grpc_status_code *code, struct xevf_err *err)
{
	struct record *r = registry_find(&m->reg, id);
	struct record *other = iv ? registry_find_vf(&m->reg, iv->vf->addr, ROLE_SOURCE) : NULL;
	struct mig_dev *d = NULL;

	if (!iv) {
		*code = GRPC_STATUS_NOT_FOUND;
		xevf_err_set(err, ENODEV, "no VF %.64s on node %s", vf_addr, m->node);
	} else if (r && (r->role != ROLE_SOURCE || strcmp(r->vf, iv->vf->addr) != 0 || r->phase == PHASE_SAVING)) {
		xevf_err_set(err, EBUSY, "migration %s is %s of VF %s (%s)", r->id, role_name(r->role), r->vf,
			     phase_name(r->phase));
	} else if (other && other != r) {
		xevf_err_set(err, EBUSY, "VF %s is already in migration %s", iv->vf->addr, other->id);
	} else if (!(d = devices_claim(&m->devices, iv->vf->addr))) {
		*code = GRPC_STATUS_UNAVAILABLE;
		xevf_err_set(err, EBUSY, "the device of VF %s is busy with another stream", iv->vf->addr);
	}
	return d;
}

/* Lock held: the record now saving (created for a new migration), with the
 * handles Abort uses to end its stream at once. */
static struct record *start_record(struct migration *m, const char *id, const struct inventory_vf *iv,
				   const struct save_sink *sink)
{
	struct record *r = registry_find(&m->reg, id);

	if (!r) {
		if (!(r = record_new(id, ROLE_SOURCE, iv->vf->addr, PHASE_SAVING)))
			return NULL;
		r->resource = xevf_strdup_or_null(iv->resource);
		registry_add(&m->reg, r);
	} else if (mig_move(m, r, PHASE_SAVING)) {
		return NULL;
	}
	r->abort_requested = false;
	r->stream_call = sink->call;
	r->stream_peer = sink->peer;
	return r;
}

/* Lock held: the stream is over; nobody may use its handles any more. */
static void stream_ended(struct migration *m, const char *id)
{
	struct record *r = registry_find(&m->reg, id);

	if (r) {
		r->stream_call = NULL;
		r->stream_peer = NULL;
	}
}

void mig_cancel_stream(struct record *r)
{
	if (r->stream_call)
		rpc_call_cancel(r->stream_call);
	if (r->stream_peer)
		rpc_stream_abort(r->stream_peer);
}

/* Claims and opens the VF's device and starts its record; NULL and *code, err on failure. */
static struct mig_dev *save_begin(struct migration *m, const char *id, const char *vf_addr,
				  const struct save_sink *sink, struct record **rec, grpc_status_code *code,
				  struct xevf_err *err)
{
	struct state_snapshot snap = {0};
	struct inventory *inv;
	const struct inventory_vf *iv;
	struct mig_dev *d, *to_close = NULL;

	pthread_mutex_lock(&m->lock);
	inv = mig_inventory(m);
	iv = inventory_find(inv, vf_addr);
	d = save_check(m, id, vf_addr, iv, code, err);
	pthread_mutex_unlock(&m->lock);
	if (d && devices_open(&m->devices, d, iv->vf, m->dev_root, err) < 0) {
		pthread_mutex_lock(&m->lock);
		to_close = devices_release(&m->devices, d, true);
		pthread_mutex_unlock(&m->lock);
		d = NULL;
	} else if (d) {
		pthread_mutex_lock(&m->lock);
		if ((*rec = start_record(m, id, iv, sink)))
			state_file_render(&m->file, &m->reg, &snap);
		else
			to_close = devices_release(&m->devices, d, true);
		pthread_mutex_unlock(&m->lock);
		if (!*rec) {
			*code = GRPC_STATUS_RESOURCE_EXHAUSTED;
			xevf_err_set(err, ENOMEM, "out of memory");
			d = NULL;
		}
	}
	devices_close(&m->devices, to_close);
	if (snap.seq)
		(void)mig_write(m, &snap, NULL);
	inventory_unref(inv);
	return d;
}

/* Streams the device's state into send, the final chunk with size and SHA-256. */
static int save_stream(struct save_ctx *s, struct mig_dev *d, const struct xevf_mig_options *opts,
		       struct xevf_mig_report *rep, struct xevf_err *err)
{
	Xevf__Migration__V1__StateChunk last = XEVF__MIGRATION__V1__STATE_CHUNK__INIT;
	int rc = xevf_mig_save(&d->dev, opts, save_sink, s, rep, err);

	if (rc)
		return rc;
	state_stream_finish(&s->stream);
	last.migration_id = (char *)s->id;
	last.vf = (char *)s->vf;
	last.offset = s->stream.offset;
	last.last = 1;
	last.total_bytes = s->stream.offset;
	last.sha256 = s->stream.digest;
	last.phase = "stopcopy";
	if (s->sink->send(s->sink->ctx, (const ProtobufCMessage *)&last) < 0)
		return xevf_err_set(err, ECONNRESET, "the receiver went away before the final chunk");
	return 0;
}

static void save_done(struct migration *m, struct save_ctx *s, struct mig_dev *d, const struct xevf_mig_report *rep)
{
	struct state_snapshot snap = {0};

	pthread_mutex_lock(&m->lock);
	(void)mig_move(m, s->rec, PHASE_SAVED);
	state_file_render(&m->file, &m->reg, &snap);
	/* the migration relies on the open device until commit or abort */
	(void)devices_release(&m->devices, d, false);
	pthread_mutex_unlock(&m->lock);
	(void)mig_write(m, &snap, NULL);
	log_info("saved", "migration=%s vf=%s bytes=%llu precopy_bytes=%llu chunks=%u device_state=%s", s->id, s->vf,
		 (unsigned long long)s->stream.offset, (unsigned long long)rep->precopy_bytes, rep->chunks,
		 xevf_mig_state_name(d->dev.state));
}

int mig_save(struct migration *m, const char *id, const char *vf_addr, uint32_t chunk_size, const char *peer,
	     const struct save_sink *sink, uint64_t *bytes, grpc_status_code *code, struct xevf_err *err)
{
	struct xevf_mig_options opts = {.precopy = true, .chunk_size = chunk_size ? chunk_size : DEFAULT_CHUNK};
	struct save_ctx s = {.m = m, .sink = sink};
	struct xevf_mig_report rep = {0};
	struct mig_dev *d;
	int rc;

	*code = GRPC_STATUS_FAILED_PRECONDITION;
	if (!migration_id_valid(id))
		return xevf_err_set(err, EINVAL, "migration_id must be 1..%d characters of [A-Za-z0-9._-]", MIGRATION_ID_MAX);
	if (opts.chunk_size > MAX_CHUNK)
		opts.chunk_size = MAX_CHUNK;
	if (!(d = save_begin(m, id, vf_addr, sink, &s.rec, code, err)))
		return err->errnum ? -err->errnum : -EIO;
	s.id = s.rec->id;
	s.vf = d->addr;
	log_info("save_started", "migration=%s vf=%s peer=%s", id, d->addr, peer);
	rc = state_stream_init(&s.stream) == 0 ? save_stream(&s, d, &opts, &rep, err)
					       : xevf_err_set(err, ENOMEM, "no SHA-256 context");
	*bytes = s.stream.offset;
	pthread_mutex_lock(&m->lock);
	stream_ended(m, id);
	pthread_mutex_unlock(&m->lock);
	if (rc == 0) {
		save_done(m, &s, d, &rep);
	} else {
		*code = err->errnum == ENOTTY ? GRPC_STATUS_FAILED_PRECONDITION : GRPC_STATUS_ABORTED;
		source_fail(m, id, d, err);
	}
	state_stream_free(&s.stream);
	return rc;
}

void mig_source_refused(struct migration *m, const char *id, struct xevf_err *err)
{
	struct record *r;
	struct mig_dev *d = NULL;

	pthread_mutex_lock(&m->lock);
	r = registry_find(&m->reg, id);
	if (r && r->role == ROLE_SOURCE)
		d = devices_claim(&m->devices, r->vf);
	pthread_mutex_unlock(&m->lock);
	if (r && d)
		source_fail(m, id, d, err);
}

static int send_to_caller(void *ctx, const ProtobufCMessage *chunk)
{
	return rpc_call_send(ctx, chunk);
}

void handle_save(struct migration *m, struct rpc_call *call, const ProtobufCMessage *msg)
{
	const Xevf__Migration__V1__SaveStateRequest *req = (const Xevf__Migration__V1__SaveStateRequest *)msg;
	struct xevf_err err = XEVF_ERR_INIT;
	grpc_status_code code;
	uint64_t bytes = 0;

	/* not cut by Abort: the abort is seen at the next chunk and the caller gets
	 * the answer (a caller that stops reading meets the idle deadline) */
	struct save_sink sink = {send_to_caller, call, NULL, NULL};

	if (mig_save(m, req->migration_id, req->vf, req->chunk_size, rpc_call_peer(call), &sink, &bytes, &code, &err) == 0)
		rpc_call_finish(call, GRPC_STATUS_OK, NULL, NULL);
	else
		mig_refuse(call, code, "%s", xevf_err_msg(&err));
	xevf_err_clear(&err);
}
