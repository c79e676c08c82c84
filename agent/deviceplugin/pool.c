#include "pool.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "text.h"

char *pool_env_name(const char *resource_name)
{
	static const char prefix[] = "PCI_RESOURCE_";
	size_t n = strlen(resource_name);
	char *out = malloc(sizeof(prefix) + n);

	if (!out)
		return NULL;
	memcpy(out, prefix, sizeof(prefix) - 1);
	for (size_t i = 0; i < n; i++) {
		char c = resource_name[i];
		out[sizeof(prefix) - 1 + i] = (char)((c == '.' || c == '/') ? '_' : toupper((unsigned char)c));
	}
	out[sizeof(prefix) - 1 + n] = '\0';
	return out;
}

char *pool_socket_name(const char *resource_name)
{
	char *out = NULL;

	if (xevf_asprintf(&out, "xevf-%s.sock", resource_name))
		return NULL;
	for (char *p = out; *p; p++)
		if (*p == '/')
			*p = '_';
	return out;
}

int pool_init(struct pool *p, const struct pool_config *cfg)
{
	memset(p, 0, sizeof(*p));
	if (pool_config_copy(&p->cfg, cfg))
		return -ENOMEM;
	p->env_name = pool_env_name(cfg->resource_name);
	p->socket_name = pool_socket_name(cfg->resource_name);
	if (!p->env_name || !p->socket_name) {
		pool_destroy(p);
		return -ENOMEM;
	}
	return 0;
}

static void device_free(struct pool_device *d)
{
	free(d->reason);
	free(d->driver);
	free(d->group_node);
	free(d->cdev_node);
}

static void devices_free(struct pool_device *devs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		device_free(&devs[i]);
	free(devs);
}

void pool_destroy(struct pool *p)
{
	devices_free(p->devs, p->ndevs);
	free(p->vfio_container_node);
	free(p->iommufd_node);
	free(p->env_name);
	free(p->socket_name);
	pool_config_free(&p->cfg);
	memset(p, 0, sizeof(*p));
}

const char *pool_health_name(bool healthy)
{
	return healthy ? "Healthy" : "Unhealthy";
}

static int cmp_id_device(const void *id, const void *dev)
{
	return strcmp(id, ((const struct pool_device *)dev)->id);
}

const struct pool_device *pool_find(const struct pool *p, const char *id)
{
	/* devs are sorted by id (pool_change_make): a binary search */
	return p->ndevs ? bsearch(id, p->devs, p->ndevs, sizeof(*p->devs), cmp_id_device) : NULL;
}

static int device_from_vf(struct pool_device *d, const struct xevf_vf *vf, const char *note)
{
	memset(d, 0, sizeof(*d));
	memcpy(d->id, vf->addr, sizeof(d->id));
	memcpy(d->pf, vf->pf_addr, sizeof(d->pf));
	d->numa_node = vf->numa_node;
	d->healthy = vf->healthy;
	d->migratable = vf->migration_capable;
	d->reason = xevf_strdup_or_null(!vf->healthy && note ? note : vf->reason);
	d->driver = xevf_strdup_or_null(vf->driver);
	d->group_node = xevf_strdup_or_null(vf->group_node);
	d->cdev_node = xevf_strdup_or_null(vf->cdev_node);
	if ((vf->reason && !d->reason && !note) || (vf->driver && !d->driver) ||
	    (vf->group_node && !d->group_node) || (vf->cdev_node && !d->cdev_node)) {
		device_free(d);
		return -ENOMEM;
	}
	return 0;
}

static int cmp_devices(const void *a, const void *b)
{
	return strcmp(((const struct pool_device *)a)->id, ((const struct pool_device *)b)->id);
}

/* Logs the differences between the old and new device lists; true when the
 * kubelet-visible part (ids, health, NUMA) changed. */
static bool log_changes(const struct pool *p, const struct pool_device *nd, size_t nn)
{
	bool visible = p->ndevs != nn;
	const char *res = p->cfg.resource_name;

	for (size_t i = 0; i < nn; i++) {
		const struct pool_device *old = pool_find(p, nd[i].id);
		if (!old) {
			visible = true;
			if (nd[i].healthy)
				log_info("vf_added", "resource=%s pci=%s pf=%s driver=%s numa=%d migratable=%s", res,
					 nd[i].id, nd[i].pf, nd[i].driver ? nd[i].driver : "none", nd[i].numa_node,
					 nd[i].migratable ? "true" : "false");
			else
				log_warn("vf_added", "resource=%s pci=%s pf=%s health=Unhealthy reason=\"%s\"", res,
					 nd[i].id, nd[i].pf, nd[i].reason ? nd[i].reason : "unknown");
			continue;
		}
		if (old->healthy != nd[i].healthy || old->numa_node != nd[i].numa_node)
			visible = true;
		if (!old->healthy && nd[i].healthy)
			log_info("vf_healthy", "resource=%s pci=%s driver=%s", res, nd[i].id,
				 nd[i].driver ? nd[i].driver : "none");
		else if (!nd[i].healthy && (old->healthy || !text_eq(old->reason, nd[i].reason)))
			log_warn("vf_unhealthy", "resource=%s pci=%s reason=\"%s\"", res, nd[i].id,
				 nd[i].reason ? nd[i].reason : "unknown");
	}
	for (size_t i = 0; i < p->ndevs; i++) {
		if (!bsearch(p->devs[i].id, nd, nn, sizeof(*nd), cmp_id_device)) {
			visible = true;
			log_warn("vf_removed", "resource=%s pci=%s", res, p->devs[i].id);
		}
	}
	return visible;
}

static bool host_has_pf(const struct xevf_host *host, const char *pf)
{
	for (size_t i = 0; i < host->npfs; i++)
		if (strcmp(host->pfs[i].addr, pf) == 0)
			return true;
	return false;
}

int pool_change_make(const struct pool *p, const struct inventory *inv, bool *taken, struct pool_change *c)
{
	const struct xevf_host *host = inv->host;
	size_t total = p->ndevs, n = 0, k = 0;
	struct pool_device *nd;

	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < host->npfs; i++)
		total += host->pfs[i].nvfs;
	nd = calloc(total ? total : 1, sizeof(*nd));
	if (!nd) {
		log_error("pool_update_failed", "resource=%s reason=\"out of memory\"", p->cfg.resource_name);
		return -ENOMEM;
	}
	for (k = 0; k < inv->nvfs; k++) {
		const struct xevf_vf *vf = inv->vfs[k].vf;
		if (taken[k] || !selector_takes_vf(&p->cfg.selector, vf))
			continue;
		if (device_from_vf(&nd[n], vf, inventory_note_for(inv, vf->addr))) {
			log_error("pool_update_failed", "resource=%s reason=\"out of memory\"", p->cfg.resource_name);
			devices_free(nd, n);
			return -ENOMEM;
		}
		taken[k] = true;
		n++;
	}
	/* A PF that vanished (hot-unplug, driver reset) took its VFs with it:
	 * keep them listed as unhealthy, so that the kubelet knows what happened
	 * to devices it may have given out, until the PF is back. */
	for (size_t i = 0; i < p->ndevs; i++) {
		const struct pool_device *old = &p->devs[i];
		struct pool_device *g = &nd[n];
		char *reason = NULL;
		if (host_has_pf(host, old->pf))
			continue;
		memset(g, 0, sizeof(*g));
		memcpy(g->id, old->id, sizeof(g->id));
		memcpy(g->pf, old->pf, sizeof(g->pf));
		g->numa_node = old->numa_node;
		if (xevf_asprintf(&reason, "its PF %s is gone (removed or reset); it comes back with the PF", old->pf))
			reason = NULL;
		g->reason = reason;
		n++;
	}
	/* Ids are PCI addresses in canonical form; ordered for stable output and
	 * binary searches (pool_find). */
	qsort(nd, n, sizeof(*nd), cmp_devices);
	c->visible = log_changes(p, nd, n);
	c->devs = nd;
	c->ndevs = n;
	c->vfio_container_node = xevf_strdup_or_null(host->vfio_container_node);
	c->iommufd_node = xevf_strdup_or_null(host->iommufd_node);
	return 0;
}

bool pool_change_apply(struct pool *p, struct pool_change *c)
{
	bool visible = c->visible;

	devices_free(p->devs, p->ndevs);
	free(p->vfio_container_node);
	free(p->iommufd_node);
	p->devs = c->devs;
	p->ndevs = c->ndevs;
	p->vfio_container_node = c->vfio_container_node;
	p->iommufd_node = c->iommufd_node;
	if (visible)
		p->generation++;
	memset(c, 0, sizeof(*c));
	return visible;
}

bool pool_update(struct pool *p, const struct inventory *inv, bool *taken)
{
	struct pool_change c;

	return pool_change_make(p, inv, taken, &c) == 0 && pool_change_apply(p, &c);
}
