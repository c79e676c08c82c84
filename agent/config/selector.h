/* A pool's selector: which VFs (and so which PFs) a pool takes. The only code
 * that reads a selector's fields: parsing, matching, copying and freeing all
 * live in selector.c, so a new selector field is one change there.
 *
 * Device ids are VF device ids everywhere. A PF is matched through the VF
 * device id it announces (sriov_vf_device), so that numVFs can be set before
 * any VF exists. */
#ifndef XEVF_CONFIG_SELECTOR_H
#define XEVF_CONFIG_SELECTOR_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "xevf_discovery.h"

struct selector {
	char **pf_addresses; /* canonical PCI addresses; empty = any PF */
	size_t n_pf_addresses;
	int *device_ids;     /* VF PCI device ids; empty = any */
	size_t n_device_ids;
	char **drivers;      /* bound driver names; empty = any VFIO driver */
	size_t n_drivers;
};

/* Reads the JSON object at key (e.g. "pools[0].selector"); 0, or -EINVAL and
 * a message naming the key. */
int selector_parse(json_object *obj, const char *key, struct selector *sel, char **error);
int selector_copy(struct selector *dst, const struct selector *src);
void selector_free(struct selector *sel);

/* Does the selector take this VF? */
bool selector_takes_vf(const struct selector *sel, const struct xevf_vf *vf);
/* The same, leaving out what preparing the VF changes (its driver): the VFs
 * the preparer binds for this pool. */
bool selector_prepares_vf(const struct selector *sel, const struct xevf_vf *vf);
/* Does it take this PF: listed by address, or, with no addresses, an Intel
 * PF whose VFs (sriov_vf_device) have a selected device id? */
bool selector_takes_pf(const struct selector *sel, const struct xevf_pf *pf);
/* Do two selectors possibly take the same PF (numVFs conflicts)? */
bool selector_may_share_pf(const struct selector *a, const struct selector *b);

/* PFs named explicitly, for discovery: appends to *out (malloc'd array of
 * borrowed strings). 0 or -ENOMEM. */
int selector_pf_addresses(const struct selector *sel, const char ***out, size_t *n);

/* One line for --check-config, e.g. "pfAddresses=1 deviceIds=2 drivers=0". */
void selector_describe(const struct selector *sel, char *buf, size_t size);

#endif
