/* What the API server says about pods waiting on this node, asked on a
 * thread of its own and kept a short while, so that the device plugin's
 * serving thread never waits on the API server (it waited up to 2 s a call). */
#ifndef XEVF_DAEMON_KUBE_CACHE_H
#define XEVF_DAEMON_KUBE_CACHE_H

#include <stddef.h>

#include "kube.h"

/* An answer is used for this long after it came. */
#define KUBE_CACHE_FRESH_MS 1000

struct kube_cache;

/* Takes over k. NULL when the thread cannot start (k is closed). */
struct kube_cache *kube_cache_start(struct kube *k);
void kube_cache_stop(struct kube_cache *c);
const char *kube_cache_url(const struct kube_cache *c);

/* The pending pods that want resource, from an answer at most
 * KUBE_CACHE_FRESH_MS old: 0 and copies (free with kube_pods_free); -errno
 * and why when the last ask failed. Without a fresh answer it asks, waits at
 * most wait_ms for it, and then returns 1: nobody can tell. */
int kube_cache_pods(struct kube_cache *c, const char *resource, int wait_ms, struct kube_pod **pods, size_t *n,
		    char **error);

/* Asks now, without waiting (keeps the answer fresh while it matters). */
void kube_cache_refresh(struct kube_cache *c, const char *resource);

#endif
