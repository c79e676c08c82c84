/* General helpers with nothing kernel-specific about them: formatted
 * allocation, string vectors, directories and crash-safe file replacement.
 * The driver layer uses them, and so may everything above it. */
#ifndef XEVF_UTIL_H
#define XEVF_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "xevf_error.h"

/* asprintf that returns 0 or -ENOMEM and leaves *out NULL on failure. */
int xevf_asprintf(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3))) XEVF_MUST_CHECK;

/* strdup that passes NULL through. */
char *xevf_strdup_or_null(const char *s);

/* A vector of malloc'd strings: free it, or ask whether it holds s. */
void xevf_strv_free(char **v, size_t n);
bool xevf_strv_has(char *const *v, size_t n, const char *s);
/* Where s is in v, or -1. */
long xevf_strv_index(char *const *v, size_t n, const char *s);
/* A copy of v's n strings (NULL-terminated too), or NULL out of memory. */
char **xevf_strv_dup(char *const *v, size_t n);

/* Creates the directory that holds path (one level, e.g. /run/xevf for
 * /run/xevf/status.sock); 0 when it exists or was made, else -errno. */
int xevf_mkdir_parent(const char *path, mode_t mode);

/* Replaces path's contents so that a crash leaves the old or the new file,
 * never a mix: a temporary file beside it (mode 0600), write, fsync, rename,
 * then an fsync of the directory. The error names the file. */
int xevf_write_file_atomic(const char *path, const void *data, size_t len, struct xevf_err *err) XEVF_MUST_CHECK;

/* How long a call may wait for the kernel (VFs to appear, a driver to bind),
 * and how its caller stops it early (stop() returning true: the agent is
 * stopping). */
struct xevf_wait {
	int timeout_ms;
	bool (*stop)(void *ctx); /* NULL: never stopped early */
	void *ctx;
};
#define XEVF_WAIT_MS(ms) (&(const struct xevf_wait){(ms), NULL, NULL})

/* One step of a polling wait: sleeps a little and returns true while there
 * is time left and nobody stopped it. *waited counts the milliseconds. */
bool xevf_wait_step(const struct xevf_wait *w, int *waited);
/* Did the caller stop it (rather than the time running out)? */
bool xevf_wait_stopped(const struct xevf_wait *w);

#endif
