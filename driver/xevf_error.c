#include "xevf_error.h"

#include <stdio.h>
#include <stdlib.h>

int xevf_err_vset(struct xevf_err *err, int errnum, const char *fmt, va_list ap)
{
	if (errnum < 0)
		errnum = -errnum;
	if (err) {
		char *msg = NULL;
		free(err->msg);
		err->msg = NULL;
		if (vasprintf(&msg, fmt, ap) >= 0)
			err->msg = msg;
		err->errnum = errnum;
	}
	return -errnum;
}

int xevf_err_set(struct xevf_err *err, int errnum, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = xevf_err_vset(err, errnum, fmt, ap);
	va_end(ap);
	return rc;
}

const char *xevf_err_msg(const struct xevf_err *err)
{
	if (!err || !err->errnum)
		return "no error";
	return err->msg ? err->msg : "out of memory while formatting an error message";
}

void xevf_err_clear(struct xevf_err *err)
{
	if (!err)
		return;
	free(err->msg);
	err->msg = NULL;
	err->errnum = 0;
}
