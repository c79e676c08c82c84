/* What the migrate subcommand's files share. Not for use outside cli/. */
#ifndef XEVF_CLI_MIGRATE_PRIVATE_H
#define XEVF_CLI_MIGRATE_PRIVATE_H

#include <stdio.h>

#include "migrate.h"
#include "rpc.h"
#include "xevf/migration/v1/migration.pb-c.h"

#define MIGRATE_SERVICE "/xevf.migration.v1.Migration/"
#define MIGRATE_CALL_TIMEOUT_MS 30000
#define MIGRATE_STREAM_TIMEOUT_MS 600000

struct opts {
	const char *cmd, *vf, *id, *vm, *source, *target, *to_file, *from_file;
	struct rpc_tls tls;
	const char *server_name;  /* --tls-server-name */
	long ttl, chunk;
};

struct endpoint {
	const char *name;
	grpc_channel *ch;
};

/* migrate_endpoint.c: the agents a command talks to */
int migrate_open_endpoint(const struct opts *o, const char *ep, struct endpoint *out);
void migrate_close_endpoint(struct endpoint *e);
/* Prints why a call failed; 1. */
int migrate_report(const struct endpoint *e, const char *what, struct rpc_result *res);
/* A unary call; 0 and *reply, or 1 after saying why. */
int migrate_unary(const struct endpoint *e, const char *method, const ProtobufCMessage *req,
		  const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply);

/* migrate_state.c: a VF's state moved through a file, or agent to agent */
int migrate_save_to_file(const struct opts *o, const struct endpoint *src);
int migrate_send_state(const struct opts *o, const struct endpoint *src);
int migrate_restore_from_file(const struct opts *o, const struct endpoint *dst);

#endif
