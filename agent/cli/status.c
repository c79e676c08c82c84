/* `xevf-agent status`: asks the running agent over its local socket. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "http_unix.h"
#include "json_read.h"

int cli_status(const struct cli_args *a)
{
	const char *socket_path = a->overrides.values[settings_find_flag("status-socket")];
	bool json = a->json;
	char *body = NULL, *error = NULL;
	int code;
	json_object *root, *pools, *v;

	if (!socket_path)
		socket_path = XEVF_DEFAULT_STATUS_SOCKET;
	code = http_get_unix(socket_path, "/status", &body, &error);
	if (code < 0) {
		fprintf(stderr, "xevf-agent: cannot reach the agent at %s: %s (is it running? --status-socket)\n",
			socket_path, error ? error : "?");
		free(error);
		return 1;
	}
	if (code != 200) {
		fprintf(stderr, "xevf-agent: the agent answered HTTP %d\n", code);
		free(body);
		return 1;
	}
	if (json) {
		puts(body);
		free(body);
		return 0;
	}
	root = json_tokener_parse(body);
	free(body);
	if (!root || !json_object_object_get_ex(root, "pools", &pools) || !json_object_is_type(pools, json_type_array)) {
		fprintf(stderr, "xevf-agent: the agent's status is not what this version understands\n");
		json_object_put(root);
		return 1;
	}
	printf("xevf-agent %s, plugin dir %s\n", json_get_string(root, "version") ? json_get_string(root, "version") : "?",
	       json_get_string(root, "pluginDir") ? json_get_string(root, "pluginDir") : "?");
	for (size_t i = 0; i < json_object_array_length(pools); i++) {
		json_object *p = json_object_array_get_idx(pools, i), *devs;
		bool registered = json_object_object_get_ex(p, "registered", &v) && json_object_get_boolean(v);
		long long allocations = json_object_object_get_ex(p, "allocations", &v) ? json_object_get_int64(v) : 0;
		printf("pool %s: %s, %lld container allocation(s), socket %s\n", json_get_string(p, "resource"),
		       registered ? "registered with the kubelet" : "NOT registered with the kubelet", allocations,
		       json_get_string(p, "socket") ? json_get_string(p, "socket") : "?");
		if (!json_object_object_get_ex(p, "devices", &devs))
			continue;
		for (size_t j = 0; j < json_object_array_length(devs); j++) {
			json_object *d = json_object_array_get_idx(devs, j);
			bool migratable = json_object_object_get_ex(d, "migratable", &v) && json_object_get_boolean(v);
			bool allocated = json_object_object_get_ex(d, "allocatedRecently", &v) && json_object_get_boolean(v);
			const char *reason = json_get_string(d, "reason");
			printf("  %s  %-9s  pf %s  driver %s%s%s%s%s\n", json_get_string(d, "id"), json_get_string(d, "health"), json_get_string(d, "pf"),
			       json_get_string(d, "driver") ? json_get_string(d, "driver") : "(none)", migratable ? "  migratable" : "",
			       allocated ? "  allocated" : "", reason ? "  reason: " : "", reason ? reason : "");
		}
	}
	json_object_put(root);
	return 0;
}

