/* libFuzzer target: a device-state stream as `xevf-agent migrate restore`
 * reads it from a file (length-prefixed StateChunk messages) and as the
 * target agent checks it (order, sizes, SHA-256): bytes from disk or from a
 * peer. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "migrate.h"
#include "state_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = fmemopen((void *)data, size, "rb");
	struct state_stream s;
	struct xevf_err err = XEVF_ERR_INIT;

	if (!f)
		return 0;
	if (state_stream_init(&s) != 0) {
		fclose(f);
		return 0;
	}
	for (;;) {
		uint8_t *buf;
		size_t len;
		char *error = NULL;
		int got = migrate_read_record(f, &buf, &len, &error);
		if (got < 0 && !error)
			abort(); /* every refusal says why */
		free(error);
		if (got <= 0)
			break;
		Xevf__Migration__V1__StateChunk *c = xevf__migration__v1__state_chunk__unpack(NULL, len, buf);
		free(buf);
		if (!c)
			break;
		int rc = state_stream_accept(&s, c, 1 << 20, "fuzz", &err);
		xevf__migration__v1__state_chunk__free_unpacked(c, NULL);
		if (rc < 0) {
			if (!err.msg)
				abort();
			break;
		}
	}
	xevf_err_clear(&err);
	state_stream_free(&s);
	fclose(f);
	return 0;
}
