/* A kernel's build configuration: what a symbol such as CONFIG_XE_VFIO_PCI
 * was set to, read from <boot>/config-<release> or, when the kernel keeps
 * it, <proc>/config.gz. */
#ifndef XEVF_KCONFIG_H
#define XEVF_KCONFIG_H

#include <stddef.h>

#include "xevf_error.h"

enum xevf_kconfig_value {
	XEVF_KCONFIG_UNKNOWN,  /* the configuration could not be read */
	XEVF_KCONFIG_ABSENT,   /* the configuration does not mention it (e.g. an older kernel) */
	XEVF_KCONFIG_NOT_SET,  /* "# CONFIG_X is not set" */
	XEVF_KCONFIG_MODULE,   /* =m */
	XEVF_KCONFIG_BUILTIN,  /* =y */
	XEVF_KCONFIG_OTHER,    /* a value (a number, a string) */
};
const char *xevf_kconfig_value_name(enum xevf_kconfig_value v);

struct xevf_kconfig;

/* Reads the configuration of kernel release (boot_root NULL: /boot;
 * proc_root NULL: /proc). -ENOENT when neither file exists, with a message
 * naming both; another -errno when one exists but cannot be read. */
int xevf_kconfig_open(const char *boot_root, const char *proc_root, const char *release, struct xevf_kconfig **out,
		      struct xevf_err *err) XEVF_MUST_CHECK;
/* The same from bytes already read (source names them). 0 or -ENOMEM. */
int xevf_kconfig_parse(const char *bytes, size_t len, const char *source, struct xevf_kconfig **out) XEVF_MUST_CHECK;
void xevf_kconfig_close(struct xevf_kconfig *k);
/* The file it was read from. */
const char *xevf_kconfig_source(const struct xevf_kconfig *k);
/* symbol with its CONFIG_ prefix; k NULL: UNKNOWN. */
enum xevf_kconfig_value xevf_kconfig_get(const struct xevf_kconfig *k, const char *symbol);

#endif
