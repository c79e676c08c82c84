#include "selector.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "json_read.h"
#include "xevf_sysfs.h"

static int parse_pf_addresses(json_object *v, const char *k, struct selector *sel, char **error)
{
	int rc = json_read_strings(v, k, &sel->pf_addresses, &sel->n_pf_addresses, error);

	for (size_t i = 0; rc == 0 && i < sel->n_pf_addresses; i++) {
		struct xevf_pci_addr a;
		if (xevf_pci_addr_parse(sel->pf_addresses[i], &a))
			return agent_fail(error, EINVAL, "%s[%zu]: '%s' is not a PCI address like 0000:03:00.0", k, i,
				    sel->pf_addresses[i]);
		/* canonical lower case, to compare with what discovery reports */
		xevf_pci_addr_format(&a, sel->pf_addresses[i]);
	}
	return rc;
}

static int parse_device_ids(json_object *v, const char *k, struct selector *sel, char **error)
{
	char **ids = NULL;
	size_t n = 0;
	int rc = json_read_strings(v, k, &ids, &n, error);

	int *parsed = rc == 0 ? calloc(n + 1, sizeof(int)) : NULL;

	free(sel->device_ids);
	sel->device_ids = parsed;
	sel->n_device_ids = 0;
	if (rc == 0 && !parsed)
		rc = agent_fail(error, ENOMEM, "%s: out of memory", k);
	for (size_t i = 0; rc == 0 && parsed && i < n; i++) {
		long id;
		if (xevf_parse_long(ids[i], 16, &id) || id < 0 || id > 0xffff)
			rc = agent_fail(error, EINVAL, "%s[%zu]: '%s' is not a PCI device id like 0xe212", k, i, ids[i]);
		else
			parsed[sel->n_device_ids++] = (int)id;
	}
	xevf_strv_free(ids, n);
	return rc;
}

/* The selector's keys: one row each, in the order --help and errors list them. */
static const struct {
	const char *name;
	int (*parse)(json_object *v, const char *key, struct selector *sel, char **error);
} selector_keys[] = {
	{"pfAddresses", parse_pf_addresses},
	{"deviceIds", parse_device_ids},
	{"drivers", NULL}, /* a plain list of strings */
};

static int parse_key(const char *k, const char *name, json_object *v, void *ctx, char **error)
{
	struct selector *sel = ctx;

	for (size_t i = 0; i < sizeof(selector_keys) / sizeof(selector_keys[0]); i++) {
		if (strcmp(name, selector_keys[i].name) != 0)
			continue;
		if (selector_keys[i].parse)
			return selector_keys[i].parse(v, k, sel, error);
		return json_read_strings(v, k, &sel->drivers, &sel->n_drivers, error);
	}
	return agent_fail(error, EINVAL, "%s: unknown key (known: pfAddresses, deviceIds, drivers)", k);
}

int selector_parse(json_object *obj, const char *key, struct selector *sel, char **error)
{
	return json_read_object(obj, key, parse_key, sel, error);
}

void selector_free(struct selector *s)
{
	xevf_strv_free(s->pf_addresses, s->n_pf_addresses);
	xevf_strv_free(s->drivers, s->n_drivers);
	free(s->device_ids);
	memset(s, 0, sizeof(*s));
}

static int copy_strings(char ***dst, size_t *ndst, char *const *src, size_t n)
{
	*dst = calloc(n + 1, sizeof(char *));
	if (!*dst)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!((*dst)[i] = strdup(src[i])))
			return -ENOMEM;
		(*ndst)++;
	}
	return 0;
}

int selector_copy(struct selector *dst, const struct selector *src)
{
	memset(dst, 0, sizeof(*dst));
	if (copy_strings(&dst->pf_addresses, &dst->n_pf_addresses, src->pf_addresses, src->n_pf_addresses) ||
	    copy_strings(&dst->drivers, &dst->n_drivers, src->drivers, src->n_drivers) ||
	    !(dst->device_ids = calloc(src->n_device_ids + 1, sizeof(int)))) {
		selector_free(dst);
		return -ENOMEM;
	}
	if (src->n_device_ids)
		memcpy(dst->device_ids, src->device_ids, src->n_device_ids * sizeof(int));
	dst->n_device_ids = src->n_device_ids;
	return 0;
}

static bool has_id(const struct selector *s, int id)
{
	for (size_t i = 0; i < s->n_device_ids; i++)
		if (s->device_ids[i] == id)
			return true;
	return false;
}

bool selector_prepares_vf(const struct selector *s, const struct xevf_vf *vf)
{
	if (s->n_pf_addresses && !xevf_strv_has(s->pf_addresses, s->n_pf_addresses, vf->pf_addr))
		return false;
	return !s->n_device_ids || has_id(s, vf->device_id);
}

bool selector_takes_vf(const struct selector *s, const struct xevf_vf *vf)
{
	if (!selector_prepares_vf(s, vf))
		return false;
	return !s->n_drivers || (vf->driver && xevf_strv_has(s->drivers, s->n_drivers, vf->driver));
}

bool selector_takes_pf(const struct selector *s, const struct xevf_pf *pf)
{
	if (s->n_pf_addresses)
		return xevf_strv_has(s->pf_addresses, s->n_pf_addresses, pf->addr);
	if (pf->vendor_id != XEVF_INTEL_VENDOR_ID)
		return false;
	return !s->n_device_ids || has_id(s, pf->vf_device_id);
}

bool selector_may_share_pf(const struct selector *a, const struct selector *b)
{
	if (!a->n_pf_addresses || !b->n_pf_addresses)
		return true;
	for (size_t i = 0; i < a->n_pf_addresses; i++)
		if (xevf_strv_has(b->pf_addresses, b->n_pf_addresses, a->pf_addresses[i]))
			return true;
	return false;
}

int selector_pf_addresses(const struct selector *s, const char ***out, size_t *n)
{
	const char **grown = realloc(*out, (*n + s->n_pf_addresses + 1) * sizeof(*grown));

	if (!grown)
		return -ENOMEM;
	*out = grown;
	for (size_t i = 0; i < s->n_pf_addresses; i++)
		grown[(*n)++] = s->pf_addresses[i];
	return 0;
}

void selector_describe(const struct selector *s, char *buf, size_t size)
{
	snprintf(buf, size, "pfAddresses=%zu deviceIds=%zu drivers=%zu", s->n_pf_addresses, s->n_device_ids,
		 s->n_drivers);
}
