/* The agent's one error convention: a function that can fail returns 0 or a
 * negative errno, and says why in *error (malloc'd, the caller frees; error
 * may be NULL). Messages name the device (PCI address), the file or the key
 * they are about. gRPC status codes appear only where a handler answers a call. */
#ifndef XEVF_AGENT_FAIL_H
#define XEVF_AGENT_FAIL_H

#include <stdarg.h>

/* Replaces *error with a formatted message (which may quote the old one) and
 * returns -errnum, so that callers can write `return agent_fail(error, EINVAL, ...)`. */
int agent_fail(char **error, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int agent_vfail(char **error, int errnum, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

#endif
