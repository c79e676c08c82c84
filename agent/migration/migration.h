/* The Migration service: what lets a VM holding a VF move to another node.
 *
 * Served on a node-local unix socket and, for other agents, on a TCP port with
 * mutual TLS (rpc.h). It describes VFs (their migration fingerprint), finds
 * compatible free VFs on the target, reserves one for a migration so that the
 * target pod's allocation gets it, moves VF state with the VFIO migration
 * engine (driver/xevf_vfio_mig.h) for VFs no QEMU holds, and commits or
 * aborts. Records live in <state dir>/migrations.json (state_file.h).
 *
 * Threads: calls run on rpc threads; the daemon feeds the inventory and asks
 * about reservations. One lock guards the registry, the inventory pointer and
 * the device table; no device, sysfs, file or network I/O happens under it
 * (log lines aside: the daemon's thread writes to the same log anyway).
 */
#ifndef XEVF_MIGRATION_H
#define XEVF_MIGRATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices.h"
#include "inventory.h"

struct migration;

struct migration_settings {
	const char *unix_socket;      /* NULL/"" off */
	const char *tcp_address;      /* NULL/"" off; needs the TLS files */
	const char *tls_ca, *tls_cert, *tls_key;
	const char *tls_server_name;  /* NULL: the target's host (rpc_channel_open) */
	const char *peer_identities;  /* NULL: XEVF_DEFAULT_PEER_IDENTITIES (config.h) */
	const char *state_dir;
	const char *node_name;        /* NULL: host name */
	const char *sysfs_root;
	const char *dev_root;
	const char *proc_root;        /* NULL: /proc; which VFIO nodes other processes hold */
	const char *kernel_release;   /* NULL: uname */
	int stream_idle_ms;           /* a stream that moves nothing this long fails */
	uint64_t max_state_bytes;     /* the largest state a RestoreState takes */
	/* Called (any thread) when the records changed: the caller's loop should
	 * look at migration_tick and migration_has_records again. May be NULL. */
	void (*wake)(void);
	/* Was vf given to a container lately (its VM may still be starting, so
	 * it is in use)? Any thread. NULL: nobody tells. */
	bool (*recently_allocated)(void *ctx, const char *vf);
	/* Which VF of resource does pod namespace/name hold on this node (the
	 * kubelet tells)? 0 and *vf (malloc'd), or -errno and *error (malloc'd).
	 * Any thread. NULL: nobody tells. */
	int (*held_by_pod)(void *ctx, const char *resource, const char *pod_namespace, const char *pod_name, char **vf,
			   char **error);
	void *hooks_ctx;              /* the ctx of both */
};

/* Loads the state file and starts listening. NULL and *error on failure. */
struct migration *migration_start(const struct migration_settings *s, const struct mig_device_provider *devices,
				  char **error);
void migration_stop(struct migration *m);

/* This node's name in the service's answers (--node-name or the host name). */
const char *migration_node(const struct migration *m);

/* A new inventory snapshot (the service takes a reference). */
void migration_update(struct migration *m, struct inventory *inv);
/* Expires reservations; returns VFs freed by a committed source migration
 * (their allocation records should go) as a malloc'd array of malloc'd ids. */
size_t migration_tick(struct migration *m, char ***freed);

/* A reservation made on this node's own initiative (a KubeVirt migration
 * target pod came): asks the source agent at peer (HOST:PORT, mutual TLS) to
 * describe the VF of resource that its pod source_namespace/source_pod holds,
 * then reserves a compatible free VF here for migration id and VM
 * vm_namespace/vm_name as Reserve would. 0 and *vf (malloc'd); -ESRCH when
 * no VF here is compatible, -errno otherwise; *why (malloc'd) says why. */
int migration_reserve_from_peer(struct migration *m, const char *peer, const char *id, const char *vm_namespace,
				const char *vm_name, const char *source_namespace, const char *source_pod,
				const char *resource, char **vf, char **why);

/* Handover, Commit and Abort as the node itself asks them (KubeVirt's node
 * hooks, the VMIM watch): the same checks and records as the node-local
 * socket's calls. 0, or -errno and *why (malloc'd): -ENOENT no such
 * migration, -EBUSY the VF is in use (a QEMU still holds it). */
int migration_handover(struct migration *m, const char *id, const char *vf, char **why);
int migration_finish(struct migration *m, const char *id, bool commit, char **why);
/* Commit or Abort now, or, while the VF is in use, at each migration_tick
 * until it is free (a source VM's QEMU exits after its migration):
 * -EINPROGRESS then. */
int migration_end_when_free(struct migration *m, const char *id, bool commit, char **why);
/* Migration id's record on this node: 0 with its role ("source"/"target"),
 * VF (malloc'd) and whether the target pod got it; -ENOENT when there is none
 * (or it has ended). Any out-pointer may be NULL. */
int migration_record_of(struct migration *m, const char *id, const char **role, char **vf, bool *claimed);

/* Device-plugin hooks. A pending reservation is one whose target pod has not
 * got its VF yet. Is vf reserved, is the reservation pending, and for which
 * VM (malloc'd copies; any out-pointer may be NULL)? */
bool migration_reserved_for(struct migration *m, const char *vf, bool *pending, char **vm_namespace, char **vm_name);
void migration_claim(struct migration *m, const char *vf);
/* The VFs the node's migrations rely on (reserved for one, or moving its
 * state): a malloc'd vector of *n malloc'd addresses, NULL out of memory. */
char **migration_vfs(struct migration *m, size_t *n);
/* Does a reservation wait for its target pod? */
bool migration_has_pending(struct migration *m);
/* Is any migration recorded (whose time limit migration_tick enforces)? */
bool migration_has_records(struct migration *m);

/* Parses the text of a state file (NUL-terminated) the way a start does:
 * 0 and the number of migrations in it, or -EINVAL and why (malloc'd). */
int migration_state_parse(const char *text, size_t *count, char **why);

/* Every method of the service's descriptor has exactly one row in the method
 * table, and every row a method: 0, or -EINVAL naming the first that does not. */
int migration_methods_check(char **error);

#endif
