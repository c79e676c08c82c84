#include "kube_watch.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fail.h"
#include "log.h"

#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 30000

struct kube_watch {
	struct kube *kube;
	struct kube_watch_spec spec;
	struct http_stopper *stopper;
	pthread_t thread;
	pthread_mutex_t lock;    /* guards stopping; never held across I/O */
	pthread_cond_t stopped;
	bool stopping;
};

/* false when asked to stop meanwhile */
static bool pause_unless_stopped(struct kube_watch *w, int ms)
{
	struct timespec until;
	bool stopping;

	clock_cond_deadline(&until, ms);
	pthread_mutex_lock(&w->lock);
	while (!w->stopping)
		if (pthread_cond_timedwait(&w->stopped, &w->lock, &until) == ETIMEDOUT)
			break;
	stopping = w->stopping;
	pthread_mutex_unlock(&w->lock);
	return !stopping;
}

static void *watch_main(void *arg)
{
	struct kube_watch *w = arg;
	char *said = NULL;
	int retry_ms = RETRY_MIN_MS;

	while (!http_stopper_stopped(w->stopper)) {
		char *error = NULL;
		int64_t started = clock_mono_ms();
		int rc = w->spec.open(w->kube, w->stopper, w->spec.on_line, w->spec.ctx, &error);

		if (http_stopper_stopped(w->stopper)) {
			free(error);
			break;
		}
		if (rc == 0 && clock_mono_ms() - started > RETRY_MIN_MS) {
			/* the server ended a watch that ran: watch again at once */
			retry_ms = RETRY_MIN_MS;
			free(said);
			said = NULL;
			free(error);
			continue;
		}
		if (error && (!said || strcmp(said, error) != 0)) {
			log_warn(w->spec.unwatched_event, "reason=\"%s\" action=\"watching again; %s\"", error,
				 w->spec.unwatched_action);
			free(said);
			said = error;
			error = NULL;
		}
		free(error);
		if (!pause_unless_stopped(w, retry_ms))
			break;
		retry_ms = retry_ms * 2 < RETRY_MAX_MS ? retry_ms * 2 : RETRY_MAX_MS;
	}
	free(said);
	return NULL;
}

struct kube_watch *kube_watch_start(struct kube *k, const struct kube_watch_spec *spec, char **error)
{
	struct kube_watch *w = calloc(1, sizeof(*w));

	*error = NULL;
	if (!w || !(w->stopper = http_stopper_new())) {
		free(w);
		agent_fail(error, ENOMEM, "out of memory");
		return NULL;
	}
	w->kube = k;
	w->spec = *spec;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->stopped, NULL);
	if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
		agent_fail(error, EAGAIN, "cannot start the watch thread");
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->stopped);
		http_stopper_free(w->stopper);
		free(w);
		return NULL;
	}
	return w;
}

void kube_watch_stop(struct kube_watch *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_broadcast(&w->stopped);
	pthread_mutex_unlock(&w->lock);
	http_stopper_stop(w->stopper);
	pthread_join(w->thread, NULL);
	http_stopper_free(w->stopper);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->stopped);
	free(w);
}
