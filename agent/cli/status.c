/* `xevf-agent status`: asks the running agent over its local socket. */
#include <grpc/grpc.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "http_unix.h"
#include "json_read.h"
#include "podresources.h"
#include "xevf_util.h"

#define PODRESOURCES_TIMEOUT_MS 2000

static bool served(json_object *devs, const char *id)
{
	for (size_t j = 0; devs && j < json_object_array_length(devs); j++) {
		const char *have = json_get_string(json_object_array_get_idx(devs, j), "id");
		if (have && strcmp(have, id) == 0)
			return true;
	}
	return false;
}

/* What the kubelet itself says of a pool's VFs (PodResources): how many it
 * counts, which pod holds which, and VFs the agent and the kubelet disagree
 * on (a kubelet that has not taken the last device list yet). */
static void print_kubelet_view(const char *socket, const char *resource, json_object *devs)
{
	char **alloc = NULL, **held = NULL, **pods = NULL, *error = NULL;
	size_t nalloc = 0, nheld = 0;
	int rc;

	grpc_init();
	rc = podresources_allocatable(socket, resource, PODRESOURCES_TIMEOUT_MS, &alloc, &nalloc, &error);
	if (rc == 0)
		rc = podresources_held(socket, resource, PODRESOURCES_TIMEOUT_MS, &held, &pods, &nheld, &error);
	grpc_shutdown_blocking();
	if (rc == 1) {
		printf("  the kubelet: no PodResources socket at %s (--pod-resources-socket)\n", socket);
	} else if (rc < 0) {
		printf("  the kubelet: %s\n", error ? error : "no answer");
	} else {
		printf("  the kubelet counts %zu VF(s) of %s; %zu held by pods\n", nalloc, resource, nheld);
		for (size_t i = 0; i < nheld; i++)
			printf("    %s  held by pod %s\n", held[i], pods[i]);
		for (size_t i = 0; i < nalloc; i++)
			if (!served(devs, alloc[i]))
				printf("    %s  counted by the kubelet, not served by this agent any more\n", alloc[i]);
		for (size_t j = 0; devs && j < json_object_array_length(devs); j++) {
			const char *id = json_get_string(json_object_array_get_idx(devs, j), "id");
			if (id && !xevf_strv_has(alloc, nalloc, id))
				printf("    %s  served by this agent, not counted by the kubelet yet\n", id);
		}
	}
	xevf_strv_free(alloc, nalloc);
	xevf_strv_free(held, nheld);
	xevf_strv_free(pods, nheld);
	free(error);
}

int cli_status(const struct cli_args *a)
{
	const char *socket_path = a->overrides.values[settings_find_flag("status-socket")];
	const char *podres = a->overrides.values[settings_find_flag("pod-resources-socket")];
	bool json = a->json;
	char *body = NULL, *error = NULL;
	int code;
	json_object *root, *pools, *v;

	if (!socket_path)
		socket_path = XEVF_DEFAULT_STATUS_SOCKET;
	if (!podres)
		podres = XEVF_DEFAULT_POD_RESOURCES_SOCKET;
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
			devs = NULL;
		for (size_t j = 0; devs && j < json_object_array_length(devs); j++) {
			json_object *d = json_object_array_get_idx(devs, j);
			bool migratable = json_object_object_get_ex(d, "migratable", &v) && json_object_get_boolean(v);
			bool allocated = json_object_object_get_ex(d, "allocatedRecently", &v) && json_object_get_boolean(v);
			const char *reason = json_get_string(d, "reason");
			printf("  %s  %-9s  pf %s  driver %s%s%s%s%s\n", json_get_string(d, "id"), json_get_string(d, "health"), json_get_string(d, "pf"),
			       json_get_string(d, "driver") ? json_get_string(d, "driver") : "(none)", migratable ? "  migratable" : "",
			       allocated ? "  allocated" : "", reason ? "  reason: " : "", reason ? reason : "");
		}
		if (*podres && json_get_string(p, "resource"))
			print_kubelet_view(podres, json_get_string(p, "resource"), devs);
	}
	json_object_put(root);
	return 0;
}

