/* Reading JSON. Two kinds of reader:
 * - lenient look-ups for documents written elsewhere (the state file, the API
 *   server's answers, the agent's status): the value at a key, or NULL when
 *   it is absent or of another type; o may be NULL or not an object;
 * - strict readers for the configuration: 0, or -EINVAL and a message naming
 *   the key and what was found instead. */
#ifndef XEVF_AGENT_JSON_READ_H
#define XEVF_AGENT_JSON_READ_H

#include <json-c/json.h>
#include <stddef.h>

static inline json_object *json_get(json_object *o, const char *key)
{
	json_object *v = NULL;
	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static inline const char *json_get_string(json_object *o, const char *key)
{
	json_object *v = json_get(o, key);
	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* "string", "int", ... for messages */
const char *json_read_type(json_object *v);
/* "parent.name" (malloc'd; NULL when out of memory) */
char *json_read_key(const char *parent, const char *name);

/* A string without NUL bytes, replacing *out. */
int json_read_string(json_object *v, const char *key, char **out, char **error);
/* An integer within [min, max]. */
int json_read_long(json_object *v, const char *key, long min, long max, long *out, char **error);
/* An array of strings (*out malloc'd, NULL-terminated, *n counts them). */
int json_read_strings(json_object *v, const char *key, char ***out, size_t *n, char **error);

/* An object: calls each_key for every member with its "key.name" path;
 * stops at the first non-zero answer and returns it. */
typedef int (*json_read_key_fn)(const char *path, const char *name, json_object *v, void *ctx, char **error);
int json_read_object(json_object *v, const char *key, json_read_key_fn each_key, void *ctx, char **error);

/* Parses a whole document strictly (UTF-8, nothing after it); NULL and a
 * message with the byte offset when it is not valid JSON. */
json_object *json_read_document(const char *text, size_t len, char **error);

#endif
