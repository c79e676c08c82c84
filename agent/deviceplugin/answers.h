/* The device-plugin API's answers, on protobuf-c messages, with no transport.
 *
 * Responses are allocated from an arena that the caller frees in one call after
 * packing them. Errors are gRPC status codes with a message naming the device id.
 */
#ifndef XEVF_DP_ANSWERS_H
#define XEVF_DP_ANSWERS_H

#include <stddef.h>

#include "deviceplugin/v1beta1/api.pb-c.h"
#include "arena.h"
#include "pool.h"

V1beta1__ListAndWatchResponse *plugin_list(const struct pool *p, struct arena *a);

/* 0 and *resp, or a gRPC status code and *error (malloc'd). Nothing changes
 * in the pool on error. */
int plugin_allocate(struct pool *p, const V1beta1__AllocateRequest *req, struct arena *a,
		    V1beta1__AllocateResponse **resp, char **error);

/* The lists one container's preferred allocation chooses from. */
struct preferred_lists {
	const char *const *avail;
	size_t navail;
	const char *const *must;
	size_t nmust;
};

/* May replace a container's lists (arrays from the arena, strings borrowed
 * from the request); non-zero on out of memory. */
typedef int (*preferred_steer_fn)(void *ctx, const V1beta1__ContainerPreferredAllocationRequest *cr, struct arena *a,
				  struct preferred_lists *lists);

int plugin_preferred(const struct pool *p, const V1beta1__PreferredAllocationRequest *req, preferred_steer_fn steer_fn,
		     void *steer_ctx, struct arena *a, V1beta1__PreferredAllocationResponse **resp, char **error);

#endif
