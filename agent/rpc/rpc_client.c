/* The blocking gRPC client: unary calls and streams, insecure on unix sockets, mutual TLS on TCP. */
#include "rpc_private.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/support/time.h>

#include "fail.h"
#include "xevf_error.h"
#include "xevf_sysfs.h"
#include "log.h"


grpc_channel *rpc_channel_open(const char *target, const struct rpc_tls *tls, const char *server_name, char **error)
{
	grpc_arg arg[] = {
		{GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = RPC_MAX_MESSAGE}},
		{GRPC_ARG_STRING, (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, {.string = (char *)server_name}},
	};
	grpc_channel_args args = {server_name ? 2 : 1, arg};
	grpc_channel_credentials *creds;
	grpc_channel *ch;

	if (strncmp(target, "unix:", 5) == 0) {
		creds = grpc_insecure_credentials_create();
	} else {
		char *ca, *cert = NULL, *key = NULL;
		if (!tls || !(ca = rpc_read_pem(tls->ca_file, "CA", error))) {
			if (!*error)
				(void)agent_fail(error, EINVAL, "%s: TCP peers are reached only over mutual TLS: give the CA, certificate and key",
					  target);
			return NULL;
		}
		if (!(cert = rpc_read_pem(tls->cert_file, "certificate", error)) || !(key = rpc_read_pem(tls->key_file, "key", error))) {
			free(ca);
			free(cert);
			return NULL;
		}
		grpc_ssl_pem_key_cert_pair pair = {key, cert};
		creds = grpc_ssl_credentials_create(ca, &pair, NULL, NULL);
		free(ca);
		free(cert);
		free(key);
	}
	if (!creds) {
		(void)agent_fail(error, EINVAL, "%s: cannot create channel credentials", target);
		return NULL;
	}
	ch = grpc_channel_create(target, creds, &args);
	grpc_channel_credentials_release(creds);
	if (!ch)
		(void)agent_fail(error, EINVAL, "%s: cannot create a channel", target);
	return ch;
}

void rpc_result_clear(struct rpc_result *r)
{
	free(r->details);
	r->details = NULL;
}

struct rpc_stream {
	grpc_call *call;
	grpc_completion_queue *cq;
	int idle_ms;              /* > 0: a send or receive that moves nothing this long ends the stream */
	bool sent_initial;
	bool got_initial;
	grpc_metadata_array initial_md;
	/* The message on its way: the caller makes the next one meanwhile. */
	grpc_byte_buffer *sending;
	int sending_tag;
	bool send_failed;
};

/* Until the message on its way has gone (or the stream broke): 0, or -1. */
static int finish_sending(struct rpc_stream *st)
{
	if (!st->sending)
		return st->send_failed ? -1 : 0;
	st->send_failed |= !rpc_wait_batch(st->call, st->cq, &st->sending_tag, st->idle_ms);
	grpc_byte_buffer_destroy(st->sending);
	st->sending = NULL;
	return st->send_failed ? -1 : 0;
}

static gpr_timespec deadline(int timeout_ms)
{
	if (timeout_ms <= 0)
		return gpr_inf_future(GPR_CLOCK_REALTIME);
	return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

struct rpc_stream *rpc_stream_open(grpc_channel *ch, const char *method, int timeout_ms)
{
	struct rpc_stream *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_metadata_array_init(&st->initial_md);
	grpc_slice m = grpc_slice_from_copied_string(method);
	st->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, st->cq, m, NULL, deadline(timeout_ms), NULL);
	grpc_slice_unref(m);
	if (!st->call) {
		grpc_metadata_array_destroy(&st->initial_md);
		rpc_drain_destroy(st->cq);
		free(st);
		return NULL;
	}
	return st;
}

void rpc_stream_set_idle_timeout(struct rpc_stream *st, int idle_ms)
{
	st->idle_ms = idle_ms;
}

void rpc_stream_abort(struct rpc_stream *st)
{
	grpc_call_cancel_with_status(st->call, GRPC_STATUS_CANCELLED, "aborted", NULL);
}

int rpc_stream_send(struct rpc_stream *st, const ProtobufCMessage *msg)
{
	grpc_op ops[2];
	size_t n;
	grpc_byte_buffer *bb;

	/* packed while the previous message is on its way: one at a time in
	 * gRPC (its rule), the next one ready behind it */
	bb = rpc_pack(msg);
	if (finish_sending(st) < 0) {
		grpc_byte_buffer_destroy(bb);
		return -1;
	}
	n = rpc_message_ops(ops, &st->sent_initial, bb);
	if (grpc_call_start_batch(st->call, ops, n, &st->sending_tag, NULL) != GRPC_CALL_OK) {
		grpc_byte_buffer_destroy(bb);
		st->send_failed = true;
		return -1;
	}
	st->sending = bb;
	return 0;
}

int rpc_stream_close_send(struct rpc_stream *st)
{
	grpc_op ops[2];
	size_t n = 0;

	if (finish_sending(st) < 0)
		return -1;
	memset(ops, 0, sizeof(ops));
	if (!st->sent_initial)
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	st->sent_initial = true;
	return rpc_run_batch(st->call, st->cq, ops, n, st->idle_ms) ? 0 : -1;
}

int rpc_stream_recv(struct rpc_stream *st, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
	grpc_op ops[2];
	size_t n = 0;
	grpc_byte_buffer *bb = NULL;

	*out = NULL;
	(void)finish_sending(st); /* a broken stream shows in the receive as well */
	memset(ops, 0, sizeof(ops));
	if (!st->got_initial) {
		ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
		ops[n++].data.recv_initial_metadata.recv_initial_metadata = &st->initial_md;
	}
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n++].data.recv_message.recv_message = &bb;
	if (!rpc_run_batch(st->call, st->cq, ops, n, st->idle_ms))
		return -1;
	st->got_initial = true;
	if (!bb)
		return 0;
	*out = rpc_unpack(desc, bb);
	grpc_byte_buffer_destroy(bb);
	return *out ? 1 : -1;
}

static void stream_free(struct rpc_stream *st)
{
	grpc_call_unref(st->call);
	grpc_metadata_array_destroy(&st->initial_md);
	rpc_drain_destroy(st->cq);
	free(st);
}

void rpc_stream_finish(struct rpc_stream *st, struct rpc_result *res)
{
	grpc_op ops[2];
	size_t n = 0;
	grpc_metadata_array trailing;
	grpc_slice details = grpc_empty_slice();

	(void)finish_sending(st);
	memset(ops, 0, sizeof(ops));
	grpc_metadata_array_init(&trailing);
	res->status = GRPC_STATUS_UNKNOWN;
	if (!st->got_initial) {
		ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
		ops[n++].data.recv_initial_metadata.recv_initial_metadata = &st->initial_md;
	}
	ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[n].data.recv_status_on_client.trailing_metadata = &trailing;
	ops[n].data.recv_status_on_client.status = &res->status;
	ops[n++].data.recv_status_on_client.status_details = &details;
	(void)rpc_run_batch(st->call, st->cq, ops, n, st->idle_ms);
	free(res->details);
	res->details = strndup((const char *)GRPC_SLICE_START_PTR(details), GRPC_SLICE_LENGTH(details));
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&trailing);
	stream_free(st);
}

void rpc_stream_cancel(struct rpc_stream *st, struct rpc_result *res)
{
	grpc_call_cancel_with_status(st->call, GRPC_STATUS_CANCELLED, "cancelled by the client", NULL);
	rpc_stream_finish(st, res);
}

int rpc_unary(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
	      const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply, int timeout_ms,
	      struct rpc_result *res)
{
	struct rpc_stream *st = rpc_stream_open(ch, method, timeout_ms);

	*reply = NULL;
	res->status = GRPC_STATUS_UNKNOWN;
	if (!st) {
		free(res->details);
		res->details = strdup("cannot create the call");
		return -1;
	}
	if (rpc_stream_send(st, req) == 0 && rpc_stream_close_send(st) == 0)
		(void)rpc_stream_recv(st, reply_desc, reply); /* the status says what went wrong */
	rpc_stream_finish(st, res);
	if (res->status != GRPC_STATUS_OK && *reply) {
		protobuf_c_message_free_unpacked(*reply, NULL);
		*reply = NULL;
	}
	return res->status == GRPC_STATUS_OK && *reply ? 0 : -1;
}
