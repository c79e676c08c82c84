#include "xevf_sysfs.h"
#include "xevf_roots.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int hex_field(const char *s, size_t len, unsigned *out)
{
	unsigned v = 0;

	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)s[i];
		if (!isxdigit(c))
			return -EINVAL;
		v = v * 16 + (unsigned)(isdigit(c) ? c - '0' : tolower(c) - 'a' + 10);
	}
	*out = v;
	return 0;
}

int xevf_pci_addr_parse(const char *s, struct xevf_pci_addr *out)
{
	struct xevf_pci_addr a;

	if (!s || strnlen(s, XEVF_PCI_ADDR_SIZE) != XEVF_PCI_ADDR_SIZE - 1)
		return -EINVAL;
	if (s[4] != ':' || s[7] != ':' || s[10] != '.')
		return -EINVAL;
	if (hex_field(s, 4, &a.domain) || hex_field(s + 5, 2, &a.bus) ||
	    hex_field(s + 8, 2, &a.dev) || hex_field(s + 11, 1, &a.func))
		return -EINVAL;
	if (a.dev > 0x1f || a.func > 7)
		return -EINVAL;
	if (out)
		*out = a;
	return 0;
}

void xevf_pci_addr_format(const struct xevf_pci_addr *a, char buf[XEVF_PCI_ADDR_SIZE])
{
	snprintf(buf, XEVF_PCI_ADDR_SIZE, "%04x:%02x:%02x.%x", a->domain & 0xffff,
		 a->bus & 0xff, a->dev & 0x1f, a->func & 7);
}

/* sysfs attributes, configuration and state files are regular files. */
static int check_regular(int fd, const char *path, struct xevf_err *err)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return xevf_err_set(err, errno, "cannot stat %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return xevf_err_set(err, EINVAL, "%s is not a regular file", path);
	return 0;
}

static void trim_trailing_space(char *s, size_t *len)
{
	while (*len > 0 && isspace((unsigned char)s[*len - 1]))
		s[--*len] = '\0';
}

int xevf_read_text(const char *path, size_t max, char **out, struct xevf_err *err)
{
	char *buf;
	size_t len = 0;
	int fd, rc;

	*out = NULL;
	/* non-blocking: a FIFO put where a file belongs must not hang the caller */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return xevf_err_set(err, errno, "cannot open %s: %s", path, strerror(errno));
	if ((rc = check_regular(fd, path, err)) < 0) {
		close(fd);
		return rc;
	}
	/* One byte more than allowed, so that an over-long file is detected. */
	buf = malloc(max + 2);
	if (!buf) {
		close(fd);
		return xevf_err_set(err, ENOMEM, "reading %s: out of memory", path);
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, max + 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = xevf_err_set(err, errno, "cannot read %s: %s", path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max) {
			rc = xevf_err_set(err, EFBIG, "%s is larger than %zu bytes", path, max);
			goto fail;
		}
	}
	close(fd);
	buf[len] = '\0';
	if (memchr(buf, '\0', len)) {
		free(buf);
		return xevf_err_set(err, EILSEQ, "%s holds a NUL byte, not text", path);
	}
	trim_trailing_space(buf, &len);
	*out = buf;
	return 0;
fail:
	close(fd);
	free(buf);
	return rc;
}

int xevf_parse_long(const char *s, int base, long *out)
{
	char *end;
	long v;

	if (!s)
		return -EINVAL;
	while (isspace((unsigned char)*s))
		s++;
	if (*s == '\0')
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, base);
	if (errno == ERANGE)
		return -ERANGE;
	if (end == s)
		return -EINVAL;
	while (isspace((unsigned char)*end))
		end++;
	if (*end != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

int xevf_read_long(const char *path, int base, long *out, struct xevf_err *err)
{
	char *text;
	int rc = xevf_read_text(path, 64, &text, err);

	if (rc)
		return rc;
	rc = xevf_parse_long(text, base, out);
	if (rc)
		xevf_err_set(err, -rc, "%s: expected a number, found '%.32s'", path, text);
	free(text);
	return rc;
}

int xevf_readlink_basename(const char *path, char **out, struct xevf_err *err)
{
	size_t cap = 128;

	*out = NULL;
	for (;;) {
		char *buf = malloc(cap);
		ssize_t n;
		const char *base;

		if (!buf)
			return xevf_err_set(err, ENOMEM, "reading link %s: out of memory", path);
		n = readlink(path, buf, cap);
		if (n < 0) {
			int e = errno;
			free(buf);
			return xevf_err_set(err, e, "cannot read link %s: %s", path, strerror(e));
		}
		if ((size_t)n >= cap) {
			/* Possibly truncated: readlink does not say, so grow and retry. */
			free(buf);
			if (cap > (size_t)PATH_MAX * 4)
				return xevf_err_set(err, ENAMETOOLONG, "link %s is too long", path);
			cap *= 2;
			continue;
		}
		buf[n] = '\0';
		while (n > 1 && buf[n - 1] == '/')
			buf[--n] = '\0';
		base = strrchr(buf, '/');
		base = base ? base + 1 : buf;
		if (*base == '\0') {
			free(buf);
			return xevf_err_set(err, EINVAL, "link %s has an empty target", path);
		}
		*out = strdup(base);
		free(buf);
		if (!*out)
			return xevf_err_set(err, ENOMEM, "reading link %s: out of memory", path);
		return 0;
	}
}

int xevf_write_text(const char *path, const char *text, struct xevf_err *err)
{
	size_t len = strlen(text);
	ssize_t n;
	/* the attribute itself is never a symbolic link: one would point the write
	 * elsewhere; O_TRUNC as `echo value > attr` (sysfs ignores it; a file of
	 * a simulated host then holds just the value) */
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK), rc;

	if (fd < 0)
		return xevf_err_set(err, errno, "cannot open %s for writing: %s (%s)", path, strerror(errno),
				    errno == ELOOP ? "it is a symbolic link, not an attribute" : xevf_errno_hint(errno));
	if ((rc = check_regular(fd, path, err)) < 0) {
		close(fd);
		return rc;
	}
	do {
		n = write(fd, text, len);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		int e = errno;
		close(fd);
		return xevf_err_set(err, e, "writing '%s' to %s failed: %s (%s)", text, path, strerror(e),
				    xevf_errno_hint(e));
	}
	if (close(fd) < 0 && errno != EINTR)
		return xevf_err_set(err, errno, "writing '%s' to %s failed: %s (%s)", text, path, strerror(errno),
				    xevf_errno_hint(errno));
	if ((size_t)n != len)
		return xevf_err_set(err, EIO, "short write of '%s' to %s", text, path);
	return 0;
}

bool xevf_path_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}


int xevf_sysfs_write(const struct xevf_roots *roots, const char *path, const char *text, struct xevf_err *err)
{
	const char *root = roots && roots->sysfs ? roots->sysfs : "/sys";
	char *real_root, *real;
	size_t n;
	int rc;

	errno = 0;
	real_root = realpath(root, NULL);
	real = real_root ? realpath(path, NULL) : NULL;
	n = real_root ? strlen(real_root) : 0;

	if (!real_root || (!real && errno != ENOENT))
		rc = xevf_err_set(err, errno ? errno : ENOMEM, "cannot open %s for writing: %s", real_root ? path : root,
				  strerror(errno ? errno : ENOMEM));
	else if (real && (strncmp(real, real_root, n) != 0 || (real[n] != '/' && real[n] != '\0')))
		/* a link under the sysfs root that leads out of it: never write there */
		rc = xevf_err_set(err, EXDEV, "%s resolves to %s, outside %s: refusing to write to it", path, real, root);
	else /* also when the attribute does not exist: the write says so */
		rc = xevf_write_text(path, text, err);
	free(real_root);
	free(real);
	return rc;
}
