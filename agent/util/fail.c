#include "fail.h"

#include <stdio.h>
#include <stdlib.h>

int agent_vfail(char **error, int errnum, const char *fmt, va_list ap)
{
	char *text = NULL;

	if (!error)
		return -errnum;
	/* format before freeing: the new message may quote the old one */
	if (vasprintf(&text, fmt, ap) < 0)
		text = NULL;
	free(*error);
	*error = text;
	return -errnum;
}

int agent_fail(char **error, int errnum, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)agent_vfail(error, errnum, fmt, ap);
	va_end(ap);
	return -errnum;
}
