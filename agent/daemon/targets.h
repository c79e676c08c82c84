/* KubeVirt's migration target pods coming to this node, watched through the
 * API server on a thread of their own: for each, the source node's agent
 * describes the VF the VM's source pod holds and the Migration service
 * reserves a compatible one here, so that the kubelet's allocation for the
 * target pod gets it (the device plugin's steering). What came of it goes to
 * the log, /metrics (xevf_migration_targets_total) and an Event on the pod. */
#ifndef XEVF_DAEMON_TARGETS_H
#define XEVF_DAEMON_TARGETS_H

#include <stddef.h>

#include "kube.h"
#include "migration.h"
#include "served_resources.h"

struct targets;

/* Takes over k; served (the pools' resources) stays the caller's. peer_namespace
 * NULL: the service account's. NULL and *error when it cannot start (k is
 * closed). */
struct targets *targets_start(struct kube *k, struct migration *m, struct served_resources *served,
			      const char *peer_namespace, const char *peer_selector, char **error);
void targets_stop(struct targets *t);
/* Waits at most wait_ms while a target pod that asks for resource is being
 * given its reservation (the kubelet may ask before the watch is done). */
void targets_wait_settled(struct targets *t, const char *resource, int wait_ms);

#endif
