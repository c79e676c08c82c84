/* Which Intel GPUs the xe driver does SR-IOV on, and so which PFs'
 * VFs xe-vfio-pci can migrate, by PF device id (the kernel's
 * include/drm/intel/pciids.h lists; xe-vfio-pci's id table is the
 * Battlemage, Panther Lake and Wildcat Lake lists). */
#ifndef XEVF_XE_PLATFORM_H
#define XEVF_XE_PLATFORM_H

#include <stdbool.h>

struct xevf_xe_platform {
	const char *name;   /* "Battlemage", ... */
	bool sriov;         /* xe offers SR-IOV PF mode on it (and xe-vfio-pci takes its VFs) */
	const char *note;   /* what an operator should know, or NULL */
};

/* The platform of an Intel PF device id, or NULL when the id is none that
 * xevf knows. */
const struct xevf_xe_platform *xevf_xe_platform_of(int device_id);

#endif
