/* HTTP with libevent: the API server over HTTPS (GET, POST, and watch
 * streams), each request on its own event loop. Bodies and lines are bounded. */
#ifndef XEVF_HTTP_CLIENT_H
#define XEVF_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

struct http_request {
	const char *url;
	const char *bearer_token;  /* NULL: none */
	const char *ca_file;       /* NULL: the system's CAs */
	long timeout_ms;           /* 0: 10 s (a stream: its connect only) */
	const char *post_json;     /* NULL: GET; else POST this JSON body */
};
/* GET (or POST); the body (malloc'd, at most 8 MiB) and the HTTP status,
 * or -errno with *error set. */
int http_fetch(const struct http_request *req, char **body, char **error);

/* Ends a stream from another thread. */
struct http_stopper;
struct http_stopper *http_stopper_new(void);
void http_stopper_stop(struct http_stopper *s);
bool http_stopper_stopped(struct http_stopper *s);
void http_stopper_free(struct http_stopper *s);

/* A line of a stream (NUL-terminated, without its newline); non-zero stops. */
typedef int (*http_line_fn)(void *ctx, const char *line, size_t len);
/* GETs a stream of lines (a Kubernetes watch) and hands each to on_line until
 * the server ends it or stop is stopped: the HTTP status (0 when stopped
 * before an answer), or -errno with *error set. No CPU while nothing comes. */
int http_stream_lines(const struct http_request *req, struct http_stopper *stop, http_line_fn on_line, void *ctx,
		      char **error);

#endif
