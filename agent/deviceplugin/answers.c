#include "answers.h"

#include <ctype.h>
#include <errno.h>
#include <grpc/status.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "log.h"
#include "text.h"
#include "preferred.h"

/* A refused request: the gRPC status code the kubelet sees, and why. */
static int refuse(char **error, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse(char **error, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)agent_vfail(error, EINVAL, fmt, ap);
	va_end(ap);
	return code;
}

V1beta1__ListAndWatchResponse *plugin_list(const struct pool *p, struct arena *a)
{
	V1beta1__ListAndWatchResponse *r = arena_alloc(a, sizeof(*r));

	if (!r)
		return NULL;
	v1beta1__list_and_watch_response__init(r);
	r->devices = arena_alloc(a, (p->ndevs + 1) * sizeof(*r->devices)); /* NOLINT(bugprone-sizeof-expression): an array of pointers */
	if (!r->devices)
		return NULL;
	for (size_t i = 0; i < p->ndevs; i++) {
		const struct pool_device *pd = &p->devs[i];
		V1beta1__Device *d = arena_alloc(a, sizeof(*d));
		if (!d)
			return NULL;
		v1beta1__device__init(d);
		d->id = arena_strdup(a, pd->id);
		d->health = arena_strdup(a, pool_health_name(pd->healthy));
		if (!d->id || !d->health)
			return NULL;
		if (pd->numa_node >= 0) {
			/* No topology when the platform gives no NUMA node: the kubelet's
			 * topology manager then treats the device as node-agnostic. */
			V1beta1__TopologyInfo *t = arena_alloc(a, sizeof(*t));
			V1beta1__NUMANode *node = arena_alloc(a, sizeof(*node));
			V1beta1__NUMANode **nodes = arena_alloc(a, sizeof(*nodes)); /* NOLINT(bugprone-sizeof-expression): an array of pointers */
			if (!t || !node || !nodes)
				return NULL;
			v1beta1__topology_info__init(t);
			v1beta1__numanode__init(node);
			node->id = pd->numa_node;
			nodes[0] = node;
			t->nodes = nodes;
			t->n_nodes = 1;
			d->topology = t;
		}
		r->devices[r->n_devices++] = d;
	}
	return r;
}

static V1beta1__DeviceSpec *device_spec(struct arena *a, const char *host_path)
{
	V1beta1__DeviceSpec *s = arena_alloc(a, sizeof(*s));

	if (!s)
		return NULL;
	v1beta1__device_spec__init(s);
	/* The same path inside the container: QEMU in virt-launcher opens
	 * /dev/vfio/<group> by the number KubeVirt derives from the PCI address. */
	s->host_path = arena_strdup(a, host_path);
	s->container_path = arena_strdup(a, host_path);
	s->permissions = arena_strdup(a, "rw");
	return s->host_path && s->container_path && s->permissions ? s : NULL;
}

static int add_spec(struct arena *a, V1beta1__ContainerAllocateResponse *c, const char *path)
{
	for (size_t i = 0; i < c->n_devices; i++)
		if (strcmp(c->devices[i]->host_path, path) == 0)
			return 0;
	c->devices[c->n_devices] = device_spec(a, path);
	if (!c->devices[c->n_devices])
		return -ENOMEM;
	c->n_devices++;
	return 0;
}

/* A pod has a handful of containers; the kubelet asks for one at a time. */
#define ALLOCATE_MAX_CONTAINERS 256

/* The request's size before its ids are looked at: every id must be one of
 * the pool's VFs and none may repeat, so more ids than VFs cannot be right. */
static int validate_sizes(const struct pool *p, const V1beta1__AllocateRequest *req, char **error)
{
	size_t total = 0;

	if (req->n_container_requests == 0 || req->n_container_requests > ALLOCATE_MAX_CONTAINERS)
		return refuse(error, GRPC_STATUS_INVALID_ARGUMENT, "%zu container requests: 1 to %d are taken",
			      req->n_container_requests, ALLOCATE_MAX_CONTAINERS);
	for (size_t c = 0; c < req->n_container_requests; c++) {
		const V1beta1__ContainerAllocateRequest *cr = req->container_requests[c];
		if (!cr || cr->n_devices_ids == 0)
			return refuse(error, GRPC_STATUS_INVALID_ARGUMENT, "container request %zu asks for no device", c);
		total += cr->n_devices_ids;
	}
	if (total > p->ndevs)
		return refuse(error, GRPC_STATUS_INVALID_ARGUMENT, "%zu device ids asked for: resource %s has %zu VFs on "
			      "this node", total, p->cfg.resource_name, p->ndevs);
	return 0;
}

/* Checks every id of every container before anything is built: a request is
 * answered whole or refused whole. */
static int validate_allocate(const struct pool *p, const V1beta1__AllocateRequest *req, char **error)
{
	int sizes = validate_sizes(p, req, error);

	if (sizes)
		return sizes;
	for (size_t c = 0; c < req->n_container_requests; c++) {
		const V1beta1__ContainerAllocateRequest *cr = req->container_requests[c];
		for (size_t i = 0; cr && i < cr->n_devices_ids; i++) {
			const char *id = cr->devices_ids[i];
			const struct pool_device *d = pool_find(p, id);
			char *shown = printable_id(id);
			int rc = 0;

			if (!d) {
				rc = refuse(error, GRPC_STATUS_INVALID_ARGUMENT,
					  "unknown device id '%s': not a VF of resource %s on this node",
					  shown ? shown : "?", p->cfg.resource_name);
			} else if (!d->healthy) {
				rc = refuse(error, GRPC_STATUS_INVALID_ARGUMENT, "device %s is unhealthy: %s", d->id,
					  d->reason ? d->reason : "unknown reason");
			} else {
				for (size_t c2 = 0; c2 <= c && !rc; c2++) {
					const V1beta1__ContainerAllocateRequest *o = req->container_requests[c2];
					size_t end = !o ? 0 : c2 == c ? i : o->n_devices_ids;
					for (size_t j = 0; j < end && !rc; j++)
						if (strcmp(o->devices_ids[j], id) == 0)
							rc = refuse(error, GRPC_STATUS_INVALID_ARGUMENT,
								  "device %s is requested more than once", d->id);
				}
			}
			free(shown);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int build_container(struct pool *p, const V1beta1__ContainerAllocateRequest *cr, struct arena *a,
			   V1beta1__ContainerAllocateResponse *out)
{
	size_t nids = cr ? cr->n_devices_ids : 0, len = 1;
	V1beta1__ContainerAllocateResponse__EnvsEntry *env;
	char *addresses;

	v1beta1__container_allocate_response__init(out);
	out->devices = arena_alloc(a, (2 * nids + 2) * sizeof(*out->devices)); /* NOLINT(bugprone-sizeof-expression): an array of pointers */
	if (!out->devices)
		return -ENOMEM;
	for (size_t i = 0; i < nids; i++) {
		const struct pool_device *d = pool_find(p, cr->devices_ids[i]);
		len += strlen(d->id) + 1;
		if (d->group_node) {
			if ((p->vfio_container_node && add_spec(a, out, p->vfio_container_node)) ||
			    add_spec(a, out, d->group_node))
				return -ENOMEM;
		}
		if (d->cdev_node) {
			if ((p->iommufd_node && add_spec(a, out, p->iommufd_node)) || add_spec(a, out, d->cdev_node))
				return -ENOMEM;
		}
	}
	addresses = arena_alloc(a, len);
	if (!addresses)
		return -ENOMEM;
	for (size_t i = 0, at = 0; i < nids; i++) {
		const char *id = pool_find(p, cr->devices_ids[i])->id;
		size_t n = strlen(id);
		if (i)
			addresses[at++] = ',';
		memcpy(addresses + at, id, n + 1); /* len counted every id, comma and NUL */
		at += n;
	}
	env = arena_alloc(a, sizeof(*env));
	out->envs = arena_alloc(a, sizeof(*out->envs)); /* NOLINT(bugprone-sizeof-expression): an array of pointers */
	if (!env || !out->envs)
		return -ENOMEM;
	v1beta1__container_allocate_response__envs_entry__init(env);
	env->key = arena_strdup(a, p->env_name);
	env->value = addresses;
	if (!env->key)
		return -ENOMEM;
	out->envs[0] = env;
	out->n_envs = 1;
	return 0;
}

int plugin_allocate(struct pool *p, const V1beta1__AllocateRequest *req, struct arena *a,
		    V1beta1__AllocateResponse **resp, char **error)
{
	V1beta1__AllocateResponse *r;
	int rc = validate_allocate(p, req, error);

	*resp = NULL;
	if (rc)
		return rc;
	r = arena_alloc(a, sizeof(*r));
	if (!r)
		return refuse(error, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	v1beta1__allocate_response__init(r);
	r->container_responses = arena_alloc(a, (req->n_container_requests + 1) * sizeof(*r->container_responses)); /* NOLINT(bugprone-sizeof-expression): an array of pointers */
	if (!r->container_responses)
		return refuse(error, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	for (size_t c = 0; c < req->n_container_requests; c++) {
		V1beta1__ContainerAllocateResponse *out = arena_alloc(a, sizeof(*out));
		if (!out || build_container(p, req->container_requests[c], a, out))
			return refuse(error, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		r->container_responses[r->n_container_responses++] = out;
	}
	p->allocations += req->n_container_requests;
	*resp = r;
	return 0;
}

/* The ids earlier containers of one request got, sorted. */
struct preferred_taken {
	const char **ids;
	size_t n;
};

/* No node has more VFs than this: a longer list is not the kubelet's. */
#define PREFERRED_MAX_IDS 4096

static int cmp_id_ptr(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool taken_before(const struct preferred_taken *t, const char *id)
{
	return t && t->n && bsearch(&id, t->ids, t->n, sizeof(*t->ids), cmp_id_ptr);
}

/* The sizes of one container's request, and no id listed twice (sorting a
 * copy: n log n, whatever the kubelet sends). */
static int check_lists(const struct pool *p, const V1beta1__ContainerPreferredAllocationRequest *cr,
		       const struct preferred_lists *lists, struct arena *a, char **error)
{
	const char **sorted;

	if (lists->navail > PREFERRED_MAX_IDS || lists->nmust > PREFERRED_MAX_IDS || cr->allocation_size > PREFERRED_MAX_IDS)
		return refuse(error, GRPC_STATUS_INVALID_ARGUMENT, "%zu available, %zu must-include ids and a size of %d: at "
			      "most %d of each are taken", lists->navail, lists->nmust, cr->allocation_size, PREFERRED_MAX_IDS);
	if (!(sorted = arena_alloc(a, (lists->navail + 1) * sizeof(*sorted))))
		return refuse(error, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	if (lists->navail)
		memcpy(sorted, lists->avail, lists->navail * sizeof(*sorted));
	qsort(sorted, lists->navail, sizeof(*sorted), cmp_id_ptr);
	for (size_t i = 1; i < lists->navail; i++)
		if (strcmp(sorted[i - 1], sorted[i]) == 0) {
			char *shown = printable_id(sorted[i]);
			int rc = refuse(error, GRPC_STATUS_INVALID_ARGUMENT, "available device id '%s' is listed twice (resource %s)",
					shown ? shown : "?", p->cfg.resource_name);
			free(shown);
			return rc;
		}
	return 0;
}

/* One container's choice: from the request's own lists, or from the lists
 * the steering callback gives instead; never a VF an earlier container of
 * the same request got. */
static int container_preferred(const struct pool *p, const V1beta1__ContainerPreferredAllocationRequest *cr,
			       const struct preferred_lists *lists, const struct preferred_taken *taken,
			       struct arena *a, V1beta1__ContainerPreferredAllocationResponse *out, char **error)
{
	struct pref_candidate *avail, *must;
	size_t navail = 0, nmust = 0, nout = 0;
	const char **picked = NULL;
	int rc;

	v1beta1__container_preferred_allocation_response__init(out);
	avail = arena_alloc(a, (lists->navail + 1) * sizeof(*avail));
	must = arena_alloc(a, (lists->nmust + 1) * sizeof(*must));
	if (!avail || !must)
		return refuse(error, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	for (size_t i = 0; i < lists->navail; i++) {
		const struct pool_device *d = pool_find(p, lists->avail[i]);
		if (d && d->healthy && !taken_before(taken, d->id))
			avail[navail++] = (struct pref_candidate){d->id, d->pf, d->numa_node};
	}
	for (size_t i = 0; i < lists->nmust; i++) {
		const struct pool_device *d = pool_find(p, lists->must[i]);
		if (!d) {
			char *shown = printable_id(lists->must[i]);
			rc = refuse(error, GRPC_STATUS_INVALID_ARGUMENT,
				    "must-include device id '%s' is not a VF of resource %s on this node",
				    shown ? shown : "?", p->cfg.resource_name);
			free(shown);
			return rc;
		}
		if (taken_before(taken, d->id))
			return refuse(error, GRPC_STATUS_INVALID_ARGUMENT, "must-include device %s is already preferred for an "
				      "earlier container of this request", d->id);
		must[nmust++] = (struct pref_candidate){d->id, d->pf, d->numa_node};
	}
	if (preferred_pick(avail, navail, must, nmust, (size_t)cr->allocation_size, p->cfg.policy, &picked, &nout))
		return refuse(error, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	if (nout < (size_t)cr->allocation_size) {
		free(picked);
		return refuse(error, GRPC_STATUS_RESOURCE_EXHAUSTED, "%d VFs of resource %s asked for, %zu can be given "
			      "(%zu available and healthy, %zu must-include)", cr->allocation_size, p->cfg.resource_name, nout,
			      navail, nmust);
	}
	out->deviceids = arena_alloc(a, (nout + 1) * sizeof(*out->deviceids));
	if (!out->deviceids) {
		free(picked);
		return refuse(error, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	}
	for (size_t i = 0; i < nout; i++)
		out->deviceids[out->n_deviceids++] = (char *)picked[i];
	free(picked);
	return 0;
}

static int answer_container(const struct pool *p, const V1beta1__ContainerPreferredAllocationRequest *cr,
			    preferred_steer_fn steer_fn, void *steer_ctx, const struct preferred_taken *taken,
			    struct arena *a, V1beta1__ContainerPreferredAllocationResponse *out, char **error)
{
	struct preferred_lists lists = {(const char *const *)cr->available_deviceids, cr->n_available_deviceids,
					(const char *const *)cr->must_include_deviceids, cr->n_must_include_deviceids};

	int rc;

	if (cr->allocation_size < 0)
		return refuse(error, GRPC_STATUS_INVALID_ARGUMENT, "allocation_size %d is negative", cr->allocation_size);
	/* bounded and without repeats before anything else looks at the lists */
	if ((rc = check_lists(p, cr, &lists, a, error)))
		return rc;
	if (steer_fn && steer_fn(steer_ctx, cr, a, &lists))
		return refuse(error, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	return container_preferred(p, cr, &lists, taken, a, out, error);
}

/* What earlier containers got joins the sorted set of taken ids. */
static int take(struct preferred_taken *t, const V1beta1__ContainerPreferredAllocationResponse *out, struct arena *a)
{
	const char **grown = arena_alloc(a, (t->n + out->n_deviceids + 1) * sizeof(*grown));

	if (!grown)
		return -ENOMEM;
	if (t->n)
		memcpy(grown, t->ids, t->n * sizeof(*grown));
	for (size_t i = 0; i < out->n_deviceids; i++)
		grown[t->n + i] = out->deviceids[i];
	t->ids = grown;
	t->n += out->n_deviceids;
	qsort(t->ids, t->n, sizeof(*t->ids), cmp_id_ptr);
	return 0;
}

int plugin_preferred(const struct pool *p, const V1beta1__PreferredAllocationRequest *req, preferred_steer_fn steer_fn,
		     void *steer_ctx, struct arena *a, V1beta1__PreferredAllocationResponse **resp, char **error)
{
	V1beta1__PreferredAllocationResponse *r = arena_alloc(a, sizeof(*r));
	struct preferred_taken taken = {NULL, 0};

	*resp = NULL;
	if (!r)
		return refuse(error, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	v1beta1__preferred_allocation_response__init(r);
	r->container_responses = arena_alloc(a, (req->n_container_requests + 1) * sizeof(*r->container_responses)); /* NOLINT(bugprone-sizeof-expression): an array of pointers */
	if (!r->container_responses)
		return refuse(error, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	for (size_t c = 0; c < req->n_container_requests; c++) {
		V1beta1__ContainerPreferredAllocationResponse *out = arena_alloc(a, sizeof(*out));
		int rc;
		if (!out)
			return refuse(error, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		rc = answer_container(p, req->container_requests[c], steer_fn, steer_ctx, &taken, a, out, error);
		if (rc)
			return rc;
		if (take(&taken, out, a))
			return refuse(error, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		r->container_responses[r->n_container_responses++] = out;
	}
	*resp = r;
	return 0;
}
