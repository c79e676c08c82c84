/* The last scan of the host as one immutable, reference-counted snapshot.
 *
 * The daemon builds it after each discovery (the host, the preparer's reasons
 * for VFs it could not make usable, which pool serves each VF) and then
 * publishes it; from then on nobody changes
 * it. The device plugin, the Migration service and the status page read the
 * same snapshot instead of copies, each holding a reference for as long as
 * it reads (any thread). */
#ifndef XEVF_INVENTORY_H
#define XEVF_INVENTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xevf_discovery.h"

/* Why the preparer could not make a VF usable (shown as its reason). */
struct inventory_note {
	char *addr;
	char *reason;
};
void inventory_notes_free(struct inventory_note *notes, size_t n);

/* One VF with what the agent knows about it beyond discovery. */
struct inventory_vf {
	const struct xevf_vf *vf;
	const struct xevf_pf *pf;
	const char *resource;        /* the pool serving it, NULL if none */
};

struct inventory {
	struct xevf_host *host;      /* owned */
	struct inventory_vf *vfs;    /* every VF of every PF, in host order */
	size_t nvfs;
	struct inventory_note *notes;
	size_t nnotes;
	uint64_t generation;         /* counts snapshots */
};

/* Takes over host and notes. NULL when out of memory (they are freed). */
struct inventory *inventory_new(struct xevf_host *host, struct inventory_note *notes, size_t nnotes);
struct inventory *inventory_ref(struct inventory *inv);
/* NULL is fine. */
void inventory_unref(struct inventory *inv);

/* Before publishing: which pool serves VF i (copied). */
int inventory_set_resource(struct inventory *inv, size_t i, const char *resource);

const struct inventory_vf *inventory_find(const struct inventory *inv, const char *addr);
/* The preparer's reason for a VF, or NULL. */
const char *inventory_note_for(const struct inventory *inv, const char *addr);

#endif
