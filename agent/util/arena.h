/* Many small allocations freed in one call: how the agent builds a protobuf
 * response (every string and submessage from the arena), packs it, then drops it. */
#ifndef XEVF_AGENT_ARENA_H
#define XEVF_AGENT_ARENA_H

#include <stddef.h>

struct arena {
	void **ptrs;
	size_t n, cap;
};

/* Zeroed memory owned by the arena; NULL when out of memory. */
void *arena_alloc(struct arena *a, size_t size);
char *arena_strdup(struct arena *a, const char *s);
void arena_free(struct arena *a);

#endif
