#include "registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const phase_names[PHASE_COUNT] = {
	[PHASE_RESERVED] = "reserved",   [PHASE_RESTORING] = "restoring", [PHASE_RESTORED] = "restored",
	[PHASE_SAVING] = "saving",       [PHASE_SAVED] = "saved",         [PHASE_INTERRUPTED] = "interrupted",
	[PHASE_HANDED_OVER] = "handed-over",
	[PHASE_COMMITTED] = "committed", [PHASE_ABORTED] = "aborted",     [PHASE_RELEASED] = "released",
	[PHASE_EXPIRED] = "expired",     [PHASE_FAILED] = "failed",
};

#define ARC(to) (1u << (to))

/* Which phases each phase may move to. */
static const unsigned phase_arcs[PHASE_COUNT] = {
	/* committed straight from reserved: QEMU moved the state into the pod's VF */
	[PHASE_RESERVED] = ARC(PHASE_RESTORING) | ARC(PHASE_RELEASED) | ARC(PHASE_EXPIRED) | ARC(PHASE_ABORTED) |
			   ARC(PHASE_COMMITTED),
	/* a failed restore keeps the reservation; a restart forgets the stream */
	[PHASE_RESTORING] = ARC(PHASE_RESTORED) | ARC(PHASE_RESERVED) | ARC(PHASE_ABORTED),
	[PHASE_RESTORED] = ARC(PHASE_RESTORING) | ARC(PHASE_RESERVED) | ARC(PHASE_COMMITTED) | ARC(PHASE_ABORTED) |
			   ARC(PHASE_EXPIRED),
	[PHASE_SAVING] = ARC(PHASE_SAVED) | ARC(PHASE_FAILED) | ARC(PHASE_ABORTED) | ARC(PHASE_INTERRUPTED),
	[PHASE_SAVED] = ARC(PHASE_SAVING) | ARC(PHASE_COMMITTED) | ARC(PHASE_ABORTED) | ARC(PHASE_FAILED) |
			ARC(PHASE_INTERRUPTED),
	[PHASE_INTERRUPTED] = ARC(PHASE_SAVING) | ARC(PHASE_ABORTED),
	[PHASE_HANDED_OVER] = ARC(PHASE_COMMITTED) | ARC(PHASE_ABORTED),
};

const char *phase_name(enum phase p) { return p < PHASE_COUNT ? phase_names[p] : "unknown"; }

bool phase_parse(const char *name, enum phase *out)
{
	for (int p = 0; p < PHASE_COUNT; p++)
		if (strcmp(phase_names[p], name) == 0) {
			*out = (enum phase)p;
			return true;
		}
	return false;
}

bool phase_ended(enum phase p) { return p >= PHASE_COMMITTED; }

bool phase_holds_device(enum phase p)
{
	return p == PHASE_RESTORING || p == PHASE_RESTORED || p == PHASE_SAVING || p == PHASE_SAVED;
}

const char *role_name(enum role r) { return r == ROLE_SOURCE ? "source" : "target"; }

bool migration_id_valid(const char *id)
{
	size_t n = id ? strlen(id) : 0;

	if (n == 0 || n > MIGRATION_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(id[i] == '-' || id[i] == '_' || id[i] == '.' || (id[i] >= '0' && id[i] <= '9') ||
		      (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z')))
			return false;
	return true;
}

struct record *record_new(const char *id, enum role role, const char *vf, enum phase phase)
{
	struct record *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->id = strdup(id);
	r->vf = strdup(vf);
	r->role = role;
	r->phase = phase;
	if (!r->id || !r->vf) {
		record_free(r);
		return NULL;
	}
	return r;
}

struct record *record_dup(const struct record *r)
{
	struct record *c = record_new(r->id, r->role, r->vf, r->phase);

	if (!c)
		return NULL;
	c->resource = r->resource ? strdup(r->resource) : NULL;
	c->vm_namespace = r->vm_namespace ? strdup(r->vm_namespace) : NULL;
	c->vm_name = r->vm_name ? strdup(r->vm_name) : NULL;
	c->owner = r->owner ? strdup(r->owner) : NULL;
	c->expires_unix_ms = r->expires_unix_ms;
	c->claimed = r->claimed;
	c->abort_requested = r->abort_requested; /* not the stream handles: a copy is for answering */
	if ((r->resource && !c->resource) || (r->vm_namespace && !c->vm_namespace) || (r->vm_name && !c->vm_name) ||
	    (r->owner && !c->owner)) {
		record_free(c);
		return NULL;
	}
	return c;
}

void record_free(struct record *r)
{
	if (!r)
		return;
	free(r->id);
	free(r->vf);
	free(r->resource);
	free(r->vm_namespace);
	free(r->vm_name);
	free(r->owner);
	free(r);
}

void records_free(struct record *list)
{
	while (list) {
		struct record *n = list->next;
		record_free(list);
		list = n;
	}
}

bool record_may_end(const struct record *r, const char *caller)
{
	if (strcmp(caller, "local") == 0)
		return true;
	return r->role == ROLE_TARGET && r->owner && strcmp(r->owner, caller) == 0;
}

void registry_add(struct registry *reg, struct record *r)
{
	r->next = reg->active;
	reg->active = r;
}

struct record *registry_find(const struct registry *reg, const char *id)
{
	for (struct record *r = reg->active; r; r = r->next)
		if (strcmp(r->id, id) == 0)
			return r;
	return NULL;
}

struct record *registry_find_ended(const struct registry *reg, const char *id)
{
	for (struct record *r = reg->ended; r; r = r->next)
		if (strcmp(r->id, id) == 0)
			return r;
	return NULL;
}

struct record *registry_find_vf(const struct registry *reg, const char *vf, int role)
{
	for (struct record *r = reg->active; r; r = r->next)
		if ((role < 0 || r->role == (enum role)role) && strcmp(r->vf, vf) == 0)
			return r;
	return NULL;
}

void registry_free(struct registry *reg)
{
	records_free(reg->active);
	records_free(reg->ended);
	memset(reg, 0, sizeof(*reg));
}

void registry_remove(struct registry *reg, struct record *r)
{
	for (struct record **pp = &reg->active; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			r->next = NULL;
			return;
		}
}

int registry_reopen(struct registry *reg, struct record *r, enum phase phase)
{
	if (reg->ended != r || phase_ended(phase))
		return -EINVAL;
	reg->ended = r->next;
	reg->nended--;
	r->phase = phase;
	registry_add(reg, r);
	return 0;
}

size_t registry_count(const struct registry *reg)
{
	size_t n = 0;

	for (const struct record *r = reg->active; r; r = r->next)
		n++;
	return n;
}

static void end(struct registry *reg, struct record *r)
{
	struct record **pp = &reg->active;

	while (*pp && *pp != r)
		pp = &(*pp)->next;
	if (*pp)
		*pp = r->next;
	r->next = reg->ended;
	reg->ended = r;
	if (++reg->nended > REGISTRY_ENDED_MAX) {
		struct record *last = reg->ended;
		for (size_t i = 1; i < REGISTRY_ENDED_MAX && last->next; i++)
			last = last->next;
		for (struct record *drop = last->next; drop; drop = drop->next)
			reg->nended--;
		records_free(last->next);
		last->next = NULL;
	}
}

int record_move(struct registry *reg, struct record *r, enum phase to)
{
	if (r->phase == to)
		return 0;
	if (phase_ended(r->phase) || !(phase_arcs[r->phase] & ARC(to)))
		return -EINVAL;
	r->phase = to;
	if (phase_ended(to))
		end(reg, r);
	return 0;
}
