#include "xevf_roots.h"

#include <string.h>

#include "xevf_util.h"

int xevf_dev_path(const struct xevf_roots *roots, const char *host_path, char **out)
{
	const char *root = roots && roots->dev ? roots->dev : "/dev";

	/* host_path always starts with "/dev" */
	return xevf_asprintf(out, "%s%s", root, host_path + strlen("/dev"));
}

int xevf_sysfs_path(const struct xevf_roots *roots, const char *host_path, char **out)
{
	const char *root = roots && roots->sysfs ? roots->sysfs : "/sys";

	return xevf_asprintf(out, "%s%s", root, host_path + strlen("/sys"));
}
