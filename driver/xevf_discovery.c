#include "xevf_discovery.h"

#include <dirent.h>
#include <errno.h>
#include <pci/pci.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xevf_sriov.h"
#include "xevf_sysfs.h"

/*
 * libpci reports a missing mandatory sysfs file (vendor, device, class) through its
 * `error` callback, which must not return; its default handler calls exit(). A
 * library must never exit its caller, and one broken device must not hide the
 * others, so each libpci call runs under a guard: our error handler records the
 * message and longjmps back to the guard, which turns it into an ordinary error
 * for that one device. libpci fills devices lazily, so the only state left
 * behind by such an abort belongs to the device that failed, which we skip.
 * libpci has no context pointer, hence the thread-local guard.
 */
struct pci_guard {
	jmp_buf env;
	bool armed;
	char *error;        /* message of the error that aborted the guarded call */
	char ***notes;      /* where libpci warnings go */
	size_t *nnotes;
};

static _Thread_local struct pci_guard *current_guard;

static int notes_vadd(char ***notes, size_t *nnotes, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static int notes_vadd(char ***notes, size_t *nnotes, const char *fmt, va_list ap)
{
	char *line = NULL;
	char **grown;

	if (vasprintf(&line, fmt, ap) < 0)
		return -ENOMEM;
	grown = realloc(*notes, (*nnotes + 1) * sizeof(**notes));
	if (!grown) {
		free(line);
		return -ENOMEM;
	}
	*notes = grown;
	(*notes)[(*nnotes)++] = line;
	return 0;
}

__attribute__((noreturn, format(printf, 1, 2))) static void pci_error_handler(char *msg, ...)
{
	struct pci_guard *g = current_guard;
	va_list ap;

	if (!g || !g->armed) {
		/* Unguarded libpci call: a bug of ours. Abort loudly rather than exit(). */
		fputs("xevf: libpci error outside a guarded call\n", stderr);
		abort();
	}
	free(g->error);
	g->error = NULL;
	va_start(ap, msg);
	if (vasprintf(&g->error, msg, ap) < 0)
		g->error = NULL;
	va_end(ap);
	g->armed = false;
	longjmp(g->env, 1);
}

__attribute__((format(printf, 1, 2))) static void pci_warning_handler(char *msg, ...)
{
	struct pci_guard *g = current_guard;
	va_list ap;

	if (!g || !g->notes)
		return;
	va_start(ap, msg);
	(void)notes_vadd(g->notes, g->nnotes, msg, ap);
	va_end(ap);
}

static void pci_debug_handler(char *msg, ...)
{
	(void)msg;
}

/* Runs pci_fill_info under the guard; 0 or -EIO with g->error set. */
static int guarded_fill(struct pci_guard *g, struct pci_dev *d, int flags)
{
	/* volatile: read after a longjmp may return here. */
	volatile int rc = 0;

	if (setjmp(g->env) == 0) {
		g->armed = true;
		pci_fill_info(d, flags);
		g->armed = false;
	} else {
		rc = -EIO;
	}
	return rc;
}

const char *xevf_driver_kind_name(enum xevf_driver_kind kind)
{
	switch (kind) {
	case XEVF_DRIVER_NONE:
		return "none";
	case XEVF_DRIVER_OTHER:
		return "other";
	case XEVF_DRIVER_VFIO_PCI:
		return "vfio-pci";
	case XEVF_DRIVER_VFIO_VARIANT:
		return "vfio-variant";
	}
	return "unknown";
}

static bool name_is(const char *name, const char *dashed)
{
	/* Module and driver names are spelled with '-' or '_' interchangeably. */
	for (; *name && *dashed; name++, dashed++) {
		char a = (char)(*name == '_' ? '-' : *name);
		if (a != *dashed)
			return false;
	}
	return *name == '\0' && *dashed == '\0';
}

static bool name_ends_with(const char *name, const char *dashed_suffix)
{
	size_t n = strlen(name), m = strlen(dashed_suffix);
	return n > m && name_is(name + n - m, dashed_suffix);
}

static void classify_driver(struct xevf_vf *vf)
{
	if (!vf->driver) {
		vf->driver_kind = XEVF_DRIVER_NONE;
	} else if (name_is(vf->driver, "vfio-pci")) {
		vf->driver_kind = XEVF_DRIVER_VFIO_PCI;
	} else if (name_ends_with(vf->driver, "-vfio-pci")) {
		vf->driver_kind = XEVF_DRIVER_VFIO_VARIANT;
		vf->migration_capable = name_is(vf->driver, "xe-vfio-pci");
	} else {
		vf->driver_kind = XEVF_DRIVER_OTHER;
	}
}

struct scan {
	const struct xevf_roots *roots;
	const struct xevf_scan_opts *opts;
	struct pci_access *pacc;
	struct pci_guard guard;
	struct xevf_host *host;
	const char *devices_dir; /* <sysfs>/bus/pci/devices */
	/* Devices whose identity libpci could not read. libpci marks a field as
	 * filled even when the fill was aborted, so a second pci_fill_info on
	 * such a device returns zeros instead of failing: remember them here. */
	struct pci_dev **broken;
	size_t nbroken;
	struct pci_dev **by_addr; /* libpci's devices sorted by address */
	size_t nby_addr;
};

static bool is_broken(const struct scan *s, const struct pci_dev *d)
{
	for (size_t i = 0; i < s->nbroken; i++)
		if (s->broken[i] == d)
			return true;
	return false;
}

static void mark_broken(struct scan *s, struct pci_dev *d)
{
	struct pci_dev **grown = realloc(s->broken, (s->nbroken + 1) * sizeof(*grown)); /* NOLINT(bugprone-sizeof-expression): an array of pointers */

	if (grown) {
		s->broken = grown;
		s->broken[s->nbroken++] = d;
	}
}

static uint64_t pci_dev_key(unsigned domain, unsigned bus, unsigned dev, unsigned func)
{
	return (uint64_t)domain << 16 | (bus & 0xffu) << 8 | (dev & 0x1fu) << 3 | (func & 0x7u);
}

static int cmp_dev_key(const void *a, const void *b)
{
	const struct pci_dev *x = *(struct pci_dev *const *)a, *y = *(struct pci_dev *const *)b;
	uint64_t kx = pci_dev_key((unsigned)x->domain, x->bus, x->dev, x->func);
	uint64_t ky = pci_dev_key((unsigned)y->domain, y->bus, y->dev, y->func);

	return kx < ky ? -1 : kx > ky;
}

/* libpci's devices in address order, so that each VF's look-up is a binary
 * search, not a walk of the list: discovery stays linear in VFs. NULL when
 * out of memory (look-ups then walk the list). */
static void index_pci_devs(struct scan *s)
{
	size_t n = 0, i = 0;

	for (struct pci_dev *d = s->pacc->devices; d; d = d->next)
		n++;
	if (!n || !(s->by_addr = calloc(n, sizeof(*s->by_addr)))) /* NOLINT(bugprone-sizeof-expression): an array of pointers */
		return;
	for (struct pci_dev *d = s->pacc->devices; d; d = d->next)
		s->by_addr[i++] = d;
	qsort(s->by_addr, n, sizeof(*s->by_addr), cmp_dev_key); /* NOLINT(bugprone-sizeof-expression) */
	s->nby_addr = n;
}

static struct pci_dev *find_pci_dev(struct scan *s, const struct xevf_pci_addr *a)
{
	uint64_t key = pci_dev_key(a->domain, a->bus, a->dev, a->func);
	size_t lo = 0, hi = s->nby_addr;

	if (!s->by_addr) {
		for (struct pci_dev *d = s->pacc->devices; d; d = d->next)
			if (pci_dev_key((unsigned)d->domain, d->bus, d->dev, d->func) == key)
				return d;
		return NULL;
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct pci_dev *d = s->by_addr[mid];
		uint64_t k = pci_dev_key((unsigned)d->domain, d->bus, d->dev, d->func);
		if (k == key)
			return s->by_addr[mid];
		if (k < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int note(struct scan *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int note(struct scan *s, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = notes_vadd(&s->host->notes, &s->host->nnotes, fmt, ap);
	va_end(ap);
	return rc;
}

/* Reads the revision from the first 64 bytes of config space (what an unprivileged
 * reader may see); -1 and a note when the file is missing or truncated. */
static int read_revision(struct scan *s, struct pci_dev *d, const char *addr)
{
	u8 header[64];
	volatile int ok = 0;

	if (setjmp(s->guard.env) == 0) {
		s->guard.armed = true;
		ok = pci_read_block(d, 0, header, sizeof(header));
		s->guard.armed = false;
	}
	if (!ok) {
		(void)note(s, "%s: config space (%s/%s/config) is missing or shorter than %zu bytes; revision unknown",
			   addr, s->devices_dir, addr, sizeof(header));
		return -1;
	}
	return header[PCI_REVISION_ID];
}

static long read_sysfs_long(struct scan *s, const char *addr, const char *attr, int base,
			    bool note_missing)
{
	char *path = NULL;
	struct xevf_err err = XEVF_ERR_INIT;
	long v = -1;

	if (xevf_asprintf(&path, "%s/%s/%s", s->devices_dir, addr, attr))
		return -1;
	if (xevf_read_long(path, base, &v, &err)) {
		if (note_missing || err.errnum != ENOENT)
			(void)note(s, "%s: %s", addr, xevf_err_msg(&err));
		v = -1;
	}
	xevf_err_clear(&err);
	free(path);
	return v;
}

static char *read_driver(struct scan *s, const char *addr)
{
	char *path = NULL, *name = NULL;
	struct xevf_err err = XEVF_ERR_INIT;

	if (xevf_asprintf(&path, "%s/%s/driver", s->devices_dir, addr))
		return NULL;
	if (xevf_readlink_basename(path, &name, &err) && err.errnum != ENOENT)
		(void)note(s, "%s: %s", addr, xevf_err_msg(&err));
	xevf_err_clear(&err);
	free(path);
	return name;
}

static int read_iommu_group(struct scan *s, const char *addr)
{
	char *path = NULL, *name = NULL;
	struct xevf_err err = XEVF_ERR_INIT;
	long group = -1;

	if (xevf_asprintf(&path, "%s/%s/iommu_group", s->devices_dir, addr))
		return -1;
	if (xevf_readlink_basename(path, &name, &err) == 0) {
		if (xevf_parse_long(name, 10, &group) || group < 0 || group > 0x7fffffff) {
			(void)note(s, "%s: %s points to '%s', not a numbered IOMMU group", addr, path, name);
			group = -1;
		}
	} else if (err.errnum != ENOENT) {
		(void)note(s, "%s: %s", addr, xevf_err_msg(&err));
	}
	xevf_err_clear(&err);
	free(name);
	free(path);
	return (int)group;
}

/* Host path of the iommufd cdev (/dev/vfio/devices/vfioN) that sysfs shows in
 * <vf>/vfio-dev/ when the VF is bound to a VFIO driver with cdev support. */
static char *find_cdev(struct scan *s, const char *addr)
{
	char *dir_path = NULL, *node = NULL;
	DIR *dir;
	struct dirent *e;

	if (xevf_asprintf(&dir_path, "%s/%s/vfio-dev", s->devices_dir, addr))
		return NULL;
	dir = opendir(dir_path);
	free(dir_path);
	if (!dir)
		return NULL;
	while ((e = readdir(dir))) {
		long n;
		if (strncmp(e->d_name, "vfio", 4) != 0 || xevf_parse_long(e->d_name + 4, 10, &n) || n < 0)
			continue;
		if (xevf_asprintf(&node, "/dev/vfio/devices/%s", e->d_name))
			node = NULL;
		break;
	}
	closedir(dir);
	return node;
}

/* The host path when it exists under the dev root, NULL otherwise. */
static char *existing_dev_node(const struct xevf_roots *roots, const char *host_path)
{
	char *local = NULL;
	bool exists;

	if (xevf_dev_path(roots, host_path, &local))
		return NULL;
	exists = xevf_path_exists(local);
	free(local);
	return exists ? strdup(host_path) : NULL;
}

static void set_unhealthy(struct xevf_vf *vf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_unhealthy(struct xevf_vf *vf, const char *fmt, ...)
{
	va_list ap;

	vf->healthy = false;
	free(vf->reason);
	vf->reason = NULL;
	va_start(ap, fmt);
	if (vasprintf(&vf->reason, fmt, ap) < 0)
		vf->reason = NULL;
	va_end(ap);
}

static void evaluate_health(struct scan *s, const struct xevf_pf *pf, struct xevf_vf *vf)
{
	const char *dev_root = s->roots && s->roots->dev ? s->roots->dev : "/dev";
	bool legacy_ok, cdev_ok;

	vf->healthy = true;
	free(vf->reason);
	vf->reason = NULL;
	if (!pf->driver) {
		set_unhealthy(vf, "its PF %s is not bound to a driver; bind the PF to its driver (xe) again",
			      pf->addr);
		return;
	}
	if (vf->vendor_id < 0) {
		set_unhealthy(vf, "its sysfs identity could not be read (see notes)");
		return;
	}
	switch (vf->driver_kind) {
	case XEVF_DRIVER_NONE:
		set_unhealthy(vf, "not bound to any driver; bind it to xe-vfio-pci (or vfio-pci)");
		return;
	case XEVF_DRIVER_OTHER:
		set_unhealthy(vf, "bound to %s, which is not a VFIO driver; bind it to xe-vfio-pci (or vfio-pci)",
			      vf->driver);
		return;
	case XEVF_DRIVER_VFIO_PCI:
	case XEVF_DRIVER_VFIO_VARIANT:
		break;
	}
	if (vf->iommu_group < 0 && !vf->cdev_node) {
		set_unhealthy(vf, "has no IOMMU group; enable the IOMMU (intel_iommu=on) in the kernel command line");
		return;
	}
	legacy_ok = vf->group_node && s->host->vfio_container_node;
	cdev_ok = vf->cdev_node && s->host->iommufd_node;
	if (legacy_ok || cdev_ok)
		return;
	if (vf->iommu_group >= 0 && !vf->group_node)
		set_unhealthy(vf, "its VFIO group node %s/vfio/%d does not exist", dev_root, vf->iommu_group);
	else if (!s->host->vfio_container_node)
		set_unhealthy(vf, "the VFIO container node %s/vfio/vfio does not exist", dev_root);
	else
		set_unhealthy(vf, "its VFIO device nodes do not exist under %s", dev_root);
}

/* VFs vanish while being read when SR-IOV is turned off: not a problem to report. */
static bool vf_still_there(const struct scan *s, const char *addr)
{
	char *path = NULL;
	bool there;

	if (xevf_asprintf(&path, "%s/%s", s->devices_dir, addr))
		return true;
	there = xevf_path_exists(path);
	free(path);
	return there;
}

/* What a bind or unbind changes: the driver, the IOMMU group and the VFIO
 * nodes under the dev root (the scan and the recheck read them alike), each
 * read anew. */
static void read_binding(struct scan *s, struct xevf_vf *vf)
{
	char *group_path = NULL;

	free(vf->driver);
	free(vf->group_node);
	free(vf->cdev_node);
	vf->group_node = vf->cdev_node = NULL;
	vf->migration_capable = false;
	vf->driver = read_driver(s, vf->addr);
	classify_driver(vf);
	vf->iommu_group = read_iommu_group(s, vf->addr);
	if (vf->iommu_group >= 0 && xevf_asprintf(&group_path, "/dev/vfio/%d", vf->iommu_group) == 0) {
		vf->group_node = existing_dev_node(s->roots, group_path);
		free(group_path);
	}
	if (vf->driver_kind == XEVF_DRIVER_VFIO_PCI || vf->driver_kind == XEVF_DRIVER_VFIO_VARIANT) {
		char *cdev = find_cdev(s, vf->addr);
		if (cdev) {
			vf->cdev_node = existing_dev_node(s->roots, cdev);
			free(cdev);
		}
	}
}

static int describe_vf(struct scan *s, struct xevf_pf *pf, struct xevf_vf *vf)
{
	struct xevf_pci_addr a;
	struct pci_dev *d;

	vf->vendor_id = vf->device_id = vf->revision = vf->numa_node = vf->iommu_group = -1;
	memcpy(vf->pf_addr, pf->addr, sizeof(vf->pf_addr));
	if (xevf_pci_addr_parse(vf->addr, &a))
		return -EINVAL;
	d = find_pci_dev(s, &a);
	if (!d) {
		(void)note(s, "%s: listed as virtfn%u of %s but absent from %s", vf->addr, vf->vf_index,
			   pf->addr, s->devices_dir);
	} else if (is_broken(s, d)) {
		/* already noted by the scan */
	} else if (guarded_fill(&s->guard, d, PCI_FILL_IDENT | PCI_FILL_CLASS | PCI_FILL_NUMA_NODE)) {
		if (vf_still_there(s, vf->addr))
			(void)note(s, "%s: %s", vf->addr, s->guard.error ? s->guard.error : "libpci failed");
		mark_broken(s, d);
	} else {
		vf->vendor_id = d->vendor_id;
		vf->device_id = d->device_id;
		vf->numa_node = d->numa_node;
		vf->revision = read_revision(s, d, vf->addr);
	}
	read_binding(s, vf);
	{
		char *path = NULL;
		if (xevf_asprintf(&path, "%s/%s/modalias", s->devices_dir, vf->addr) == 0 &&
		    xevf_read_text(path, 256, &vf->modalias, NULL) != 0)
			vf->modalias = NULL;
		free(path);
	}
	if (pf->provisioning_exposed) {
		struct xevf_err err = XEVF_ERR_INIT;
		if (xevf_sriov_read_provisioning(s->roots, pf->addr, vf->vf_index, &vf->provisioning,
						 &vf->nprovisioning, &err) && err.errnum != ENOENT)
			(void)note(s, "%s: %s", vf->addr, xevf_err_msg(&err));
		xevf_err_clear(&err);
	}
	evaluate_health(s, pf, vf);
	return 0;
}

static int cmp_vf(const void *a, const void *b)
{
	const struct xevf_vf *x = a, *y = b;
	return x->vf_index < y->vf_index ? -1 : x->vf_index > y->vf_index;
}

static int cmp_pf(const void *a, const void *b)
{
	return strcmp(((const struct xevf_pf *)a)->addr, ((const struct xevf_pf *)b)->addr);
}

/* Collects the PF's virtfnN links. */
/* find_vfs: the PF is gone (its directory vanished while the scan read it). */
#define PF_GONE 1

static int find_vfs(struct scan *s, struct xevf_pf *pf)
{
	char *dir_path = NULL;
	DIR *dir;
	struct dirent *e;
	int rc = 0;

	if (xevf_asprintf(&dir_path, "%s/%s", s->devices_dir, pf->addr))
		return -ENOMEM;
	dir = opendir(dir_path);
	if (!dir) {
		int why = errno;
		if (why != ENOENT) /* ENOENT: the PF went while being read (hot-unplug) */
			(void)note(s, "%s: cannot list %s: %s", pf->addr, dir_path, strerror(why));
		free(dir_path);
		return why == ENOENT ? PF_GONE : 0;
	}
	while ((e = readdir(dir))) {
		long index;
		char *link = NULL, *target = NULL;
		struct xevf_err err = XEVF_ERR_INIT;
		struct xevf_pci_addr a;
		struct xevf_vf *grown;

		if (strncmp(e->d_name, "virtfn", 6) != 0 || xevf_parse_long(e->d_name + 6, 10, &index) ||
		    index < 0 || index > 0xffff)
			continue;
		if (xevf_asprintf(&link, "%s/%s", dir_path, e->d_name)) {
			rc = -ENOMEM;
			break;
		}
		if (xevf_readlink_basename(link, &target, &err)) {
			(void)note(s, "%s: %s", pf->addr, xevf_err_msg(&err));
		} else if (xevf_pci_addr_parse(target, &a)) {
			(void)note(s, "%s: %s points to '%s', not a PCI address", pf->addr, link, target);
		} else if (!(grown = realloc(pf->vfs, (pf->nvfs + 1) * sizeof(*pf->vfs)))) {
			rc = -ENOMEM;
		} else {
			pf->vfs = grown;
			memset(&pf->vfs[pf->nvfs], 0, sizeof(pf->vfs[0]));
			xevf_pci_addr_format(&a, pf->vfs[pf->nvfs].addr);
			pf->vfs[pf->nvfs].vf_index = (unsigned)index;
			pf->nvfs++;
		}
		xevf_err_clear(&err);
		free(target);
		free(link);
		if (rc)
			break;
	}
	closedir(dir);
	free(dir_path);
	if (rc)
		return rc;
	if (pf->nvfs > 1)
		qsort(pf->vfs, pf->nvfs, sizeof(*pf->vfs), cmp_vf);
	for (size_t i = 0; i < pf->nvfs; i++) {
		rc = describe_vf(s, pf, &pf->vfs[i]);
		if (rc == -ENOMEM)
			return rc;
	}
	return 0;
}

static bool is_extra_pf(const struct scan *s, const char *addr)
{
	for (size_t i = 0; s->opts && i < s->opts->n_extra_pfs; i++)
		if (strcmp(s->opts->extra_pfs[i], addr) == 0)
			return true;
	return false;
}

/* Adds d as a PF when it is an Intel display device with SR-IOV, or one that
 * the caller named. */
static int consider_pf(struct scan *s, struct pci_dev *d)
{
	struct xevf_pci_addr a = {(unsigned)d->domain, d->bus, d->dev, d->func};
	char addr[XEVF_PCI_ADDR_SIZE];
	struct xevf_pf *grown, *pf;
	long total;

	xevf_pci_addr_format(&a, addr);
	if (guarded_fill(&s->guard, d, PCI_FILL_IDENT | PCI_FILL_CLASS)) {
		if (vf_still_there(s, addr))
			(void)note(s, "%s: %s", addr, s->guard.error ? s->guard.error : "libpci failed");
		mark_broken(s, d);
		return 0;
	}
	if ((d->vendor_id != XEVF_INTEL_VENDOR_ID || (d->device_class >> 8) != XEVF_PCI_BASE_CLASS_DISPLAY) &&
	    !is_extra_pf(s, addr))
		return 0;
	total = read_sysfs_long(s, addr, "sriov_totalvfs", 10, false);
	if (total <= 0)
		return 0; /* no SR-IOV: an Intel display device, but not one of ours */
	grown = realloc(s->host->pfs, (s->host->npfs + 1) * sizeof(*s->host->pfs));
	if (!grown)
		return -ENOMEM;
	s->host->pfs = grown;
	pf = &s->host->pfs[s->host->npfs++];
	memset(pf, 0, sizeof(*pf));
	memcpy(pf->addr, addr, sizeof(pf->addr));
	pf->vendor_id = d->vendor_id;
	pf->device_id = d->device_id;
	pf->numa_node = -1;
	if (guarded_fill(&s->guard, d, PCI_FILL_NUMA_NODE) == 0)
		pf->numa_node = d->numa_node;
	pf->revision = read_revision(s, d, addr);
	pf->driver = read_driver(s, addr);
	pf->total_vfs = total;
	pf->num_vfs = read_sysfs_long(s, addr, "sriov_numvfs", 10, true);
	pf->vf_device_id = (int)read_sysfs_long(s, addr, "sriov_vf_device", 16, false);
	{
		char *admin = NULL;
		if (xevf_asprintf(&admin, "%s/%s/sriov_admin", s->devices_dir, addr) == 0)
			pf->provisioning_exposed = xevf_path_exists(admin);
		free(admin);
		if (!pf->provisioning_exposed)
			pf->provisioning_exposed = xevf_sriov_quotas_exposed(s->roots, addr);
	}
	return 0;
}

static void vf_free(struct xevf_vf *vf);

static void pf_clear(struct xevf_pf *pf)
{
	for (size_t j = 0; j < pf->nvfs; j++)
		vf_free(&pf->vfs[j]);
	free(pf->vfs);
	free(pf->driver);
}

static void pf_drop(struct xevf_host *host, size_t i)
{
	pf_clear(&host->pfs[i]);
	memmove(&host->pfs[i], &host->pfs[i + 1], (host->npfs - i - 1) * sizeof(host->pfs[0]));
	host->npfs--;
}

/* Every PF's VFs; a PF gone while being read leaves the host. 0 or -ENOMEM. */
static int find_all_vfs(struct scan *s)
{
	for (size_t i = 0; i < s->host->npfs;) {
		int rc = find_vfs(s, &s->host->pfs[i]);
		if (rc == PF_GONE) {
			/* as if the scan had not found it: a PF half gone must not
			 * look like a PF without VFs (its VFs would be dropped
			 * instead of kept listed as unhealthy until it is back) */
			pf_drop(s->host, i);
			continue;
		}
		if (rc)
			return rc;
		i++;
	}
	return 0;
}

/* <sysfs>/bus/pci, where libpci looks, and its devices/ (malloc'd): 0, or -ENOMEM. */
static int pci_dirs(const struct xevf_roots *roots, char **pci_path, char **devices_dir)
{
	return xevf_sysfs_path(roots, "/sys/bus/pci", pci_path) || xevf_asprintf(devices_dir, "%s/devices", *pci_path)
		       ? -ENOMEM : 0;
}

/* The host-wide VFIO nodes (the container, iommufd), each read anew. */
static void read_host_nodes(const struct xevf_roots *roots, struct xevf_host *host)
{
	free(host->vfio_container_node);
	free(host->iommufd_node);
	host->vfio_container_node = existing_dev_node(roots, "/dev/vfio/vfio");
	host->iommufd_node = existing_dev_node(roots, "/dev/iommu");
}

int xevf_discover(const struct xevf_roots *roots, const struct xevf_scan_opts *opts, struct xevf_host **out,
		  struct xevf_err *err)
{
	struct scan s = {.roots = roots, .opts = opts};
	char *pci_path = NULL, *devices_dir = NULL;
	volatile int rc = 0;

	*out = NULL;
	s.host = calloc(1, sizeof(*s.host));
	if (!s.host)
		return xevf_err_set(err, ENOMEM, "discovery: out of memory");
	if (pci_dirs(roots, &pci_path, &devices_dir)) {
		rc = xevf_err_set(err, ENOMEM, "discovery: out of memory");
		goto out;
	}
	if (!xevf_path_exists(devices_dir)) {
		rc = xevf_err_set(err, ENOENT, "cannot scan PCI devices: %s does not exist (is sysfs mounted there?)",
				  devices_dir);
		goto out;
	}
	s.devices_dir = devices_dir;
	s.guard.notes = &s.host->notes;
	s.guard.nnotes = &s.host->nnotes;
	current_guard = &s.guard;

	s.pacc = pci_alloc();
	if (!s.pacc) {
		rc = xevf_err_set(err, ENOMEM, "discovery: libpci allocation failed");
		goto out;
	}
	s.pacc->error = pci_error_handler;
	s.pacc->warning = pci_warning_handler;
	s.pacc->debug = pci_debug_handler;
	s.pacc->method = PCI_ACCESS_SYS_BUS_PCI;
	if (setjmp(s.guard.env) == 0) {
		s.guard.armed = true;
		pci_set_param(s.pacc, "sysfs.path", pci_path);
		pci_init(s.pacc);
		pci_scan_bus(s.pacc);
		s.guard.armed = false;
	} else {
		rc = xevf_err_set(err, EIO, "cannot scan PCI devices in %s: %s", devices_dir,
				  s.guard.error ? s.guard.error : "libpci failed");
		goto out;
	}

	for (struct pci_dev *d = s.pacc->devices; d; d = d->next) {
		rc = consider_pf(&s, d);
		if (rc) {
			xevf_err_set(err, ENOMEM, "discovery: out of memory");
			goto out;
		}
	}
	if (s.host->npfs > 1)
		qsort(s.host->pfs, s.host->npfs, sizeof(*s.host->pfs), cmp_pf);
	index_pci_devs(&s);
	read_host_nodes(roots, s.host);
	if ((rc = find_all_vfs(&s)) < 0) {
		xevf_err_set(err, ENOMEM, "discovery: out of memory");
		goto out;
	}
out:
	if (s.pacc)
		pci_cleanup(s.pacc);
	current_guard = NULL;
	free(s.by_addr);
	free(s.broken);
	free(s.guard.error);
	free(devices_dir);
	free(pci_path);
	if (rc) {
		xevf_host_free(s.host);
		return rc;
	}
	*out = s.host;
	return 0;
}

static void vf_free(struct xevf_vf *vf)
{
	free(vf->modalias);
	xevf_kv_free(vf->provisioning, vf->nprovisioning);
	free(vf->driver);
	free(vf->group_node);
	free(vf->cdev_node);
	free(vf->reason);
}

void xevf_host_free(struct xevf_host *host)
{
	if (!host)
		return;
	for (size_t i = 0; i < host->npfs; i++)
		pf_clear(&host->pfs[i]);
	free(host->pfs);
	for (size_t i = 0; i < host->nnotes; i++)
		free(host->notes[i]);
	free(host->notes);
	free(host->vfio_container_node);
	free(host->iommufd_node);
	free(host);
}

const struct xevf_vf *xevf_host_find_vf(const struct xevf_host *host, const char *addr)
{
	for (size_t i = 0; host && i < host->npfs; i++)
		for (size_t j = 0; j < host->pfs[i].nvfs; j++)
			if (strcmp(host->pfs[i].vfs[j].addr, addr) == 0)
				return &host->pfs[i].vfs[j];
	return NULL;
}

int xevf_guc_version(const struct xevf_roots *roots, const char *pf_addr, char **out)
{
	char *path = NULL, *text = NULL, *found;

	*out = NULL;
	if (xevf_asprintf(&path, "%s/kernel/debug/dri/%s/gt0/uc/guc_info", roots && roots->sysfs ? roots->sysfs : "/sys",
			  pf_addr))
		return -ENOMEM;
	if (xevf_read_text(path, 65536, &text, NULL) == 0 && (found = strstr(text, "found "))) {
		found += 6;
		size_t n = strcspn(found, " ,\n\t");
		if (n && !(*out = strndup(found, n))) {
			free(text);
			free(path);
			return -ENOMEM;
		}
	}
	free(text);
	free(path);
	return 0;
}

/* ---- the cheap recheck ---- */

static int kv_copy(const struct xevf_kv *from, size_t n, struct xevf_kv **out)
{
	*out = NULL;
	if (!n)
		return 0;
	if (!(*out = calloc(n, sizeof(**out))))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (!((*out)[i].key = strdup(from[i].key)) || !((*out)[i].value = strdup(from[i].value))) {
			xevf_kv_free(*out, n);
			*out = NULL;
			return -ENOMEM;
		}
	return 0;
}

static int vf_copy(struct xevf_vf *to, const struct xevf_vf *from)
{
	*to = *from;
	to->driver = xevf_strdup_or_null(from->driver);
	to->group_node = xevf_strdup_or_null(from->group_node);
	to->cdev_node = xevf_strdup_or_null(from->cdev_node);
	to->modalias = xevf_strdup_or_null(from->modalias);
	to->reason = xevf_strdup_or_null(from->reason);
	if (kv_copy(from->provisioning, from->nprovisioning, &to->provisioning) || (from->driver && !to->driver) ||
	    (from->group_node && !to->group_node) || (from->cdev_node && !to->cdev_node) ||
	    (from->modalias && !to->modalias) || (from->reason && !to->reason)) {
		to->nprovisioning = to->provisioning ? from->nprovisioning : 0;
		vf_free(to);
		memset(to, 0, sizeof(*to));
		return -ENOMEM;
	}
	return 0;
}

/* A deep copy; NULL when out of memory. */
static struct xevf_host *host_copy(const struct xevf_host *from)
{
	struct xevf_host *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->vfio_container_node = xevf_strdup_or_null(from->vfio_container_node);
	h->iommufd_node = xevf_strdup_or_null(from->iommufd_node);
	if ((from->npfs && !(h->pfs = calloc(from->npfs, sizeof(*h->pfs)))) ||
	    (from->nnotes && !(h->notes = calloc(from->nnotes, sizeof(*h->notes)))))
		goto fail;
	for (; h->nnotes < from->nnotes; h->nnotes++)
		if (!(h->notes[h->nnotes] = strdup(from->notes[h->nnotes])))
			goto fail;
	for (; h->npfs < from->npfs; h->npfs++) {
		const struct xevf_pf *fp = &from->pfs[h->npfs];
		struct xevf_pf *tp = &h->pfs[h->npfs];
		*tp = *fp;
		tp->vfs = NULL;
		tp->nvfs = 0;
		tp->driver = xevf_strdup_or_null(fp->driver);
		if ((fp->driver && !tp->driver) || (fp->nvfs && !(tp->vfs = calloc(fp->nvfs, sizeof(*tp->vfs))))) {
			h->npfs++;
			goto fail;
		}
		for (; tp->nvfs < fp->nvfs; tp->nvfs++)
			if (vf_copy(&tp->vfs[tp->nvfs], &fp->vfs[tp->nvfs])) {
				h->npfs++;
				goto fail;
			}
	}
	if ((from->vfio_container_node && !h->vfio_container_node) || (from->iommufd_node && !h->iommufd_node))
		goto fail;
	return h;
fail:
	xevf_host_free(h);
	return NULL;
}

/* Notes of a recheck join the scan's own only when new: a VF read again
 * must not repeat what the scan said. */
static void dedupe_new_notes(struct xevf_host *h, size_t first_new)
{
	size_t kept = first_new;

	for (size_t i = first_new; i < h->nnotes; i++) {
		bool seen = false;
		for (size_t j = 0; j < kept && !seen; j++)
			seen = strcmp(h->notes[j], h->notes[i]) == 0;
		if (seen)
			free(h->notes[i]);
		else
			h->notes[kept++] = h->notes[i];
	}
	h->nnotes = kept;
}

int xevf_host_recheck(const struct xevf_roots *roots, const struct xevf_host *old, const char *only_vf,
		      struct xevf_host **out, struct xevf_err *err)
{
	struct scan s = {.roots = roots};
	char *pci_path = NULL, *devices_dir = NULL;
	size_t first_new;

	*out = NULL;
	if (pci_dirs(roots, &pci_path, &devices_dir) || !(s.host = host_copy(old))) {
		free(pci_path);
		free(devices_dir);
		return xevf_err_set(err, ENOMEM, "recheck: out of memory");
	}
	s.devices_dir = devices_dir;
	first_new = s.host->nnotes;
	if (!only_vf)
		read_host_nodes(roots, s.host);
	for (size_t i = 0; i < s.host->npfs; i++)
		for (size_t j = 0; j < s.host->pfs[i].nvfs; j++)
			if (!only_vf || strcmp(s.host->pfs[i].vfs[j].addr, only_vf) == 0) {
				read_binding(&s, &s.host->pfs[i].vfs[j]);
				evaluate_health(&s, &s.host->pfs[i], &s.host->pfs[i].vfs[j]);
			}
	dedupe_new_notes(s.host, first_new);
	free(devices_dir);
	free(pci_path);
	*out = s.host;
	return 0;
}
