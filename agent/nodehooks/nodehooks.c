#include "nodehooks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fail.h"
#include "kubevirt/hooks/plugins/v1alpha1/api.pb-c.h"
#include "log.h"
#include "rpc.h"
#include "text.h"
#include "xevf_util.h"

#define EXECUTE_METHOD "/kubevirt.hooks.plugins.v1alpha1.NodeHookService/ExecuteNodeHook"
/* A VMI's JSON is a few kB; virt-handler sends it whole. */
#define VMI_MAX_BYTES ((size_t)1024 * 1024)

static const char *const point_names[NODE_HOOK_COUNT] = {
	[NODE_HOOK_PRE_MIGRATION_SOURCE] = "PreMigrationSource",
	[NODE_HOOK_PRE_MIGRATION_TARGET] = "PreMigrationTarget",
	[NODE_HOOK_POST_MIGRATION_TARGET] = "PostMigrationTarget",
};

const char *node_hook_point_name(enum node_hook_point p)
{
	return (size_t)p < NODE_HOOK_COUNT ? point_names[p] : "?";
}

bool node_hook_point_parse(const char *name, enum node_hook_point *p)
{
	for (size_t i = 0; name && i < NODE_HOOK_COUNT; i++) {
		if (strcmp(name, point_names[i]) == 0) {
			*p = (enum node_hook_point)i;
			return true;
		}
	}
	return false;
}

struct node_hooks {
	struct rpc_server *server;
	char *socket_path, *node;
	node_hook_fn fn;
	void *ctx;
};

int node_hooks_status_of(int rc)
{
	switch (rc) {
	case 0:
		return GRPC_STATUS_OK;
	case -EINVAL:
		return GRPC_STATUS_INVALID_ARGUMENT;
	case -EAGAIN:
	case -EBUSY:
		return GRPC_STATUS_UNAVAILABLE;
	case -ENOMEM:
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	default:
		return GRPC_STATUS_FAILED_PRECONDITION;
	}
}

static void refuse(struct rpc_call *call, grpc_status_code code, const char *point, const char *vmi, const char *why)
{
	log_warn("node_hook_refused", "hook=%s vmi=%s reason=\"%s\"", point, vmi, why);
	rpc_call_finish(call, code, why, NULL);
}

static void execute(struct node_hooks *h, struct rpc_call *call,
		    const Kubevirt__Hooks__Plugins__V1alpha1__ExecuteNodeHookRequest *req)
{
	Kubevirt__Hooks__Plugins__V1alpha1__ExecuteNodeHookResponse done =
		KUBEVIRT__HOOKS__PLUGINS__V1ALPHA1__EXECUTE_NODE_HOOK_RESPONSE__INIT;
	const char *node = req->node && req->node->node_name && *req->node->node_name ? req->node->node_name : NULL;
	char *point_text = printable_id(req->hookpoint), *why = NULL, *vmi_name = NULL;
	struct kubevirt_vmi vmi;
	enum node_hook_point point;
	int rc;

	if (!point_text) {
		rpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
		return;
	}
	if (!node_hook_point_parse(req->hookpoint, &point)) {
		/* a hook point xevf has nothing to do at: done */
		log_debug("node_hook_ignored", "hook=%s", point_text);
		rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&done);
		free(point_text);
		return;
	}
	if (node && strcmp(node, h->node) != 0) {
		char *other = printable_id(node);
		if (xevf_asprintf(&why, "the hook is for node %s; this agent serves node %s", other ? other : "?", h->node))
			why = NULL;
		refuse(call, GRPC_STATUS_FAILED_PRECONDITION, point_text, "?", why ? why : "out of memory");
		free(other);
		free(why);
		free(point_text);
		return;
	}
	if (req->vmi.len > VMI_MAX_BYTES) {
		refuse(call, GRPC_STATUS_INVALID_ARGUMENT, point_text, "?", "the VMI is larger than 1 MiB");
		free(point_text);
		return;
	}
	if ((rc = kubevirt_parse_hook_vmi((const char *)req->vmi.data, req->vmi.len, &vmi, &why)) < 0) {
		refuse(call, rc == -ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INVALID_ARGUMENT, point_text, "?",
		       why ? why : "the VMI could not be read");
		free(why);
		free(point_text);
		return;
	}
	if (xevf_asprintf(&vmi_name, "%s/%s", vmi.namespace_, vmi.name))
		vmi_name = NULL;
	rc = h->fn(h->ctx, point, &vmi, &why);
	if (rc == 0) {
		log_info("node_hook_done", "hook=%s vmi=%s migration=%s", point_text, vmi_name ? vmi_name : "?",
			 vmi.migration ? vmi.migration : "-");
		rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&done);
	} else {
		refuse(call, (grpc_status_code)node_hooks_status_of(rc), point_text, vmi_name ? vmi_name : "?",
		       why ? why : strerror(-rc));
	}
	free(vmi_name);
	free(why);
	free(point_text);
	kubevirt_vmi_clear(&vmi);
}

static void dispatch(struct rpc_call *call, void *ctx)
{
	struct node_hooks *h = ctx;
	ProtobufCMessage *req = NULL;

	if (strcmp(rpc_call_method(call), EXECUTE_METHOD) != 0) {
		rpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED, "xevf serves only NodeHookService/ExecuteNodeHook", NULL);
		return;
	}
	if (rpc_call_recv(call, &kubevirt__hooks__plugins__v1alpha1__execute_node_hook_request__descriptor, &req) <= 0) {
		rpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "ExecuteNodeHook: the request could not be decoded", NULL);
		return;
	}
	execute(h, call, (const Kubevirt__Hooks__Plugins__V1alpha1__ExecuteNodeHookRequest *)req);
	protobuf_c_message_free_unpacked(req, NULL);
}

struct node_hooks *node_hooks_start(const char *socket_path, const char *node_name, node_hook_fn fn, void *ctx,
				    char **error)
{
	struct node_hooks *h = calloc(1, sizeof(*h));
	char *addr = NULL;

	*error = NULL;
	if (!h || !(h->socket_path = strdup(socket_path)) || !(h->node = strdup(node_name)) ||
	    xevf_asprintf(&addr, "unix:%s", socket_path)) {
		agent_fail(error, ENOMEM, "out of memory");
		goto fail;
	}
	h->fn = fn;
	h->ctx = ctx;
	(void)xevf_mkdir_parent(socket_path, 0755); /* listening says what went wrong */
	unlink(socket_path);
	/* one call at a time is all virt-handler sends per VMI; the hook's own
	 * waits are bounded, so no idle limit */
	if (!(h->server = rpc_server_start(addr, NULL, NULL, 0, dispatch, h, NULL, error)))
		goto fail;
	if (chmod(socket_path, 0660) < 0)
		log_warn("node_hooks_socket_mode", "socket=%s err=\"%s\"", socket_path, strerror(errno));
	free(addr);
	return h;
fail:
	free(addr);
	if (h) {
		free(h->socket_path);
		free(h->node);
		free(h);
	}
	return NULL;
}

void node_hooks_stop(struct node_hooks *h)
{
	if (!h)
		return;
	rpc_server_stop(h->server);
	unlink(h->socket_path);
	free(h->socket_path);
	free(h->node);
	free(h);
}
