#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "json_read.h"
#include "settings.h"
#include "text.h"
#include "xevf_sysfs.h"

/* A config file is a few kilobytes; anything this large is a mistake. */
#define CONFIG_MAX_BYTES ((size_t)1024 * 1024)

const char *alloc_policy_name(enum alloc_policy p)
{
	return p == ALLOC_SPREAD ? "spread" : "pack";
}

bool alloc_policy_parse(const char *name, enum alloc_policy *out)
{
	if (strcmp(name, "pack") == 0)
		*out = ALLOC_PACK;
	else if (strcmp(name, "spread") == 0)
		*out = ALLOC_SPREAD;
	else
		return false;
	return true;
}

bool config_valid_resource_name(const char *name, const char **why)
{
	const char *slash = strchr(name, '/');
	const char *label, *local;
	size_t prefix_len, local_len;
	const char *dummy;

	if (!why)
		why = &dummy;
	if (!slash || strchr(slash + 1, '/')) {
		*why = "must be <domain>/<name> with exactly one '/', e.g. intel.com/xe_vf";
		return false;
	}
	prefix_len = (size_t)(slash - name);
	if (prefix_len == 0 || prefix_len > 253) {
		*why = "the domain before '/' must be 1 to 253 characters";
		return false;
	}
	for (label = name; label < slash;) {
		const char *dot = memchr(label, '.', (size_t)(slash - label));
		size_t n = dot ? (size_t)(dot - label) : (size_t)(slash - label);
		if (!text_dns_label(label, n)) {
			*why = "the domain must be a DNS subdomain: lower-case letters, digits, '-' and '.'";
			return false;
		}
		label += n + (dot ? 1 : 0);
		if (dot && label == slash) {
			*why = "the domain must not end with '.'";
			return false;
		}
	}
	if ((prefix_len == 13 && strncmp(name, "kubernetes.io", 13) == 0) ||
	    (prefix_len > 14 && strncmp(slash - 14, ".kubernetes.io", 14) == 0)) {
		*why = "the kubernetes.io domain is reserved for Kubernetes' own resources";
		return false;
	}
	local = slash + 1;
	local_len = strlen(local);
	if (local_len == 0 || local_len > 63) {
		*why = "the name after '/' must be 1 to 63 characters";
		return false;
	}
	if (!isalnum((unsigned char)local[0]) || !isalnum((unsigned char)local[local_len - 1])) {
		*why = "the name after '/' must start and end with a letter or digit";
		return false;
	}
	for (size_t i = 0; i < local_len; i++) {
		unsigned char c = (unsigned char)local[i];
		if (!(isalnum(c) || c == '-' || c == '_' || c == '.')) {
			*why = "the name after '/' may hold only letters, digits, '-', '_' and '.'";
			return false;
		}
	}
	return true;
}

void pool_config_free(struct pool_config *c)
{
	free(c->resource_name);
	c->resource_name = NULL;
	selector_free(&c->selector);
	vf_profile_free(&c->profile);
}

int pool_config_copy(struct pool_config *dst, const struct pool_config *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->policy = src->policy;
	dst->num_vfs = src->num_vfs;
	dst->fallback = src->fallback;
	dst->resource_name = strdup(src->resource_name);
	if (!dst->resource_name || selector_copy(&dst->selector, &src->selector) ||
	    vf_profile_copy(&dst->profile, &src->profile)) {
		pool_config_free(dst);
		return -ENOMEM;
	}
	return 0;
}

static void pools_free(struct agent_config *cfg)
{
	for (size_t i = 0; i < cfg->npools; i++)
		pool_config_free(&cfg->pools[i]);
	free(cfg->pools);
	cfg->pools = NULL;
	cfg->npools = 0;
}

void config_free(struct agent_config *cfg)
{
	if (!cfg)
		return;
	pools_free(cfg);
	settings_free(cfg);
	config_init(cfg);
}

static int parse_policy(json_object *v, const char *k, struct pool_config *pool, char **error)
{
	char *p = NULL;
	int rc = json_read_string(v, k, &p, error);

	if (rc == 0 && !alloc_policy_parse(p, &pool->policy))
		rc = agent_fail(error, EINVAL, "%s: '%s' is not an allocation policy (pack or spread)", k, p);
	free(p);
	return rc;
}

static int parse_fallback(json_object *v, const char *k, struct pool_config *pool, char **error)
{
	char *f = NULL;
	int rc = json_read_string(v, k, &f, error);

	if (rc == 0 && strcmp(f, "vfio-pci") == 0)
		pool->fallback = FALLBACK_VFIO_PCI;
	else if (rc == 0 && strcmp(f, "none") == 0)
		pool->fallback = FALLBACK_NONE;
	else if (rc == 0)
		rc = agent_fail(error, EINVAL, "%s: '%s' is not a fallback (vfio-pci or none)", k, f);
	free(f);
	return rc;
}

static int parse_resource_name(json_object *v, const char *k, struct pool_config *pool, char **error)
{
	const char *why;
	int rc = json_read_string(v, k, &pool->resource_name, error);

	if (rc == 0 && !config_valid_resource_name(pool->resource_name, &why))
		rc = agent_fail(error, EINVAL, "%s: '%s' is not a valid extended resource name: %s", k, pool->resource_name,
			  why);
	return rc;
}

static int parse_pool_key(const char *k, const char *name, json_object *v, void *ctx, char **error)
{
	struct pool_config *pool = ctx;

	if (strcmp(name, "resourceName") == 0)
		return parse_resource_name(v, k, pool, error);
	if (strcmp(name, "selector") == 0)
		return selector_parse(v, k, &pool->selector, error);
	if (strcmp(name, "allocationPolicy") == 0)
		return parse_policy(v, k, pool, error);
	if (strcmp(name, "numVFs") == 0)
		return json_read_long(v, k, 0, 4096, &pool->num_vfs, error);
	if (strcmp(name, "fallback") == 0)
		return parse_fallback(v, k, pool, error);
	if (strcmp(name, "profile") == 0)
		return vf_profile_parse(v, k, &pool->profile, error);
	return agent_fail(error, EINVAL, "%s: unknown key (known: resourceName, selector, allocationPolicy, numVFs, fallback, "
			  "profile)", k);
}

static int parse_pool(json_object *obj, const char *key, struct pool_config *pool, char **error)
{
	int rc;

	pool->num_vfs = -1; /* unset: leave the PF's VF count alone */
	if ((rc = json_read_object(obj, key, parse_pool_key, pool, error)))
		return rc;
	if (!pool->resource_name)
		return agent_fail(error, EINVAL, "%s.resourceName: missing", key);
	return 0;
}

static int parse_pools(json_object *v, struct agent_config *cfg, char **error)
{
	size_t n;

	if (!json_object_is_type(v, json_type_array))
		return agent_fail(error, EINVAL, "pools: expected an array, found %s", json_read_type(v));
	pools_free(cfg);
	n = json_object_array_length(v);
	cfg->pools = calloc(n + 1, sizeof(*cfg->pools));
	if (!cfg->pools)
		return agent_fail(error, ENOMEM, "pools: out of memory");
	for (size_t i = 0; i < n; i++) {
		char k[48];
		int rc;
		snprintf(k, sizeof(k), "pools[%zu]", i);
		cfg->npools++;
		if ((rc = parse_pool(json_object_array_get_idx(v, i), k, &cfg->pools[i], error)))
			return rc;
	}
	return 0;
}

static int parse_root(json_object *root, struct agent_config *cfg, char **error)
{
	if (!json_object_is_type(root, json_type_object))
		return agent_fail(error, EINVAL, "the top level must be a JSON object, found %s", json_read_type(root));
	json_object_object_foreach(root, name, v) {
		int rc = strcmp(name, "pools") == 0 ? parse_pools(v, cfg, error) : settings_parse_json(cfg, name, v, error);
		if (rc == 1)
			rc = settings_unknown_key(name, error);
		if (rc)
			return rc;
	}
	return 0;
}


int config_parse_json(const char *text, size_t len, struct agent_config *cfg, char **error)
{
	json_object *root;
	int rc;

	config_init(cfg);
	if (len > CONFIG_MAX_BYTES)
		return agent_fail(error, EFBIG, "the configuration is larger than %zu bytes", CONFIG_MAX_BYTES);
	if (!(root = json_read_document(text, len, error)))
		return -EINVAL;
	rc = parse_root(root, cfg, error);
	json_object_put(root);
	if (rc)
		config_free(cfg);
	return rc;
}

int config_load_file(const char *path, struct agent_config *cfg, char **error)
{
	char *text = NULL, *inner = NULL;
	struct xevf_err err = XEVF_ERR_INIT;
	int rc;

	config_init(cfg);
	if ((rc = xevf_read_text(path, CONFIG_MAX_BYTES, &text, &err))) {
		agent_fail(error, -rc, "%s", xevf_err_msg(&err));
		xevf_err_clear(&err);
		return rc;
	}
	rc = config_parse_json(text, strlen(text), cfg, &inner);
	if (rc)
		agent_fail(error, -rc, "config file %s: %s", path, inner ? inner : "invalid");
	free(inner);
	free(text);
	return rc;
}

static int add_default_pool(struct agent_config *cfg, const char *name, char **error)
{
	free(cfg->pools); /* an empty "pools": [] leaves an empty array */
	cfg->pools = calloc(1, sizeof(*cfg->pools));
	if (!cfg->pools || !(cfg->pools[0].resource_name = strdup(name)))
		return agent_fail(error, ENOMEM, "out of memory");
	cfg->npools = 1;
	cfg->pools[0].num_vfs = -1; /* unset: leave the PF's VF count alone */
	return 0;
}

static int check_pools(const struct agent_config *cfg, char **error)
{
	for (size_t i = 0; i < cfg->npools; i++)
		for (size_t j = 0; j < i; j++) {
			const struct pool_config *a = &cfg->pools[i], *b = &cfg->pools[j];
			/* two pools setting different VF counts on one PF would fight */
			if (a->num_vfs >= 0 && b->num_vfs >= 0 && a->num_vfs != b->num_vfs &&
			    selector_may_share_pf(&a->selector, &b->selector))
				return agent_fail(error, EINVAL, "pools[%zu].numVFs: %ld conflicts with pools[%zu].numVFs %ld on a PF "
					    "both select; give them different pfAddresses", i, a->num_vfs, j, b->num_vfs);
			if (strcmp(a->resource_name, b->resource_name) == 0)
				return agent_fail(error, EINVAL, "pools[%zu].resourceName: '%s' is already used by pools[%zu]", i,
					    a->resource_name, j);
		}
	return 0;
}

int config_finish(struct agent_config *cfg, char **error)
{
	int rc = settings_finish(cfg, error);

	if (rc == 0 && cfg->npools == 0)
		rc = add_default_pool(cfg, XEVF_DEFAULT_RESOURCE, error);
	return rc ? rc : check_pools(cfg, error);
}

int config_build(const struct config_overrides *o, struct agent_config *cfg, char **error)
{
	enum alloc_policy policy = ALLOC_PACK;
	const char *why;
	int rc = 0;

	config_init(cfg);
	if (o->allocation_policy && !alloc_policy_parse(o->allocation_policy, &policy))
		return agent_fail(error, EINVAL, "--allocation-policy: '%s' is not pack or spread", o->allocation_policy);
	if (o->resource_name && !config_valid_resource_name(o->resource_name, &why))
		return agent_fail(error, EINVAL, "--resource-name: '%s' is not a valid extended resource name: %s",
			    o->resource_name, why);
	if (o->config_path && (rc = config_load_file(o->config_path, cfg, error)))
		return rc;
	if (!(rc = settings_apply_overrides(cfg, o->values, error)) && o->resource_name && cfg->npools == 0)
		rc = add_default_pool(cfg, o->resource_name, error);
	if (!rc)
		rc = config_finish(cfg, error);
	for (size_t i = 0; !rc && o->allocation_policy && i < cfg->npools; i++)
		cfg->pools[i].policy = policy;
	if (rc)
		config_free(cfg);
	return rc;
}

int config_pf_addresses(const struct agent_config *cfg, const char ***out, size_t *n)
{
	*n = 0;
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->npools; i++)
		if (selector_pf_addresses(&cfg->pools[i].selector, out, n))
			return -ENOMEM;
	return 0;
}
