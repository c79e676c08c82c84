#include "podresources.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fail.h"
#include "podresources/v1/api.pb-c.h"
#include "rpc.h"
#include "xevf_util.h"

/* More devices than any node has: an answer beyond it is not believed. */
#define PODRESOURCES_MAX_DEVICES 65536

static int collect(const V1__ListPodResourcesResponse *r, const char *resource, char ***ids, char ***pods, size_t *n,
		   char **error)
{
	size_t cap = 0, have = 0;

	for (size_t p = 0; p < r->n_pod_resources; p++) {
		const V1__PodResources *pod = r->pod_resources[p];
		for (size_t c = 0; c < pod->n_containers; c++)
			for (size_t k = 0; k < pod->containers[c]->n_devices; k++) {
				const V1__ContainerDevices *dev = pod->containers[c]->devices[k];
				if (strcmp(dev->resource_name, resource) == 0)
					cap += dev->n_device_ids;
			}
	}
	if (cap > PODRESOURCES_MAX_DEVICES)
		return agent_fail(error, EPROTO, "the kubelet's PodResources lists %zu devices of %s", cap, resource);
	*ids = calloc(cap + 1, sizeof(**ids));
	*pods = calloc(cap + 1, sizeof(**pods));
	for (size_t p = 0; *ids && *pods && p < r->n_pod_resources; p++) {
		const V1__PodResources *pod = r->pod_resources[p];
		for (size_t c = 0; c < pod->n_containers; c++)
			for (size_t k = 0; k < pod->containers[c]->n_devices; k++) {
				const V1__ContainerDevices *dev = pod->containers[c]->devices[k];
				for (size_t i = 0; strcmp(dev->resource_name, resource) == 0 && i < dev->n_device_ids; i++) {
					if (!((*ids)[have] = strdup(dev->device_ids[i])) ||
					    asprintf(&(*pods)[have], "%s/%s", pod->namespace_, pod->name) < 0) {
						(*pods)[have] = NULL;
						xevf_strv_free(*ids, have + 1);
						xevf_strv_free(*pods, have + 1);
						*ids = *pods = NULL;
						return agent_fail(error, ENOMEM, "out of memory");
					}
					have++;
				}
			}
	}
	if (!*ids || !*pods) {
		free(*ids);
		free(*pods);
		*ids = *pods = NULL;
		return agent_fail(error, ENOMEM, "out of memory");
	}
	*n = have;
	return 0;
}

/* One unary call to the kubelet's PodResources at socket: 0 and *reply,
 * 1 when there is no such socket, -errno with *error. */
static int ask(const char *socket, const char *method, const ProtobufCMessage *req,
	       const ProtobufCMessageDescriptor *reply_desc, int timeout_ms, ProtobufCMessage **reply, char **error)
{
	struct rpc_result res = {0};
	grpc_channel *ch;
	char *target = NULL;
	int rc;

	*reply = NULL;
	if (!socket || !*socket || access(socket, F_OK) != 0)
		return 1;
	if (asprintf(&target, "unix:%s", socket) < 0)
		return agent_fail(error, ENOMEM, "out of memory");
	if (!(ch = rpc_channel_open(target, NULL, NULL, error))) {
		free(target);
		return -EIO;
	}
	rc = rpc_unary(ch, method, req, reply_desc, reply, timeout_ms, &res);
	if (rc != 0 || res.status != GRPC_STATUS_OK || !*reply) {
		rc = agent_fail(error, EIO, "the kubelet's PodResources at %s did not answer %s: %s", socket,
				strrchr(method, '/') + 1, res.details && *res.details ? res.details : "no answer");
		if (*reply)
			protobuf_c_message_free_unpacked(*reply, NULL);
		*reply = NULL;
	}
	rpc_result_clear(&res);
	grpc_channel_destroy(ch);
	free(target);
	return rc;
}

int podresources_held(const char *socket, const char *resource, int timeout_ms, char ***ids, char ***pods, size_t *n,
		      char **error)
{
	V1__ListPodResourcesRequest req = V1__LIST_POD_RESOURCES_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	int rc;

	*ids = *pods = NULL;
	*n = 0;
	rc = ask(socket, "/v1.PodResourcesLister/List", &req.base, &v1__list_pod_resources_response__descriptor, timeout_ms,
		 &reply, error);
	if (rc == 0 && reply) {
		rc = collect((const V1__ListPodResourcesResponse *)reply, resource, ids, pods, n, error);
		protobuf_c_message_free_unpacked(reply, NULL);
	}
	return rc;
}

int podresources_allocatable(const char *socket, const char *resource, int timeout_ms, char ***ids, size_t *n,
			     char **error)
{
	V1__AllocatableResourcesRequest req = V1__ALLOCATABLE_RESOURCES_REQUEST__INIT;
	const V1__AllocatableResourcesResponse *r;
	ProtobufCMessage *reply = NULL;
	size_t cap = 0;
	int rc;

	*ids = NULL;
	*n = 0;
	rc = ask(socket, "/v1.PodResourcesLister/GetAllocatableResources", &req.base,
		 &v1__allocatable_resources_response__descriptor, timeout_ms, &reply, error);
	if (rc != 0 || !reply)
		return rc;
	r = (const V1__AllocatableResourcesResponse *)reply;
	for (size_t i = 0; i < r->n_devices; i++)
		if (strcmp(r->devices[i]->resource_name, resource) == 0)
			cap += r->devices[i]->n_device_ids;
	if (cap > PODRESOURCES_MAX_DEVICES) {
		rc = agent_fail(error, EPROTO, "the kubelet's PodResources lists %zu allocatable devices of %s", cap, resource);
	} else if (!(*ids = calloc(cap + 1, sizeof(**ids)))) {
		rc = agent_fail(error, ENOMEM, "out of memory");
	} else {
		for (size_t i = 0; i < r->n_devices && rc == 0; i++)
			for (size_t k = 0; strcmp(r->devices[i]->resource_name, resource) == 0 && k < r->devices[i]->n_device_ids;
			     k++) {
				if (!((*ids)[*n] = strdup(r->devices[i]->device_ids[k]))) {
					rc = agent_fail(error, ENOMEM, "out of memory");
					break;
				}
				(*n)++;
			}
		if (rc) {
			xevf_strv_free(*ids, *n);
			*ids = NULL;
			*n = 0;
		}
	}
	protobuf_c_message_free_unpacked(reply, NULL);
	return rc;
}
