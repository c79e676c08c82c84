#include "kube_cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "fail.h"

/* One resource's last answer. */
struct entry {
	char *resource;
	int64_t at_ms;            /* when it came, 0: never */
	int rc;                   /* 0, or -errno */
	char *error;
	struct kube_pod *pods;
	size_t n;
	bool wanted;              /* a fresh answer is asked for */
	struct entry *next;
};

struct kube_cache {
	struct kube *kube;        /* used by the thread only */
	pthread_t thread;
	pthread_mutex_t lock;     /* guards entries and stopping; never held while the API server is asked */
	pthread_cond_t asked, answered;
	struct entry *entries;
	bool stopping;
};

static struct entry *entry_of(struct kube_cache *c, const char *resource)
{
	struct entry *e;

	for (e = c->entries; e; e = e->next)
		if (strcmp(e->resource, resource) == 0)
			return e;
	if (!(e = calloc(1, sizeof(*e))) || !(e->resource = strdup(resource))) {
		free(e);
		return NULL;
	}
	e->next = c->entries;
	c->entries = e;
	return e;
}

/* Under the lock: the next resource whose answer is wanted (a copy), or NULL. */
static char *next_wanted(struct kube_cache *c)
{
	for (struct entry *e = c->entries; e; e = e->next)
		if (e->wanted) {
			e->wanted = false;
			return strdup(e->resource);
		}
	return NULL;
}

static void *thread_main(void *arg)
{
	struct kube_cache *c = arg;

	pthread_mutex_lock(&c->lock);
	while (!c->stopping) {
		char *resource = next_wanted(c), *error = NULL;
		struct kube_pod *pods = NULL;
		size_t n = 0;
		struct entry *e;
		int rc;

		if (!resource) {
			pthread_cond_wait(&c->asked, &c->lock);
			continue;
		}
		pthread_mutex_unlock(&c->lock);
		rc = kube_pending_pods(c->kube, resource, &pods, &n, &error);
		pthread_mutex_lock(&c->lock);
		if ((e = entry_of(c, resource))) {
			kube_pods_free(e->pods, e->n);
			free(e->error);
			*e = (struct entry){e->resource, clock_mono_ms(), rc, error, pods, n, e->wanted, e->next};
		} else {
			kube_pods_free(pods, n);
			free(error);
		}
		free(resource);
		pthread_cond_broadcast(&c->answered);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

struct kube_cache *kube_cache_start(struct kube *k)
{
	struct kube_cache *c = calloc(1, sizeof(*c));

	if (!c) {
		kube_close(k);
		return NULL;
	}
	c->kube = k;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->asked, NULL);
	pthread_cond_init(&c->answered, NULL);
	if (pthread_create(&c->thread, NULL, thread_main, c) != 0) {
		kube_close(k);
		pthread_mutex_destroy(&c->lock);
		pthread_cond_destroy(&c->asked);
		pthread_cond_destroy(&c->answered);
		free(c);
		return NULL;
	}
	return c;
}

void kube_cache_stop(struct kube_cache *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_signal(&c->asked);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL); /* an ask in progress ends within its own timeout */
	while (c->entries) {
		struct entry *e = c->entries;
		c->entries = e->next;
		kube_pods_free(e->pods, e->n);
		free(e->error);
		free(e->resource);
		free(e);
	}
	kube_close(c->kube);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->asked);
	pthread_cond_destroy(&c->answered);
	free(c);
}

const char *kube_cache_url(const struct kube_cache *c)
{
	return kube_api_url(c->kube);
}

void kube_cache_refresh(struct kube_cache *c, const char *resource)
{
	struct entry *e;

	pthread_mutex_lock(&c->lock);
	if ((e = entry_of(c, resource)) && clock_mono_ms() - e->at_ms >= KUBE_CACHE_FRESH_MS / 2) {
		e->wanted = true;
		pthread_cond_signal(&c->asked);
	}
	pthread_mutex_unlock(&c->lock);
}

static int copy_pods(const struct entry *e, struct kube_pod **pods, size_t *n)
{
	*pods = calloc(e->n + 1, sizeof(**pods));
	*n = 0;
	if (!*pods)
		return -ENOMEM;
	for (size_t i = 0; i < e->n; i++) {
		struct kube_pod *p = &(*pods)[(*n)++];
		p->namespace_ = strdup(e->pods[i].namespace_);
		p->name = strdup(e->pods[i].name);
		p->vm_name = e->pods[i].vm_name ? strdup(e->pods[i].vm_name) : NULL;
		if (!p->namespace_ || !p->name || (e->pods[i].vm_name && !p->vm_name))
			return -ENOMEM;
	}
	return 0;
}

int kube_cache_pods(struct kube_cache *c, const char *resource, int wait_ms, struct kube_pod **pods, size_t *n,
		    char **error)
{
	struct timespec until;
	struct entry *e;
	int rc = 1;

	*pods = NULL;
	*n = 0;
	clock_cond_deadline(&until, wait_ms);
	pthread_mutex_lock(&c->lock);
	e = entry_of(c, resource);
	while (e && clock_mono_ms() - e->at_ms >= KUBE_CACHE_FRESH_MS) {
		e->wanted = true;
		pthread_cond_signal(&c->asked);
		if (pthread_cond_timedwait(&c->answered, &c->lock, &until) == ETIMEDOUT)
			break;
	}
	if (e && clock_mono_ms() - e->at_ms < KUBE_CACHE_FRESH_MS) {
		rc = e->rc ? agent_fail(error, -e->rc, "%s", e->error ? e->error : "the API server did not answer")
			   : copy_pods(e, pods, n);
		if (rc) {
			kube_pods_free(*pods, *n);
			*pods = NULL;
			*n = 0;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}
