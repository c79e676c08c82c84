#include "sim_devices.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "vfio_sim.h"

struct sim_config {
	const char *dir;
	uint64_t flags;
	uint64_t capacity;
};

static struct sim_config config;

struct sim_handle {
	struct vfio_sim *sim;
	bool variant; /* opened while bound to a migration driver */
};

static bool is_variant(const struct xevf_vf *vf)
{
	return vf->driver_kind == XEVF_DRIVER_VFIO_VARIANT;
}

static int sim_open(void *ctx, const struct xevf_vf *vf, const char *dev_root, struct xevf_mig_device *dev,
		    void **priv, struct xevf_err *err)
{
	struct sim_handle *h = calloc(1, sizeof(*h));
	const struct sim_config *cfg = ctx;
	uint64_t flags = is_variant(vf) ? cfg->flags : 0;
	char *file = NULL;
	int rc;

	(void)dev_root;
	if (!h || asprintf(&file, "%s/%s.state", cfg->dir, vf->addr) < 0) {
		free(h);
		return xevf_err_set(err, ENOMEM, "%s: out of memory", vf->addr);
	}
	h->variant = is_variant(vf);
	rc = vfio_sim_new(vf->addr, flags, NULL, 0, file, &h->sim, err);
	if (rc == 0) {
		vfio_sim_set_kind(h->sim, (uint32_t)vf->device_id, (uint32_t)vf->revision);
		vfio_sim_set_capacity(h->sim, cfg->capacity ? cfg->capacity : vfio_sim_max_stream());
	}
	if (rc == 0)
		rc = xevf_mig_init(dev, vf->addr, vfio_sim_fd(h->sim), true, vfio_sim_ops(h->sim), err);
	free(file);
	if (rc) {
		vfio_sim_free(h->sim);
		free(h);
		return rc;
	}
	*priv = h;
	return 0;
}

/* A simulated device follows a driver change, as a real one would. */
static bool sim_still_fits(void *ctx, void *priv, const struct xevf_vf *vf)
{
	(void)ctx;
	return ((struct sim_handle *)priv)->variant == is_variant(vf);
}

static void sim_close(void *ctx, struct xevf_mig_device *dev, void *priv)
{
	struct sim_handle *h = priv;

	(void)ctx;
	xevf_mig_close(dev);
	if (h)
		vfio_sim_free(h->sim);
	free(h);
}

void sim_devices_init(struct mig_device_provider *p, const char *dir, uint64_t flags, uint64_t capacity)
{
	config = (struct sim_config){dir, flags, capacity};
	*p = (struct mig_device_provider){"simulated", &config, sim_open, sim_still_fits, sim_close};
}
