/* Blocking gRPC helpers over gRPC C core, for the Migration service.
 *
 * Server: each incoming call is handed to the handler on a thread of its own,
 * with a completion queue of its own, so the handler reads and writes the call
 * in plain sequential code (streams included). Calls are few and long (device
 * states), so a thread each is the simple and sufficient design.
 * Client: unary calls and streams, insecure on unix sockets, mutual TLS on TCP.
 */
#ifndef XEVF_RPC_H
#define XEVF_RPC_H

#include <stdbool.h>
#include <stddef.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <protobuf-c/protobuf-c.h>

/* protobuf <-> gRPC byte buffers. rpc_unpack gives NULL for absent or
 * undecodable payloads, and for one with a NUL byte in a string (protobuf-c
 * would cut the string there) or otherwise not in canonical form. */
grpc_byte_buffer *rpc_pack(const ProtobufCMessage *msg);
ProtobufCMessage *rpc_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb);

/* The largest message either side takes: 4 MiB of payload (the largest
 * state chunk) plus its fields. gRPC's default, 4 MiB in all, refused a
 * 4 MiB chunk. */
#define RPC_MAX_MESSAGE (4 * 1024 * 1024 + 64 * 1024)

struct rpc_tls {
	const char *ca_file;   /* PEM: the CA that signs the peers' certificates */
	const char *cert_file; /* PEM: this side's certificate */
	const char *key_file;  /* PEM: its key */
};

struct rpc_call;
typedef void (*rpc_handler_fn)(struct rpc_call *call, void *ctx);

struct rpc_server;

/* Listens on each address ("unix:/path" insecure, "host:port" with tls, which
 * then requires and verifies client certificates). A call that moves nothing
 * for idle_ms (> 0) is cancelled as stalled. *bound_port gets the TCP port
 * (useful with port 0). Errors go to *error (caller frees). */
struct rpc_server *rpc_server_start(const char *unix_addr, const char *tcp_addr, const struct rpc_tls *tls,
				    int idle_ms, rpc_handler_fn handler, void *ctx, int *bound_port, char **error);
/* Stops accepting, cancels calls in progress and waits for their threads. */
void rpc_server_stop(struct rpc_server *s);

const char *rpc_call_method(const struct rpc_call *call);
/* The caller: "local" (the node-local unix socket) or, over TCP, "tls" until
 * the handler names it with rpc_call_set_peer (after judging its certificate). */
const char *rpc_call_peer(const struct rpc_call *call);
bool rpc_call_is_local(const struct rpc_call *call);
/* A TLS caller's leaf certificate (PEM, verified against the CA by the
 * handshake), or NULL (local calls). */
const char *rpc_call_peer_cert(const struct rpc_call *call);
/* 0, or -ENOMEM (the name stays). */
int rpc_call_set_peer(struct rpc_call *call, const char *name);
/* 1 a message in *out (free with protobuf_c_message_free_unpacked), 0 end of
 * the client's stream, -1 the call broke or the bytes do not decode. */
int rpc_call_recv(struct rpc_call *call, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out);
/* 0 sent, -1 the call broke (client gone or cancelled) */
int rpc_call_send(struct rpc_call *call, const ProtobufCMessage *msg);
/* From any thread: ends the call now; its handler's next receive or send fails. */
void rpc_call_cancel(struct rpc_call *call);
/* Ends the call: the reply (may be NULL for streams and errors) and status. */
void rpc_call_finish(struct rpc_call *call, grpc_status_code status, const char *message,
		     const ProtobufCMessage *reply);

/* ---- client ---- */
/* target: "unix:/path" (insecure) or a TCP target (tls required); server_name:
 * the name (DNS SAN) the peer's certificate must carry when it is not the
 * target's host: a resolved address, or one certificate all agents share
 * (NULL: the target's own host). */
grpc_channel *rpc_channel_open(const char *target, const struct rpc_tls *tls, const char *server_name, char **error);

struct rpc_result {
	grpc_status_code status;
	char *details; /* owned */
};
void rpc_result_clear(struct rpc_result *r);

/* A unary call; *reply is NULL unless the status is OK. */
int rpc_unary(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
	      const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply, int timeout_ms,
	      struct rpc_result *res);

struct rpc_stream;
struct rpc_stream *rpc_stream_open(grpc_channel *ch, const char *method, int timeout_ms);
/* A send or receive that moves nothing for idle_ms (> 0) ends the stream. */
void rpc_stream_set_idle_timeout(struct rpc_stream *st, int idle_ms);
/* From any thread: ends the stream now; the owner's next send or receive fails. */
void rpc_stream_abort(struct rpc_stream *st);
/* Packs msg and returns once the previous message has gone out and this one
 * is on its way: the caller makes the next one while gRPC sends this one (at
 * most two of the caller's messages in memory). 0, or -1 when the stream
 * broke (a failure of the message on its way shows at the next call). */
int rpc_stream_send(struct rpc_stream *st, const ProtobufCMessage *msg);
/* Half-closes the client side (after the message on its way has gone). */
int rpc_stream_close_send(struct rpc_stream *st);
int rpc_stream_recv(struct rpc_stream *st, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out);
/* Waits for the status and frees the stream. */
void rpc_stream_finish(struct rpc_stream *st, struct rpc_result *res);
/* Cancels (e.g. an abort mid-stream) and frees the stream. */
void rpc_stream_cancel(struct rpc_stream *st, struct rpc_result *res);

#endif
