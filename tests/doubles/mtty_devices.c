#include "mtty_devices.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The map line for vf: 0 and the mdev's UUID and group (malloc'd), or -ENOENT. */
static int lookup(const char *map_file, const char *vf, char **uuid, char **group, struct xevf_err *err)
{
	FILE *f = fopen(map_file, "re");
	char *line = NULL;
	size_t cap = 0;
	int rc = -ENOENT;

	if (!f)
		return xevf_err_set(err, errno, "%s: cannot read the mtty map %s: %s", vf, map_file, strerror(errno));
	while (rc == -ENOENT && getline(&line, &cap, f) > 0) {
		char *save = NULL, *addr = strtok_r(line, " \t\n", &save), *u = strtok_r(NULL, " \t\n", &save);
		char *g = strtok_r(NULL, " \t\n", &save);
		if (addr && u && g && strcmp(addr, vf) == 0) {
			*uuid = strdup(u);
			*group = strdup(g);
			rc = *uuid && *group ? 0 : -ENOMEM;
		}
	}
	free(line);
	fclose(f);
	if (rc == -ENOENT)
		return xevf_err_set(err, ENOENT, "%s: no mtty device for this VF in %s", vf, map_file);
	return rc == 0 ? 0 : xevf_err_set(err, ENOMEM, "%s: out of memory", vf);
}

static int mtty_open(void *ctx, const struct xevf_vf *vf, const char *dev_root, struct xevf_mig_device *dev,
		     void **priv, struct xevf_err *err)
{
	char *uuid = NULL, *group = NULL;
	int rc;

	(void)dev_root; /* the simulated host's; the mdevs are the VM's own */
	*priv = NULL;
	rc = lookup(ctx, vf->addr, &uuid, &group, err);
	if (rc == 0)
		rc = xevf_mig_open_group(dev, "/dev", group, uuid, err);
	free(uuid);
	free(group);
	return rc;
}

static void mtty_close(void *ctx, struct xevf_mig_device *dev, void *priv)
{
	(void)ctx;
	(void)priv;
	xevf_mig_close(dev);
}

void mtty_devices_init(struct mig_device_provider *p, const char *map_file)
{
	*p = (struct mig_device_provider){"mtty", (void *)map_file, mtty_open, NULL, mtty_close};
}
