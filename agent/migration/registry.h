/* The Migration service's records: one per migration this node takes part in,
 * as source or target. A record's phase is an enum with one name table and one
 * transition function; an ended record (committed, aborted, released, expired,
 * failed) moves to a short history. Not thread-safe: the service's lock guards
 * it. */
#ifndef XEVF_MIG_REGISTRY_H
#define XEVF_MIG_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rpc_call;
struct rpc_stream;

enum phase {
	PHASE_RESERVED,     /* target: a VF set aside, nothing restored */
	PHASE_RESTORING,    /* target: a state stream is coming in */
	PHASE_RESTORED,     /* target: the state is in the device, stopped */
	PHASE_SAVING,       /* source: the state stream is going out */
	PHASE_SAVED,        /* source: the state is out, the device stopped */
	PHASE_INTERRUPTED,  /* source: the agent restarted while saving */
	PHASE_HANDED_OVER,  /* source: QEMU carries the state; the VF is never opened here */
	/* ended */
	PHASE_COMMITTED,
	PHASE_ABORTED,
	PHASE_RELEASED,
	PHASE_EXPIRED,
	PHASE_FAILED,
	PHASE_COUNT,
};

enum role { ROLE_SOURCE, ROLE_TARGET };

/* An end asked for while the VF was still in use (migration_end_when_free):
 * tried again at each migration_tick. Not kept in the state file: what asked
 * for it (the VMIM watch) asks again after a restart. */
enum end_request { END_NONE, END_COMMIT, END_ABORT };

const char *phase_name(enum phase p);
bool phase_parse(const char *name, enum phase *out);
bool phase_ended(enum phase p);
/* A phase in which the migration relies on the VF's open device. */
bool phase_holds_device(enum phase p);
const char *role_name(enum role r);

#define MIGRATION_ID_MAX 128

/* [A-Za-z0-9._-], 1..MIGRATION_ID_MAX characters. */
bool migration_id_valid(const char *id);

struct record {
	char *id;
	enum role role;
	char *vf;
	char *resource;
	char *vm_namespace, *vm_name;
	char *owner;              /* who reserved it: "local" or a TLS caller's identity */
	enum phase phase;
	int64_t expires_unix_ms;  /* target reservations */
	bool claimed;             /* the target pod got the VF */
	bool abort_requested;     /* Abort while a stream runs */
	enum end_request end_when_free;
	/* while a stream runs (set and cleared under the service's lock, never kept
	 * in the state file): the call or the outgoing stream that carries it */
	struct rpc_call *stream_call;
	struct rpc_stream *stream_peer;
	struct record *next;
};

struct registry {
	struct record *active;
	struct record *ended;     /* newest first, at most REGISTRY_ENDED_MAX */
	size_t nended;
};

#define REGISTRY_ENDED_MAX 64

struct record *record_new(const char *id, enum role role, const char *vf, enum phase phase);
/* A copy to answer from after the lock is released (next: NULL). */
struct record *record_dup(const struct record *r);
void record_free(struct record *r);
void records_free(struct record *list);

/* May caller ("local" or a TLS caller's identity) release, commit or abort
 * r? The node itself always; a TLS caller only a target reservation it made. */
bool record_may_end(const struct record *r, const char *caller);

void registry_add(struct registry *reg, struct record *r);
struct record *registry_find(const struct registry *reg, const char *id);
struct record *registry_find_ended(const struct registry *reg, const char *id);
/* The active record that uses vf in that role (any role: role < 0). */
struct record *registry_find_vf(const struct registry *reg, const char *vf, int role);
void registry_free(struct registry *reg);
size_t registry_count(const struct registry *reg);

/* Rolling back a change that could not be made durable: an active record
 * leaves the registry (the caller frees it), or the newest ended record
 * becomes active again in phase. */
void registry_remove(struct registry *reg, struct record *r);
int registry_reopen(struct registry *reg, struct record *r, enum phase phase);

/* At most this many migrations at once: each is in the state file. */
#define REGISTRY_ACTIVE_MAX 1024

/* The one way a phase changes: 0, or -EINVAL when the FSM has no such arc.
 * Moving to an ended phase moves the record to the history. */
int record_move(struct registry *reg, struct record *r, enum phase to);

#endif
