/* Errors returned by the driver layer.
 *
 * Every function that can fail returns 0 or a negative errno and, when the caller
 * passes a struct xevf_err, fills it with a message that names the device, the file
 * and the errno text. The message is heap-allocated so that paths of any length fit.
 */
#ifndef XEVF_ERROR_H
#define XEVF_ERROR_H

#include <stdarg.h>

struct xevf_err {
	int errnum;  /* positive errno value, 0 when no error is recorded */
	char *msg;   /* owned; NULL when no error is recorded */
};

#define XEVF_ERR_INIT {0, NULL}
#define XEVF_MUST_CHECK __attribute__((warn_unused_result))

/* Records errnum and a formatted message (replacing any earlier one) and returns
 * -errnum, so that callers can write `return xevf_err_set(err, ENOENT, ...)`.
 * err may be NULL. */
int xevf_err_set(struct xevf_err *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int xevf_err_vset(struct xevf_err *err, int errnum, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/* The message, or "no error" when none is recorded. Never NULL. */
const char *xevf_err_msg(const struct xevf_err *err);

void xevf_err_clear(struct xevf_err *err);

/* What to do about an errno met while driving sysfs, in a few words, e.g. for
 * EBUSY "a driver or a running VM holds the device ...". Never NULL. */
const char *xevf_errno_hint(int errnum);

#endif
