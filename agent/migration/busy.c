/* Whether somebody else uses a VF: a process (a VM's QEMU) holds its VFIO
 * group or cdev open, or a container was given it lately (its VM may still be
 * starting). Busy VFs are never reserved, restored into, reset or wiped.
 * The kubelet's PodResources API is not asked yet. */
#include <stdlib.h>

#include "log.h"
#include "migration_private.h"
#include "xevf_util.h"
#include "xevf_vfio_driver.h"

void busy_scan(const struct migration *m, struct busy_scan *s)
{
	int rc = xevf_vfio_nodes_in_use(m->proc_root, &s->held, &s->nheld);

	s->m = m;
	s->scanned = rc == 0;
	if (rc)
		log_warn("in_use_scan_failed", "proc=%s action=\"treating every VF as possibly in use\"",
			 m->proc_root ? m->proc_root : "/proc");
}

void busy_scan_free(struct busy_scan *s)
{
	xevf_strv_free(s->held, s->nheld);
	s->held = NULL;
	s->nheld = 0;
}

const char *busy_why(const struct busy_scan *s, const struct inventory_vf *iv, bool allocation_is_ours)
{
	const struct xevf_vf *vf = iv->vf;

	if (!s->scanned)
		return "the host's processes cannot be read, so nobody can tell whether a VM holds it";
	if ((vf->group_node && xevf_strv_has(s->held, s->nheld, vf->group_node)) ||
	    (vf->cdev_node && xevf_strv_has(s->held, s->nheld, vf->cdev_node)))
		return "a process (a VM's QEMU) holds its VFIO device open";
	if (!allocation_is_ours && s->m && s->m->recently_allocated &&
	    s->m->recently_allocated(s->m->hooks_ctx, vf->addr))
		return "it was allocated to a container in the last minutes";
	return NULL;
}

const char *busy_why_now(const struct migration *m, const struct inventory_vf *iv, bool allocation_is_ours)
{
	struct busy_scan scan = {0};
	const char *busy;

	busy_scan(m, &scan);
	busy = busy_why(&scan, iv, allocation_is_ours);
	busy_scan_free(&scan);
	return busy;
}
