/* Where the host's /sys and /dev are. In a container they are usually the
 * host's trees mounted elsewhere; in tests they are generated trees. Every
 * kernel-facing call takes the roots and resolves host paths under them. */
#ifndef XEVF_ROOTS_H
#define XEVF_ROOTS_H

#include "xevf_error.h"

struct xevf_roots {
	const char *sysfs; /* replaces "/sys"; NULL means "/sys" */
	const char *dev;   /* replaces "/dev"; NULL means "/dev" */
};

/* Resolves a host path ("/dev/vfio/12", "/sys/bus/pci/...") under the roots. */
int xevf_dev_path(const struct xevf_roots *roots, const char *host_path, char **out) XEVF_MUST_CHECK;
int xevf_sysfs_path(const struct xevf_roots *roots, const char *host_path, char **out) XEVF_MUST_CHECK;

#endif
