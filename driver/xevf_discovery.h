/* PCI discovery of Intel Xe SR-IOV physical functions and their virtual functions.
 *
 * Knows the kernel (sysfs, /dev/vfio) and nothing of Kubernetes. A problem with one
 * device never fails the whole discovery: it is recorded on that device (health and
 * reason) and in the host's notes, and the other devices are reported as usual.
 */
#ifndef XEVF_DISCOVERY_H
#define XEVF_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>

#include "xevf_error.h"
#include "xevf_roots.h"
#include "xevf_sysfs.h"

#define XEVF_INTEL_VENDOR_ID 0x8086
#define XEVF_PCI_BASE_CLASS_DISPLAY 0x03

/* What to look for beyond the default (Intel display-class PFs with SR-IOV). */
struct xevf_scan_opts {
	/* PFs to take whatever their vendor and class, as long as they have
	 * SR-IOV: lets a pool name a PF explicitly. */
	const char *const *extra_pfs;
	size_t n_extra_pfs;
};

struct xevf_kv;

enum xevf_driver_kind {
	XEVF_DRIVER_NONE,         /* not bound */
	XEVF_DRIVER_OTHER,        /* bound to a driver that is not VFIO (e.g. xe itself) */
	XEVF_DRIVER_VFIO_PCI,     /* generic vfio-pci: usable, not migratable */
	XEVF_DRIVER_VFIO_VARIANT, /* a vendor VFIO variant driver such as xe-vfio-pci */
};

struct xevf_vf {
	char addr[XEVF_PCI_ADDR_SIZE];
	char pf_addr[XEVF_PCI_ADDR_SIZE];
	unsigned vf_index;       /* N of the PF's virtfnN link */
	int vendor_id;           /* -1 when unreadable */
	int device_id;           /* -1 when unreadable */
	int revision;            /* -1 when the config space could not be read */
	int numa_node;           /* -1 when the platform does not say */
	int iommu_group;         /* -1 when the VF has none */
	char *driver;            /* bound driver's name, NULL when unbound */
	enum xevf_driver_kind driver_kind;
	bool migration_capable;  /* bound to xe-vfio-pci */
	/* Host paths (always under /dev, whatever the dev root) of the VFIO nodes
	 * that exist for this VF, NULL when absent. */
	char *group_node;        /* /dev/vfio/<group> */
	char *cdev_node;         /* /dev/vfio/devices/vfioN (iommufd) */
	char *modalias;          /* "pci:v...d...", NULL when unreadable */
	/* xe's per-VF provisioning (sriov_admin/vfN/profile/), sorted by key;
	 * none when the kernel does not expose it */
	struct xevf_kv *provisioning;
	size_t nprovisioning;
	bool healthy;
	char *reason;            /* why not healthy, NULL when healthy */
};

struct xevf_pf {
	char addr[XEVF_PCI_ADDR_SIZE];
	int vendor_id, device_id, revision, numa_node;
	char *driver;            /* NULL when unbound */
	long total_vfs, num_vfs; /* sriov_totalvfs, sriov_numvfs (-1 unreadable) */
	int vf_device_id;        /* sriov_vf_device: the device id its VFs get (-1 unreadable) */
	bool provisioning_exposed; /* <pf>/sriov_admin exists (newer xe), or its VFs show quotas in debugfs */
	struct xevf_vf *vfs;     /* sorted by vf_index */
	size_t nvfs;
};

struct xevf_host {
	struct xevf_pf *pfs;     /* sorted by address */
	size_t npfs;
	/* Host-wide VFIO nodes, as host paths; NULL when absent under the dev root. */
	char *vfio_container_node; /* /dev/vfio/vfio */
	char *iommufd_node;        /* /dev/iommu */
	/* One line per problem met, each naming the device and file. Stable
	 * across scans of an unchanged host, so that callers can report changes. */
	char **notes;
	size_t nnotes;
};

/* Scans the host. Fails only when PCI sysfs itself cannot be read (no
 * <sysfs>/bus/pci/devices); per-device problems end up in notes and reasons. */
int xevf_discover(const struct xevf_roots *roots, const struct xevf_scan_opts *opts, struct xevf_host **out,
		  struct xevf_err *err) XEVF_MUST_CHECK;

void xevf_host_free(struct xevf_host *host);

/* The cheap look after an event that moves no device (a bind, an unbind, a
 * VFIO node created or removed): a copy of old with each VF's driver, IOMMU
 * group, VFIO nodes and so health read again (a handful of syscalls per VF),
 * only_vf's alone when not NULL (then the host-wide nodes are not read
 * again). Whatever else the scan read is copied, notes included; a VF that
 * came or went needs xevf_discover. 0, or -ENOMEM. */
int xevf_host_recheck(const struct xevf_roots *roots, const struct xevf_host *old, const char *only_vf,
		      struct xevf_host **out, struct xevf_err *err) XEVF_MUST_CHECK;

/* Finds a VF by address; NULL when the host has none such. */
const struct xevf_vf *xevf_host_find_vf(const struct xevf_host *host, const char *addr);

const char *xevf_driver_kind_name(enum xevf_driver_kind kind);

/* The GuC firmware version xe reports for a PF in debugfs
 * (<sysfs>/kernel/debug/dri/<pf>/gt0/uc/guc_info: "... found X.Y.Z"); *out is
 * NULL when debugfs does not show it. 0 or -ENOMEM. */
int xevf_guc_version(const struct xevf_roots *roots, const char *pf_addr, char **out) XEVF_MUST_CHECK;

#endif
