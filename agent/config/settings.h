/* The settings table's side that config.c uses to read files and flags. */
#ifndef XEVF_CONFIG_SETTINGS_H
#define XEVF_CONFIG_SETTINGS_H

#include <json-c/json.h>

#include "config.h"

/* Reads one of the table's keys from the file; 1 when key is not a setting. */
int settings_parse_json(struct agent_config *cfg, const char *key, json_object *v, char **error);
/* "key: unknown key (known: ...)", listing every key. */
int settings_unknown_key(const char *key, char **error);
/* Applies the flags' values (settings_count() entries, NULL = not given). */
int settings_apply_overrides(struct agent_config *cfg, const char *const *values, char **error);
/* Fills defaults and runs each setting's check. */
int settings_finish(struct agent_config *cfg, char **error);
void settings_free(struct agent_config *cfg);

#endif
