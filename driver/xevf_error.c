#include "xevf_error.h"

#include <errno.h>

#include <stdio.h>
#include <stdlib.h>

int xevf_err_vset(struct xevf_err *err, int errnum, const char *fmt, va_list ap)
{
	if (errnum < 0)
		errnum = -errnum;
	if (err) {
		char *msg = NULL;
		/* format before freeing: the new message may quote the old one */
		if (vasprintf(&msg, fmt, ap) < 0)
			msg = NULL;
		free(err->msg);
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

const char *xevf_errno_hint(int errnum)
{
	switch (errnum < 0 ? -errnum : errnum) {
	case EBUSY:
		return "the device is busy: a driver or a running VM holds it; stop the VM or unbind it first";
	case ENODEV:
	case ENXIO:
		return "the device is gone (removed, or its PF was reset or lost SR-IOV)";
	case ENOTTY:
	case EOPNOTSUPP:
		return "the driver does not support this operation";
	case EPERM:
	case EACCES:
		return "permission denied: run the agent privileged (CAP_SYS_ADMIN, CAP_SYS_MODULE) with /sys writable";
	case EROFS:
		return "the file system is read-only: mount /sys read-write into the agent's container";
	case ENOENT:
		return "the file does not exist: the kernel or driver lacks this feature, or the device vanished";
	case EINVAL:
	case ERANGE:
		return "the kernel refused the value";
	case ENOMEM:
	case ENOSPC:
		return "the kernel could not allocate what this needs (too many VFs for the PF's resources?)";
	case EIO:
		return "the device did not respond; check dmesg for PCI or firmware errors";
	default:
		return "see dmesg for the kernel's reason";
	}
}
