/* KubeVirt's node hooks (VEP-190 Plugins, alpha in KubeVirt 1.9): virt-handler
 * calls kubevirt.hooks.plugins.v1alpha1.NodeHookService/ExecuteNodeHook on a
 * unix socket that a Plugin object names, at its hook points. This serves it:
 * decodes the call and the VMI's JSON and hands each hook point the agent
 * takes part in to one handler; its error becomes the call's status, which
 * virt-handler reports and retries. A hook may come more than once: the
 * handler must be idempotent. */
#ifndef XEVF_NODEHOOKS_H
#define XEVF_NODEHOOKS_H

#include <stdbool.h>

#include "kubevirt.h"

/* The hook points xevf takes part in; one name table (KubeVirt's names). */
enum node_hook_point {
	NODE_HOOK_PRE_MIGRATION_SOURCE,
	NODE_HOOK_PRE_MIGRATION_TARGET,
	NODE_HOOK_POST_MIGRATION_TARGET,
	NODE_HOOK_COUNT,
};
const char *node_hook_point_name(enum node_hook_point p);
bool node_hook_point_parse(const char *name, enum node_hook_point *p);

/* One hook's work, on the call's own thread: 0, or -errno and *why
 * (malloc'd, names the VMI, the VF and what to do). */
typedef int (*node_hook_fn)(void *ctx, enum node_hook_point point, const struct kubevirt_vmi *vmi, char **why);

struct node_hooks;

/* Listens on socket_path (mode 0660: virt-handler runs as root); calls for
 * another node than node_name are refused. NULL and *error on failure. */
struct node_hooks *node_hooks_start(const char *socket_path, const char *node_name, node_hook_fn fn, void *ctx,
				    char **error);
void node_hooks_stop(struct node_hooks *h);

/* The gRPC status a handler's -errno becomes. */
int node_hooks_status_of(int rc);

#endif
