/* The Migration service's method table, checked against protoc-c's service
 * descriptor of migration.proto: one row per method, with who may call it.
 * The node-local socket may call everything. Callers over mutual TLS (other
 * agents, an operator's CLI; peer_identity.h says who they are) get the
 * target-side methods and read-only Describe: what saves, sends or hands
 * over a VF's state stays on the node, and List, Release, Commit and Abort from a TLS
 * caller reach only the target reservations it made itself
 * (record_may_end). A new RPC is one row here and one handler. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "migration_private.h"

enum listener { FROM_LOCAL = 1, FROM_PEER = 2 };

typedef void (*mig_handler_fn)(struct migration *m, struct rpc_call *call, const ProtobufCMessage *req);

struct mig_method {
	const char *name;
	mig_handler_fn handle;
	unsigned listeners;
	bool client_stream; /* the handler reads the call's messages itself */
};

static const struct mig_method mig_methods[] = {
	{"Describe", handle_describe, FROM_LOCAL | FROM_PEER, false},
	{"CheckTarget", handle_check, FROM_LOCAL | FROM_PEER, false},
	{"Reserve", handle_reserve, FROM_LOCAL | FROM_PEER, false},
	{"Release", handle_release, FROM_LOCAL | FROM_PEER, false},
	{"SaveState", handle_save, FROM_LOCAL, false},
	{"RestoreState", handle_restore, FROM_LOCAL | FROM_PEER, true},
	{"SendState", handle_send, FROM_LOCAL, false},
	{"Commit", handle_commit, FROM_LOCAL | FROM_PEER, false},
	{"Abort", handle_abort, FROM_LOCAL | FROM_PEER, false},
	{"List", handle_list, FROM_LOCAL | FROM_PEER, false},
	{"Handover", handle_handover, FROM_LOCAL, false},
};

#define NMETHODS (sizeof(mig_methods) / sizeof(mig_methods[0]))

static const ProtobufCServiceDescriptor *service = &xevf__migration__v1__migration__descriptor;

static const struct mig_method *find_row(const char *name)
{
	for (size_t i = 0; i < NMETHODS; i++)
		if (strcmp(mig_methods[i].name, name) == 0)
			return &mig_methods[i];
	return NULL;
}

int migration_methods_check(char **error)
{
	for (unsigned i = 0; i < service->n_methods; i++)
		if (!find_row(service->methods[i].name))
			return agent_fail(error, EINVAL, "%s.%s has no row in the method table", service->name,
				    service->methods[i].name);
	for (size_t i = 0; i < NMETHODS; i++)
		if (!protobuf_c_service_descriptor_get_method_by_name(service, mig_methods[i].name))
			return agent_fail(error, EINVAL, "method table row %s is not a method of %s", mig_methods[i].name,
				    service->name);
	return 0;
}

/* A TLS caller gets a name, its certificate's identity, or is refused. */
static int identify(struct migration *m, struct rpc_call *call)
{
	char *identity = NULL, *why = NULL;
	int rc = peer_identify(&m->peers, rpc_call_peer_cert(call), &identity, &why);

	if (rc == 0 && rpc_call_set_peer(call, identity) == 0) {
		free(identity);
		return 0;
	}
	mig_refuse(call, GRPC_STATUS_PERMISSION_DENIED, "node %s refuses the caller: %s", m->node, why ? why : "out of memory");
	free(identity);
	free(why);
	return -EACCES;
}

/* "/xevf.migration.v1.Migration/Describe" -> "Describe", or NULL. */
static const char *method_name(const char *path)
{
	size_t n = strlen(service->name);

	if (path[0] != '/' || strncmp(path + 1, service->name, n) != 0 || path[n + 1] != '/')
		return NULL;
	return path + n + 2;
}

void mig_dispatch(struct rpc_call *call, void *ctx)
{
	struct migration *m = ctx;
	const char *path = rpc_call_method(call), *name = method_name(path);
	const ProtobufCMethodDescriptor *md = name ? protobuf_c_service_descriptor_get_method_by_name(service, name) : NULL;
	const struct mig_method *row = md ? find_row(md->name) : NULL;
	unsigned from = rpc_call_is_local(call) ? FROM_LOCAL : FROM_PEER;
	ProtobufCMessage *req = NULL;

	if (from == FROM_PEER && identify(m, call))
		return;
	if (!row) {
		mig_refuse(call, GRPC_STATUS_UNIMPLEMENTED, "unknown method %.128s", path);
		return;
	}
	if (!(row->listeners & from)) {
		mig_refuse(call, GRPC_STATUS_PERMISSION_DENIED, "%s may be called only on node %s's local socket, not by %s over "
			   "TCP", row->name, m->node, rpc_call_peer(call));
		return;
	}
	if (!row->client_stream && rpc_call_recv(call, md->input, &req) <= 0) {
		mig_refuse(call, GRPC_STATUS_INVALID_ARGUMENT, "%s: the request could not be decoded", row->name);
		return;
	}
	row->handle(m, call, req);
	if (req)
		protobuf_c_message_free_unpacked(req, NULL);
}
