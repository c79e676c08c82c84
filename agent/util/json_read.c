#include "json_read.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"

const char *json_read_type(json_object *v)
{
	return json_type_to_name(json_object_get_type(v));
}

char *json_read_key(const char *parent, const char *name)
{
	char *k = NULL;
	if (asprintf(&k, "%s.%s", parent, name) < 0)
		return NULL;
	return k;
}

int json_read_object(json_object *v, const char *key, json_read_key_fn each_key, void *ctx, char **error)
{
	if (!json_object_is_type(v, json_type_object))
		return agent_fail(error, EINVAL, "%s: expected an object, found %s", key, json_read_type(v));
	json_object_object_foreach(v, name, member) {
		char *path = json_read_key(key, name);
		int rc = each_key(path ? path : key, name, member, ctx, error);
		free(path);
		if (rc)
			return rc;
	}
	return 0;
}

int json_read_string(json_object *v, const char *key, char **out, char **error)
{
	if (!json_object_is_type(v, json_type_string))
		return agent_fail(error, EINVAL, "%s: expected a string, found %s", key, json_read_type(v));
	if (strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
		return agent_fail(error, EINVAL, "%s: must not contain a NUL character", key);
	free(*out);
	*out = strdup(json_object_get_string(v));
	return *out ? 0 : agent_fail(error, ENOMEM, "%s: out of memory", key);
}

int json_read_long(json_object *v, const char *key, long min, long max, long *out, char **error)
{
	long value;

	if (!json_object_is_type(v, json_type_int))
		return agent_fail(error, EINVAL, "%s: expected an integer, found %s", key, json_read_type(v));
	value = (long)json_object_get_int64(v);
	if (value < min || value > max)
		return agent_fail(error, EINVAL, "%s: %ld is out of range (%ld to %ld)", key, value, min, max);
	*out = value;
	return 0;
}

int json_read_strings(json_object *v, const char *key, char ***out, size_t *n, char **error)
{
	size_t len;

	if (!json_object_is_type(v, json_type_array))
		return agent_fail(error, EINVAL, "%s: expected an array of strings, found %s", key, json_read_type(v));
	len = json_object_array_length(v);
	*out = calloc(len + 1, sizeof(**out));
	if (!*out)
		return agent_fail(error, ENOMEM, "%s: out of memory", key);
	for (size_t i = 0; i < len; i++) {
		char *item = NULL;
		int rc = asprintf(&item, "%s[%zu]", key, i) < 0 ? agent_fail(error, ENOMEM, "%s: out of memory", key)
			: json_read_string(json_object_array_get_idx(v, i), item, &(*out)[i], error);
		free(item);
		if (rc)
			return rc;
		(*n)++;
	}
	return 0;
}

json_object *json_read_document(const char *text, size_t len, char **error)
{
	json_tokener *tok = json_tokener_new();
	json_object *root;

	if (!tok) {
		agent_fail(error, ENOMEM, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	root = json_tokener_parse_ex(tok, text, (int)len);
	if (!root || json_tokener_get_error(tok) != json_tokener_success) {
		enum json_tokener_error e = json_tokener_get_error(tok);
		agent_fail(error, EINVAL, "not valid JSON at byte %zu: %s", json_tokener_get_parse_end(tok),
		     e == json_tokener_continue ? "unexpected end of input" : json_tokener_error_desc(e));
		json_object_put(root);
		json_tokener_free(tok);
		return NULL;
	}
	for (size_t i = json_tokener_get_parse_end(tok); i < len; i++) {
		if (!isspace((unsigned char)text[i])) {
			agent_fail(error, EINVAL, "unexpected text after the JSON document at byte %zu", i);
			json_object_put(root);
			json_tokener_free(tok);
			return NULL;
		}
	}
	json_tokener_free(tok);
	return root;
}
