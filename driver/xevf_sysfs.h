/* Bounded reads and writes of sysfs-style text files and PCI address parsing.
 *
 * Everything read here comes from outside the process (sysfs of a real or
 * simulated host), so every read has an explicit size limit and every parser
 * checks the whole input.
 */
#ifndef XEVF_SYSFS_H
#define XEVF_SYSFS_H

#include <stdbool.h>
#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>

#include "xevf_error.h"
#include "xevf_util.h"

/* "dddd:bb:dd.f" plus NUL. Only ever filled from a string that passed
 * xevf_pci_addr_parse, so the length is checked before any copy. */
#define XEVF_PCI_ADDR_SIZE 13

/* Largest sysfs attribute we accept: sysfs itself hands out at most one page. */
#define XEVF_SYSFS_TEXT_MAX 4096

struct xevf_pci_addr {
	unsigned domain, bus, dev, func;
};

/* Parses a canonical, lower- or upper-case "dddd:bb:dd.f" address with nothing
 * around it. Returns 0, or -EINVAL when s is not exactly such an address. */
int xevf_pci_addr_parse(const char *s, struct xevf_pci_addr *out) XEVF_MUST_CHECK;

/* Writes the canonical lower-case form into buf (XEVF_PCI_ADDR_SIZE bytes). */
void xevf_pci_addr_format(const struct xevf_pci_addr *a, char buf[XEVF_PCI_ADDR_SIZE]);

/* Reads a whole text file of at most max bytes into a new NUL-terminated string
 * with trailing white space removed. -EFBIG when the file is larger than max,
 * -EILSEQ when it holds a NUL byte, -EINVAL when it is not a regular file (a
 * FIFO is never waited on). */
int xevf_read_text(const char *path, size_t max, char **out, struct xevf_err *err) XEVF_MUST_CHECK;

/* Parses the whole of s (after trimming white space) as an integer in the given
 * base (0 = C rules); -EINVAL when anything else is there, -ERANGE when it does
 * not fit. */
int xevf_parse_long(const char *s, int base, long *out) XEVF_MUST_CHECK;

/* xevf_read_text + xevf_parse_long, with the error naming the file. */
int xevf_read_long(const char *path, int base, long *out, struct xevf_err *err) XEVF_MUST_CHECK;

/* The last path component of a symbolic link's target, e.g. "vfio-pci" for
 * .../driver -> ../../../bus/pci/drivers/vfio-pci. No length limit. */
int xevf_readlink_basename(const char *path, char **out, struct xevf_err *err) XEVF_MUST_CHECK;

/* Writes text to an existing sysfs attribute in one write(2), as the kernel
 * expects. A symbolic link or anything but a regular file is refused. The
 * error names the file and the errno text. */
int xevf_write_text(const char *path, const char *text, struct xevf_err *err) XEVF_MUST_CHECK;

/* xevf_write_text to a sysfs attribute, after checking that the path
 * resolves inside the sysfs root (-EXDEV otherwise). */
struct xevf_roots;
int xevf_sysfs_write(const struct xevf_roots *roots, const char *path, const char *text,
		     struct xevf_err *err) XEVF_MUST_CHECK;

bool xevf_path_exists(const char *path);

#endif
