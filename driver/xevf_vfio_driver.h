/* The VFIO driver for a VF: found through the kernel's "vfio_pci:" module alias
 * convention in modules.alias, loaded with libkmod, bound with driver_override. */
#ifndef XEVF_VFIO_DRIVER_H
#define XEVF_VFIO_DRIVER_H

#include <stdbool.h>
#include <stddef.h>

#include "xevf_discovery.h"
#include "xevf_error.h"

#define XEVF_GENERIC_VFIO_MODULE "vfio_pci"
#define XEVF_XE_VFIO_MODULE "xe_vfio_pci"

struct xevf_modules;

/* Opens <modules_root>/<release> (modules_root NULL: /lib/modules; release
 * NULL: the running kernel's). Fails when the directory or its index
 * (modules.dep.bin, made by depmod) is missing. */
int xevf_modules_open(const char *modules_root, const char *release, struct xevf_modules **out,
		      struct xevf_err *err) XEVF_MUST_CHECK;
void xevf_modules_close(struct xevf_modules *m);
const char *xevf_modules_release(const struct xevf_modules *m);
const char *xevf_modules_dir(const struct xevf_modules *m);

struct xevf_vfio_match {
	char *variant;      /* a vendor VFIO variant module (e.g. xe_vfio_pci), NULL when none */
	bool generic;       /* the generic vfio_pci module matches too */
};

/* Looks up "vfio_" + modalias (modalias is the VF's "pci:v...d...") in the
 * module index. */
int xevf_vfio_lookup(struct xevf_modules *m, const char *modalias, struct xevf_vfio_match *out,
		     struct xevf_err *err) XEVF_MUST_CHECK;
void xevf_vfio_match_free(struct xevf_vfio_match *match);

/* Loads a module and its dependencies; nothing to do when <sysfs>/module/<module>
 * exists (loaded or built in), which is also how a simulated host says so. */
int xevf_module_load(struct xevf_modules *m, const struct xevf_roots *roots, const char *module,
		     struct xevf_err *err) XEVF_MUST_CHECK;

/* The PCI driver a loaded module registers (sysfs /sys/module/<m>/drivers/pci:<name>),
 * e.g. "xe-vfio-pci" for xe_vfio_pci; falls back to the module name with '_'
 * turned into '-'. */
int xevf_module_pci_driver(const struct xevf_roots *roots, const char *module, char **driver) XEVF_MUST_CHECK;

/* Binds the VF to driver: unbinds it from another driver first, then writes
 * driver_override and drivers_probe, and waits (wait) for the
 * driver link. Nothing to do when already bound to it. Callers must have made
 * sure that the VF is not in use. */
int xevf_vf_bind(const struct xevf_roots *roots, const char *vf_addr, const char *driver, const struct xevf_wait *wait,
		 struct xevf_err *err) XEVF_MUST_CHECK;

/* Host paths of VFIO nodes (/dev/vfio/...) that some other process holds
 * open, by looking at every <proc_root>/<pid>/fd/ (proc_root NULL: /proc)
 * but this process's own (<proc_root>/self). A VM's QEMU holds its VF's group
 * or cdev open for as long as it runs. */
int xevf_vfio_nodes_in_use(const char *proc_root, char ***paths, size_t *n) XEVF_MUST_CHECK;

/* A driver's version as sysfs shows it: <sysfs>/module/<module>/version, else
 * its srcversion ("xe-vfio-pci" is module xe_vfio_pci). *out is NULL when
 * neither exists (a built-in driver, or no version). 0 or -ENOMEM. */
int xevf_driver_version(const struct xevf_roots *roots, const char *driver, char **out) XEVF_MUST_CHECK;

#endif
