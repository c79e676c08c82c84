/* An API-server watch kept open on a thread of its own: opened again at once
 * when the server ends a watch that ran, and after a pause (1 s, doubling to
 * 30 s) when it fails; a failure is logged once until it changes. */
#ifndef XEVF_KUBE_WATCH_H
#define XEVF_KUBE_WATCH_H

#include "kube.h"

/* Opens the watch and feeds each event's line to on_line until it ends. */
typedef int (*kube_watch_open_fn)(struct kube *k, struct http_stopper *stop, http_line_fn on_line, void *ctx,
				  char **error);

struct kube_watch_spec {
	const char *unwatched_event;   /* the log event of a failure */
	const char *unwatched_action;  /* what it means meanwhile (the log line's action) */
	kube_watch_open_fn open;
	http_line_fn on_line;          /* runs on the watch's thread */
	void *ctx;
};

struct kube_watch;

/* k stays the caller's (close it after kube_watch_stop); the spec's strings
 * must outlive the watch. NULL and *error when the thread cannot start. */
struct kube_watch *kube_watch_start(struct kube *k, const struct kube_watch_spec *spec, char **error);
/* Ends the watch in progress and joins its thread. */
void kube_watch_stop(struct kube_watch *w);

#endif
