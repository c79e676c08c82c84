/* Reading JSON written elsewhere (the state file, the API server's answers,
 * the agent's status): the value at a key, or NULL when it is absent or of
 * another type. o may be NULL or not an object. */
#ifndef XEVF_JSON_GET_H
#define XEVF_JSON_GET_H

#include <json-c/json.h>

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

#endif
