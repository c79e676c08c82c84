/* SR-IOV on a PF: enabling a number of VFs, and the xe driver's per-VF
 * provisioning where the kernel exposes it (sriov_admin/vfN/profile/, and the
 * quotas in debugfs: dri/<pf>/gt0/vfN/{ggtt,lmem,contexts,doorbells}_quota). */
#ifndef XEVF_SRIOV_H
#define XEVF_SRIOV_H

#include <stddef.h>

#include "xevf_discovery.h"
#include "xevf_error.h"
#include "xevf_util.h"

/* Makes the PF have exactly want VFs, the way an operator would:
 * sriov_drivers_autoprobe = 0 (so that no host driver grabs the VFs), then
 * sriov_numvfs = want, through 0 when another non-zero count is set, then waits
 * (wait) for the virtfnN links. Does nothing when the count is already
 * right. -ECANCELED when wait->stop stopped the wait. The caller must have
 * made sure that no VF of this PF is in use. */
int xevf_sriov_set_numvfs(const struct xevf_roots *roots, const char *pf_addr, long want, const struct xevf_wait *wait,
			  struct xevf_err *err) XEVF_MUST_CHECK;

/* Number of virtfnN links of the PF now; negative errno when it cannot be read. */
int xevf_sriov_count_vfs(const struct xevf_roots *roots, const char *pf_addr);

struct xevf_kv {
	char *key;
	char *value;
};

/* Reads <pf>/sriov_admin/vf<index+1>/profile/ (index is the 0-based N of
 * virtfnN) and the VF's debugfs quotas, by file name. -ENOENT when this
 * kernel exposes neither. */
int xevf_sriov_read_provisioning(const struct xevf_roots *roots, const char *pf_addr, unsigned vf_index,
				 struct xevf_kv **out, size_t *n, struct xevf_err *err) XEVF_MUST_CHECK;

/* Does the PF's first VF show quotas in debugfs? */
bool xevf_sriov_quotas_exposed(const struct xevf_roots *roots, const char *pf_addr);

void xevf_kv_free(struct xevf_kv *kv, size_t n);
/* The value of key in kv, or NULL. */
const char *xevf_kv_get(const struct xevf_kv *kv, size_t n, const char *key);

/* Writes value into <pf>/sriov_admin/vf<index+1>/profile/<file>, or for a
 * quota (ggtt_quota, ...) into its debugfs file (xe checks it there: a value
 * it refuses fails the write). The error names the file and the errno text. */
int xevf_sriov_write_profile(const struct xevf_roots *roots, const char *pf_addr, unsigned vf_index, const char *file,
			     const char *value, struct xevf_err *err) XEVF_MUST_CHECK;

#endif
