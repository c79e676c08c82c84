#include "xevf_vfio_mig.h"
#include "xevf_vfio_uapi.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Newer than the uAPI header of older kernels (added in Linux 6.2) */

#define DEFAULT_CHUNK ((size_t)256 * 1024)
#define MAX_CHUNK ((size_t)16 * 1024 * 1024)
#define DEFAULT_PRECOPY_MAX (1ull << 30)

static int kernel_ioctl(void *ctx, int fd, unsigned long request, void *arg)
{
	(void)ctx;
	return ioctl(fd, request, arg);
}

const struct xevf_vfio_ops xevf_vfio_kernel_ops = {kernel_ioctl, NULL};

const char *xevf_mig_state_name(uint32_t state)
{
	static const char *const names[XEVF_MIG_NSTATES] = {
		"ERROR", "STOP", "RUNNING", "STOP_COPY", "RESUMING", "RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P",
	};
	return state < XEVF_MIG_NSTATES ? names[state] : "UNKNOWN";
}

/* The uAPI's direct arcs for a device with these flags: what the kernel's
 * vfio_mig_get_next_state would hand the driver as one step. On a P2P device
 * RUNNING and STOP meet only through RUNNING_P2P, and PRE_COPY reaches
 * STOP_COPY only through PRE_COPY_P2P; without P2P those middle states do not
 * exist and the arcs join directly. Anything else is a combination the
 * kernel would split (and some, like STOP_COPY -> PRE_COPY, are blocked: a
 * 6.12.95 kernel spins on one), so the engine never asks for it. */
bool xevf_mig_arc_allowed(uint64_t flags, uint32_t from, uint32_t to)
{
	bool p2p = flags & XEVF_MIG_F_P2P;
	bool pre = flags & XEVF_MIG_F_PRE_COPY;

	if (!(flags & XEVF_MIG_F_STOP_COPY))
		return false;
	switch (from) {
	case XEVF_MIG_STOP:
		return to == XEVF_MIG_STOP_COPY || to == XEVF_MIG_RESUMING ||
		       to == (p2p ? XEVF_MIG_RUNNING_P2P : XEVF_MIG_RUNNING);
	case XEVF_MIG_RUNNING:
		return to == (p2p ? XEVF_MIG_RUNNING_P2P : XEVF_MIG_STOP) || (pre && to == XEVF_MIG_PRE_COPY);
	case XEVF_MIG_STOP_COPY:
	case XEVF_MIG_RESUMING:
		return to == XEVF_MIG_STOP;
	case XEVF_MIG_RUNNING_P2P:
		return p2p && (to == XEVF_MIG_STOP || to == XEVF_MIG_RUNNING || (pre && to == XEVF_MIG_PRE_COPY_P2P));
	case XEVF_MIG_PRE_COPY:
		return pre && (to == XEVF_MIG_RUNNING || to == (p2p ? XEVF_MIG_PRE_COPY_P2P : XEVF_MIG_STOP_COPY));
	case XEVF_MIG_PRE_COPY_P2P:
		return pre && p2p && (to == XEVF_MIG_PRE_COPY || to == XEVF_MIG_RUNNING_P2P || to == XEVF_MIG_STOP_COPY);
	default:
		return false; /* ERROR: only VFIO_DEVICE_RESET leaves it */
	}
}

int xevf_mig_init(struct xevf_mig_device *dev, const char *name, int fd, bool borrow_fd,
		  const struct xevf_vfio_ops *ops, struct xevf_err *err)
{
	memset(dev, 0, sizeof(*dev));
	dev->fd = fd;
	dev->fd_borrowed = borrow_fd;
	dev->container_fd = -1;
	dev->ops = ops ? ops : &xevf_vfio_kernel_ops;
	dev->state = XEVF_MIG_RUNNING;
	dev->name = strdup(name);
	if (!dev->name) {
		if (!borrow_fd && fd >= 0)
			close(fd);
		dev->fd = -1;
		return xevf_err_set(err, ENOMEM, "%s: out of memory", name);
	}
	return 0;
}

void xevf_mig_close(struct xevf_mig_device *dev)
{
	if (dev->fd >= 0 && !dev->fd_borrowed)
		close(dev->fd);
	if (dev->container_fd >= 0)
		close(dev->container_fd);
	free(dev->name);
	memset(dev, 0, sizeof(*dev));
	dev->fd = -1;
	dev->container_fd = -1;
}

int xevf_mig_open_group(struct xevf_mig_device *dev, const char *dev_root, const char *group,
			const char *pci_addr, struct xevf_err *err)
{
	struct vfio_group_status status = {.argsz = sizeof(status)};
	char *container_path = NULL, *group_path = NULL;
	int container = -1, group_fd = -1, device = -1, rc = 0;
	int iommu = VFIO_TYPE1v2_IOMMU;

	if (asprintf(&container_path, "%s/vfio/vfio", dev_root) < 0 ||
	    asprintf(&group_path, "%s/vfio/%s", dev_root, group) < 0) {
		rc = xevf_err_set(err, ENOMEM, "%s: out of memory", pci_addr);
		goto out;
	}
	container = open(container_path, O_RDWR | O_CLOEXEC);
	if (container < 0) {
		rc = xevf_err_set(err, errno, "%s: cannot open %s: %s", pci_addr, container_path, strerror(errno));
		goto out;
	}
	group_fd = open(group_path, O_RDWR | O_CLOEXEC);
	if (group_fd < 0) {
		int e = errno;
		rc = xevf_err_set(err, e, "%s: cannot open %s: %s%s", pci_addr, group_path, strerror(e),
				  e == EBUSY ? " (a VM or another process holds the VF; it is left alone)" : "");
		goto out;
	}
	if (ioctl(group_fd, VFIO_GROUP_GET_STATUS, &status) < 0 || !(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		rc = xevf_err_set(err, errno ? errno : EBUSY,
				  "%s: IOMMU group %s is not viable: every device in it must be bound to a VFIO driver",
				  pci_addr, group);
		goto out;
	}
	if (ioctl(group_fd, VFIO_GROUP_SET_CONTAINER, &container) < 0) {
		rc = xevf_err_set(err, errno, "%s: VFIO_GROUP_SET_CONTAINER on %s: %s", pci_addr, group_path,
				  strerror(errno));
		goto out;
	}
	if (strncmp(group, "noiommu-", 8) == 0)
		iommu = VFIO_NOIOMMU_IOMMU;
	else if (ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0)
		iommu = VFIO_TYPE1_IOMMU;
	if (ioctl(container, VFIO_SET_IOMMU, iommu) < 0) {
		rc = xevf_err_set(err, errno, "%s: VFIO_SET_IOMMU on %s: %s", pci_addr, container_path, strerror(errno));
		goto out;
	}
	device = ioctl(group_fd, VFIO_GROUP_GET_DEVICE_FD, pci_addr);
	if (device < 0) {
		rc = xevf_err_set(err, errno, "%s: VFIO_GROUP_GET_DEVICE_FD on %s: %s", pci_addr, group_path,
				  strerror(errno));
		goto out;
	}
	rc = xevf_mig_init(dev, pci_addr, device, false, NULL, err);
	device = -1;
	if (rc == 0) {
		dev->container_fd = container; /* the device fd keeps the group attached */
		container = -1;
	}
out:
	if (device >= 0)
		close(device);
	if (group_fd >= 0)
		close(group_fd);
	if (container >= 0)
		close(container);
	free(container_path);
	free(group_path);
	return rc;
}

/* VFIO_DEVICE_FEATURE with a payload of `size` bytes */
static int device_feature(struct xevf_mig_device *dev, uint32_t flags, void *payload, size_t size)
{
	/* header + payload, 8-byte aligned as the uAPI's __aligned_u64 payloads need */
	uint64_t storage[(sizeof(struct vfio_device_feature) + 16 + 7) / 8];
	struct vfio_device_feature *hdr = (struct vfio_device_feature *)storage;
	int rc;

	if (size > 16) {
		errno = EINVAL;
		return -1;
	}
	memset(storage, 0, sizeof(storage));
	hdr->argsz = (uint32_t)(sizeof(*hdr) + size);
	hdr->flags = flags;
	memcpy(hdr->data, payload, size);
	rc = dev->ops->ioctl(dev->ops->ctx, dev->fd, VFIO_DEVICE_FEATURE, hdr);
	if (rc >= 0)
		memcpy(payload, hdr->data, size);
	return rc;
}

int xevf_mig_probe(struct xevf_mig_device *dev, const char *driver, struct xevf_err *err)
{
	struct vfio_device_feature_migration mig = {0};

	if (device_feature(dev, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION, &mig, sizeof(mig)) < 0) {
		int e = errno;
		if (e == ENOTTY || e == EINVAL || e == EOPNOTSUPP)
			return xevf_err_set(err, ENOTTY,
					    "%s: not migratable: its driver (%s) offers no VFIO migration "
					    "(VFIO_DEVICE_FEATURE_MIGRATION: %s); Xe VFs migrate only when bound to "
					    "xe-vfio-pci (CONFIG_XE_VFIO_PCI)",
					    dev->name, driver ? driver : "unknown", strerror(e));
		return xevf_err_set(err, e, "%s: VFIO_DEVICE_FEATURE_MIGRATION: %s", dev->name, strerror(e));
	}
	if (!(mig.flags & XEVF_MIG_F_STOP_COPY))
		return xevf_err_set(err, ENOTTY,
				    "%s: not migratable: the device reports migration flags 0x%llx without STOP_COPY",
				    dev->name, (unsigned long long)mig.flags);
	dev->flags = mig.flags;
	dev->probed = true;
	return 0;
}

int xevf_mig_get_state(struct xevf_mig_device *dev, uint32_t *state, struct xevf_err *err)
{
	struct vfio_device_feature_mig_state st = {.data_fd = -1};

	if (device_feature(dev, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &st, sizeof(st)) < 0) {
		int e = errno ? errno : EIO;
		return xevf_err_set(err, e, "%s: reading the migration state: %s", dev->name, strerror(e));
	}
	dev->state = st.device_state;
	*state = st.device_state;
	return 0;
}

int xevf_mig_data_size(struct xevf_mig_device *dev, uint64_t *bytes, struct xevf_err *err)
{
	struct vfio_device_feature_mig_data_size size = {0};

	if (device_feature(dev, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, &size, sizeof(size)) < 0) {
		int e = errno ? errno : EIO;
		if (e == ENOTTY || e == EINVAL || e == EOPNOTSUPP)
			e = ENOTTY;
		return xevf_err_set(err, e, "%s: VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: %s", dev->name, strerror(e));
	}
	*bytes = size.stop_copy_length;
	return 0;
}

int xevf_mig_step(struct xevf_mig_device *dev, uint32_t to, int *data_fd, struct xevf_err *err)
{
	struct vfio_device_feature_mig_state st = {.device_state = to, .data_fd = -1};
	uint32_t from = dev->state;

	if (data_fd)
		*data_fd = -1;
	if (!xevf_mig_arc_allowed(dev->flags, from, to))
		return xevf_err_set(err, EINVAL, "%s: %s -> %s is not an arc of the VFIO migration FSM for flags 0x%llx",
				    dev->name, xevf_mig_state_name(from), xevf_mig_state_name(to),
				    (unsigned long long)dev->flags);
	if (device_feature(dev, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &st, sizeof(st)) < 0) {
		int e = errno;
		uint32_t now;
		/* the kernel leaves the device somewhere on the path; unreadable counts as ERROR */
		if (xevf_mig_get_state(dev, &now, NULL) < 0)
			dev->state = XEVF_MIG_ERROR;
		return xevf_err_set(err, e, "%s: migration state %s -> %s failed: %s; the device is now in %s",
				    dev->name, xevf_mig_state_name(from), xevf_mig_state_name(to), strerror(e),
				    xevf_mig_state_name(dev->state));
	}
	dev->state = to;
	if (data_fd)
		*data_fd = st.data_fd;
	else if (st.data_fd >= 0)
		close(st.data_fd);
	return 0;
}

static int reset_device(struct xevf_mig_device *dev, struct xevf_err *err)
{
	if (dev->ops->ioctl(dev->ops->ctx, dev->fd, VFIO_DEVICE_RESET, NULL) < 0)
		return xevf_err_set(err, errno, "%s: VFIO_DEVICE_RESET failed: %s; the VF needs a PF-level recovery",
				    dev->name, strerror(errno));
	dev->state = XEVF_MIG_RUNNING; /* the uAPI: reset returns the device to RUNNING */
	return 0;
}

int xevf_mig_reset(struct xevf_mig_device *dev, struct xevf_err *err)
{
	return reset_device(dev, err);
}

/* Next state on the shortest path from -> to over defined arcs (BFS); -1 if none */
static int next_hop(uint64_t flags, uint32_t from, uint32_t to)
{
	int prev[XEVF_MIG_NSTATES];
	uint32_t queue[XEVF_MIG_NSTATES];
	unsigned head = 0, tail = 0;

	for (int i = 0; i < XEVF_MIG_NSTATES; i++)
		prev[i] = -1;
	prev[from] = (int)from;
	queue[tail++] = from;
	while (head < tail) {
		uint32_t s = queue[head++];
		if (s == to)
			break;
		for (uint32_t n = 0; n < XEVF_MIG_NSTATES; n++) {
			/* the uAPI forbids crossing the saving group in the middle of a path */
			bool saving = n == XEVF_MIG_PRE_COPY || n == XEVF_MIG_PRE_COPY_P2P || n == XEVF_MIG_STOP_COPY ||
				      n == XEVF_MIG_RESUMING;
			if (prev[n] >= 0 || !xevf_mig_arc_allowed(flags, s, n) || (saving && n != to))
				continue;
			prev[n] = (int)s;
			queue[tail++] = n;
		}
	}
	if (prev[to] < 0 || from == to)
		return -1;
	uint32_t hop = to;
	while ((uint32_t)prev[hop] != from)
		hop = (uint32_t)prev[hop];
	return (int)hop;
}

int xevf_mig_walk(struct xevf_mig_device *dev, uint32_t wanted, struct xevf_err *err)
{
	/* a path has at most as many arcs as the FSM has states */
	for (int steps = 0; dev->state != wanted && steps < XEVF_MIG_NSTATES; steps++) {
		int hop = next_hop(dev->flags, dev->state, wanted);
		int rc;
		if (hop < 0)
			return xevf_err_set(err, EINVAL, "%s: no way from %s to %s over the uAPI's arcs for flags 0x%llx",
					    dev->name, xevf_mig_state_name(dev->state), xevf_mig_state_name(wanted),
					    (unsigned long long)dev->flags);
		if ((rc = xevf_mig_step(dev, (uint32_t)hop, NULL, err)) < 0)
			return rc;
	}
	return dev->state == wanted ? 0 : xevf_err_set(err, EIO, "%s: did not reach %s", dev->name,
						       xevf_mig_state_name(wanted));
}

/* Walks from the state the device reports to `wanted`; false if it cannot */
static bool walk_to(struct xevf_mig_device *dev, uint32_t wanted)
{
	uint32_t now = XEVF_MIG_ERROR;

	if (xevf_mig_get_state(dev, &now, NULL) < 0 || now == XEVF_MIG_ERROR || (now == XEVF_MIG_RESUMING && wanted != now))
		return false;
	return xevf_mig_walk(dev, wanted, NULL) == 0;
}

int xevf_mig_recover(struct xevf_mig_device *dev, uint32_t wanted, bool *reset_used, struct xevf_err *err)
{
	if (reset_used)
		*reset_used = false;
	if (walk_to(dev, wanted))
		return 0;
	/* ERROR, an abandoned RESUMING session, or no way back: the last resort */
	int rc = reset_device(dev, err);
	if (rc < 0)
		return rc;
	if (reset_used)
		*reset_used = true;
	if (wanted == XEVF_MIG_RUNNING || walk_to(dev, wanted))
		return 0;
	return xevf_err_set(err, EIO, "%s: cannot bring the device to %s even after a reset", dev->name,
			    xevf_mig_state_name(wanted));
}

static size_t chunk_size(const struct xevf_mig_options *o)
{
	size_t n = o && o->chunk_size ? o->chunk_size : DEFAULT_CHUNK;
	return n > MAX_CHUNK ? MAX_CHUNK : n;
}

/* Reads the data fd into sink until end of stream (0), or, in pre-copy, until
 * ENOMSG or `limit` bytes. Returns 0 or -errno. */
static int drain(struct xevf_mig_device *dev, int data_fd, const char *phase, char *buf, size_t cap,
		 uint64_t limit, xevf_mig_sink_fn sink, void *ctx, uint64_t *total, unsigned *chunks,
		 struct xevf_err *err)
{
	bool precopy = strcmp(phase, "precopy") == 0;

	while (!precopy || *total < limit) {
		if (precopy) {
			struct vfio_precopy_info info = {.argsz = sizeof(info)};
			if (dev->ops->ioctl(dev->ops->ctx, data_fd, VFIO_MIG_GET_PRECOPY_INFO, &info) == 0 &&
			    info.initial_bytes == 0 && info.dirty_bytes == 0)
				return 0; /* caught up: time for STOP_COPY */
		}
		ssize_t n = read(data_fd, buf, cap);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && precopy && errno == ENOMSG)
			return 0; /* temporary end of the pre-copy stream */
		if (n < 0)
			return xevf_err_set(err, errno, "%s: reading the %s data stream: %s", dev->name, phase,
					    strerror(errno));
		if (n == 0)
			return 0;
		if (sink(ctx, phase, buf, (size_t)n, err) != 0)
			return err && err->errnum ? -err->errnum : -EIO;
		*total += (uint64_t)n;
		(*chunks)++;
	}
	return 0;
}

/* The common start of save and restore: the device probed and idle (RUNNING
 * or STOP, not in another session), a chunk buffer in *buf. */
static int begin(struct xevf_mig_device *dev, const char *what, size_t cap, uint32_t *now, char **buf,
		 struct xevf_mig_report *rep, struct xevf_err *err)
{
	int rc;

	memset(rep, 0, sizeof(*rep));
	*buf = NULL;
	if (!dev->probed && (rc = xevf_mig_probe(dev, NULL, err)) < 0)
		return rc;
	if ((rc = xevf_mig_get_state(dev, now, err)) < 0)
		return rc;
	if (*now != XEVF_MIG_RUNNING && *now != XEVF_MIG_STOP)
		return xevf_err_set(err, EBUSY, "%s: cannot %s: the device is in %s, not RUNNING or STOP "
				    "(another migration is in progress?)", dev->name, what, xevf_mig_state_name(*now));
	*buf = malloc(cap);
	if (!*buf)
		return xevf_err_set(err, ENOMEM, "%s: out of memory for a %zu-byte chunk", dev->name, cap);
	return 0;
}

/* After a failed save or restore: closes what is open and brings the device
 * back, walking back to RUNNING or, with `reset`, by VFIO_DEVICE_RESET. err
 * keeps the first cause and gains the recovery's, if that fails too. */
static int after_failure(struct xevf_mig_device *dev, int data_fd, char *buf, bool reset, int rc,
			 struct xevf_mig_report *rep, struct xevf_err *err)
{
	struct xevf_err rerr = XEVF_ERR_INIT;
	int r;

	if (data_fd >= 0)
		close(data_fd);
	free(buf);
	if (reset) {
		r = reset_device(dev, &rerr);
		rep->reset_used = r == 0;
	} else {
		r = xevf_mig_recover(dev, XEVF_MIG_RUNNING, &rep->reset_used, &rerr);
	}
	if (r < 0 && err)
		xevf_err_set(err, err->errnum ? err->errnum : rerr.errnum, "%s; recovery failed too: %s", xevf_err_msg(err),
			     xevf_err_msg(&rerr));
	xevf_err_clear(&rerr);
	rep->final_state = dev->state;
	return rc < 0 ? rc : -EIO;
}

int xevf_mig_save(struct xevf_mig_device *dev, const struct xevf_mig_options *opts,
		  xevf_mig_sink_fn sink, void *ctx, struct xevf_mig_report *rep, struct xevf_err *err)
{
	struct xevf_mig_report local = {0};
	size_t cap = chunk_size(opts);
	uint64_t limit = opts && opts->precopy_max_bytes ? opts->precopy_max_bytes : DEFAULT_PRECOPY_MAX;
	int data_fd = -1, rc;
	uint32_t now = XEVF_MIG_ERROR;
	char *buf;

	if (!rep)
		rep = &local;
	if ((rc = begin(dev, "save", cap, &now, &buf, rep, err)) < 0)
		return rc;

	if (now == XEVF_MIG_RUNNING && (dev->flags & XEVF_MIG_F_PRE_COPY) && (!opts || opts->precopy)) {
		if ((rc = xevf_mig_step(dev, XEVF_MIG_PRE_COPY, &data_fd, err)) < 0)
			goto fail;
		if ((rc = drain(dev, data_fd, "precopy", buf, cap, limit, sink, ctx, &rep->precopy_bytes,
				&rep->chunks, err)) < 0)
			goto fail;
		/* the saving group shares one session: STOP_COPY continues on data_fd;
		 * a P2P device quiesces in PRE_COPY_P2P on the way */
		if ((dev->flags & XEVF_MIG_F_P2P) && (rc = xevf_mig_step(dev, XEVF_MIG_PRE_COPY_P2P, NULL, err)) < 0)
			goto fail;
		if ((rc = xevf_mig_step(dev, XEVF_MIG_STOP_COPY, NULL, err)) < 0)
			goto fail;
	} else {
		/* RUNNING -> (RUNNING_P2P ->) STOP -> STOP_COPY */
		if ((rc = xevf_mig_walk(dev, XEVF_MIG_STOP, err)) < 0)
			goto fail;
		if ((rc = xevf_mig_step(dev, XEVF_MIG_STOP_COPY, &data_fd, err)) < 0)
			goto fail;
	}
	if (data_fd < 0) {
		rc = xevf_err_set(err, EPROTO, "%s: the device gave no data fd for STOP_COPY", dev->name);
		goto fail;
	}
	if ((rc = drain(dev, data_fd, "stopcopy", buf, cap, UINT64_MAX, sink, ctx, &rep->stopcopy_bytes,
			&rep->chunks, err)) < 0)
		goto fail;
	close(data_fd);
	data_fd = -1;
	if ((rc = xevf_mig_step(dev, XEVF_MIG_STOP, NULL, err)) < 0)
		goto fail;
	free(buf);
	rep->final_state = dev->state;
	return 0;

fail:
	/* the source VM keeps its VF: back to RUNNING */
	return after_failure(dev, data_fd, buf, false, rc, rep, err);
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int xevf_mig_restore(struct xevf_mig_device *dev, const struct xevf_mig_options *opts,
		     xevf_mig_source_fn source, void *ctx, struct xevf_mig_report *rep, struct xevf_err *err)
{
	struct xevf_mig_report local = {0};
	size_t cap = chunk_size(opts);
	int data_fd = -1, rc;
	bool resuming = false;
	uint32_t now = XEVF_MIG_ERROR;
	char *buf;

	if (!rep)
		rep = &local;
	if ((rc = begin(dev, "restore", cap, &now, &buf, rep, err)) < 0)
		return rc;
	if ((rc = xevf_mig_walk(dev, XEVF_MIG_STOP, err)) < 0)
		goto fail;
	resuming = true;
	if ((rc = xevf_mig_step(dev, XEVF_MIG_RESUMING, &data_fd, err)) < 0)
		goto fail;
	if (data_fd < 0) {
		rc = xevf_err_set(err, EPROTO, "%s: the device gave no data fd for RESUMING", dev->name);
		goto fail;
	}
	for (;;) {
		ssize_t n = source(ctx, buf, cap, err);
		if (n < 0) {
			rc = (int)n;
			goto fail;
		}
		if (n == 0)
			break;
		if ((rc = write_all(data_fd, buf, (size_t)n)) < 0) {
			xevf_err_set(err, -rc, "%s: writing the migration data stream: %s", dev->name, strerror(-rc));
			goto fail;
		}
		rep->restored_bytes += (uint64_t)n;
		rep->chunks++;
	}
	close(data_fd);
	data_fd = -1;
	/* leaving RESUMING is where the driver checks the state it was given */
	if ((rc = xevf_mig_step(dev, XEVF_MIG_STOP, NULL, err)) < 0)
		goto fail;
	free(buf);
	rep->final_state = dev->state;
	return 0;

fail:
	/* never run a partial or rejected state: the uAPI aborts RESUMING by reset;
	 * before RESUMING nothing was loaded and walking back is enough */
	return after_failure(dev, data_fd, buf, resuming, rc, rep, err);
}
