/* What rpc/'s own files share. Not for use outside rpc/. */
#ifndef XEVF_RPC_PRIVATE_H
#define XEVF_RPC_PRIVATE_H

#include <stdbool.h>

#include "rpc.h"

#define RPC_MAX_PEM (1 << 20)

/* Runs one batch on a pluck queue and waits for it, at most idle_ms (> 0)
 * before the call is cancelled as stalled. */
bool rpc_run_batch(grpc_call *call, grpc_completion_queue *cq, const grpc_op *ops, size_t n, int idle_ms);
/* Waits for a batch started with tag, as rpc_run_batch does. */
bool rpc_wait_batch(grpc_call *call, grpc_completion_queue *cq, void *tag, int idle_ms);
/* Fills ops with the initial metadata (the first time) and the message bb;
 * returns how many ops. */
size_t rpc_message_ops(grpc_op ops[2], bool *sent_initial, grpc_byte_buffer *bb);
/* One message on a call, with the initial metadata the first time; 0 or -1 */
int rpc_send_message(grpc_call *call, grpc_completion_queue *cq, bool *sent_initial, const ProtobufCMessage *msg,
		     int idle_ms);
void rpc_drain_destroy(grpc_completion_queue *cq);
/* A PEM file's text (at most RPC_MAX_PEM bytes), or NULL and *error. */
char *rpc_read_pem(const char *path, const char *what, char **error);

#endif
