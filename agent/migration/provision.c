/* Making a target VF's xe provisioning (its sriov_admin/ profile) equal the
 * source's before it is reserved: xe-vfio-pci refuses a state whose VF was
 * provisioned otherwise. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "migration_private.h"
#include "profile.h"
#include "text.h"
#include "xevf_sriov.h"

static bool settable(const char *key)
{
	for (int k = 0; k < PROFILE_NKEYS; k++)
		if (strcmp(profile_key_info((enum profile_key)k)->file, key) == 0)
			return true;
	return false;
}

/* Each key either fingerprint has, once. */
static const char *key_at(const Xevf__Migration__V1__Fingerprint *have, const Xevf__Migration__V1__Fingerprint *want,
			  size_t i)
{
	if (i < want->n_provisioning)
		return want->provisioning[i]->key;
	i -= want->n_provisioning;
	return i < have->n_provisioning && !compat_provisioned(want, have->provisioning[i]->key)
		       ? have->provisioning[i]->key : NULL;
}

char *provision_plan(const struct inventory_vf *iv, const Xevf__Migration__V1__Fingerprint *have,
		     const Xevf__Migration__V1__Fingerprint *want, char **plan)
{
	size_t n = want->n_provisioning + have->n_provisioning, len = 0;
	FILE *out = open_memstream(plan, &len);
	char *why = NULL;

	for (size_t i = 0; i < n && !why && out; i++) {
		const char *key = key_at(have, want, i);
		const char *w = key ? compat_provisioned(want, key) : NULL, *h = key ? compat_provisioned(have, key) : NULL;
		if (!key || text_eq(w, h))
			continue;
		if (!iv->pf->provisioning_exposed || !w || !settable(key)) {
			if (asprintf(&why, "provisioning %s is %s, the source has %s, and %s", key, h ? h : "(unset)",
				     w ? w : "(unset)", !iv->pf->provisioning_exposed ? "this kernel's xe shows no sriov_admin/ to set it"
						: !w ? "a value cannot be unset" : "xevf does not set it") < 0)
				why = NULL;
			break;
		}
		fprintf(out, "%s%s %s -> %s", ftell(out) ? ", " : "", key, h ? h : "(unset)", w);
	}
	if (out)
		fclose(out);
	if (why || !out || !len) {
		free(*plan);
		*plan = NULL;
	}
	return why ? why : out ? NULL : strdup("out of memory");
}

/* The value key shows now, read back from sysfs (malloc'd), or NULL. */
static char *read_back(const struct xevf_roots *roots, const struct inventory_vf *iv, const char *key)
{
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_kv *kv = NULL;
	size_t n = 0;
	char *value = NULL;
	const char *shown;

	if (xevf_sriov_read_provisioning(roots, iv->pf->addr, iv->vf->vf_index, &kv, &n, &err) == 0 &&
	    (shown = xevf_kv_get(kv, n, key)))
		value = profile_current_value(shown);
	xevf_kv_free(kv, n);
	xevf_err_clear(&err);
	return value;
}

char *provision_like(const struct migration *m, const struct inventory_vf *iv,
		     const Xevf__Migration__V1__Fingerprint *have, const Xevf__Migration__V1__Fingerprint *want)
{
	struct xevf_roots roots = {m->sysfs_root, m->dev_root};
	char *why = NULL;

	for (size_t i = 0; i < want->n_provisioning && !why; i++) {
		const char *key = want->provisioning[i]->key;
		const char *h = compat_provisioned(have, key);
		char *value = profile_current_value(want->provisioning[i]->value), *now = NULL;
		struct xevf_err err = XEVF_ERR_INIT;
		if (!value) {
			why = strdup("out of memory");
		} else if (text_eq(h, want->provisioning[i]->value)) {
			/* already the source's */
		} else if (xevf_sriov_write_profile(&roots, iv->pf->addr, iv->vf->vf_index, key, value, &err) < 0) {
			if (asprintf(&why, "provisioning %s could not be made the source's %s: %s", key, value,
				     xevf_err_msg(&err)) < 0)
				why = NULL;
		} else if (!(now = read_back(&roots, iv, key)) || strcmp(now, value) != 0) {
			if (asprintf(&why, "provisioning %s reads %s after %s was written", key, now ? now : "nothing",
				     value) < 0)
				why = NULL;
		} else {
			log_info("target_provisioned", "vf=%s key=%s value=%s was=%s", iv->vf->addr, key, value, h ? h : "(unset)");
		}
		xevf_err_clear(&err);
		free(value);
		free(now);
	}
	return why;
}
