/* The serving thread, which only dispatches the device plugins' completions,
 * and the descriptor that wakes the daemon's thread from any other thread or
 * a signal handler. */
#include <errno.h>
#include <grpc/support/time.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "daemon_private.h"
#include "log.h"

/* One per process: a signal handler has no context to find it in. */
static int wake_fd = -1;

int daemon_wake_open(void)
{
	if (wake_fd < 0)
		wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return wake_fd < 0 ? -errno : 0;
}

void daemon_wake(void)
{
	uint64_t one = 1;

	/* a full counter already wakes the loop: nothing to do on EAGAIN */
	if (wake_fd >= 0)
		(void)!write(wake_fd, &one, sizeof(one));
}

int daemon_wake_fd(void) { return wake_fd; }

void daemon_wake_drain(void)
{
	uint64_t n;

	if (wake_fd >= 0)
		(void)!read(wake_fd, &n, sizeof(n));
}

void daemon_wake_close(void)
{
	if (wake_fd >= 0)
		close(wake_fd);
	wake_fd = -1;
}

void daemon_serving_lock(struct daemon *d) { pthread_mutex_lock(&d->serving_lock); }
void daemon_serving_unlock(struct daemon *d) { pthread_mutex_unlock(&d->serving_lock); }

/* Sleeps in the queue until a call, a registration or a drained server needs
 * it: no timer, no discovery, nothing else to wait behind. */
static void *serve(void *arg)
{
	struct daemon *d = arg;

	pthread_setname_np(pthread_self(), "xevf-serving");
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(d->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		bool look;

		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			return NULL;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		daemon_serving_lock(d);
		look = plugin_dispatch(ev.tag, ev.success != 0);
		daemon_serving_unlock(d);
		if (look)
			daemon_wake();
	}
}

int daemon_serving_start(struct daemon *d)
{
	int rc = pthread_create(&d->serving_thread, NULL, serve, d);

	if (rc) {
		log_error("start_failed", "reason=\"cannot start the serving thread: %s\"", strerror(rc));
		return -rc;
	}
	d->serving_started = true;
	return 0;
}

void daemon_serving_join(struct daemon *d)
{
	if (d->serving_started)
		pthread_join(d->serving_thread, NULL);
	d->serving_started = false;
}
