#include "migrate.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "migrate_private.h"

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
	"  handover --id ID --vf PCI [--source EP]      QEMU carries the state (KubeVirt): the source agent\n"
	"                                               records the migration, never opens the VF; commit\n"
	"                                               resets it once QEMU has released it\n"
	"  send     --id ID --vf PCI [--source EP] --target HOST:PORT\n"
	"                                               the source agent streams the state straight into\n"
	"                                               the target agent (mutual TLS, the agents' own certificates)\n"
	"  commit   --id ID [--source EP] [--target EP] the target VF runs the state; the source VF is reset\n"
	"  abort    --id ID [--source EP] [--target EP] the source VF runs on; the target VF is reset, released\n"
	"  list     [--source EP]                       the agent's migrations\n"
	"\n"
	"Endpoints (EP): a unix socket path (default for --source: " XEVF_DEFAULT_MIGRATION_SOCKET ")\n"
	"or HOST:PORT of another agent, reached over mutual TLS with:\n"
	"  --tls-ca FILE --tls-cert FILE --tls-key FILE [--tls-server-name NAME]\n"
	"  (the profile of docs/certificates.md; over TCP an agent serves only the target-side calls)\n"
	"  --chunk-size BYTES   save: bytes per chunk (default 256 KiB)\n"
	"Exit status: 0 done, 1 refused or failed (the reason is printed), 2 bad usage.\n";

static int describe(const struct endpoint *src, const char *vf, Xevf__Migration__V1__Fingerprint **fp)
{
	Xevf__Migration__V1__DescribeRequest req = XEVF__MIGRATION__V1__DESCRIBE_REQUEST__INIT;
	req.vf = (char *)vf;
	return migrate_unary(src, "Describe", (const ProtobufCMessage *)&req, &xevf__migration__v1__fingerprint__descriptor, (ProtobufCMessage **)fp);
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
	if (migrate_unary(e, method, (const ProtobufCMessage *)&ref, &xevf__migration__v1__migration_status__descriptor, &reply))
		return 1;
	print_status(e->name, (Xevf__Migration__V1__MigrationStatus *)reply);
	protobuf_c_message_free_unpacked(reply, NULL);
	return 0;
}

/* The source's fingerprint of --vf, when it can migrate at all. */
static Xevf__Migration__V1__Fingerprint *migratable_source(const struct opts *o, const struct endpoint *src)
{
	Xevf__Migration__V1__Fingerprint *fp = NULL;

	if (describe(src, o->vf, &fp))
		return NULL;
	if (!fp->migratable) {
		fprintf(stderr, "xevf-agent migrate: %s\n", fp->not_migratable_reason);
		protobuf_c_message_free_unpacked(&fp->base, NULL);
		return NULL;
	}
	return fp;
}

static int cmd_describe(const struct opts *o, struct endpoint *src, struct endpoint *dst)
{
	Xevf__Migration__V1__Fingerprint *fp = NULL;

	(void)dst;
	if (describe(src, o->vf, &fp))
		return 1;
	print_fingerprint(fp);
	protobuf_c_message_free_unpacked(&fp->base, NULL);
	return 0;
}

static int cmd_check(const struct opts *o, struct endpoint *src, struct endpoint *dst)
{
	Xevf__Migration__V1__CheckTargetRequest req = XEVF__MIGRATION__V1__CHECK_TARGET_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	size_t ok = 0;

	if (!(req.source = migratable_source(o, src)))
		return 1;
	if (migrate_unary(dst, "CheckTarget", (const ProtobufCMessage *)&req, &xevf__migration__v1__check_target_response__descriptor,
		  &reply) == 0) {
		const Xevf__Migration__V1__CheckTargetResponse *r = (const Xevf__Migration__V1__CheckTargetResponse *)reply;
		for (size_t i = 0; i < r->n_candidates; i++) {
			ok += r->candidates[i]->compatible;
			printf("%s %s%s%s\n", r->candidates[i]->vf, r->candidates[i]->compatible ? "compatible" : "incompatible",
			       r->candidates[i]->compatible ? "" : ": ", r->candidates[i]->reason);
		}
		printf("%zu of %zu VFs on %s can take %s\n", ok, r->n_candidates, dst->name, o->vf);
		protobuf_c_message_free_unpacked(reply, NULL);
	}
	protobuf_c_message_free_unpacked(&req.source->base, NULL);
	return ok ? 0 : 1;
}

static int cmd_reserve(const struct opts *o, struct endpoint *src, struct endpoint *dst)
{
	Xevf__Migration__V1__ReserveRequest req = XEVF__MIGRATION__V1__RESERVE_REQUEST__INIT;
	char *ns = strdup(o->vm), *slash = ns ? strchr(ns, '/') : NULL;
	ProtobufCMessage *reply = NULL;
	int rc;

	if (!slash) {
		fprintf(stderr, "xevf-agent migrate reserve: --vm takes NAMESPACE/NAME\n");
		free(ns);
		return EXIT_USAGE;
	}
	*slash = 0;
	if (!(req.source = migratable_source(o, src))) {
		free(ns);
		return 1;
	}
	req.migration_id = (char *)o->id;
	req.vm_namespace = ns;
	req.vm_name = slash + 1;
	req.ttl_seconds = (uint32_t)o->ttl;
	rc = migrate_unary(dst, "Reserve", (const ProtobufCMessage *)&req, &xevf__migration__v1__reservation__descriptor, &reply);
	if (rc == 0) {
		const Xevf__Migration__V1__Reservation *r = (const Xevf__Migration__V1__Reservation *)reply;
		printf("reserved %s on %s for migration %s (%s), expires in %llds\n", r->vf, dst->name, r->migration_id,
		       r->resource_name, (long long)(r->expires_unix_ms / 1000 - (long long)time(NULL)));
		protobuf_c_message_free_unpacked(reply, NULL);
	}
	protobuf_c_message_free_unpacked(&req.source->base, NULL);
	free(ns);
	return rc;
}

static int cmd_save(const struct opts *o, struct endpoint *src, struct endpoint *dst)
{
	(void)dst;
	return migrate_save_to_file(o, src);
}

static int cmd_send(const struct opts *o, struct endpoint *src, struct endpoint *dst)
{
	(void)dst;
	return migrate_send_state(o, src);
}

static int cmd_restore(const struct opts *o, struct endpoint *src, struct endpoint *dst)
{
	(void)src;
	return migrate_restore_from_file(o, dst);
}

/* QEMU carries the state: the source agent records the migration without opening the VF. */
static int cmd_handover(const struct opts *o, struct endpoint *src, struct endpoint *dst)
{
	Xevf__Migration__V1__HandoverRequest req = XEVF__MIGRATION__V1__HANDOVER_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;

	(void)dst;
	req.migration_id = (char *)o->id;
	req.vf = (char *)o->vf;
	if (migrate_unary(src, "Handover", (const ProtobufCMessage *)&req, &xevf__migration__v1__migration_status__descriptor,
			  &reply))
		return 1;
	print_status(src->name, (Xevf__Migration__V1__MigrationStatus *)reply);
	protobuf_c_message_free_unpacked(reply, NULL);
	return 0;
}

static int cmd_release(const struct opts *o, struct endpoint *src, struct endpoint *dst)
{
	(void)src;
	return end_call(dst, "Release", o->id);
}

/* Commit and abort go to whichever sides are named, the target first: on
 * commit the VM runs there; then the source. */
static int end_both(const struct opts *o, struct endpoint *src, struct endpoint *dst, const char *method)
{
	int rc = 0;

	if (dst->ch)
		rc |= end_call(dst, method, o->id);
	if (src->ch && !rc)
		rc |= end_call(src, method, o->id);
	return rc;
}

static int cmd_commit(const struct opts *o, struct endpoint *src, struct endpoint *dst)
{
	return end_both(o, src, dst, "Commit");
}

static int cmd_abort(const struct opts *o, struct endpoint *src, struct endpoint *dst)
{
	return end_both(o, src, dst, "Abort");
}

static int cmd_list(const struct opts *o, struct endpoint *src, struct endpoint *dst)
{
	Xevf__Migration__V1__ListRequest req = XEVF__MIGRATION__V1__LIST_REQUEST__INIT;
	const Xevf__Migration__V1__ListResponse *r;
	ProtobufCMessage *reply = NULL;

	(void)o;
	(void)dst;
	if (migrate_unary(src, "List", (const ProtobufCMessage *)&req, &xevf__migration__v1__list_response__descriptor, &reply))
		return 1;
	r = (const Xevf__Migration__V1__ListResponse *)reply;
	for (size_t i = 0; i < r->n_migrations; i++)
		print_status(src->name, r->migrations[i]);
	if (!r->n_migrations)
		printf("%s: no migrations\n", src->name);
	protobuf_c_message_free_unpacked(reply, NULL);
	return 0;
}

/* What a command needs, in the order they are asked for. */
enum need { NEED_VF = 1, NEED_ID = 2, NEED_TARGET = 4, NEED_VM = 8, NEED_TO_FILE = 16, NEED_FROM_FILE = 32 };
/* Which agents it talks to: the source (--source, or this node's socket), the
 * target's Migration service (--target), or whichever are named. */
enum sides { TO_SOURCE = 1, TO_TARGET = 2, TO_NAMED = 4 };

static const struct command {
	const char *name;
	unsigned needs, sides;
	int (*run)(const struct opts *o, struct endpoint *src, struct endpoint *dst);
} commands[] = {
	{"describe", NEED_VF, TO_SOURCE, cmd_describe},
	{"check", NEED_VF | NEED_TARGET, TO_SOURCE | TO_TARGET, cmd_check},
	{"reserve", NEED_VF | NEED_ID | NEED_TARGET | NEED_VM, TO_SOURCE | TO_TARGET, cmd_reserve},
	{"release", NEED_ID | NEED_TARGET, TO_TARGET, cmd_release},
	{"save", NEED_VF | NEED_ID | NEED_TO_FILE, TO_SOURCE, cmd_save},
	{"restore", NEED_ID | NEED_TARGET | NEED_FROM_FILE, TO_TARGET, cmd_restore},
	/* the source agent dials the target itself */
	{"send", NEED_VF | NEED_ID | NEED_TARGET, TO_SOURCE, cmd_send},
	{"handover", NEED_VF | NEED_ID, TO_SOURCE, cmd_handover},
	{"commit", NEED_ID, TO_NAMED, cmd_commit},
	{"abort", NEED_ID, TO_NAMED, cmd_abort},
	{"list", 0, TO_SOURCE, cmd_list},
};

static const char *needed_value(const struct opts *o, enum need n, const char **flag)
{
	static const struct {
		enum need need;
		const char *flag;
		size_t offset;
	} fields[] = {
		{NEED_VF, "--vf", offsetof(struct opts, vf)},
		{NEED_ID, "--id", offsetof(struct opts, id)},
		{NEED_TARGET, "--target", offsetof(struct opts, target)},
		{NEED_VM, "--vm", offsetof(struct opts, vm)},
		{NEED_TO_FILE, "--to-file", offsetof(struct opts, to_file)},
		{NEED_FROM_FILE, "--from-file", offsetof(struct opts, from_file)},
	};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (fields[i].need == n) {
			*flag = fields[i].flag;
			return *(const char *const *)((const char *)o + fields[i].offset);
		}
	return NULL;
}

/* 0, or EXIT_USAGE after saying which flag is missing. */
static int check_needs(const struct opts *o, const struct command *c)
{
	for (unsigned n = NEED_VF; n <= NEED_FROM_FILE; n <<= 1) {
		const char *flag = "", *value = (c->needs & n) ? needed_value(o, (enum need)n, &flag) : "-";
		if (!value || !*value) {
			fprintf(stderr, "xevf-agent migrate %s: %s is required\n%s", c->name, flag, usage);
			return EXIT_USAGE;
		}
	}
	return 0;
}

static int run(const struct opts *o)
{
	const struct command *c = NULL;
	struct endpoint src = {0}, dst = {0};
	bool use_src, use_dst;
	int rc = 1;

	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]) && !c; i++)
		if (strcmp(commands[i].name, o->cmd) == 0)
			c = &commands[i];
	if (!c) {
		fprintf(stderr, "xevf-agent migrate: unknown command '%s'\n%s", o->cmd, usage);
		return EXIT_USAGE;
	}
	if (check_needs(o, c))
		return EXIT_USAGE;
	use_src = (c->sides & TO_SOURCE) || ((c->sides & TO_NAMED) && (!o->target || o->source));
	use_dst = (c->sides & TO_TARGET) || ((c->sides & TO_NAMED) && o->target);
	if ((!use_src || migrate_open_endpoint(o, o->source ? o->source : XEVF_DEFAULT_MIGRATION_SOCKET, &src) == 0) &&
	    (!use_dst || migrate_open_endpoint(o, o->target, &dst) == 0))
		rc = c->run(o, &src, &dst);
	migrate_close_endpoint(&src);
	migrate_close_endpoint(&dst);
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
		{"tls-server-name", required_argument, NULL, 'N'},
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
		case 'N': o.server_name = *optarg ? optarg : NULL; break;
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
