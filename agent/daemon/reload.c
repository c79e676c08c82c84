/* SIGHUP: the configuration read again; pools kept, added, retired and put
 * back in configuration order, without touching what is allocated. */
#include <stdlib.h>
#include <string.h>

#include "daemon_private.h"
#include "log.h"

static struct pool_slot *find_pool(struct daemon *d, const char *resource)
{
	for (struct pool_slot *s = d->pools; s; s = s->next)
		if (!plugin_retired(s->plugin) && strcmp(plugin_pool(s->plugin)->cfg.resource_name, resource) == 0)
			return s;
	return NULL;
}

/* Under the serving lock. */
struct pool_slot *daemon_add_pool(struct daemon *d, const struct pool_config *cfg)
{
	struct pool_slot *s = calloc(1, sizeof(*s)), **tail = &d->pools;

	if (s && !(s->plugin = plugin_new(cfg, d->cfg.plugin_dir, d->cq, &d->hooks))) {
		free(s);
		s = NULL;
	}
	if (!s) {
		log_error("out_of_memory", "resource=%s", cfg->resource_name);
		return NULL;
	}
	while (*tail)
		tail = &(*tail)->next;
	*tail = s;
	return s;
}

/* Retires the pools that are gone (all of them when the plugin dir moved). */
static void retire_removed(struct daemon *d, const struct agent_config *fresh)
{
	bool dir_changed = strcmp(fresh->plugin_dir, d->cfg.plugin_dir) != 0;

	for (struct pool_slot *s = d->pools; s; s = s->next) {
		bool kept = false;
		for (size_t i = 0; i < fresh->npools && !kept && !dir_changed; i++)
			kept = strcmp(fresh->pools[i].resource_name, plugin_pool(s->plugin)->cfg.resource_name) == 0;
		if (!plugin_retired(s->plugin) && !kept)
			plugin_retire(s->plugin, "removed from the configuration");
	}
}

/* Pools must stay in configuration order for VF ownership; retired ones,
 * still draining, go last. */
static void reorder(struct daemon *d)
{
	struct pool_slot *ordered = NULL, **tail = &ordered;

	for (size_t i = 0; i < d->cfg.npools; i++) {
		for (struct pool_slot **pp = &d->pools; *pp; pp = &(*pp)->next) {
			struct pool_slot *s = *pp;
			if (plugin_retired(s->plugin) ||
			    strcmp(plugin_pool(s->plugin)->cfg.resource_name, d->cfg.pools[i].resource_name) != 0)
				continue;
			*pp = s->next;
			s->next = NULL;
			*tail = s;
			tail = &s->next;
			break;
		}
	}
	*tail = d->pools;
	d->pools = ordered;
}

void daemon_reload(struct daemon *d)
{
	struct agent_config fresh;
	char *error = NULL;

	if (config_build(d->overrides, &fresh, &error)) {
		log_error("reload_failed", "reason=\"%s\" action=\"keeping the running configuration\"", error ? error : "?");
		free(error);
		return;
	}
	daemon_serving_lock(d);
	retire_removed(d, &fresh);
	config_free(&d->cfg);
	d->cfg = fresh;
	daemon_apply_settings(d);
	for (size_t i = 0; i < d->cfg.npools; i++) {
		struct pool_slot *s = find_pool(d, d->cfg.pools[i].resource_name);
		if (s)
			plugin_set_config(s->plugin, &d->cfg.pools[i]);
		else
			(void)daemon_add_pool(d, &d->cfg.pools[i]);
	}
	reorder(d);
	daemon_serving_unlock(d);
	daemon_served_resources(d);
	log_info("config_reloaded", "pools=%zu plugin_dir=%s", d->cfg.npools, d->cfg.plugin_dir);
	daemon_request_prepare(d, "configuration reloaded");
	d->next_rescan_ms = 0;
}
