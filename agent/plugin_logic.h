/* The device-plugin API's answers, on protobuf-c messages, with no transport.
 *
 * Responses are allocated from an arena that the caller frees in one call after
 * packing them. Errors are gRPC status codes with a message naming the device id.
 */
#ifndef XEVF_PLUGIN_LOGIC_H
#define XEVF_PLUGIN_LOGIC_H

#include <stddef.h>

#include "deviceplugin/v1beta1/api.pb-c.h"
#include "pool.h"

struct arena {
	void **ptrs;
	size_t n, cap;
};

void *arena_alloc(struct arena *a, size_t size);
char *arena_strdup(struct arena *a, const char *s);
void arena_free(struct arena *a);

/* A printable, length-limited copy of an untrusted id for messages (malloc'd). */
char *printable_id(const char *id);

V1beta1__ListAndWatchResponse *plugin_list(const struct pool *p, struct arena *a);

/* 0 and *resp, or a gRPC status code and *error (malloc'd). Nothing changes
 * in the pool on error. */
int plugin_allocate(struct pool *p, const V1beta1__AllocateRequest *req, struct arena *a,
		    V1beta1__AllocateResponse **resp, char **error);

int plugin_preferred(const struct pool *p, const V1beta1__PreferredAllocationRequest *req,
		     struct arena *a, V1beta1__PreferredAllocationResponse **resp, char **error);

#endif
