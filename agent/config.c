#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../driver/xevf_sysfs.h"

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

static bool dns_label_ok(const char *s, size_t len)
{
	if (len == 0 || len > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[len - 1]))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!(islower(c) || isdigit(c) || c == '-'))
			return false;
	}
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
		if (!dns_label_ok(label, n)) {
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

static void selector_free(struct pool_selector *s)
{
	for (size_t i = 0; i < s->n_pf_addresses; i++)
		free(s->pf_addresses[i]);
	free(s->pf_addresses);
	for (size_t i = 0; i < s->n_drivers; i++)
		free(s->drivers[i]);
	free(s->drivers);
	free(s->device_ids);
	memset(s, 0, sizeof(*s));
}

void pool_config_free(struct pool_config *c)
{
	free(c->resource_name);
	c->resource_name = NULL;
	selector_free(&c->selector);
}

static int copy_strings(char ***dst, size_t *ndst, char *const *src, size_t n)
{
	*dst = calloc(n ? n : 1, sizeof(char *));
	if (!*dst)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		(*dst)[i] = strdup(src[i]);
		if (!(*dst)[i])
			return -ENOMEM;
		(*ndst)++;
	}
	return 0;
}

int pool_config_copy(struct pool_config *dst, const struct pool_config *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->policy = src->policy;
	dst->num_vfs = src->num_vfs;
	dst->fallback = src->fallback;
	dst->resource_name = strdup(src->resource_name);
	if (!dst->resource_name ||
	    copy_strings(&dst->selector.pf_addresses, &dst->selector.n_pf_addresses,
			 src->selector.pf_addresses, src->selector.n_pf_addresses) ||
	    copy_strings(&dst->selector.drivers, &dst->selector.n_drivers, src->selector.drivers,
			 src->selector.n_drivers))
		goto fail;
	dst->selector.device_ids = calloc(src->selector.n_device_ids + 1, sizeof(int));
	if (!dst->selector.device_ids)
		goto fail;
	if (src->selector.n_device_ids)
		memcpy(dst->selector.device_ids, src->selector.device_ids, src->selector.n_device_ids * sizeof(int));
	dst->selector.n_device_ids = src->selector.n_device_ids;
	return 0;
fail:
	pool_config_free(dst);
	return -ENOMEM;
}

void config_free(struct agent_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->npools; i++)
		pool_config_free(&cfg->pools[i]);
	free(cfg->pools);
	free(cfg->plugin_dir);
	free(cfg->sysfs_root);
	free(cfg->dev_root);
	free(cfg->log_level);
	free(cfg->modules_root);
	free(cfg->kernel_release);
	free(cfg->proc_root);
	free(cfg->http_address);
	free(cfg->status_socket);
	free(cfg->migration_socket);
	free(cfg->migration_address);
	free(cfg->tls_ca);
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg->state_dir);
	free(cfg->node_name);
	free(cfg->vfio_sim);
	free(cfg->kube_api);
	free(cfg->kube_token_file);
	free(cfg->kube_ca_file);

	memset(cfg, 0, sizeof(*cfg));
}

/* "parent.name" or "parent[i]"; NULL on allocation failure (callers then
 * report with the parent key, which is better than nothing). */
static char *key_child(const char *parent, const char *name)
{
	char *k = NULL;
	if (xevf_asprintf(&k, "%s.%s", parent, name))
		return NULL;
	return k;
}

static char *key_index(const char *parent, size_t i)
{
	char *k = NULL;
	if (xevf_asprintf(&k, "%s[%zu]", parent, i))
		return NULL;
	return k;
}

static const char *type_name(json_object *v)
{
	return json_type_to_name(json_object_get_type(v));
}

static int get_string(json_object *v, const char *key, char **out, char **error)
{
	if (!json_object_is_type(v, json_type_string))
		return xevf_msg_set(error, "%s: expected a string, found %s", key, type_name(v));
	if (strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
		return xevf_msg_set(error, "%s: must not contain a NUL character", key);
	free(*out);
	*out = strdup(json_object_get_string(v));
	return *out ? 0 : xevf_msg_set(error, "%s: out of memory", key);
}

static int get_string_array(json_object *v, const char *key, char ***out, size_t *n, char **error)
{
	size_t len;

	if (!json_object_is_type(v, json_type_array))
		return xevf_msg_set(error, "%s: expected an array of strings, found %s", key, type_name(v));
	len = json_object_array_length(v);
	*out = calloc(len ? len : 1, sizeof(**out));
	if (!*out)
		return xevf_msg_set(error, "%s: out of memory", key);
	for (size_t i = 0; i < len; i++) {
		char *item_key = key_index(key, i);
		int rc = get_string(json_object_array_get_idx(v, i), item_key ? item_key : key, &(*out)[i], error);
		free(item_key);
		if (rc)
			return -1;
		(*n)++;
	}
	return 0;
}

static int parse_device_id(const char *text, int *out)
{
	long v;

	if (xevf_parse_long(text, 16, &v) || v < 0 || v > 0xffff)
		return -1;
	*out = (int)v;
	return 0;
}

static int parse_selector_key(const char *k, const char *name, json_object *v, struct pool_selector *sel,
			      char **error)
{
	{
		if (strcmp(name, "pfAddresses") == 0) {
			if (get_string_array(v, k, &sel->pf_addresses, &sel->n_pf_addresses, error))
				return -1;
			for (size_t i = 0; i < sel->n_pf_addresses; i++) {
				struct xevf_pci_addr a;
				if (xevf_pci_addr_parse(sel->pf_addresses[i], &a))
					return xevf_msg_set(error, "%s[%zu]: '%s' is not a PCI address like 0000:03:00.0",
						    k, i, sel->pf_addresses[i]);
				/* canonical lower case, to compare with what discovery reports */
				xevf_pci_addr_format(&a, sel->pf_addresses[i]);
			}
		} else if (strcmp(name, "deviceIds") == 0) {
			char **ids = NULL;
			size_t n = 0;
			int rc = get_string_array(v, k, &ids, &n, error);
			int *parsed = rc == 0 ? calloc(n ? n : 1, sizeof(int)) : NULL;
			if (rc == 0 && !parsed)
				rc = xevf_msg_set(error, "%s: out of memory", k);
			free(sel->device_ids);
			sel->device_ids = parsed;
			for (size_t i = 0; rc == 0 && parsed && ids && i < n; i++) {
				if (parse_device_id(ids[i], &sel->device_ids[i]))
					rc = xevf_msg_set(error, "%s[%zu]: '%s' is not a PCI device id like 0x56c0", k, i, ids[i]);
				else
					sel->n_device_ids++;
			}
			for (size_t i = 0; i < n; i++)
				free(ids[i]);
			free(ids);
			if (rc)
				return rc;
		} else if (strcmp(name, "drivers") == 0) {
			if (get_string_array(v, k, &sel->drivers, &sel->n_drivers, error))
				return -1;
		} else {
			return xevf_msg_set(error, "%s: unknown key (known: pfAddresses, deviceIds, drivers)", k);
		}
	}
	return 0;
}

static int parse_selector(json_object *obj, const char *key, struct pool_selector *sel, char **error)
{
	if (!json_object_is_type(obj, json_type_object))
		return xevf_msg_set(error, "%s: expected an object, found %s", key, type_name(obj));
	json_object_object_foreach(obj, name, v) {
		char *k = key_child(key, name);
		int rc = parse_selector_key(k ? k : key, name, v, sel, error);
		free(k);
		if (rc)
			return -1;
	}
	return 0;
}

static int parse_pool_key(const char *k, const char *name, json_object *v, struct pool_config *pool,
			  char **error)
{
	{
		if (strcmp(name, "resourceName") == 0) {
			const char *why;
			if (get_string(v, k, &pool->resource_name, error))
				return -1;
			if (!config_valid_resource_name(pool->resource_name, &why))
				return xevf_msg_set(error, "%s: '%s' is not a valid extended resource name: %s", k,
					    pool->resource_name, why);
		} else if (strcmp(name, "selector") == 0) {
			if (parse_selector(v, k, &pool->selector, error))
				return -1;
		} else if (strcmp(name, "allocationPolicy") == 0) {
			char *p = NULL;
			bool ok;
			if (get_string(v, k, &p, error))
				return -1;
			ok = alloc_policy_parse(p, &pool->policy);
			if (!ok)
				xevf_msg_set(error, "%s: '%s' is not an allocation policy (pack or spread)", k, p);
			free(p);
			if (!ok)
				return -1;
		} else if (strcmp(name, "numVFs") == 0) {
			if (!json_object_is_type(v, json_type_int))
				return xevf_msg_set(error, "%s: expected an integer, found %s", k, type_name(v));
			pool->num_vfs = (long)json_object_get_int64(v);
			if (pool->num_vfs < 0 || pool->num_vfs > 4096)
				return xevf_msg_set(error, "%s: %ld is not a number of VFs (0 to 4096)", k, pool->num_vfs);
		} else if (strcmp(name, "fallback") == 0) {
			char *f = NULL;
			if (get_string(v, k, &f, error))
				return -1;
			if (strcmp(f, "vfio-pci") == 0) {
				pool->fallback = FALLBACK_VFIO_PCI;
			} else if (strcmp(f, "none") == 0) {
				pool->fallback = FALLBACK_NONE;
			} else {
				xevf_msg_set(error, "%s: '%s' is not a fallback (vfio-pci or none)", k, f);
				free(f);
				return -1;
			}
			free(f);
		} else {
			return xevf_msg_set(error, "%s: unknown key (known: resourceName, selector, allocationPolicy, numVFs, "
					   "fallback)", k);
		}
	}
	return 0;
}

static int parse_pool(json_object *obj, const char *key, struct pool_config *pool, char **error)
{
	pool->num_vfs = -1;
	if (!json_object_is_type(obj, json_type_object))
		return xevf_msg_set(error, "%s: expected an object, found %s", key, type_name(obj));
	json_object_object_foreach(obj, name, v) {
		char *k = key_child(key, name);
		int rc = parse_pool_key(k ? k : key, name, v, pool, error);
		free(k);
		if (rc)
			return -1;
	}
	if (!pool->resource_name)
		return xevf_msg_set(error, "%s.resourceName: missing", key);
	return 0;
}

static int parse_root(json_object *root, struct agent_config *cfg, char **error)
{
	if (!json_object_is_type(root, json_type_object))
		return xevf_msg_set(error, "the top level must be a JSON object, found %s", type_name(root));
	json_object_object_foreach(root, name, v) {
		if (strcmp(name, "pluginDir") == 0) {
			if (get_string(v, name, &cfg->plugin_dir, error))
				return -1;
		} else if (strcmp(name, "sysfsRoot") == 0) {
			if (get_string(v, name, &cfg->sysfs_root, error))
				return -1;
		} else if (strcmp(name, "devRoot") == 0) {
			if (get_string(v, name, &cfg->dev_root, error))
				return -1;
		} else if (strcmp(name, "modulesRoot") == 0) {
			if (get_string(v, name, &cfg->modules_root, error))
				return -1;
		} else if (strcmp(name, "kernelRelease") == 0) {
			if (get_string(v, name, &cfg->kernel_release, error))
				return -1;
		} else if (strcmp(name, "httpAddress") == 0) {
			if (get_string(v, name, &cfg->http_address, error))
				return -1;
		} else if (strcmp(name, "statusSocket") == 0) {
			if (get_string(v, name, &cfg->status_socket, error))
				return -1;
		} else if (strcmp(name, "migrationSocket") == 0) {
			if (get_string(v, name, &cfg->migration_socket, error))
				return -1;
		} else if (strcmp(name, "migrationAddress") == 0) {
			if (get_string(v, name, &cfg->migration_address, error))
				return -1;
		} else if (strcmp(name, "tlsCA") == 0) {
			if (get_string(v, name, &cfg->tls_ca, error))
				return -1;
		} else if (strcmp(name, "tlsCert") == 0) {
			if (get_string(v, name, &cfg->tls_cert, error))
				return -1;
		} else if (strcmp(name, "tlsKey") == 0) {
			if (get_string(v, name, &cfg->tls_key, error))
				return -1;
		} else if (strcmp(name, "stateDir") == 0) {
			if (get_string(v, name, &cfg->state_dir, error))
				return -1;
		} else if (strcmp(name, "nodeName") == 0) {
			if (get_string(v, name, &cfg->node_name, error))
				return -1;
		} else if (strcmp(name, "vfioSim") == 0) {
			if (get_string(v, name, &cfg->vfio_sim, error))
				return -1;
		} else if (strcmp(name, "kubeAPI") == 0) {
			if (get_string(v, name, &cfg->kube_api, error))
				return -1;
		} else if (strcmp(name, "kubeTokenFile") == 0) {
			if (get_string(v, name, &cfg->kube_token_file, error))
				return -1;
		} else if (strcmp(name, "kubeCAFile") == 0) {
			if (get_string(v, name, &cfg->kube_ca_file, error))
				return -1;
		} else if (strcmp(name, "httpPort") == 0) {
			if (!json_object_is_type(v, json_type_int))
				return xevf_msg_set(error, "%s: expected an integer, found %s", name, type_name(v));
			cfg->http_port = (long)json_object_get_int64(v);
			cfg->http_port_set = true;
			if (cfg->http_port < -1 || cfg->http_port > 65535)
				return xevf_msg_set(error, "%s: %ld is not a port (-1 turns HTTP off)", name, cfg->http_port);
		} else if (strcmp(name, "procRoot") == 0) {
			if (get_string(v, name, &cfg->proc_root, error))
				return -1;
		} else if (strcmp(name, "logLevel") == 0) {
			if (get_string(v, name, &cfg->log_level, error))
				return -1;
		} else if (strcmp(name, "rescanIntervalMs") == 0) {
			if (!json_object_is_type(v, json_type_int))
				return xevf_msg_set(error, "%s: expected an integer, found %s", name, type_name(v));
			cfg->rescan_interval_ms = (long)json_object_get_int64(v);
			if (cfg->rescan_interval_ms < 50 || cfg->rescan_interval_ms > 600000)
				return xevf_msg_set(error, "%s: %ld is out of range (50 to 600000)", name, cfg->rescan_interval_ms);
		} else if (strcmp(name, "pools") == 0) {
			size_t n;
			if (!json_object_is_type(v, json_type_array))
				return xevf_msg_set(error, "pools: expected an array, found %s", type_name(v));
			n = json_object_array_length(v);
			cfg->pools = calloc(n ? n : 1, sizeof(*cfg->pools));
			if (!cfg->pools)
				return xevf_msg_set(error, "pools: out of memory");
			for (size_t i = 0; i < n; i++) {
				char k[64];
				snprintf(k, sizeof(k), "pools[%zu]", i);
				cfg->npools++;
				if (parse_pool(json_object_array_get_idx(v, i), k, &cfg->pools[i], error))
					return -1;
			}
		} else {
			return xevf_msg_set(error, "%s: unknown key (known: pluginDir, sysfsRoot, devRoot, logLevel, "
					   "rescanIntervalMs, modulesRoot, kernelRelease, procRoot, httpAddress, httpPort, statusSocket, "
					   "migrationSocket, migrationAddress, tlsCA, tlsCert, tlsKey, stateDir, nodeName, vfioSim, "
					   "kubeAPI, kubeTokenFile, kubeCAFile, "
					   "pools)", name);
		}
	}
	return 0;
}

int config_parse_json(const char *text, size_t len, struct agent_config *cfg, char **error)
{
	json_tokener *tok;
	json_object *root;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	if (len > CONFIG_MAX_BYTES)
		return xevf_msg_set(error, "the configuration is larger than %zu bytes", CONFIG_MAX_BYTES);
	tok = json_tokener_new();
	if (!tok)
		return xevf_msg_set(error, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	root = json_tokener_parse_ex(tok, text, (int)len);
	if (!root || json_tokener_get_error(tok) != json_tokener_success) {
		enum json_tokener_error e = json_tokener_get_error(tok);
		xevf_msg_set(error, "not valid JSON at byte %zu: %s", json_tokener_get_parse_end(tok),
		     e == json_tokener_continue ? "unexpected end of input" : json_tokener_error_desc(e));
		json_object_put(root);
		json_tokener_free(tok);
		return -1;
	}
	for (size_t i = json_tokener_get_parse_end(tok); i < len; i++) {
		if (!isspace((unsigned char)text[i])) {
			json_object_put(root);
			json_tokener_free(tok);
			return xevf_msg_set(error, "unexpected text after the JSON document at byte %zu", i);
		}
	}
	json_tokener_free(tok);
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

	memset(cfg, 0, sizeof(*cfg));
	if (xevf_read_text(path, CONFIG_MAX_BYTES, &text, &err)) {
		rc = xevf_msg_set(error, "%s", xevf_err_msg(&err));
		xevf_err_clear(&err);
		return rc;
	}
	rc = config_parse_json(text, strlen(text), cfg, &inner);
	if (rc)
		xevf_msg_set(error, "config file %s: %s", path, inner ? inner : "invalid");
	free(inner);
	free(text);
	return rc;
}

static int set_default(char **field, const char *value, char **error)
{
	if (*field)
		return 0;
	*field = strdup(value);
	return *field ? 0 : xevf_msg_set(error, "out of memory");
}

int config_finish(struct agent_config *cfg, char **error)
{
	if (set_default(&cfg->plugin_dir, XEVF_DEFAULT_PLUGIN_DIR, error) ||
	    set_default(&cfg->sysfs_root, "/sys", error) || set_default(&cfg->dev_root, "/dev", error) ||
	    set_default(&cfg->log_level, "info", error) || set_default(&cfg->modules_root, "/lib/modules", error) ||
	    set_default(&cfg->proc_root, "/proc", error) || set_default(&cfg->http_address, "0.0.0.0", error) ||
	    set_default(&cfg->status_socket, XEVF_DEFAULT_STATUS_SOCKET, error) ||
	    set_default(&cfg->migration_socket, XEVF_DEFAULT_MIGRATION_SOCKET, error) ||
	    set_default(&cfg->migration_address, "", error) || set_default(&cfg->state_dir, XEVF_DEFAULT_STATE_DIR, error))
		return -1;
	if (!cfg->http_port_set) {
		cfg->http_port = XEVF_DEFAULT_HTTP_PORT;
		cfg->http_port_set = true;
	}
	if (cfg->rescan_interval_ms == 0)
		cfg->rescan_interval_ms = XEVF_DEFAULT_RESCAN_MS;
	if (cfg->npools == 0) {
		free(cfg->pools); /* an empty "pools": [] leaves an empty array */
		cfg->pools = calloc(1, sizeof(*cfg->pools));
		if (!cfg->pools)
			return xevf_msg_set(error, "out of memory");
		cfg->npools = 1;
		cfg->pools[0].num_vfs = -1;
		if (set_default(&cfg->pools[0].resource_name, XEVF_DEFAULT_RESOURCE, error))
			return -1;
	}
	for (size_t i = 0; i < cfg->npools; i++)
		for (size_t j = 0; j < i; j++) {
			const struct pool_selector *a = &cfg->pools[i].selector, *b = &cfg->pools[j].selector;
			if (cfg->pools[i].num_vfs >= 0 && cfg->pools[j].num_vfs >= 0 &&
			    cfg->pools[i].num_vfs != cfg->pools[j].num_vfs) {
				/* two pools setting different VF counts on one PF would fight */
				bool shared = !a->n_pf_addresses || !b->n_pf_addresses;
				for (size_t x = 0; !shared && x < a->n_pf_addresses; x++)
					for (size_t y = 0; !shared && y < b->n_pf_addresses; y++)
						shared = strcmp(a->pf_addresses[x], b->pf_addresses[y]) == 0;
				if (shared)
					return xevf_msg_set(error, "pools[%zu].numVFs: %ld conflicts with pools[%zu].numVFs %ld on "
							   "a PF both select; give them different pfAddresses", i,
						    cfg->pools[i].num_vfs, j, cfg->pools[j].num_vfs);
			}
			if (strcmp(cfg->pools[i].resource_name, cfg->pools[j].resource_name) == 0)
				return xevf_msg_set(error, "pools[%zu].resourceName: '%s' is already used by pools[%zu]", i,
					    cfg->pools[i].resource_name, j);
		}
	if (cfg->plugin_dir[0] != '/')
		return xevf_msg_set(error, "pluginDir: '%s' must be an absolute path", cfg->plugin_dir);
	return 0;
}
