#include "devices.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int kernel_open(void *ctx, const struct xevf_vf *vf, const char *dev_root, struct xevf_mig_device *dev,
		       void **priv, struct xevf_err *err)
{
	char group[16];

	(void)ctx;
	*priv = NULL;
	if (vf->iommu_group < 0)
		return xevf_err_set(err, ENODEV, "%s: no IOMMU group: it cannot be opened through VFIO", vf->addr);
	snprintf(group, sizeof(group), "%d", vf->iommu_group);
	return xevf_mig_open_group(dev, dev_root, group, vf->addr, err);
}

static void kernel_close(void *ctx, struct xevf_mig_device *dev, void *priv)
{
	(void)ctx;
	(void)priv;
	xevf_mig_close(dev);
}

const struct mig_device_provider mig_kernel_devices = {"vfio", NULL, kernel_open, NULL, kernel_close};

struct mig_dev *devices_find(const struct mig_devices *t, const char *addr)
{
	for (struct mig_dev *d = t->list; d; d = d->next)
		if (strcmp(d->addr, addr) == 0)
			return d->open ? d : NULL;
	return NULL;
}

struct mig_dev *devices_claim(struct mig_devices *t, const char *addr)
{
	struct mig_dev *d;

	for (d = t->list; d; d = d->next)
		if (strcmp(d->addr, addr) == 0)
			break;
	if (d && d->claimed)
		return NULL;
	if (!d) {
		if (!(d = calloc(1, sizeof(*d))) || !(d->addr = strdup(addr))) {
			free(d);
			return NULL;
		}
		d->dev.fd = -1;
		d->next = t->list;
		t->list = d;
	}
	d->claimed = true;
	return d;
}

int devices_open(struct mig_devices *t, struct mig_dev *d, const struct xevf_vf *vf, const char *dev_root,
		 struct xevf_err *err)
{
	const struct mig_device_provider *p = t->provider;
	int rc;

	if (d->open && (!p->still_fits || p->still_fits(p->ctx, d->priv, vf)))
		return 0;
	if (d->open) {
		/* rebound to another driver: the device follows, as a real one would */
		p->close(p->ctx, &d->dev, d->priv);
		d->open = false;
	}
	rc = p->open(p->ctx, vf, dev_root, &d->dev, &d->priv, err);
	d->open = rc == 0;
	return rc;
}

static void unlink_entry(struct mig_devices *t, struct mig_dev *d)
{
	for (struct mig_dev **pp = &t->list; *pp; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			return;
		}
}

struct mig_dev *devices_release(struct mig_devices *t, struct mig_dev *d, bool close)
{
	if (!d)
		return NULL;
	d->claimed = false;
	if (d->open && !close)
		return NULL;
	unlink_entry(t, d);
	return d;
}

void devices_close(const struct mig_devices *t, struct mig_dev *d)
{
	if (!d)
		return;
	if (d->open)
		t->provider->close(t->provider->ctx, &d->dev, d->priv);
	free(d->addr);
	free(d);
}

void devices_free(struct mig_devices *t)
{
	while (t->list) {
		struct mig_dev *d = t->list;
		t->list = d->next;
		devices_close(t, d);
	}
}
