/* The target side of a state stream the agent moves itself: RestoreState
 * takes a reservation's chunks into its VF's device, checking order, size and
 * SHA-256 before the device may leave RESUMING. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "migration_private.h"
#include "state_stream.h"

#define MAX_CHUNK ((size_t)4 * 1024 * 1024)

struct restore_ctx {
	struct rpc_call *call;
	uint64_t limit;                           /* the largest state taken */
	const char *limit_why;                    /* where the limit comes from */
	Xevf__Migration__V1__StateChunk *pending; /* the first chunk, read before the restore starts */
	struct state_stream stream;
	const char *id;
	int64_t first_us, last_us;                /* when the first and the final chunk arrived */
};

static Xevf__Migration__V1__StateChunk *next_chunk(struct restore_ctx *s, struct xevf_err *err)
{
	Xevf__Migration__V1__StateChunk *c = s->pending;
	ProtobufCMessage *msg;
	int got;

	s->pending = NULL;
	if (c)
		return c;
	got = rpc_call_recv(s->call, &xevf__migration__v1__state_chunk__descriptor, &msg);
	if (got < 0)
		xevf_err_set(err, ECONNRESET, "migration %s: the state stream broke off at byte %llu", s->id,
			     (unsigned long long)s->stream.offset);
	else if (got == 0)
		xevf_err_set(err, EPROTO, "migration %s: the state stream ended at byte %llu without its final chunk "
			     "(truncated); nothing is resumed", s->id, (unsigned long long)s->stream.offset);
	return got > 0 ? (Xevf__Migration__V1__StateChunk *)msg : NULL;
}

static ssize_t restore_source(void *ctx, void *buf, size_t cap, struct xevf_err *err)
{
	struct restore_ctx *s = ctx;

	while (!s->stream.done) {
		Xevf__Migration__V1__StateChunk *c = next_chunk(s, err);
		if (!c)
			return -err->errnum;
		int rc = c->data.len > s->limit - s->stream.offset
			? xevf_err_set(err, EFBIG, "migration %s: the state stream is larger than %llu bytes (%s); "
				       "nothing is resumed", s->id, (unsigned long long)s->limit, s->limit_why)
			: state_stream_accept(&s->stream, c, cap, s->id, err);
		size_t n = c->data.len;
		if (rc == 0 && s->stream.done)
			s->last_us = clock_mono_us();
		if (rc == 0 && n)
			memcpy(buf, c->data.data, n);
		protobuf_c_message_free_unpacked(&c->base, NULL);
		if (rc < 0)
			return rc;
		if (n)
			return (ssize_t)n;
	}
	return 0;
}

struct restore {
	struct rpc_call *call;
	struct record *copy;
	struct mig_dev *dev;
	struct inventory *inv;
};

/* Lock held: the reservation and its claimed device, or a refusal (*code, *msg). */
static int restore_check(struct migration *m, const char *id, struct restore *rs, grpc_status_code *code, char **msg)
{
	struct record *r = migration_id_valid(id) ? registry_find(&m->reg, id) : NULL;

	if (!r || r->role != ROLE_TARGET || (r->phase != PHASE_RESERVED && r->phase != PHASE_RESTORED)) {
		*code = GRPC_STATUS_FAILED_PRECONDITION;
		return asprintf(msg, "migration %.128s has no reservation on node %s to restore into (Reserve first)", id,
				m->node) < 0 ? -ENOMEM : -ENOENT;
	}
	*code = GRPC_STATUS_UNAVAILABLE;
	if (!(rs->dev = devices_claim(&m->devices, r->vf)))
		return asprintf(msg, "reserved VF %s: busy with another stream", r->vf) < 0 ? -ENOMEM : -EBUSY;
	rs->copy = record_dup(r);
	rs->inv = mig_inventory(m);
	return rs->copy ? 0 : -ENOMEM;
}

/* Nobody else may use the VF a state is written into: a VM's QEMU holding it,
 * or a pod that is not this reservation's target pod. */
static int restore_allowed(struct migration *m, const struct inventory_vf *iv, const struct record *r,
			   struct xevf_err *err)
{
	const char *busy = busy_why_now(m, iv, r->claimed);

	return busy ? xevf_err_set(err, EBUSY, "it is in use: %s; nothing was written into it", busy) : 0;
}

/* Claims and opens the reserved VF's device and marks the record restoring. */
static int restore_begin(struct migration *m, const char *id, struct restore *rs, grpc_status_code *code, char **msg)
{
	struct xevf_err err = XEVF_ERR_INIT;
	struct state_snapshot snap = {0};
	const struct inventory_vf *iv;
	struct mig_dev *to_close = NULL;
	int rc;

	pthread_mutex_lock(&m->lock);
	rc = restore_check(m, id, rs, code, msg);
	pthread_mutex_unlock(&m->lock);
	if (rc)
		return rc;
	iv = inventory_find(rs->inv, rs->copy->vf);
	rc = iv ? restore_allowed(m, iv, rs->copy, &err) : -ENODEV;
	if (rc == 0)
		rc = devices_open(&m->devices, rs->dev, iv->vf, m->dev_root, &err);
	pthread_mutex_lock(&m->lock);
	struct record *r = registry_find(&m->reg, id);
	if (rc == 0 && r && mig_move(m, r, PHASE_RESTORING) == 0) {
		r->stream_call = rs->call; /* Abort and the ttl end it at once */
		state_file_render(&m->file, &m->reg, &snap);
	} else {
		to_close = devices_release(&m->devices, rs->dev, true);
		rs->dev = NULL;
		if (asprintf(msg, "reserved VF %s: %s", rs->copy->vf, !iv ? "gone from the node" : rc ? xevf_err_msg(&err) :
			     "the reservation ended meanwhile") < 0)
			*msg = NULL;
		if (rc == -EBUSY)
			*code = GRPC_STATUS_FAILED_PRECONDITION;
		rc = rc ? rc : -ENOENT;
	}
	pthread_mutex_unlock(&m->lock);
	devices_close(&m->devices, to_close);
	if (snap.seq)
		(void)mig_write(m, &snap, NULL);
	xevf_err_clear(&err);
	return rc;
}

/* The outcome under the lock: restored, or back to reserved (a new attempt may
 * follow, or Abort); a failed device is closed. */
static void restore_end(struct migration *m, struct restore *rs, int rc)
{
	struct state_snapshot snap = {0};
	struct mig_dev *to_close;
	struct record *r;

	pthread_mutex_lock(&m->lock);
	if ((r = registry_find(&m->reg, rs->copy->id))) {
		r->stream_call = NULL;
		(void)mig_move(m, r, rc == 0 ? PHASE_RESTORED : PHASE_RESERVED);
		state_file_render(&m->file, &m->reg, &snap);
	}
	to_close = devices_release(&m->devices, rs->dev, rc != 0);
	pthread_mutex_unlock(&m->lock);
	if (snap.seq)
		(void)mig_write(m, &snap, NULL);
	devices_close(&m->devices, to_close);
}

static void answer(struct rpc_call *call, const struct restore *rs, const struct restore_ctx *s,
		   const struct xevf_mig_report *rep, const char *state, int rc, const struct xevf_err *err)
{
	Xevf__Migration__V1__RestoreStateResponse resp = XEVF__MIGRATION__V1__RESTORE_STATE_RESPONSE__INIT;
	char *msg = NULL;

	if (rc == 0) {
		/* the stream itself, first chunk to final chunk: what the network and
		 * the two agents manage, without the devices' own start and finish */
		double ms = (double)(s->last_us - s->first_us) / 1e3;
		log_info("restored", "migration=%s vf=%s bytes=%llu device_state=%s stream_ms=%.1f stream_mib_per_s=%.0f",
			 rs->copy->id, rs->copy->vf, (unsigned long long)rep->restored_bytes, state, ms,
			 ms > 0 ? (double)rep->restored_bytes / (1 << 20) / (ms / 1e3) : 0.0);
		resp.migration_id = rs->copy->id;
		resp.vf = rs->copy->vf;
		resp.bytes = rep->restored_bytes;
		resp.device_state = (char *)state;
		rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&resp);
		return;
	}
	log_warn("restore_failed", "migration=%s vf=%s reason=\"%s\" device_state=%s reset=%s", rs->copy->id,
		 rs->copy->vf, xevf_err_msg(err), state, rep->reset_used ? "yes" : "no");
	if (asprintf(&msg, "%s (target VF %s is %s, reset: %s)", xevf_err_msg(err), rs->copy->vf, state,
		     rep->reset_used ? "yes" : "no") < 0)
		msg = NULL;
	rpc_call_finish(call, err->errnum == EBADMSG || err->errnum == EPROTO || err->errnum == EFBIG ? GRPC_STATUS_DATA_LOSS
														      : GRPC_STATUS_ABORTED,
			msg, NULL);
	free(msg);
}

/* A state of a device of this kind is about as large as the device says its
 * own would be: twice that plus 1 MiB (room for pre-copy data and a newer
 * driver's format), never more than --max-state-bytes. A device that does not
 * say gets --max-state-bytes. */
#define STATE_MARGIN_BYTES (1ull << 20)

static void stream_limit(struct migration *m, struct xevf_mig_device *dev, struct restore_ctx *s)
{
	uint64_t reported = 0;

	s->limit = m->max_state_bytes;
	s->limit_why = "--max-state-bytes";
	if (m->max_state_bytes > STATE_MARGIN_BYTES && xevf_mig_data_size(dev, &reported, NULL) == 0 &&
	    reported <= (m->max_state_bytes - STATE_MARGIN_BYTES) / 2) {
		s->limit = reported * 2 + STATE_MARGIN_BYTES;
		s->limit_why = "twice the size the device reports for its own state, plus 1 MiB";
	}
}

void handle_restore(struct migration *m, struct rpc_call *call, const ProtobufCMessage *unused)
{
	struct restore_ctx s = {.call = call};
	struct xevf_mig_options opts = {.chunk_size = MAX_CHUNK};
	struct xevf_mig_report rep = {0};
	struct xevf_err err = XEVF_ERR_INIT;
	struct restore rs = {0};
	grpc_status_code code;
	ProtobufCMessage *msg = NULL;
	char *why = NULL;

	(void)unused;
	if (rpc_call_recv(call, &xevf__migration__v1__state_chunk__descriptor, &msg) <= 0) {
		mig_refuse(call, GRPC_STATUS_INVALID_ARGUMENT, "RestoreState: no state chunk arrived");
		return;
	}
	s.pending = (Xevf__Migration__V1__StateChunk *)msg;
	s.first_us = s.last_us = clock_mono_us();
	rs.call = call;
	if (restore_begin(m, s.pending->migration_id, &rs, &code, &why)) {
		mig_refuse(call, code, "%s", why ? why : "out of memory");
		if (why && strstr(why, "in use"))
			log_warn("restore_refused", "migration=%s vf=%s reason=\"%s\"", rs.copy ? rs.copy->id : "?",
				 rs.copy ? rs.copy->vf : "?", why);
	} else {
		s.id = rs.copy->id;
		stream_limit(m, &rs.dev->dev, &s);
		log_info("restore_started", "migration=%s vf=%s peer=%s limit_bytes=%llu limit_from=\"%s\"", rs.copy->id,
			 rs.copy->vf, rpc_call_peer(call), (unsigned long long)s.limit, s.limit_why);
		int rc = state_stream_init(&s.stream) == 0 ? xevf_mig_restore(&rs.dev->dev, &opts, restore_source, &s, &rep, &err)
						       : xevf_err_set(&err, ENOMEM, "no SHA-256 context");
		const char *state = xevf_mig_state_name(rs.dev->dev.state);
		restore_end(m, &rs, rc);
		answer(call, &rs, &s, &rep, state, rc, &err);
		state_stream_free(&s.stream);
	}
	if (s.pending)
		protobuf_c_message_free_unpacked(&s.pending->base, NULL);
	free(why);
	record_free(rs.copy);
	inventory_unref(rs.inv);
	xevf_err_clear(&err);
}
