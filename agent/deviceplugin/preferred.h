/* GetPreferredAllocation's choice, on plain data.
 *
 * Keeps must-include devices, prefers devices of one NUMA node (the must-include
 * devices' node first), then packs onto the fewest PFs (best fit, so that whole
 * PFs stay free for larger requests) or spreads over as many PFs as it can.
 * Deterministic: ties go to the lowest NUMA node, then the lowest PCI address.
 */
#ifndef XEVF_PREFERRED_H
#define XEVF_PREFERRED_H

#include <stddef.h>

#include "config.h"

struct pref_candidate {
	const char *id;   /* the VF's PCI address */
	const char *pf;   /* its PF's PCI address */
	int numa_node;    /* -1 when unknown */
};

/* Chooses up to size ids. must[] are always kept (first, deduplicated); avail[]
 * must hold only devices that may be given (known and healthy). On success *out
 * holds pointers into must[]/avail[] ids (free the array only), sorted by
 * address. Returns 0 or -ENOMEM. */
int preferred_pick(const struct pref_candidate *avail, size_t navail,
		   const struct pref_candidate *must, size_t nmust, size_t size,
		   enum alloc_policy policy, const char ***out, size_t *nout);

#endif
