/* A VF's state moved through a file (save, restore) or agent to agent (send). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "migrate_private.h"

#define MAX_RECORD ((size_t)8 << 20)

static int write_record(FILE *f, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);
	int rc = -1;
	if (buf) {
		uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
		protobuf_c_message_pack(msg, buf);
		rc = fwrite(hdr, 1, 4, f) == 4 && fwrite(buf, 1, len, f) == len ? 0 : -1;
	}
	free(buf);
	return rc;
}

int migrate_read_record(FILE *f, uint8_t **buf, size_t *len, char **error)
{
	uint8_t hdr[4];
	size_t got;

	*buf = NULL;
	*len = 0;
	got = fread(hdr, 1, 4, f);
	if (got == 0 && feof(f))
		return 0;
	if (got != 4) {
		*error = strdup("the file ends inside a record header (truncated)");
		return -1;
	}
	size_t n = ((size_t)hdr[0] << 24) | ((size_t)hdr[1] << 16) | ((size_t)hdr[2] << 8) | hdr[3];
	if (n > MAX_RECORD) {
		if (asprintf(error, "a record of %zu bytes (at most %zu): not a state file, or corrupted", n, MAX_RECORD) < 0)
			*error = NULL;
		return -1;
	}
	*buf = malloc(n ? n : 1);
	if (!*buf) {
		*error = strdup("out of memory");
		return -1;
	}
	if (fread(*buf, 1, n, f) != n) {
		free(*buf);
		*buf = NULL;
		*error = strdup("the file ends inside a record (truncated)");
		return -1;
	}
	*len = n;
	return 1;
}

/* Streams SaveState from the source agent into a file. */
int migrate_save_to_file(const struct opts *o, const struct endpoint *src)
{
	Xevf__Migration__V1__SaveStateRequest req = XEVF__MIGRATION__V1__SAVE_STATE_REQUEST__INIT;
	struct rpc_stream *save = rpc_stream_open(src->ch, MIGRATE_SERVICE "SaveState", MIGRATE_STREAM_TIMEOUT_MS);
	struct rpc_result res = {0};
	FILE *f = NULL;
	uint64_t bytes = 0;
	unsigned chunks = 0;
	int rc = 1;

	if (!save) {
		fprintf(stderr, "xevf-agent migrate: cannot start the stream\n");
		return 1;
	}
	if (!(f = fopen(o->to_file, "wbe"))) {
		fprintf(stderr, "xevf-agent migrate: cannot write %s: %s\n", o->to_file, strerror(errno));
		rpc_stream_cancel(save, &res);
		rpc_result_clear(&res);
		return 1;
	}
	req.migration_id = (char *)o->id;
	req.vf = (char *)o->vf;
	req.chunk_size = (uint32_t)o->chunk;
	bool ok = rpc_stream_send(save, (const ProtobufCMessage *)&req) == 0 && rpc_stream_close_send(save) == 0;
	while (ok) {
		ProtobufCMessage *msg;
		if (rpc_stream_recv(save, &xevf__migration__v1__state_chunk__descriptor, &msg) <= 0)
			break;
		bytes += ((Xevf__Migration__V1__StateChunk *)msg)->data.len;
		chunks++;
		ok = write_record(f, msg) == 0;
		protobuf_c_message_free_unpacked(msg, NULL);
	}
	if (ok) {
		rpc_stream_finish(save, &res);
	} else {
		/* the disk failed: stop the source, which then runs on */
		fprintf(stderr, "xevf-agent migrate: writing %s: %s\n", o->to_file, strerror(errno));
		rpc_stream_cancel(save, &res);
	}
	if (fclose(f) != 0 && ok) {
		fprintf(stderr, "xevf-agent migrate: writing %s: %s\n", o->to_file, strerror(errno));
		ok = false;
	}
	if (res.status != GRPC_STATUS_OK)
		return migrate_report(src, "SaveState", &res);
	if (ok) {
		printf("saved %llu bytes in %u chunks of %s (%s) to %s\n", (unsigned long long)bytes, chunks, o->vf, o->id,
		       o->to_file);
		rc = 0;
	}
	rpc_result_clear(&res);
	return rc;
}

/* Agent to agent: the source agent streams the state into the target agent. */
int migrate_send_state(const struct opts *o, const struct endpoint *src)
{
	Xevf__Migration__V1__SendStateRequest req = XEVF__MIGRATION__V1__SEND_STATE_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;

	req.migration_id = (char *)o->id;
	req.vf = (char *)o->vf;
	req.target = (char *)o->target;
	req.chunk_size = (uint32_t)o->chunk;
	if (migrate_unary(src, "SendState", (const ProtobufCMessage *)&req, &xevf__migration__v1__send_state_response__descriptor,
		  &reply))
		return 1;
	Xevf__Migration__V1__SendStateResponse *r = (Xevf__Migration__V1__SendStateResponse *)reply;
	printf("%s sent %llu bytes of %s to %s: %s restored into %s (device %s)\n", src->name,
	       (unsigned long long)r->bytes, o->vf, o->target, o->id, r->target_vf, r->target_device_state);
	protobuf_c_message_free_unpacked(reply, NULL);
	return 0;
}

int migrate_restore_from_file(const struct opts *o, const struct endpoint *dst)
{
	FILE *f = fopen(o->from_file, "rbe");
	struct rpc_stream *st;
	struct rpc_result res = {0};
	int rc = 1;

	if (!f) {
		fprintf(stderr, "xevf-agent migrate: cannot read %s: %s\n", o->from_file, strerror(errno));
		return 1;
	}
	st = rpc_stream_open(dst->ch, MIGRATE_SERVICE "RestoreState", MIGRATE_STREAM_TIMEOUT_MS);
	if (!st) {
		fclose(f);
		return 1;
	}
	for (;;) {
		uint8_t *buf;
		size_t len;
		char *error = NULL;
		int got = migrate_read_record(f, &buf, &len, &error);
		if (got < 0) {
			fprintf(stderr, "xevf-agent migrate: %s: %s\n", o->from_file, error ? error : "unreadable");
			free(error);
			rpc_stream_cancel(st, &res);
			rpc_result_clear(&res);
			fclose(f);
			return 1;
		}
		if (got == 0)
			break;
		Xevf__Migration__V1__StateChunk *c = xevf__migration__v1__state_chunk__unpack(NULL, len, buf);
		free(buf);
		if (!c) {
			fprintf(stderr, "xevf-agent migrate: %s: a record is not a state chunk\n", o->from_file);
			rpc_stream_cancel(st, &res);
			rpc_result_clear(&res);
			fclose(f);
			return 1;
		}
		char *saved_id = c->migration_id;
		c->migration_id = (char *)o->id;
		got = rpc_stream_send(st, &c->base);
		c->migration_id = saved_id;
		xevf__migration__v1__state_chunk__free_unpacked(c, NULL);
		if (got < 0)
			break;
	}
	fclose(f);
	rpc_stream_close_send(st);
	ProtobufCMessage *reply = NULL;
	if (rpc_stream_recv(st, &xevf__migration__v1__restore_state_response__descriptor, &reply) > 0) {
		Xevf__Migration__V1__RestoreStateResponse *r = (Xevf__Migration__V1__RestoreStateResponse *)reply;
		printf("restored %llu bytes into %s on %s (device %s)\n", (unsigned long long)r->bytes, r->vf, dst->name,
		       r->device_state);
		protobuf_c_message_free_unpacked(reply, NULL);
	}
	rpc_stream_finish(st, &res);
	if (res.status == GRPC_STATUS_OK)
		rc = 0;
	else
		migrate_report(dst, "RestoreState", &res);
	rpc_result_clear(&res);
	return rc;
}

