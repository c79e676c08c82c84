/* The Migration services a migrate command talks to: unix socket or mutual TLS. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "migrate_private.h"

int migrate_open_endpoint(const struct opts *o, const char *ep, struct endpoint *out)
{
	char *target = NULL, *error = NULL;

	out->name = ep;
	if (!ep || !*ep) {
		fprintf(stderr, "xevf-agent migrate: no endpoint given\n");
		return -1;
	}
	if (ep[0] == '/') {
		if (asprintf(&target, "unix:%s", ep) < 0)
			return -1;
	} else {
		target = strdup(ep);
	}
	out->ch = target ? rpc_channel_open(target, o->tls.ca_file ? &o->tls : NULL, o->server_name, &error) : NULL;
	free(target);
	if (!out->ch) {
		fprintf(stderr, "xevf-agent migrate: %s: %s\n", ep, error ? error : "cannot open a channel");
		free(error);
		return -1;
	}
	return 0;
}

void migrate_close_endpoint(struct endpoint *e)
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

int migrate_report(const struct endpoint *e, const char *what, struct rpc_result *res)
{
	fprintf(stderr, "xevf-agent migrate: %s at %s: %s: %s\n", what, e->name, code_name(res->status),
		res->details && *res->details ? res->details : "(no details)");
	rpc_result_clear(res);
	return 1;
}

int migrate_unary(const struct endpoint *e, const char *method, const ProtobufCMessage *req,
		 const ProtobufCMessageDescriptor *desc, ProtobufCMessage **reply)
{
	struct rpc_result res = {0};
	char full[128];
	snprintf(full, sizeof(full), MIGRATE_SERVICE "%s", method);
	if (rpc_unary(e->ch, full, req, desc, reply, MIGRATE_CALL_TIMEOUT_MS, &res) < 0)
		return migrate_report(e, method, &res);
	rpc_result_clear(&res);
	return 0;
}

