#include "rpc.h"

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

#define REQUEST_SLOTS 4
#define MAX_PEM (1 << 20)

grpc_byte_buffer *rpc_pack(const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	grpc_slice slice = grpc_slice_malloc(len);
	grpc_byte_buffer *bb;

	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
	bb = grpc_raw_byte_buffer_create(&slice, 1);
	grpc_slice_unref(slice);
	return bb;
}

ProtobufCMessage *rpc_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader reader;
	grpc_slice slice;
	ProtobufCMessage *msg;

	if (!bb || !grpc_byte_buffer_reader_init(&reader, bb))
		return NULL;
	slice = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	msg = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(slice), GRPC_SLICE_START_PTR(slice));
	grpc_slice_unref(slice);
	return msg;
}

/* Runs one batch on a pluck queue and waits for it. */
static bool run_batch(grpc_call *call, grpc_completion_queue *cq, const grpc_op *ops, size_t n)
{
	int tag_storage;
	void *tag = &tag_storage;
	if (grpc_call_start_batch(call, ops, n, tag, NULL) != GRPC_CALL_OK)
		return false;
	grpc_event ev = grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* One message on a call, with the initial metadata the first time; 0 or -1 */
static int send_message(grpc_call *call, grpc_completion_queue *cq, bool *sent_initial, const ProtobufCMessage *msg)
{
	grpc_op ops[2];
	size_t n = 0;
	grpc_byte_buffer *bb = rpc_pack(msg);
	bool ok;

	memset(ops, 0, sizeof(ops));
	if (!*sent_initial)
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n++].data.send_message.send_message = bb;
	ok = run_batch(call, cq, ops, n);
	*sent_initial = true;
	grpc_byte_buffer_destroy(bb);
	return ok ? 0 : -1;
}

static void drain_destroy(grpc_completion_queue *cq)
{
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_destroy(cq);
}

static char *read_pem(const char *path, const char *what, char **error)
{
	char *text = NULL;
	struct xevf_err err = XEVF_ERR_INIT;
	if (!path || !*path) {
		(void)agent_fail(error, EINVAL, "TLS %s file not set", what);
		return NULL;
	}
	if (xevf_read_text(path, MAX_PEM, &text, &err) < 0) {
		(void)agent_fail(error, err.errnum ? err.errnum : EIO, "TLS %s: %s", what, xevf_err_msg(&err));
		xevf_err_clear(&err);
		return NULL;
	}
	return text;
}

/* ---- server ----------------------------------------------------------------- */

struct rpc_call {
	grpc_call *call;
	grpc_completion_queue *cq;
	grpc_call_details details;
	grpc_metadata_array md;
	char *method;
	char *peer;
	bool sent_initial;
	bool finished;
	struct rpc_server *server;
};

struct rpc_server {
	grpc_server *server;
	grpc_completion_queue *cq;
	pthread_t thread;
	rpc_handler_fn handler;
	void *ctx;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned workers;
	bool tls;
};

static struct rpc_call *slot_new(struct rpc_server *s)
{
	struct rpc_call *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->server = s;
	c->cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_call_details_init(&c->details);
	grpc_metadata_array_init(&c->md);
	if (grpc_server_request_call(s->server, &c->call, &c->details, &c->md, c->cq, s->cq, c) != GRPC_CALL_OK) {
		grpc_call_details_destroy(&c->details);
		grpc_metadata_array_destroy(&c->md);
		drain_destroy(c->cq);
		free(c);
		return NULL;
	}
	return c;
}

static void call_free(struct rpc_call *c)
{
	if (c->call)
		grpc_call_unref(c->call);
	grpc_call_details_destroy(&c->details);
	grpc_metadata_array_destroy(&c->md);
	drain_destroy(c->cq);
	free(c->method);
	free(c->peer);
	free(c);
}

static char *peer_name(grpc_call *call, bool tls)
{
	grpc_auth_context *ctx;
	char *name = NULL;

	if (!tls)
		return strdup("local");
	ctx = grpc_call_auth_context(call);
	if (ctx) {
		grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
		const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
		if (p && asprintf(&name, "cn=%.*s", (int)p->value_length, p->value) < 0)
			name = NULL;
		grpc_auth_context_release(ctx);
	}
	return name ? name : strdup("tls");
}

static void *worker(void *arg)
{
	struct rpc_call *c = arg;
	struct rpc_server *s = c->server;

	s->handler(c, s->ctx);
	if (!c->finished)
		rpc_call_finish(c, GRPC_STATUS_INTERNAL, "the handler did not answer", NULL);
	call_free(c);
	pthread_mutex_lock(&s->lock);
	s->workers--;
	pthread_cond_broadcast(&s->idle);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void *serve(void *arg)
{
	struct rpc_server *s = arg;

	for (int i = 0; i < REQUEST_SLOTS; i++)
		(void)slot_new(s);
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE || ev.tag == s)
			continue; /* s: the shutdown notification */
		struct rpc_call *c = ev.tag;
		if (!ev.success) {
			call_free(c);
			continue;
		}
		(void)slot_new(s);
		c->method = strndup((const char *)GRPC_SLICE_START_PTR(c->details.method),
				    GRPC_SLICE_LENGTH(c->details.method));
		c->peer = peer_name(c->call, s->tls);
		pthread_t t;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_mutex_lock(&s->lock);
		s->workers++;
		pthread_mutex_unlock(&s->lock);
		if (!c->method || !c->peer || pthread_create(&t, &attr, worker, c) != 0) {
			rpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot start a thread for the call", NULL);
			call_free(c);
			pthread_mutex_lock(&s->lock);
			s->workers--;
			pthread_mutex_unlock(&s->lock);
		}
		pthread_attr_destroy(&attr);
	}
	return NULL;
}

struct rpc_server *rpc_server_start(const char *unix_addr, const char *tcp_addr, const struct rpc_tls *tls,
				    rpc_handler_fn handler, void *ctx, int *bound_port, char **error)
{
	struct rpc_server *s = calloc(1, sizeof(*s));
	char *ca = NULL, *cert = NULL, *key = NULL;

	if (bound_port)
		*bound_port = 0;
	if (!s) {
		(void)agent_fail(error, ENOMEM, "out of memory");
		return NULL;
	}
	s->handler = handler;
	s->ctx = ctx;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->idle, NULL);
	s->server = grpc_server_create(NULL, NULL);
	s->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(s->server, s->cq, NULL);
	if (unix_addr) {
		grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
		int ok = grpc_server_add_http2_port(s->server, unix_addr, creds);
		grpc_server_credentials_release(creds);
		if (!ok) {
			(void)agent_fail(error, EINVAL, "cannot listen on %s", unix_addr);
			goto fail;
		}
	}
	if (tcp_addr) {
		if (!tls || !(ca = read_pem(tls->ca_file, "CA", error)) || !(cert = read_pem(tls->cert_file, "certificate", error)) ||
		    !(key = read_pem(tls->key_file, "key", error))) {
			if (!*error)
				(void)agent_fail(error, EINVAL, "the TCP listener needs TLS files (CA, certificate, key)");
			goto fail;
		}
		grpc_ssl_pem_key_cert_pair pair = {key, cert};
		grpc_server_credentials *creds = grpc_ssl_server_credentials_create_ex(
			ca, &pair, 1, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, NULL);
		int port = creds ? grpc_server_add_http2_port(s->server, tcp_addr, creds) : 0;
		if (creds)
			grpc_server_credentials_release(creds);
		if (!port) {
			(void)agent_fail(error, EINVAL, "cannot listen on %s with TLS (certificate %s, key %s, CA %s)", tcp_addr,
				  tls->cert_file, tls->key_file, tls->ca_file);
			goto fail;
		}
		s->tls = true;
		if (bound_port)
			*bound_port = port;
	}
	free(ca);
	free(cert);
	free(key);
	grpc_server_start(s->server);
	if (pthread_create(&s->thread, NULL, serve, s) != 0) {
		(void)agent_fail(error, EINVAL, "cannot start the server thread");
		grpc_server_shutdown_and_notify(s->server, s->cq, s);
		grpc_server_cancel_all_calls(s->server);
		grpc_completion_queue_pluck(s->cq, s, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		goto fail_started;
	}
	return s;

fail:
	free(ca);
	free(cert);
	free(key);
	grpc_server_shutdown_and_notify(s->server, s->cq, s);
	(void)grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
fail_started:
	grpc_server_destroy(s->server);
	drain_destroy(s->cq);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->idle);
	free(s);
	return NULL;
}

void rpc_server_stop(struct rpc_server *s)
{
	if (!s)
		return;
	grpc_server_shutdown_and_notify(s->server, s->cq, s);
	grpc_server_cancel_all_calls(s->server);
	pthread_mutex_lock(&s->lock);
	while (s->workers)
		pthread_cond_wait(&s->idle, &s->lock);
	pthread_mutex_unlock(&s->lock);
	grpc_completion_queue_shutdown(s->cq);
	pthread_join(s->thread, NULL);
	grpc_server_destroy(s->server);
	grpc_completion_queue_destroy(s->cq);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->idle);
	free(s);
}

const char *rpc_call_method(const struct rpc_call *call) { return call->method; }
const char *rpc_call_peer(const struct rpc_call *call) { return call->peer; }

int rpc_call_recv(struct rpc_call *c, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
	grpc_byte_buffer *bb = NULL;
	grpc_op op;

	*out = NULL;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &bb;
	if (!run_batch(c->call, c->cq, &op, 1))
		return -1;
	if (!bb)
		return 0;
	*out = rpc_unpack(desc, bb);
	grpc_byte_buffer_destroy(bb);
	return *out ? 1 : -1;
}

int rpc_call_send(struct rpc_call *c, const ProtobufCMessage *msg)
{
	return send_message(c->call, c->cq, &c->sent_initial, msg);
}

void rpc_call_finish(struct rpc_call *c, grpc_status_code status, const char *message, const ProtobufCMessage *reply)
{
	grpc_op ops[4];
	size_t n = 0;
	int cancelled = 0;
	grpc_byte_buffer *bb = reply && status == GRPC_STATUS_OK ? rpc_pack(reply) : NULL;
	grpc_slice details = grpc_slice_from_copied_string(message ? message : "");

	memset(ops, 0, sizeof(ops));
	if (!c->sent_initial)
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (bb) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = bb;
	}
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = status;
	ops[n++].data.send_status_from_server.status_details = &details;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n++].data.recv_close_on_server.cancelled = &cancelled;
	(void)run_batch(c->call, c->cq, ops, n);
	c->sent_initial = true;
	c->finished = true;
	grpc_slice_unref(details);
	if (bb)
		grpc_byte_buffer_destroy(bb);
}

/* ---- client ------------------------------------------------------------------ */

grpc_channel *rpc_channel_open(const char *target, const struct rpc_tls *tls, char **error)
{
	grpc_channel_credentials *creds;
	grpc_channel *ch;

	if (strncmp(target, "unix:", 5) == 0) {
		creds = grpc_insecure_credentials_create();
	} else {
		char *ca, *cert = NULL, *key = NULL;
		if (!tls || !(ca = read_pem(tls->ca_file, "CA", error))) {
			if (!*error)
				(void)agent_fail(error, EINVAL, "%s: TCP peers are reached only over mutual TLS: give the CA, certificate and key",
					  target);
			return NULL;
		}
		if (!(cert = read_pem(tls->cert_file, "certificate", error)) || !(key = read_pem(tls->key_file, "key", error))) {
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
	ch = grpc_channel_create(target, creds, NULL);
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
	bool sent_initial;
	bool got_initial;
	grpc_metadata_array initial_md;
};

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
		drain_destroy(st->cq);
		free(st);
		return NULL;
	}
	return st;
}

int rpc_stream_send(struct rpc_stream *st, const ProtobufCMessage *msg)
{
	return send_message(st->call, st->cq, &st->sent_initial, msg);
}

int rpc_stream_close_send(struct rpc_stream *st)
{
	grpc_op ops[2];
	size_t n = 0;

	memset(ops, 0, sizeof(ops));
	if (!st->sent_initial)
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	st->sent_initial = true;
	return run_batch(st->call, st->cq, ops, n) ? 0 : -1;
}

int rpc_stream_recv(struct rpc_stream *st, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
	grpc_op ops[2];
	size_t n = 0;
	grpc_byte_buffer *bb = NULL;

	*out = NULL;
	memset(ops, 0, sizeof(ops));
	if (!st->got_initial) {
		ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
		ops[n++].data.recv_initial_metadata.recv_initial_metadata = &st->initial_md;
	}
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n++].data.recv_message.recv_message = &bb;
	if (!run_batch(st->call, st->cq, ops, n))
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
	drain_destroy(st->cq);
	free(st);
}

void rpc_stream_finish(struct rpc_stream *st, struct rpc_result *res)
{
	grpc_op ops[2];
	size_t n = 0;
	grpc_metadata_array trailing;
	grpc_slice details = grpc_empty_slice();

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
	(void)run_batch(st->call, st->cq, ops, n);
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
