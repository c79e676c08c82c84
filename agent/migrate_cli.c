#include "migrate_cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "rpc.h"
#include "xevf/migration/v1/migration.pb-c.h"

#define SERVICE "/xevf.migration.v1.Migration/"
#define MAX_RECORD ((size_t)8 << 20)
#define CALL_TIMEOUT_MS 30000
#define STREAM_TIMEOUT_MS 600000
#define EXIT_USAGE 2

static const char usage[] =
	"Usage: xevf-agent migrate COMMAND [OPTIONS]\n"
	"Drives a VF's migration between the Migration services of two agents.\n"
	"\n"
	"Commands:\n"
	"  describe --vf PCI [--source EP]              the VF's migration fingerprint\n"
	"  check    --vf PCI [--source EP] --target EP  compatible free VFs on the target, or why not\n"
	"  reserve  --id ID --vf PCI --vm NS/NAME [--ttl S] [--source EP] --target EP\n"
	"                                               hold a compatible target VF for the migration\n"
	"  release  --id ID --target EP                 drop a reservation with nothing restored\n"
	"  save     --id ID --vf PCI [--source EP] --to-file FILE\n"
	"                                               save the VF's device state into FILE\n"
	"  restore  --id ID --from-file FILE --target EP\n"
	"                                               load a saved state into the reserved target VF\n"
	"  send     --id ID --vf PCI [--source EP] --target HOST:PORT\n"
	"                                               the source agent streams the state straight into\n"
	"                                               the target agent (mutual TLS, the agents' own certificates)\n"
	"  commit   --id ID [--source EP] [--target EP] the target VF runs the state; the source VF is reset\n"
	"  abort    --id ID [--source EP] [--target EP] the source VF runs on; the target VF is reset, released\n"
	"  list     [--source EP]                       the agent's migrations\n"
	"\n"
	"Endpoints (EP): a unix socket path (default for --source: " XEVF_DEFAULT_MIGRATION_SOCKET ")\n"
	"or HOST:PORT of another agent, reached over mutual TLS with:\n"
	"  --tls-ca FILE --tls-cert FILE --tls-key FILE\n"
	"  --chunk-size BYTES   save: bytes per chunk (default 256 KiB)\n"
	"Exit status: 0 done, 1 refused or failed (the reason is printed), 2 bad usage.\n";

struct opts {
	const char *cmd, *vf, *id, *vm, *source, *target, *to_file, *from_file;
	struct rpc_tls tls;
	long ttl, chunk;
};

struct endpoint {
	const char *name;
	grpc_channel *ch;
};

static int open_endpoint(const struct opts *o, const char *ep, struct endpoint *out)
{
	char *target = NULL, *error = NULL;

	out->name = ep;
	if (ep[0] == '/') {
		if (asprintf(&target, "unix:%s", ep) < 0)
			return -1;
	} else {
		target = strdup(ep);
	}
	out->ch = target ? rpc_channel_open(target, o->tls.ca_file ? &o->tls : NULL, &error) : NULL;
	free(target);
	if (!out->ch) {
		fprintf(stderr, "xevf-agent migrate: %s: %s\n", ep, error ? error : "cannot open a channel");
		free(error);
		return -1;
	}
	return 0;
}

static void close_endpoint(struct endpoint *e)
{
	if (e->ch)
		grpc_channel_destroy(e->ch);
	e->ch = NULL;
}

static const char *code_name(grpc_status_code c)
{
	static const char *const names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
					    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
					    "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
					    "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
	return (unsigned)c < sizeof(names) / sizeof(names[0]) ? names[c] : "?";
}

static int report(const struct endpoint *e, const char *what, struct rpc_result *res)
{
	fprintf(stderr, "xevf-agent migrate: %s at %s: %s: %s\n", what, e->name, code_name(res->status),
		res->details && *res->details ? res->details : "(no details)");
	rpc_result_clear(res);
	return 1;
}

static int unary(const struct endpoint *e, const char *method, const ProtobufCMessage *req,
		 const ProtobufCMessageDescriptor *desc, ProtobufCMessage **reply)
{
	struct rpc_result res = {0};
	char full[128];
	snprintf(full, sizeof(full), SERVICE "%s", method);
	if (rpc_unary(e->ch, full, req, desc, reply, CALL_TIMEOUT_MS, &res) < 0)
		return report(e, method, &res);
	rpc_result_clear(&res);
	return 0;
}

static int describe(const struct endpoint *src, const char *vf, Xevf__Migration__V1__Fingerprint **fp)
{
	Xevf__Migration__V1__DescribeRequest req = XEVF__MIGRATION__V1__DESCRIBE_REQUEST__INIT;
	req.vf = (char *)vf;
	return unary(src, "Describe", (const ProtobufCMessage *)&req, &xevf__migration__v1__fingerprint__descriptor, (ProtobufCMessage **)fp);
}

static void print_fingerprint(const Xevf__Migration__V1__Fingerprint *fp)
{
	printf("vf %s on %s: %04x:%04x rev %02x, PF %s (0x%04x), driver %s (%s), PF driver %s (%s), firmware %s, "
	       "migration flags 0x%llx, %s\n",
	       fp->vf, fp->node, fp->vendor_id, fp->device_id, fp->revision, fp->pf, fp->pf_device_id, fp->driver,
	       fp->driver_version, fp->pf_driver, fp->pf_driver_version, *fp->firmware_version ? fp->firmware_version : "not shown",
	       (unsigned long long)fp->migration_flags, fp->migratable ? "migratable" : fp->not_migratable_reason);
	for (size_t i = 0; i < fp->n_provisioning; i++)
		printf("  provisioning %s = %s\n", fp->provisioning[i]->key, fp->provisioning[i]->value);
}

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
static int save_to_file(const struct opts *o, const struct endpoint *src)
{
	Xevf__Migration__V1__SaveStateRequest req = XEVF__MIGRATION__V1__SAVE_STATE_REQUEST__INIT;
	struct rpc_stream *save = rpc_stream_open(src->ch, SERVICE "SaveState", STREAM_TIMEOUT_MS);
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
		return report(src, "SaveState", &res);
	if (ok) {
		printf("saved %llu bytes in %u chunks of %s (%s) to %s\n", (unsigned long long)bytes, chunks, o->vf, o->id,
		       o->to_file);
		rc = 0;
	}
	rpc_result_clear(&res);
	return rc;
}

/* Agent to agent: the source agent streams the state into the target agent. */
static int send_state(const struct opts *o, const struct endpoint *src)
{
	Xevf__Migration__V1__SendStateRequest req = XEVF__MIGRATION__V1__SEND_STATE_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;

	req.migration_id = (char *)o->id;
	req.vf = (char *)o->vf;
	req.target = (char *)o->target;
	req.chunk_size = (uint32_t)o->chunk;
	if (unary(src, "SendState", (const ProtobufCMessage *)&req, &xevf__migration__v1__send_state_response__descriptor,
		  &reply))
		return 1;
	Xevf__Migration__V1__SendStateResponse *r = (Xevf__Migration__V1__SendStateResponse *)reply;
	printf("%s sent %llu bytes of %s to %s: %s restored into %s (device %s)\n", src->name,
	       (unsigned long long)r->bytes, o->vf, o->target, o->id, r->target_vf, r->target_device_state);
	protobuf_c_message_free_unpacked(reply, NULL);
	return 0;
}

static int restore_from_file(const struct opts *o, const struct endpoint *dst)
{
	FILE *f = fopen(o->from_file, "rbe");
	struct rpc_stream *st;
	struct rpc_result res = {0};
	uint64_t bytes = 0;
	int rc = 1;

	if (!f) {
		fprintf(stderr, "xevf-agent migrate: cannot read %s: %s\n", o->from_file, strerror(errno));
		return 1;
	}
	st = rpc_stream_open(dst->ch, SERVICE "RestoreState", STREAM_TIMEOUT_MS);
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
		bytes += c->data.len;
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
		report(dst, "RestoreState", &res);
	rpc_result_clear(&res);
	(void)bytes;
	return rc;
}

static void print_status(const char *where, const Xevf__Migration__V1__MigrationStatus *s)
{
	printf("%s: migration %s %s VF %s: %s%s%s", where, s->migration_id, s->role, s->vf, s->phase,
	       *s->device_state ? ", device " : "", s->device_state);
	if (*s->vm_name)
		printf(", VM %s/%s", s->vm_namespace, s->vm_name);
	printf("\n");
}

static int end_call(const struct endpoint *e, const char *method, const char *id)
{
	Xevf__Migration__V1__MigrationRef ref = XEVF__MIGRATION__V1__MIGRATION_REF__INIT;
	ProtobufCMessage *reply = NULL;
	ref.migration_id = (char *)id;
	if (unary(e, method, (const ProtobufCMessage *)&ref, &xevf__migration__v1__migration_status__descriptor, &reply))
		return 1;
	print_status(e->name, (Xevf__Migration__V1__MigrationStatus *)reply);
	protobuf_c_message_free_unpacked(reply, NULL);
	return 0;
}

static bool is(const char *cmd, const char *word)
{
	return strcmp(cmd, word) == 0;
}

static int need(const char *value, const char *flag, const char *cmd)
{
	if (value && *value)
		return 0;
	fprintf(stderr, "xevf-agent migrate %s: %s is required\n%s", cmd, flag, usage);
	return -1;
}

static int run(const struct opts *o)
{
	struct endpoint src = {0}, dst = {0};
	ProtobufCMessage *reply = NULL;
	Xevf__Migration__V1__Fingerprint *fp = NULL;
	const char *c = o->cmd;
	/* commit and abort go to whichever sides are named (the source by default) */
	bool ends = is(c, "commit") || is(c, "abort");
	bool use_src = ends ? !o->target || o->source : !is(c, "restore") && !is(c, "release");
	bool use_dst = ends ? o->target != NULL : is(c, "check") || is(c, "reserve") || is(c, "restore") || is(c, "release");
	int rc = 1;

	if ((is(c, "describe") || is(c, "check") || is(c, "reserve") || is(c, "save") ||
	     is(c, "send")) && need(o->vf, "--vf", c))
		return EXIT_USAGE;
	if (!is(c, "describe") && !is(c, "check") && !is(c, "list") && need(o->id, "--id", c))
		return EXIT_USAGE;
	if ((use_dst || is(c, "send")) && need(o->target, "--target", c))
		return EXIT_USAGE;
	if (is(c, "reserve") && need(o->vm, "--vm", c))
		return EXIT_USAGE;
	if (is(c, "save") && need(o->to_file, "--to-file", c))
		return EXIT_USAGE;
	if (is(c, "restore") && need(o->from_file, "--from-file", c))
		return EXIT_USAGE;
	if (use_src && open_endpoint(o, o->source ? o->source : XEVF_DEFAULT_MIGRATION_SOCKET, &src) < 0)
		goto out;
	if (use_dst && open_endpoint(o, o->target, &dst) < 0)
		goto out;

	if (is(c, "describe")) {
		if (describe(&src, o->vf, &fp) == 0) {
			print_fingerprint(fp);
			rc = 0;
		}
	} else if (is(c, "check") || is(c, "reserve")) {
		if (describe(&src, o->vf, &fp))
			goto out;
		if (!fp->migratable) {
			fprintf(stderr, "xevf-agent migrate: %s\n", fp->not_migratable_reason);
			goto out;
		}
		if (is(c, "check")) {
			Xevf__Migration__V1__CheckTargetRequest req = XEVF__MIGRATION__V1__CHECK_TARGET_REQUEST__INIT;
			req.source = fp;
			if (unary(&dst, "CheckTarget", (const ProtobufCMessage *)&req, &xevf__migration__v1__check_target_response__descriptor, &reply))
				goto out;
			Xevf__Migration__V1__CheckTargetResponse *r = (Xevf__Migration__V1__CheckTargetResponse *)reply;
			size_t ok = 0;
			for (size_t i = 0; i < r->n_candidates; i++) {
				ok += r->candidates[i]->compatible;
				printf("%s %s%s%s\n", r->candidates[i]->vf, r->candidates[i]->compatible ? "compatible" : "incompatible",
				       r->candidates[i]->compatible ? "" : ": ", r->candidates[i]->reason);
			}
			printf("%zu of %zu VFs on %s can take %s\n", ok, r->n_candidates, dst.name, o->vf);
			rc = ok ? 0 : 1;
		} else {
			Xevf__Migration__V1__ReserveRequest req = XEVF__MIGRATION__V1__RESERVE_REQUEST__INIT;
			char *ns = strdup(o->vm), *slash = ns ? strchr(ns, '/') : NULL;
			if (!slash) {
				fprintf(stderr, "xevf-agent migrate reserve: --vm takes NAMESPACE/NAME\n");
				free(ns);
				rc = EXIT_USAGE;
				goto out;
			}
			*slash = 0;
			req.migration_id = (char *)o->id;
			req.vm_namespace = ns;
			req.vm_name = slash + 1;
			req.source = fp;
			req.ttl_seconds = (uint32_t)o->ttl;
			rc = unary(&dst, "Reserve", (const ProtobufCMessage *)&req, &xevf__migration__v1__reservation__descriptor, &reply);
			free(ns);
			if (rc == 0) {
				Xevf__Migration__V1__Reservation *r = (Xevf__Migration__V1__Reservation *)reply;
				printf("reserved %s on %s for migration %s (%s), expires in %llds\n", r->vf, dst.name, r->migration_id,
				       r->resource_name, (long long)(r->expires_unix_ms / 1000 - (long long)time(NULL)));
			}
		}
	} else if (is(c, "save")) {
		rc = save_to_file(o, &src);
	} else if (is(c, "send")) {
		rc = send_state(o, &src);
	} else if (is(c, "restore")) {
		rc = restore_from_file(o, &dst);
	} else if (is(c, "release")) {
		rc = end_call(&dst, "Release", o->id);
	} else if (is(c, "commit") || is(c, "abort")) {
		const char *method = is(c, "commit") ? "Commit" : "Abort";
		/* commit: target first (the VM runs there), then the source; abort: both, target first too */
		rc = 0;
		if (dst.ch)
			rc |= end_call(&dst, method, o->id);
		if (src.ch && !rc)
			rc |= end_call(&src, method, o->id);
	} else if (is(c, "list")) {
		Xevf__Migration__V1__ListRequest req = XEVF__MIGRATION__V1__LIST_REQUEST__INIT;
		if (unary(&src, "List", (const ProtobufCMessage *)&req, &xevf__migration__v1__list_response__descriptor, &reply) == 0) {
			Xevf__Migration__V1__ListResponse *r = (Xevf__Migration__V1__ListResponse *)reply;
			for (size_t i = 0; i < r->n_migrations; i++)
				print_status(src.name, r->migrations[i]);
			if (!r->n_migrations)
				printf("%s: no migrations\n", src.name);
			rc = 0;
		}
	} else {
		fprintf(stderr, "xevf-agent migrate: unknown command '%s'\n%s", c, usage);
		rc = EXIT_USAGE;
	}
out:
	if (fp)
		protobuf_c_message_free_unpacked(&fp->base, NULL);
	if (reply)
		protobuf_c_message_free_unpacked(reply, NULL);
	close_endpoint(&src);
	close_endpoint(&dst);
	return rc;
}

int migrate_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"vf", required_argument, NULL, 'v'},        {"id", required_argument, NULL, 'i'},
		{"vm", required_argument, NULL, 'm'},        {"source", required_argument, NULL, 's'},
		{"target", required_argument, NULL, 't'},    {"to-file", required_argument, NULL, 'o'},
		{"from-file", required_argument, NULL, 'f'}, {"ttl", required_argument, NULL, 'T'},
		{"tls-ca", required_argument, NULL, 'A'},    {"tls-cert", required_argument, NULL, 'C'},
		{"tls-key", required_argument, NULL, 'K'},   {"chunk-size", required_argument, NULL, 'z'},
		{"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0},
	};
	struct opts o = {0};
	int opt;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	o.cmd = argv[1];
	optind = 2;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		char *end;
		switch (opt) {
		case 'v': o.vf = optarg; break;
		case 'i': o.id = optarg; break;
		case 'm': o.vm = optarg; break;
		case 's': o.source = optarg; break;
		case 't': o.target = optarg; break;
		case 'o': o.to_file = optarg; break;
		case 'f': o.from_file = optarg; break;
		case 'A': o.tls.ca_file = optarg; break;
		case 'C': o.tls.cert_file = optarg; break;
		case 'K': o.tls.key_file = optarg; break;
		case 'T':
		case 'z': {
			errno = 0;
			long v = strtol(optarg, &end, 10);
			if (errno || *end || v < 0 || v > 86400L * 64) {
				fprintf(stderr, "xevf-agent migrate: --%s: '%s' is not a valid number\n", opt == 'T' ? "ttl" : "chunk-size",
					optarg);
				return EXIT_USAGE;
			}
			if (opt == 'T')
				o.ttl = v;
			else
				o.chunk = v;
			break;
		}
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "xevf-agent migrate: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	grpc_init();
	int rc = run(&o);
	grpc_shutdown_blocking();
	return rc;
}
