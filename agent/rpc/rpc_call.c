/* What the server and the client share: one batch at a time on a pluck queue, PEM files. */
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

bool rpc_wait_batch(grpc_call *call, grpc_completion_queue *cq, void *tag, int idle_ms)
{
	gpr_timespec until = idle_ms > 0 ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
							gpr_time_from_millis(idle_ms, GPR_TIMESPAN))
					 : gpr_inf_future(GPR_CLOCK_MONOTONIC);
	grpc_event ev = grpc_completion_queue_pluck(cq, tag, until, NULL);

	if (ev.type == GRPC_QUEUE_TIMEOUT) {
		/* nothing moved for idle_ms: the peer stalls; end the call, then
		 * collect the batch, which the cancellation completes */
		grpc_call_cancel_with_status(call, GRPC_STATUS_DEADLINE_EXCEEDED, "no progress on the stream", NULL);
		(void)grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		return false;
	}
	return ev.type == GRPC_OP_COMPLETE && ev.success;
}

bool rpc_run_batch(grpc_call *call, grpc_completion_queue *cq, const grpc_op *ops, size_t n, int idle_ms)
{
	int tag_storage;

	if (grpc_call_start_batch(call, ops, n, &tag_storage, NULL) != GRPC_CALL_OK)
		return false;
	return rpc_wait_batch(call, cq, &tag_storage, idle_ms);
}

size_t rpc_message_ops(grpc_op ops[2], bool *sent_initial, grpc_byte_buffer *bb)
{
	size_t n = 0;

	memset(ops, 0, 2 * sizeof(*ops));
	if (!*sent_initial)
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n++].data.send_message.send_message = bb;
	*sent_initial = true;
	return n;
}

int rpc_send_message(grpc_call *call, grpc_completion_queue *cq, bool *sent_initial, const ProtobufCMessage *msg,
		     int idle_ms)
{
	grpc_op ops[2];
	grpc_byte_buffer *bb = rpc_pack(msg);
	size_t n = rpc_message_ops(ops, sent_initial, bb);
	bool ok = rpc_run_batch(call, cq, ops, n, idle_ms);

	grpc_byte_buffer_destroy(bb);
	return ok ? 0 : -1;
}

void rpc_drain_destroy(grpc_completion_queue *cq)
{
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_destroy(cq);
}

char *rpc_read_pem(const char *path, const char *what, char **error)
{
	char *text = NULL;
	struct xevf_err err = XEVF_ERR_INIT;
	if (!path || !*path) {
		(void)agent_fail(error, EINVAL, "TLS %s file not set", what);
		return NULL;
	}
	if (xevf_read_text(path, RPC_MAX_PEM, &text, &err) < 0) {
		(void)agent_fail(error, err.errnum ? err.errnum : EIO, "TLS %s: %s", what, xevf_err_msg(&err));
		xevf_err_clear(&err);
		return NULL;
	}
	return text;
}

