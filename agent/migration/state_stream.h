/* Checks a device-state stream as it arrives: chunks in order and without
 * gaps, none larger than the receiver takes, and at the final chunk the total
 * size and the SHA-256 of everything received. The sender side computes the
 * same digest. Used by RestoreState before the device leaves RESUMING, so a
 * damaged stream is never resumed. */
#ifndef XEVF_STATE_STREAM_H
#define XEVF_STATE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xevf_error.h"
#include "xevf/migration/v1/migration.pb-c.h"

struct state_stream {
	void *sha;        /* EVP_MD_CTX */
	uint64_t offset;  /* bytes accepted so far */
	bool done;        /* the final chunk was accepted */
	char digest[65];  /* hex SHA-256, once done (receiver) or finished (sender) */
};

int state_stream_init(struct state_stream *s) XEVF_MUST_CHECK;
void state_stream_free(struct state_stream *s);

/* Sender: account for bytes sent; finish fills s->digest. */
void state_stream_add(struct state_stream *s, const void *data, size_t len);
void state_stream_finish(struct state_stream *s);

/* Receiver: 0 the chunk's data may be used (the final one sets s->done), or
 * -errno with a message naming the migration: EPROTO out of order or too
 * large, EBADMSG size or checksum mismatch at the end, EALREADY after the end. */
int state_stream_accept(struct state_stream *s, const Xevf__Migration__V1__StateChunk *c, size_t cap,
			const char *migration_id, struct xevf_err *err) XEVF_MUST_CHECK;

#endif
