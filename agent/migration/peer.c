/* SendState: this (source) agent streams a VF's state into the target
 * agent's RestoreState, over mutual TLS with its own certificate. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "migration_private.h"

#define PEER_STREAM_TIMEOUT_MS 600000
#define RESTORE_METHOD "/xevf.migration.v1.Migration/RestoreState"
/* one answer for every target that cannot be reached: SendState is no probe */
#define UNREACHABLE "target %.128s cannot be reached; the source VF was left running"

struct target_stream {
	struct rpc_stream *st;
	bool broke; /* a send failed: the target ended the call or could not be reached */
};

static int send_to_target(void *ctx, const ProtobufCMessage *chunk)
{
	struct target_stream *ts = ctx;

	if (rpc_stream_send(ts->st, chunk) == 0)
		return 0;
	ts->broke = true;
	return -1;
}

static const char *details(const struct rpc_result *res)
{
	return res->details && *res->details ? res->details : "no details";
}

/* The save went through: the target's answer says whether it took the state. */
static void conclude(struct migration *m, struct rpc_call *call, const Xevf__Migration__V1__SendStateRequest *req,
		     struct rpc_stream *st, uint64_t bytes)
{
	Xevf__Migration__V1__SendStateResponse resp = XEVF__MIGRATION__V1__SEND_STATE_RESPONSE__INIT;
	struct xevf_err err = XEVF_ERR_INIT;
	struct rpc_result res = {0};
	ProtobufCMessage *reply = NULL;

	(void)rpc_stream_close_send(st);
	(void)rpc_stream_recv(st, &xevf__migration__v1__restore_state_response__descriptor, &reply);
	rpc_stream_finish(st, &res);
	if (res.status == GRPC_STATUS_OK && reply) {
		const Xevf__Migration__V1__RestoreStateResponse *r = (const Xevf__Migration__V1__RestoreStateResponse *)reply;
		resp.migration_id = req->migration_id;
		resp.bytes = bytes;
		resp.target_vf = r->vf;
		resp.target_device_state = r->device_state;
		log_info("sent", "migration=%s vf=%s target=%s target_vf=%s bytes=%llu", req->migration_id, req->vf,
			 req->target, r->vf, (unsigned long long)bytes);
		rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&resp);
	} else {
		/* the target refused the state: the VM stays here, running */
		xevf_err_set(&err, EREMOTEIO, "target %s did not take the state: %s", req->target, details(&res));
		mig_source_refused(m, req->migration_id, &err);
		mig_refuse(call, GRPC_STATUS_ABORTED, "%s", xevf_err_msg(&err));
	}
	if (reply)
		protobuf_c_message_free_unpacked(reply, NULL);
	rpc_result_clear(&res);
	xevf_err_clear(&err);
}

/* HOST:PORT, HOST a DNS name, an IPv4 address or a bracketed IPv6 address:
 * 0 and the parts (malloc'd), or -EINVAL. Nothing of gRPC's target syntax
 * (dns:///, ipv4:, vsock:, unix-abstract:, ...) is taken. */
static int split_target(const char *target, char **host, char **port)
{
	const char *colon = strrchr(target, ':'), *h = target, *end;
	size_t hlen;
	long p;
	char *tail;

	*host = *port = NULL;
	if (!colon || colon == target)
		return -EINVAL;
	end = colon;
	if (*h == '[') {
		if (end[-1] != ']')
			return -EINVAL;
		h++;
		end--;
	}
	hlen = (size_t)(end - h);
	if (hlen == 0 || hlen > 253 || strspn(h, target[0] == '[' ? "0123456789abcdefABCDEF:." :
					      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-") < hlen)
		return -EINVAL;
	errno = 0;
	p = strtol(colon + 1, &tail, 10);
	if (errno || *tail || tail == colon + 1 || p < 1 || p > 65535)
		return -EINVAL;
	*host = strndup(h, hlen);
	*port = strdup(colon + 1);
	return *host && *port ? 0 : -ENOMEM;
}

/* The agent resolves the target itself and dials the address: "ipv4:..." or
 * "ipv6:[...]" (malloc'd), or NULL when it cannot be resolved. */
static char *resolve_target(const char *host, const char *port)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
	char addr[INET6_ADDRSTRLEN] = "", *out = NULL;

	if (getaddrinfo(host, port, &hints, &res) != 0 || !res)
		return NULL;
	if (getnameinfo(res->ai_addr, res->ai_addrlen, addr, sizeof(addr), NULL, 0, NI_NUMERICHOST) == 0 &&
	    asprintf(&out, res->ai_family == AF_INET6 ? "ipv6:[%s]:%s" : "ipv4:%s:%s", addr, port) < 0)
		out = NULL;
	freeaddrinfo(res);
	return out;
}

grpc_channel *mig_peer_channel(const struct migration *m, const char *target)
{
	struct rpc_tls tls = {m->tls_ca, m->tls_cert, m->tls_key};
	char *error = NULL, *host = NULL, *port = NULL, *address = NULL;
	grpc_channel *ch = NULL;

	if (split_target(target, &host, &port) == 0 && (address = resolve_target(host, port)))
		ch = rpc_channel_open(address, &tls, m->tls_server_name ? m->tls_server_name : host, &error);
	free(error);
	free(host);
	free(port);
	free(address);
	return ch;
}

static struct rpc_stream *open_target(struct migration *m, struct rpc_call *call, const char *target, grpc_channel **ch)
{
	struct rpc_stream *st = NULL;

	*ch = mig_peer_channel(m, target);
	st = *ch ? rpc_stream_open(*ch, RESTORE_METHOD, PEER_STREAM_TIMEOUT_MS) : NULL;
	if (!st) {
		mig_refuse(call, GRPC_STATUS_UNAVAILABLE, UNREACHABLE, target);
		if (*ch)
			grpc_channel_destroy(*ch);
		*ch = NULL;
	}
	return st;
}

void handle_send(struct migration *m, struct rpc_call *call, const ProtobufCMessage *msg)
{
	const Xevf__Migration__V1__SendStateRequest *req = (const Xevf__Migration__V1__SendStateRequest *)msg;
	struct xevf_err err = XEVF_ERR_INIT;
	struct rpc_result res = {0};
	struct target_stream ts = {0};
	grpc_status_code code;
	grpc_channel *ch = NULL;
	char *host = NULL, *port = NULL;
	uint64_t bytes = 0;
	int rc;

	if (!req->target || split_target(req->target, &host, &port) != 0) {
		mig_refuse(call, GRPC_STATUS_INVALID_ARGUMENT, "SendState needs the target agent's HOST:PORT");
		free(host);
		free(port);
		return;
	}
	free(host);
	free(port);
	if (!m->tls_ca || !m->tls_cert || !m->tls_key) {
		mig_refuse(call, GRPC_STATUS_FAILED_PRECONDITION,
			   "this agent has no TLS files (--tls-ca, --tls-cert, --tls-key): it cannot reach other agents");
		return;
	}
	if (!(ts.st = open_target(m, call, req->target, &ch)))
		return;
	struct save_sink sink = {send_to_target, &ts, NULL, ts.st};

	rpc_stream_set_idle_timeout(ts.st, m->stream_idle_ms);
	rc = mig_save(m, req->migration_id, req->vf, req->chunk_size, rpc_call_peer(call), &sink, &bytes, &code, &err);
	if (rc < 0 && ts.broke) {
		/* the call is over on the target's side: its status says why, unless
		 * nothing answered at all (the same words for every such target) */
		rpc_stream_finish(ts.st, &res);
		if ((res.status == GRPC_STATUS_UNAVAILABLE || res.status == GRPC_STATUS_DEADLINE_EXCEEDED) &&
		    strstr(xevf_err_msg(&err), "(the source VF is RUNNING)"))
			mig_refuse(call, GRPC_STATUS_UNAVAILABLE, UNREACHABLE, req->target);
		else if (res.status == GRPC_STATUS_UNAVAILABLE || res.status == GRPC_STATUS_DEADLINE_EXCEEDED)
			mig_refuse(call, GRPC_STATUS_UNAVAILABLE, "target %.128s cannot be reached; %s", req->target,
				   xevf_err_msg(&err));
		else
			mig_refuse(call, GRPC_STATUS_ABORTED, "target %.128s did not take the state: %s; %s", req->target,
				   details(&res), xevf_err_msg(&err));
	} else if (rc < 0) {
		rpc_stream_cancel(ts.st, &res);
		mig_refuse(call, code, "%s", xevf_err_msg(&err));
	} else {
		conclude(m, call, req, ts.st, bytes);
	}
	rpc_result_clear(&res);
	grpc_channel_destroy(ch);
	xevf_err_clear(&err);
}
