/* What the agent reads of KubeVirt's objects through the API server to find a
 * migration's source by itself: the target virt-launcher pods coming to this
 * node (a watch), the VMI's node, the source pod, the source node's agent;
 * and the Event that tells a user what came of it. The parsers take the API
 * server's bytes as untrusted (fuzzed: tests/fuzz). */
#ifndef XEVF_KUBEVIRT_H
#define XEVF_KUBEVIRT_H

#include <stdbool.h>
#include <stddef.h>

#include "kube.h"

/* KubeVirt's label on a migration's target virt-launcher pod (the VMIM's uid). */
#define KUBEVIRT_MIGRATION_LABEL "kubevirt.io/migrationJobUID"

struct kubevirt_target_pod {
	char *namespace_, *name, *uid;
	char *migration;   /* kubevirt.io/migrationJobUID */
	char *vm_name;     /* the VMI: kubevirt.io/domain (annotation or label) or vm.kubevirt.io/name */
	bool pending;
	char **resources;  /* the extended resources its containers ask for */
	size_t nresources;
};
void kubevirt_target_pod_clear(struct kubevirt_target_pod *p);

/* One line of a pod watch: 1 and *pod for an ADDED or MODIFIED migration
 * target pod (names checked), 0 for any other event, -EINVAL and *error for
 * bytes that are no watch event. */
int kubevirt_parse_watch_event(const char *line, size_t len, struct kubevirt_target_pod *pod, char **error);
/* A VMI: its node (status.nodeName) and uid (malloc'd). */
int kubevirt_parse_vmi(const char *json, size_t len, char **node, char **uid, char **error);
/* A PodList: the name of its first Running pod (malloc'd); -ENOENT when none. */
int kubevirt_parse_running_pod(const char *json, size_t len, char **name, char **error);
/* A PodList of agents: the first Running one's "podIP:port" of its container
 * port named port_name (malloc'd); -ENOENT when none. */
int kubevirt_parse_peer(const char *json, size_t len, const char *port_name, char **host_port, char **error);

/* What a node hook says of a VMI (the VMI's JSON, as virt-handler sends it). */
struct kubevirt_vmi {
	char *namespace_, *name, *uid;
	char *node;                         /* status.nodeName, or NULL */
	/* status.migrationState, or NULLs */
	char *migration;                    /* migrationUid: the VMIM's uid */
	char *source_node, *target_node, *source_pod, *target_pod;
	char **resources;                   /* spec.domain.devices hostDevices[] and gpus[] deviceName */
	size_t nresources;
};
void kubevirt_vmi_clear(struct kubevirt_vmi *v);
/* 0 and *vmi (names checked), or -EINVAL and *error. */
int kubevirt_parse_hook_vmi(const char *json, size_t len, struct kubevirt_vmi *vmi, char **error);

/* A VirtualMachineInstanceMigration's outcome, one name table. A VMIM
 * deleted before it succeeded is a cancelled migration: failed. */
enum kubevirt_vmim_outcome { VMIM_IN_PROGRESS, VMIM_SUCCEEDED, VMIM_FAILED };
const char *kubevirt_vmim_outcome_name(enum kubevirt_vmim_outcome o);
struct kubevirt_vmim_event {
	char *namespace_, *name, *uid;
	enum kubevirt_vmim_outcome outcome;
	bool deleted;
};
void kubevirt_vmim_event_clear(struct kubevirt_vmim_event *e);
/* One line of a VMIM watch: 1 and *event, 0 for an event to skip (a
 * BOOKMARK, an ERROR), -EINVAL and *error for bytes that are no watch event. */
int kubevirt_parse_vmim_event(const char *line, size_t len, struct kubevirt_vmim_event *event, char **error);
/* Watches the cluster's VirtualMachineInstanceMigrations. */
int kubevirt_watch_migrations(struct kube *k, struct http_stopper *stop, http_line_fn on_line, void *ctx,
			      char **error);

/* Watches this node's migration target pods: on_line gets each event's line. */
int kubevirt_watch_targets(struct kube *k, struct http_stopper *stop, http_line_fn on_line, void *ctx, char **error);
/* The VMI namespace/name: where it runs now (the migration's source node). */
int kubevirt_vmi_node(struct kube *k, const char *ns, const char *name, char **node, char **uid, char **error);
/* The Running virt-launcher pod of VMI uid on node. */
int kubevirt_source_pod(struct kube *k, const char *ns, const char *vmi_uid, const char *node, char **name,
			char **error);
/* The agent on node: pods of namespace ns matching selector; "host:port". */
int kubevirt_peer_agent(struct kube *k, const char *ns, const char *selector, const char *node, char **host_port,
			char **error);
/* Records an Event (type "Normal" or "Warning") on pod namespace/name. */
int kubevirt_pod_event(struct kube *k, const struct kubevirt_target_pod *pod, const char *type, const char *reason,
		       const char *message, char **error);

#endif
