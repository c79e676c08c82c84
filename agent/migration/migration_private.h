/* What the Migration service's files share. Not for use outside migration/. */
#ifndef XEVF_MIG_PRIVATE_H
#define XEVF_MIG_PRIVATE_H

#include <grpc/grpc.h>
#include <pthread.h>

#include "compat.h"
#include "devices.h"
#include "migration.h"
#include "peer_identity.h"
#include "registry.h"
#include "rpc.h"
#include "state_file.h"

struct migration {
	/* settings: strings owned */
	char *unix_socket, *tcp_address, *tls_ca, *tls_cert, *tls_key, *tls_server_name, *sysfs_root, *dev_root, *proc_root;
	char *node, *kernel_release;
	struct peer_policy peers;     /* who may call over TCP */
	int stream_idle_ms;
	uint64_t max_state_bytes;
	void (*wake)(void);           /* may be NULL */
	bool (*recently_allocated)(void *ctx, const char *vf); /* may be NULL */
	int (*held_by_pod)(void *ctx, const char *resource, const char *pod_namespace, const char *pod_name, char **vf,
			   char **error); /* may be NULL */
	void *hooks_ctx;
	struct state_file file;
	pthread_mutex_t lock;         /* guards what follows; never held across I/O */
	struct inventory *inv;        /* the last snapshot (a reference) */
	struct registry reg;
	struct mig_devices devices;
	char **freed;
	size_t nfreed;
	/* set at start */
	struct rpc_server *server;
	int tcp_port;
};

/* service.c */
/* Lock held: the snapshot to read without the lock (a reference). */
struct inventory *mig_inventory(struct migration *m);
/* Lock held: a record ended (metrics, freed VFs). */
int mig_move(struct migration *m, struct record *r, enum phase to);
/* Lock not held: writes a rendered snapshot; a failure is logged and, with
 * error, said (0 or -errno). */
int mig_write(struct migration *m, struct state_snapshot *snap, char **error);
/* Lock not held: a new record that could not be made durable leaves the
 * registry again, if it is still in phase. */
void mig_take_back(struct migration *m, const char *id, enum phase phase);
/* Lock not held: a copy of the record of id (NULL when out of memory), and
 * whether there is one. */
struct record *mig_record_copy(struct migration *m, const char *id, bool *found);
void mig_fp_source(const struct migration *m, struct fp_source *src);
/* busy.c: one look at the host's processes per call (lock not held). */
struct busy_scan {
	const struct migration *m;    /* who to ask about recent allocations */
	char **held;                  /* VFIO nodes other processes hold open */
	size_t nheld;
	bool scanned;                 /* false: /proc could not be read */
};
void busy_scan(const struct migration *m, struct busy_scan *s);
void busy_scan_free(struct busy_scan *s);
/* Why the VF must not be touched (static text), or NULL. allocation_is_ours:
 * a container's allocation of it belongs to the asking migration (its target
 * pod got the reserved VF), so it does not count. */
const char *busy_why(const struct busy_scan *s, const struct inventory_vf *iv, bool allocation_is_ours);
/* busy_why for one VF, with a scan of its own. */
const char *busy_why_now(const struct migration *m, const struct inventory_vf *iv, bool allocation_is_ours);

/* Lock not held: the VF's fingerprint, opening and probing its device only
 * when nobody else uses it; *in_use (may be NULL) says when somebody does. */
void mig_fingerprint(struct migration *m, const struct inventory_vf *iv, const struct busy_scan *scan,
		     Xevf__Migration__V1__Fingerprint *fp, bool *in_use);
/* Ends a call with an error (logged). */
void mig_refuse(struct rpc_call *call, grpc_status_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void mig_status_of(const struct record *r, const char *device_state, Xevf__Migration__V1__MigrationStatus *st);

/* provision.c: a target VF provisioned like the source. provision_plan:
 * NULL and *plan (what would change, or NULL for nothing) when the
 * provisioning can be made equal, else why not (malloc'd). provision_like
 * does it and reads it back: NULL, or why not. The VF must be free. */
char *provision_plan(const struct inventory_vf *iv, const Xevf__Migration__V1__Fingerprint *have,
		     const Xevf__Migration__V1__Fingerprint *want, char **plan);
char *provision_like(const struct migration *m, const struct inventory_vf *iv,
		     const Xevf__Migration__V1__Fingerprint *have, const Xevf__Migration__V1__Fingerprint *want);

/* handlers.c */
void handle_describe(struct migration *m, struct rpc_call *call, const ProtobufCMessage *req);
void handle_check(struct migration *m, struct rpc_call *call, const ProtobufCMessage *req);
void handle_reserve(struct migration *m, struct rpc_call *call, const ProtobufCMessage *req);
/* Reserves a compatible free VF for req (checked) on behalf of caller:
 * GRPC_STATUS_OK and *out (a copy), or another status and *why (malloc'd). */
grpc_status_code mig_reserve(struct migration *m, const Xevf__Migration__V1__ReserveRequest *req, const char *caller,
			     struct record **out, char **why);
/* Would a Reserve take req (bounded, well formed)? NULL, or why not (static). */
const char *mig_reserve_invalid(const Xevf__Migration__V1__ReserveRequest *req);
void handle_list(struct migration *m, struct rpc_call *call, const ProtobufCMessage *req);
void handle_release(struct migration *m, struct rpc_call *call, const ProtobufCMessage *req);

/* handover.c */
void handle_handover(struct migration *m, struct rpc_call *call, const ProtobufCMessage *req);

/* finish.c */
/* The ends migration_end_when_free deferred, tried again (lock not held). */
void mig_retry_deferred_ends(struct migration *m);
void handle_commit(struct migration *m, struct rpc_call *call, const ProtobufCMessage *req);
void handle_abort(struct migration *m, struct rpc_call *call, const ProtobufCMessage *req);

/* save.c */
typedef int (*chunk_send_fn)(void *ctx, const ProtobufCMessage *chunk);
/* Where a save's chunks go, and what Abort or a shutdown ends at once (the
 * stream into the target agent; call: NULL for SaveState's own caller). */
struct save_sink {
	chunk_send_fn send;
	void *ctx;
	struct rpc_call *call;
	struct rpc_stream *peer;
};
int mig_save(struct migration *m, const char *id, const char *vf, uint32_t chunk_size, const char *peer,
	     const struct save_sink *sink, uint64_t *bytes, grpc_status_code *code, struct xevf_err *err);
/* Lock held: ends what a record's stream is doing now (Abort, ttl, shutdown). */
void mig_cancel_stream(struct record *r);
/* The source side after its peer refused the state: the device runs again. */
void mig_source_refused(struct migration *m, const char *id, struct xevf_err *err);
void handle_save(struct migration *m, struct rpc_call *call, const ProtobufCMessage *req);

/* peer.c */
void handle_send(struct migration *m, struct rpc_call *call, const ProtobufCMessage *req);
/* A mutual-TLS channel to another agent's HOST:PORT (resolved here), or NULL. */
grpc_channel *mig_peer_channel(const struct migration *m, const char *target);

/* restore.c */
void handle_restore(struct migration *m, struct rpc_call *call, const ProtobufCMessage *req);

/* methods.c */
void mig_dispatch(struct rpc_call *call, void *ctx);

#endif
