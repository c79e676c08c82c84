#include "xevf_kconfig.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "xevf_sysfs.h"
#include "xevf_util.h"

/* A kernel config is a few hundred KiB; anything far larger is not one. */
#define KCONFIG_MAX_BYTES (16u << 20)

struct xevf_kconfig {
	char *source;
	char *text; /* NUL-terminated */
};

const char *xevf_kconfig_value_name(enum xevf_kconfig_value v)
{
	static const char *const names[] = {
		[XEVF_KCONFIG_UNKNOWN] = "unknown", [XEVF_KCONFIG_ABSENT] = "absent",
		[XEVF_KCONFIG_NOT_SET] = "not set", [XEVF_KCONFIG_MODULE] = "m",
		[XEVF_KCONFIG_BUILTIN] = "y",       [XEVF_KCONFIG_OTHER] = "set",
	};
	return (unsigned)v < sizeof(names) / sizeof(names[0]) ? names[v] : "?";
}

/* Reads a plain or gzip'd file whole (zlib reads both): 0, or -errno. */
static int read_maybe_gzipped(const char *path, char **out, struct xevf_err *err)
{
	gzFile f = gzopen(path, "rb");
	size_t len = 0, cap = 0;
	char *buf = NULL;
	int n;

	*out = NULL;
	if (!f)
		return xevf_err_set(err, errno ? errno : ENOMEM, "%s: %s", path, strerror(errno ? errno : ENOMEM));
	do {
		if (cap - len < 65536) {
			char *grown = cap >= KCONFIG_MAX_BYTES ? NULL : realloc(buf, cap + 65536 + 1);
			if (!grown) {
				free(buf);
				gzclose(f);
				return cap >= KCONFIG_MAX_BYTES
					? xevf_err_set(err, EFBIG, "%s: larger than %u bytes: not a kernel configuration",
						       path, KCONFIG_MAX_BYTES)
					: xevf_err_set(err, ENOMEM, "%s: out of memory", path);
			}
			buf = grown;
			cap += 65536;
		}
		n = gzread(f, buf + len, (unsigned)(cap - len));
		if (n > 0)
			len += (size_t)n;
	} while (n > 0);
	if (n < 0) {
		int zerr = 0;
		const char *why = gzerror(f, &zerr);
		xevf_err_set(err, EIO, "%s: cannot be read: %s", path, why ? why : "zlib error");
		free(buf);
		gzclose(f);
		return -EIO;
	}
	gzclose(f);
	buf[len] = '\0';
	*out = buf;
	return 0;
}

int xevf_kconfig_open(const char *boot_root, const char *proc_root, const char *release, struct xevf_kconfig **out,
		      struct xevf_err *err)
{
	char *boot = NULL, *proc = NULL, *text = NULL;
	const char *source = NULL;
	struct xevf_kconfig *k;
	int rc;

	*out = NULL;
	if (xevf_asprintf(&boot, "%s/config-%s", boot_root ? boot_root : "/boot", release) ||
	    xevf_asprintf(&proc, "%s/config.gz", proc_root ? proc_root : "/proc")) {
		rc = xevf_err_set(err, ENOMEM, "kernel configuration: out of memory");
		goto out;
	}
	if (xevf_path_exists(boot))
		source = boot;
	else if (xevf_path_exists(proc))
		source = proc;
	if (!source) {
		rc = xevf_err_set(err, ENOENT, "the configuration of kernel %s is neither in %s nor in %s", release, boot,
				  proc);
		goto out;
	}
	if ((rc = read_maybe_gzipped(source, &text, err)) < 0 || !text) {
		rc = rc < 0 ? rc : xevf_err_set(err, EIO, "%s: nothing read", source);
		goto out;
	}
	if ((rc = xevf_kconfig_parse(text, strlen(text), source, &k)) < 0) {
		xevf_err_set(err, -rc, "kernel configuration: out of memory");
		goto out;
	}
	*out = k;
out:
	free(text);
	free(boot);
	free(proc);
	return rc;
}

int xevf_kconfig_parse(const char *bytes, size_t len, const char *source, struct xevf_kconfig **out)
{
	struct xevf_kconfig *k = calloc(1, sizeof(*k));

	*out = NULL;
	if (!k || !(k->source = strdup(source)) || !(k->text = malloc(len + 1))) {
		xevf_kconfig_close(k);
		return -ENOMEM;
	}
	memcpy(k->text, bytes, len);
	k->text[len] = '\0'; /* an embedded NUL ends the text there */
	*out = k;
	return 0;
}

void xevf_kconfig_close(struct xevf_kconfig *k)
{
	if (!k)
		return;
	free(k->source);
	free(k->text);
	free(k);
}

const char *xevf_kconfig_source(const struct xevf_kconfig *k) { return k ? k->source : NULL; }

/* The line at p, up to (not including) its newline. */
static enum xevf_kconfig_value line_value(const char *p, const char *symbol, size_t slen)
{
	static const char not_set[] = " is not set";

	if (p[0] == '#' && p[1] == ' ' && strncmp(p + 2, symbol, slen) == 0 &&
	    strncmp(p + 2 + slen, not_set, sizeof(not_set) - 1) == 0)
		return XEVF_KCONFIG_NOT_SET;
	if (strncmp(p, symbol, slen) != 0 || p[slen] != '=')
		return XEVF_KCONFIG_ABSENT;
	p += slen + 1;
	if (p[0] == 'm' && (p[1] == '\n' || p[1] == '\0'))
		return XEVF_KCONFIG_MODULE;
	if (p[0] == 'y' && (p[1] == '\n' || p[1] == '\0'))
		return XEVF_KCONFIG_BUILTIN;
	return XEVF_KCONFIG_OTHER;
}

enum xevf_kconfig_value xevf_kconfig_get(const struct xevf_kconfig *k, const char *symbol)
{
	size_t slen = strlen(symbol);

	if (!k)
		return XEVF_KCONFIG_UNKNOWN;
	for (const char *p = k->text; p && *p;) {
		enum xevf_kconfig_value v = line_value(p, symbol, slen);
		const char *nl = strchr(p, '\n');
		if (v != XEVF_KCONFIG_ABSENT)
			return v;
		p = nl ? nl + 1 : NULL;
	}
	return XEVF_KCONFIG_ABSENT;
}
