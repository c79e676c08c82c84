/* The blocking gRPC server: a thread per call, unix socket and mutual-TLS TCP. */
#include "rpc_private.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <openssl/crypto.h>

#include "fail.h"
#include "xevf_error.h"
#include "xevf_sysfs.h"
#include "log.h"

#define REQUEST_SLOTS 4
#define RPC_HANDSHAKE_TIMEOUT_MS 10000
/* calls served at once (a thread each); more are answered RESOURCE_EXHAUSTED */
#define RPC_MAX_CALLS 32
#define RPC_STREAMS_PER_CONNECTION 16

struct rpc_call {
	grpc_call *call;
	grpc_completion_queue *cq;
	grpc_call_details details;
	grpc_metadata_array md;
	char *method;
	char *peer;               /* "local", "tls" or the name the service gave the caller */
	char *peer_cert;          /* a TLS caller's leaf certificate (PEM) */
	bool local;
	bool sent_initial;
	bool finished;
	struct rpc_server *server;
};

void rpc_call_cancel(struct rpc_call *c)
{
	grpc_call_cancel_with_status(c->call, GRPC_STATUS_CANCELLED, "aborted", NULL);
}

struct rpc_server {
	grpc_server *server;
	grpc_completion_queue *cq;
	pthread_t thread;
	rpc_handler_fn handler;
	void *ctx;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned workers;
	int idle_ms;              /* > 0: a call that moves nothing this long ends */
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
		rpc_drain_destroy(c->cq);
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
	rpc_drain_destroy(c->cq);
	free(c->method);
	free(c->peer);
	free(c->peer_cert);
	free(c);
}

/* Who called: the unix socket is the node itself; over TCP (always mutual TLS)
 * the caller is its certificate, for the service to judge. */
static void identify_caller(struct rpc_call *c)
{
	char *where = grpc_call_get_peer(c->call);
	grpc_auth_context *ctx;

	c->local = where && strncmp(where, "unix:", 5) == 0;
	gpr_free(where);
	if (c->local) {
		c->peer = strdup("local");
		return;
	}
	ctx = grpc_call_auth_context(c->call);
	if (ctx) {
		grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_PEM_CERT_PROPERTY_NAME);
		const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
		if (p && p->value_length > 0)
			c->peer_cert = strndup(p->value, p->value_length);
		grpc_auth_context_release(ctx);
	}
	c->peer = strdup("tls"); /* NULL: the call is refused as out of resources */
}

static void *worker(void *arg)
{
	struct rpc_call *c = arg;
	struct rpc_server *s = c->server;

	s->handler(c, s->ctx);
	if (!c->finished)
		rpc_call_finish(c, GRPC_STATUS_INTERNAL, "the handler did not answer", NULL);
	call_free(c);
	/* OpenSSL's state for this thread (handlers judge certificates and hash
	 * streams) goes now, not after the server's stop has stopped waiting */
	OPENSSL_thread_stop();
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
		identify_caller(c);
		pthread_mutex_lock(&s->lock);
		bool full = s->workers >= RPC_MAX_CALLS;
		pthread_mutex_unlock(&s->lock);
		if (full) {
			/* a thread each, but not without bound: the rest are told to retry,
			 * without waiting on the caller (a cancellation needs no answer) */
			grpc_call_cancel_with_status(c->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many calls at once; try again",
						     NULL);
			c->finished = true;
			call_free(c);
			continue;
		}
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

static grpc_server *create_server(void)
{
	/* a connection that never completes its TLS handshake is dropped soon;
	 * one connection carries a bounded number of calls */
	grpc_arg args[] = {
		{GRPC_ARG_INTEGER, (char *)GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, {.integer = RPC_HANDSHAKE_TIMEOUT_MS}},
		{GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_CONCURRENT_STREAMS, {.integer = RPC_STREAMS_PER_CONNECTION}},
		{GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = RPC_MAX_MESSAGE}},
	};
	grpc_channel_args server_args = {sizeof(args) / sizeof(args[0]), args};

	return grpc_server_create(&server_args, NULL);
}

static int listen_unix(struct rpc_server *s, const char *unix_addr, char **error)
{
	grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
	int ok = grpc_server_add_http2_port(s->server, unix_addr, creds);

	grpc_server_credentials_release(creds);
	return ok ? 0 : agent_fail(error, EINVAL, "cannot listen on %s", unix_addr);
}

/* Mutual TLS only: a client without a certificate of the CA gets nothing. */
static int listen_tls(struct rpc_server *s, const char *tcp_addr, const struct rpc_tls *tls, int *bound_port,
		      char **error)
{
	char *ca = NULL, *cert = NULL, *key = NULL;
	int port = 0;

	if (!tls || !(ca = rpc_read_pem(tls->ca_file, "CA", error)) ||
	    !(cert = rpc_read_pem(tls->cert_file, "certificate", error)) || !(key = rpc_read_pem(tls->key_file, "key", error))) {
		if (!*error)
			(void)agent_fail(error, EINVAL, "the TCP listener needs TLS files (CA, certificate, key)");
	} else {
		grpc_ssl_pem_key_cert_pair pair = {key, cert};
		grpc_server_credentials *creds = grpc_ssl_server_credentials_create_ex(
			ca, &pair, 1, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, NULL);
		port = creds ? grpc_server_add_http2_port(s->server, tcp_addr, creds) : 0;
		if (creds)
			grpc_server_credentials_release(creds);
		if (!port)
			(void)agent_fail(error, EINVAL, "cannot listen on %s with TLS (certificate %s, key %s, CA %s)", tcp_addr,
					 tls->cert_file, tls->key_file, tls->ca_file);
	}
	free(ca);
	free(cert);
	free(key);
	if (!port)
		return -EINVAL;
	if (bound_port)
		*bound_port = port;
	return 0;
}

static void server_free(struct rpc_server *s)
{
	grpc_server_destroy(s->server);
	rpc_drain_destroy(s->cq);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->idle);
	free(s);
}

struct rpc_server *rpc_server_start(const char *unix_addr, const char *tcp_addr, const struct rpc_tls *tls,
				    int idle_ms, rpc_handler_fn handler, void *ctx, int *bound_port, char **error)
{
	struct rpc_server *s = calloc(1, sizeof(*s));

	if (bound_port)
		*bound_port = 0;
	if (!s) {
		(void)agent_fail(error, ENOMEM, "out of memory");
		return NULL;
	}
	s->idle_ms = idle_ms;
	s->handler = handler;
	s->ctx = ctx;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->idle, NULL);
	s->server = create_server();
	s->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(s->server, s->cq, NULL);
	if ((unix_addr && listen_unix(s, unix_addr, error)) || (tcp_addr && listen_tls(s, tcp_addr, tls, bound_port, error))) {
		grpc_server_shutdown_and_notify(s->server, s->cq, s);
		(void)grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		server_free(s);
		return NULL;
	}
	grpc_server_start(s->server);
	if (pthread_create(&s->thread, NULL, serve, s) != 0) {
		(void)agent_fail(error, EINVAL, "cannot start the server thread");
		grpc_server_shutdown_and_notify(s->server, s->cq, s);
		grpc_server_cancel_all_calls(s->server);
		grpc_completion_queue_pluck(s->cq, s, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		server_free(s);
		return NULL;
	}
	return s;
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

bool rpc_call_is_local(const struct rpc_call *call) { return call->local; }

const char *rpc_call_peer_cert(const struct rpc_call *call) { return call->peer_cert; }

int rpc_call_set_peer(struct rpc_call *call, const char *name)
{
	char *copy = strdup(name);

	if (!copy)
		return -ENOMEM;
	free(call->peer);
	call->peer = copy;
	return 0;
}

int rpc_call_recv(struct rpc_call *c, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
	grpc_byte_buffer *bb = NULL;
	grpc_op op;

	*out = NULL;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &bb;
	if (!rpc_run_batch(c->call, c->cq, &op, 1, c->server->idle_ms))
		return -1;
	if (!bb)
		return 0;
	*out = rpc_unpack(desc, bb);
	grpc_byte_buffer_destroy(bb);
	return *out ? 1 : -1;
}

int rpc_call_send(struct rpc_call *c, const ProtobufCMessage *msg)
{
	return rpc_send_message(c->call, c->cq, &c->sent_initial, msg, c->server->idle_ms);
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
	(void)rpc_run_batch(c->call, c->cq, ops, n, c->server->idle_ms);
	c->sent_initial = true;
	c->finished = true;
	grpc_slice_unref(details);
	if (bb)
		grpc_byte_buffer_destroy(bb);
}

