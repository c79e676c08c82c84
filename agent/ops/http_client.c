#include "http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fail.h"
#include "text.h"

#define BODY_MAX_BYTES ((size_t)8 * 1024 * 1024)
#define LINE_MAX_BYTES BODY_MAX_BYTES
#define HEADERS_MAX_BYTES ((size_t)64 * 1024)
#define DEFAULT_TIMEOUT_MS 10000L

/* One request on its own event loop, from connect to the answer's end. */
struct exchange {
	const struct http_request *req;
	struct event_base *base;
	struct evhttp_connection *conn;
	struct bufferevent *bev;       /* the connection's, freed with it */
	SSL_CTX *tls;                  /* NULL: plain HTTP */
	struct evhttp_uri *uri;
	char *host;                    /* without an IPv6 literal's brackets */
	int code;                      /* the answer's status; 0 before one */
	bool done;
	bool timed_out;
	int failure;                   /* enum evhttp_request_error + 1; 0: none */
	int socket_errno;              /* errno when the connection failed */
	int dns_error;                 /* getaddrinfo's, when the name did not resolve */
	bufferevent_event_cb evhttp_event_cb;  /* libevent's own, chained to */
	void *evhttp_event_arg;
	char *body;                    /* http_fetch's answer */
	/* http_stream_lines */
	http_line_fn on_line;
	void *line_ctx;
	struct evbuffer *pending;      /* a line not yet complete */
	bool refused;
	bool line_too_big;
	bool stopped;
};

static const char *const request_error_names[] = {
	[EVREQ_HTTP_TIMEOUT] = "timed out",
	[EVREQ_HTTP_EOF] = "the connection closed before an answer",
	[EVREQ_HTTP_INVALID_HEADER] = "the answer's headers are not HTTP",
	[EVREQ_HTTP_BUFFER_ERROR] = "the connection failed",
	[EVREQ_HTTP_REQUEST_CANCEL] = "cancelled",
	[EVREQ_HTTP_DATA_TOO_LONG] = "the answer is too large",
};

static void on_error(enum evhttp_request_error e, void *arg)
{
	struct exchange *x = arg;

	x->failure = (int)e + 1;
}

/* Sits between the bufferevent and libevent's HTTP code while it connects:
 * the connect's own errno and getaddrinfo's error, which libevent then
 * overwrites with those of its clean-up. It hands every event on. */
static void on_connect_event(struct bufferevent *bev, short what, void *arg)
{
	struct exchange *x = arg;

	if (what & BEV_EVENT_ERROR) {
		x->socket_errno = EVUTIL_SOCKET_ERROR();
		x->dns_error = bufferevent_socket_get_dns_error(bev);
	}
	x->evhttp_event_cb(bev, what, x->evhttp_event_arg);
}

static void watch_connect(struct exchange *x)
{
	bufferevent_data_cb readcb, writecb;

	bufferevent_getcb(x->bev, &readcb, &writecb, &x->evhttp_event_cb, &x->evhttp_event_arg);
	if (x->evhttp_event_cb)
		bufferevent_setcb(x->bev, readcb, writecb, on_connect_event, x);
}

static void finish(struct exchange *x)
{
	x->done = true;
	event_base_loopbreak(x->base);
}

static void on_done(struct evhttp_request *r, void *arg)
{
	struct exchange *x = arg;
	struct evbuffer *in;
	size_t len;

	if (x->done)
		return;
	if (!r || !evhttp_request_get_response_code(r)) {
		if (!x->failure)
			x->failure = EVREQ_HTTP_EOF + 1;
		finish(x);
		return;
	}
	x->code = evhttp_request_get_response_code(r);
	in = evhttp_request_get_input_buffer(r);
	len = in ? evbuffer_get_length(in) : 0;
	if (!x->on_line && len <= BODY_MAX_BYTES && (x->body = malloc(len + 1))) {
		if (len)
			evbuffer_remove(in, x->body, len);
		x->body[len] = '\0';
	}
	finish(x);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct exchange *x = arg;

	(void)fd;
	(void)what;
	x->timed_out = true;
	finish(x);
}

/* The answer's lines, each handed over as soon as it is complete. */
static void on_chunk(struct evhttp_request *r, void *arg)
{
	struct exchange *x = arg;
	char *line;
	size_t n;

	if (x->done)
		return;
	evbuffer_add_buffer(x->pending, evhttp_request_get_input_buffer(r));
	while ((line = evbuffer_readln(x->pending, &n, EVBUFFER_EOL_LF))) {
		int stop = n ? x->on_line(x->line_ctx, line, n) : 0;
		free(line);
		if (stop) {
			x->refused = true;
			finish(x);
			return;
		}
	}
	if (evbuffer_get_length(x->pending) > LINE_MAX_BYTES) {
		x->line_too_big = true;
		finish(x);
	}
}

static void keep_alive(evutil_socket_t fd)
{
	int on = 1, idle = 30, interval = 10;

	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
}

/* A stream's headers came: a stream is quiet for long, so no read timeout
 * (libevent sets 50 s on connect), and the kernel tells a peer that went away. */
static int on_headers(struct evhttp_request *r, void *arg)
{
	struct exchange *x = arg;

	x->code = evhttp_request_get_response_code(r);
	bufferevent_set_timeouts(x->bev, NULL, NULL);
	keep_alive(bufferevent_getfd(x->bev));
	if (x->code / 100 != 2)
		finish(x); /* the status is the answer; its body is not read */
	return 0;
}

static SSL_CTX *tls_context(const struct http_request *req, char **error)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx) {
		agent_fail(error, ENOMEM, "TLS: cannot start OpenSSL");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (req->ca_file ? SSL_CTX_load_verify_locations(ctx, req->ca_file, NULL) != 1
			 : SSL_CTX_set_default_verify_paths(ctx) != 1) {
		char why[256];
		ERR_error_string_n(ERR_get_error(), why, sizeof(why));
		agent_fail(error, EINVAL, "%s: cannot read the CA certificates: %s",
			   req->ca_file ? req->ca_file : "the system's CA store", why);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* The connection's bufferevent: TLS (verifying the host name or IP address
 * against the certificate) for https, plain for http. */
static struct bufferevent *connection_bufferevent(struct exchange *x, char **error)
{
	SSL *ssl;
	struct in6_addr ip;
	bool literal = inet_pton(AF_INET, x->host, &ip) == 1 || inet_pton(AF_INET6, x->host, &ip) == 1;

	if (!x->tls)
		return bufferevent_socket_new(x->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!(ssl = SSL_new(x->tls))) {
		agent_fail(error, ENOMEM, "TLS: out of memory");
		return NULL;
	}
	/* SSL_set1_host checks an IP address literal against the IP SANs */
	if (SSL_set1_host(ssl, x->host) != 1 || (!literal && SSL_set_tlsext_host_name(ssl, x->host) != 1)) {
		SSL_free(ssl);
		agent_fail(error, EINVAL, "TLS: %s is not a host name this client can check", x->host);
		return NULL;
	}
	return bufferevent_openssl_socket_new(x->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
}

static void exchange_free(struct exchange *x)
{
	if (x->conn)
		evhttp_connection_free(x->conn); /* and its bufferevent, SSL and socket */
	else if (x->bev)
		bufferevent_free(x->bev);
	if (x->tls)
		SSL_CTX_free(x->tls);
	if (x->uri)
		evhttp_uri_free(x->uri);
	if (x->pending)
		evbuffer_free(x->pending);
	if (x->base)
		event_base_free(x->base);
	free(x->host);
	free(x->body);
}

static long timeout_of(const struct http_request *req)
{
	return req->timeout_ms > 0 ? req->timeout_ms : DEFAULT_TIMEOUT_MS;
}

/* Parses the URL, connects and sends the request; the loop then runs it. */
static int exchange_start(struct exchange *x, const struct http_request *req, char **error)
{
	const char *scheme, *host, *path, *query;
	struct evhttp_request *r;
	struct evkeyvalq *headers;
	char *target = NULL, *auth = NULL, *host_header = NULL;
	int port, rc = 0;
	bool https;

	x->req = req;
	if (!(x->uri = evhttp_uri_parse(req->url)) || !(scheme = evhttp_uri_get_scheme(x->uri)) ||
	    !(host = evhttp_uri_get_host(x->uri)) || !*host ||
	    (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0))
		return agent_fail(error, EINVAL, "%s: not an http:// or https:// URL", req->url);
	https = strcmp(scheme, "https") == 0;
	port = evhttp_uri_get_port(x->uri);
	if (port < 0)
		port = https ? 443 : 80;
	x->host = host[0] == '[' ? strndup(host + 1, strcspn(host + 1, "]")) : strdup(host);
	path = evhttp_uri_get_path(x->uri);
	query = evhttp_uri_get_query(x->uri);
	if (!x->host || !(x->base = event_base_new()) ||
	    asprintf(&target, "%s%s%s", path && *path ? path : "/", query ? "?" : "", query ? query : "") < 0) {
		target = NULL;
		return agent_fail(error, ENOMEM, "out of memory");
	}
	if (https && !(x->tls = tls_context(req, error)))
		rc = -EINVAL;
	else if (!(x->bev = connection_bufferevent(x, error)))
		rc = *error ? -EINVAL : agent_fail(error, ENOMEM, "out of memory");
	else if (!(x->conn = evhttp_connection_base_bufferevent_new(x->base, NULL, x->bev, x->host, (uint16_t)port)))
		rc = agent_fail(error, ENOMEM, "out of memory");
	if (rc < 0)
		goto out;
	evhttp_connection_set_max_headers_size(x->conn, HEADERS_MAX_BYTES);
	if (!x->on_line)
		evhttp_connection_set_max_body_size(x->conn, BODY_MAX_BYTES);
	if (!(r = evhttp_request_new(on_done, x))) {
		rc = agent_fail(error, ENOMEM, "out of memory");
		goto out;
	}
	evhttp_request_set_error_cb(r, on_error);
	if (x->on_line) {
		evhttp_request_set_chunked_cb(r, on_chunk);
		evhttp_request_set_header_cb(r, on_headers);
	}
	headers = evhttp_request_get_output_headers(r);
	if (asprintf(&host_header, port == (https ? 443 : 80) ? "%s" : "%s:%d", host, port) < 0)
		host_header = NULL;
	evhttp_add_header(headers, "Host", host_header ? host_header : host);
	evhttp_add_header(headers, "Accept", "application/json");
	evhttp_add_header(headers, "Connection", "close");
	if (req->bearer_token && asprintf(&auth, "Bearer %s", req->bearer_token) >= 0)
		evhttp_add_header(headers, "Authorization", auth);
	if (req->post_json) {
		evhttp_add_header(headers, "Content-Type", "application/json");
		evbuffer_add(evhttp_request_get_output_buffer(r), req->post_json, strlen(req->post_json));
	}
	if (evhttp_make_request(x->conn, r, req->post_json ? EVHTTP_REQ_POST : EVHTTP_REQ_GET, target) < 0)
		rc = agent_fail(error, EIO, "%s: cannot send the request", req->url); /* libevent freed r */
	else
		watch_connect(x);
	/* the headers hold copies: the credential is wiped from ours now */
out:
	text_free_secret(auth);
	free(host_header);
	free(target);
	return rc;
}

/* What went wrong with a request that has no answer, for *error. */
static int exchange_failure(const struct exchange *x, char **error)
{
	unsigned long tls_error = x->tls && x->bev ? (unsigned long)bufferevent_get_openssl_error(x->bev) : 0;

	if (x->timed_out)
		return agent_fail(error, ETIMEDOUT, "%s: no answer within %ld ms", x->req->url, timeout_of(x->req));
	if (x->dns_error)
		return agent_fail(error, EHOSTUNREACH, "%s: %s: %s", x->req->url, x->host, gai_strerror(x->dns_error));
	if (x->socket_errno && x->socket_errno != EAGAIN)
		return agent_fail(error, EIO, "%s: %s", x->req->url, strerror(x->socket_errno));
	if (tls_error && (ERR_GET_LIB(tls_error) == ERR_LIB_SSL || ERR_GET_LIB(tls_error) == ERR_LIB_X509)) {
		SSL *ssl = bufferevent_openssl_get_ssl(x->bev);
		long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
		char why[256];
		ERR_error_string_n(tls_error, why, sizeof(why));
		return agent_fail(error, EPROTO, "%s: TLS: %s%s%s", x->req->url, why,
				  verify != X509_V_OK ? ": " : "",
				  verify != X509_V_OK ? X509_verify_cert_error_string(verify) : "");
	}
	if (x->failure == EVREQ_HTTP_DATA_TOO_LONG + 1)
		return agent_fail(error, EFBIG, "%s: the answer is too large", x->req->url);
	return agent_fail(error, EIO, "%s: %s", x->req->url,
			  x->failure ? request_error_names[x->failure - 1] : "the connection failed");
}

/* A timer that runs fire once the request's timeout has passed. */
static struct event *deadline(struct exchange *x, event_callback_fn fire)
{
	long ms = timeout_of(x->req);
	struct event *ev = evtimer_new(x->base, fire, x);
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	if (ev)
		evtimer_add(ev, &tv);
	return ev;
}

int http_fetch(const struct http_request *req, char **body, char **error)
{
	struct exchange x = {0};
	struct event *timer = NULL;
	int rc;

	*body = NULL;
	*error = NULL;
	if ((rc = exchange_start(&x, req, error)) == 0) {
		if (!(timer = deadline(&x, on_deadline)))
			rc = agent_fail(error, ENOMEM, "out of memory");
		else
			event_base_dispatch(x.base);
	}
	if (timer)
		event_free(timer);
	if (rc == 0 && !x.code)
		rc = exchange_failure(&x, error);
	else if (rc == 0 && !x.body)
		rc = agent_fail(error, ENOMEM, "out of memory");
	if (rc == 0) {
		*body = x.body;
		x.body = NULL;
		rc = x.code;
	}
	exchange_free(&x);
	return rc;
}

struct http_stopper {
	pthread_mutex_t lock;
	int wake_fd;   /* an eventfd, readable once stopped */
	bool stopped;
};

struct http_stopper *http_stopper_new(void)
{
	struct http_stopper *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	if ((s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		free(s);
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	return s;
}

void http_stopper_stop(struct http_stopper *s)
{
	uint64_t one = 1;

	pthread_mutex_lock(&s->lock);
	s->stopped = true;
	pthread_mutex_unlock(&s->lock);
	(void)!write(s->wake_fd, &one, sizeof(one));
}

bool http_stopper_stopped(struct http_stopper *s)
{
	bool stopped;

	pthread_mutex_lock(&s->lock);
	stopped = s->stopped;
	pthread_mutex_unlock(&s->lock);
	return stopped;
}

void http_stopper_free(struct http_stopper *s)
{
	if (!s)
		return;
	close(s->wake_fd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct exchange *x = arg;

	(void)fd;
	(void)what;
	x->stopped = true;
	finish(x);
}

/* Connect and headers within the timeout; then the stream has none. */
static void on_connect_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct exchange *x = arg;

	if (!x->code)
		on_deadline(fd, what, arg);
}

int http_stream_lines(const struct http_request *req, struct http_stopper *stop, http_line_fn on_line, void *ctx,
		      char **error)
{
	struct exchange x = {.on_line = on_line, .line_ctx = ctx};
	struct event *timer = NULL, *stopper = NULL;
	int rc;

	*error = NULL;
	if (http_stopper_stopped(stop))
		return 0;
	if (!(x.pending = evbuffer_new()))
		return agent_fail(error, ENOMEM, "out of memory");
	if ((rc = exchange_start(&x, req, error)) == 0) {
		timer = deadline(&x, on_connect_deadline);
		stopper = event_new(x.base, stop->wake_fd, EV_READ, on_stop, &x);
		if (!timer || !stopper || event_add(stopper, NULL) < 0)
			rc = agent_fail(error, ENOMEM, "out of memory");
		else
			event_base_dispatch(x.base);
	}
	if (timer)
		event_free(timer);
	if (stopper)
		event_free(stopper);
	if (rc == 0) {
		if (x.refused)
			rc = agent_fail(error, ECANCELED, "%s: the stream was ended by its reader", req->url);
		else if (x.line_too_big)
			rc = agent_fail(error, EFBIG, "%s: a line of the stream is too large", req->url);
		else if (x.code)
			rc = x.code;
		else if (!x.stopped)
			rc = exchange_failure(&x, error);
	}
	exchange_free(&x);
	return rc;
}
