#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"

/* Idle (and half-open) connections close after HTTP_IDLE_S; requests are
 * GETs, so headers are small and bodies refused. */
#define HTTP_IDLE_S 10
#define HTTP_MAX_HEADERS ((ev_ssize_t)16 * 1024)
/* accept() failing (out of descriptors): the listener rests this long rather
 * than spin on a socket that stays readable */
#define ACCEPT_PAUSE_MS 1000

struct http_server {
	struct event_base *base;
	struct evhttp *tcp;
	struct evhttp *local;       /* also serves /status */
	struct event *stop_event;
	int stop_fd;
	pthread_t thread;
	bool running;
	char *socket_path;
	int port;
};

static void reply(struct evhttp_request *r, int code, const char *type, char *body)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(r);

	if (!body) {
		evhttp_send_error(r, 500, "out of memory");
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", type);
	evbuffer_add(out, body, strlen(body));
	free(body);
	evhttp_send_reply(r, code, code == 200 ? "OK" : code == 404 ? "Not Found" : code == 405 ? "Method Not Allowed"
					    : code == 503 ? "Service Unavailable" : "", NULL);
}

/* The signature is libevent's callback type, hence the non-const arg. */
// cppcheck-suppress constParameter
static void handle(struct evhttp_request *r, void *arg)
{
	bool local = arg != NULL;
	enum evhttp_cmd_type method = evhttp_request_get_command(r);
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(r));
	char *body = NULL;
	int code;

	if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
		reply(r, 405, "text/plain", strdup("GET only\n"));
		return;
	}
	if (!path)
		path = "/";
	if (strcmp(path, "/metrics") == 0 || strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
	    (local && strcmp(path, "/status") == 0))
		metrics_refresh(); /* published when asked for, not after every change */
	if (strcmp(path, "/metrics") == 0) {
		reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", metrics_render());
	} else if (strcmp(path, "/healthz") == 0) {
		code = metrics_health(clock_mono_ms(), &body);
		reply(r, code, "text/plain", body);
	} else if (strcmp(path, "/readyz") == 0) {
		code = metrics_readiness(&body);
		reply(r, code, "text/plain", body);
	} else if (local && strcmp(path, "/status") == 0) {
		reply(r, 200, "application/json", metrics_status());
	} else {
		reply(r, 404, "text/plain", strdup("not found\n"));
	}
}

static void resume_accepting(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	evconnlistener_enable(arg);
}

static void on_accept_error(struct evconnlistener *listener, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();
	struct timeval pause = {.tv_sec = ACCEPT_PAUSE_MS / 1000, .tv_usec = (suseconds_t)(ACCEPT_PAUSE_MS % 1000) * 1000};

	log_warn("http_accept_failed", "err=\"%s\" action=\"new connections wait %d ms\"", strerror(e), ACCEPT_PAUSE_MS);
	evconnlistener_disable(listener);
	(void)arg; /* libevent's own */
	(void)event_base_once(evconnlistener_get_base(listener), -1, EV_TIMEOUT, resume_accepting, listener, &pause);
}

static struct evhttp *http_new(struct http_server *h, bool local)
{
	struct evhttp *http = evhttp_new(h->base);

	if (!http)
		return NULL;
	evhttp_set_timeout(http, HTTP_IDLE_S);
	evhttp_set_max_headers_size(http, HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(http, 0);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
					   EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(http, handle, local ? h : NULL); /* a non-NULL argument marks the local one */
	return http;
}

static void guard_listener(struct evhttp_bound_socket *bound)
{
	struct evconnlistener *listener = evhttp_bound_socket_get_listener(bound);

	if (listener)
		evconnlistener_set_error_cb(listener, on_accept_error);
}

static int listen_unix(const char *path)
{
	struct sockaddr_un addr;
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	memcpy(addr.sun_path, path, strlen(path) + 1);
	unlink(path);
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int start_tcp(struct http_server *h, const char *address, int port)
{
	struct in_addr ip;
	struct evhttp_bound_socket *bound;
	struct sockaddr_in sin = {0};
	socklen_t len = sizeof(sin);

	if (inet_pton(AF_INET, address, &ip) != 1) {
		log_error("http_failed", "address=%s reason=\"not an IPv4 address\"", address);
		return -EINVAL;
	}
	if (!(h->tcp = http_new(h, false)))
		return -ENOMEM;
	if (!(bound = evhttp_bind_socket_with_handle(h->tcp, address, (uint16_t)port))) {
		log_error("http_failed", "address=%s port=%d reason=\"cannot listen (port in use?)\"", address, port);
		return -EADDRINUSE;
	}
	guard_listener(bound);
	h->port = getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sin, &len) == 0
			  ? ntohs(sin.sin_port)
			  : port;
	log_info("http_serving", "address=%s port=%d paths=\"/metrics /healthz /readyz\"", address, h->port);
	return 0;
}

static void start_local(struct http_server *h, const char *socket_path)
{
	struct evhttp_bound_socket *bound;
	int fd = listen_unix(socket_path);

	if (fd < 0) {
		log_error("status_socket_failed", "path=%s err=\"%s\" action=\"xevf-agent status will not work\"",
			  socket_path, strerror(errno));
		return;
	}
	if (!(h->local = http_new(h, true)) || !(bound = evhttp_accept_socket_with_handle(h->local, fd))) {
		close(fd);
		log_error("status_socket_failed", "path=%s reason=\"libevent could not serve it\"", socket_path);
		return;
	}
	guard_listener(bound);
	h->socket_path = strdup(socket_path);
	log_info("status_serving", "socket=%s", socket_path);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static void *serve(void *arg)
{
	struct http_server *h = arg;

	event_base_dispatch(h->base);
	return NULL;
}

int http_start(const char *address, int port, const char *socket_path, struct http_server **out)
{
	struct http_server *h = calloc(1, sizeof(*h));
	int rc = 0;

	*out = NULL;
	if (!h)
		return -ENOMEM;
	h->port = -1;
	h->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (h->stop_fd < 0 || !(h->base = event_base_new()) ||
	    !(h->stop_event = event_new(h->base, h->stop_fd, EV_READ, on_stop, h->base)) ||
	    event_add(h->stop_event, NULL) < 0)
		rc = -ENOMEM;
	if (rc == 0 && port >= 0)
		rc = start_tcp(h, address ? address : "0.0.0.0", port);
	if (rc == 0 && socket_path && *socket_path)
		start_local(h, socket_path);
	if (rc == 0 && (h->tcp || h->local)) {
		if (pthread_create(&h->thread, NULL, serve, h) != 0)
			rc = -EAGAIN;
		else
			h->running = true;
	}
	if (rc < 0) {
		http_stop(h);
		return rc;
	}
	*out = h;
	return 0;
}

int http_port(const struct http_server *h)
{
	return h ? h->port : -1;
}

void http_stop(struct http_server *h)
{
	uint64_t one = 1;

	if (!h)
		return;
	if (h->running) {
		(void)!write(h->stop_fd, &one, sizeof(one));
		pthread_join(h->thread, NULL);
	}
	if (h->tcp)
		evhttp_free(h->tcp);
	if (h->local)
		evhttp_free(h->local);
	if (h->stop_event)
		event_free(h->stop_event);
	if (h->base)
		event_base_free(h->base);
	if (h->stop_fd >= 0)
		close(h->stop_fd);
	if (h->socket_path)
		unlink(h->socket_path);
	free(h->socket_path);
	free(h);
}
