/* What the agent does at KubeVirt's node hooks (nodehooks.h serves them):
 *   PreMigrationSource  records the Handover of the VF the source pod holds
 *                       (QEMU moves its state; the agent never opens it);
 *   PreMigrationTarget  checks that the target pod got the VF reserved for
 *                       the migration (compatible with the source's and
 *                       provisioned like it), or says why not;
 *   PostMigrationTarget commits this node's side.
 * The source's side ends by the VirtualMachineInstanceMigration's outcome
 * (migration_outcomes.h): no agent ends another node's records. */
#ifndef XEVF_DAEMON_KUBEVIRT_HOOKS_H
#define XEVF_DAEMON_KUBEVIRT_HOOKS_H

#include <stddef.h>

struct daemon;
struct kubevirt_hooks;

/* Serves the node hooks on socket_path. NULL and *error on failure. */
struct kubevirt_hooks *kubevirt_hooks_start(struct daemon *d, const char *socket_path, char **error);
void kubevirt_hooks_stop(struct kubevirt_hooks *h);

#endif
