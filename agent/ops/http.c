#include "http.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"

struct http_server {
	struct MHD_Daemon *tcp;
	struct MHD_Daemon *local;
	char *socket_path;
	int port;
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *type, char *body)
{
	struct MHD_Response *resp;
	enum MHD_Result r;

	if (!body)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", type);
	r = MHD_queue_response(conn, code, resp);
	MHD_destroy_response(resp);
	return r;
}

/* The signature is libmicrohttpd's callback type, hence the non-const cls. */
// cppcheck-suppress constParameter
static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
			      const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	bool local = cls != NULL;
	char *body = NULL;
	int code;

	(void)version;
	(void)upload_data;
	(void)con_cls;
	if (*upload_data_size)
		return MHD_NO; /* no request bodies here */
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(conn, 405, "text/plain", strdup("GET only\n"));
	if (strcmp(url, "/metrics") == 0)
		return reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", metrics_render());
	if (strcmp(url, "/healthz") == 0) {
		code = metrics_health(mono_ms(), &body);
		return reply(conn, (unsigned)code, "text/plain", body);
	}
	if (strcmp(url, "/readyz") == 0) {
		code = metrics_readiness(&body);
		return reply(conn, (unsigned)code, "text/plain", body);
	}
	if (local && strcmp(url, "/status") == 0)
		return reply(conn, 200, "application/json", metrics_status());
	return reply(conn, 404, "text/plain", strdup("not found\n"));
}

static int listen_unix(const char *path)
{
	struct sockaddr_un addr;
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

int http_start(const char *address, int port, const char *socket_path, struct http_server **out)
{
	struct http_server *h = calloc(1, sizeof(*h));
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

	*out = NULL;
	if (!h)
		return -ENOMEM;
	h->port = -1;
	if (port >= 0) {
		struct sockaddr_in sin;
		const union MHD_DaemonInfo *info;
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, address ? address : "0.0.0.0", &sin.sin_addr) != 1) {
			log_error("http_failed", "address=%s reason=\"not an IPv4 address\"", address);
			free(h);
			return -EINVAL;
		}
		h->tcp = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, &handle, NULL, MHD_OPTION_SOCK_ADDR, &sin,
					  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
		if (!h->tcp) {
			log_error("http_failed", "address=%s port=%d reason=\"cannot listen (port in use?)\"",
				  address ? address : "0.0.0.0", port);
			free(h);
			return -EADDRINUSE;
		}
		info = MHD_get_daemon_info(h->tcp, MHD_DAEMON_INFO_BIND_PORT);
		h->port = info ? info->port : port;
		log_info("http_serving", "address=%s port=%d paths=\"/metrics /healthz /readyz\"",
			 address ? address : "0.0.0.0", h->port);
	}
	if (socket_path && *socket_path) {
		int fd = listen_unix(socket_path);
		if (fd < 0) {
			log_error("status_socket_failed", "path=%s err=\"%s\" action=\"xevf-agent status will not work\"",
				  socket_path, strerror(errno));
		} else {
			/* cls != NULL marks the local daemon, which also serves /status */
			h->local = MHD_start_daemon(flags, 0, NULL, NULL, &handle, h, MHD_OPTION_LISTEN_SOCKET, fd,
						    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
			if (!h->local) {
				close(fd);
				log_error("status_socket_failed", "path=%s reason=\"libmicrohttpd could not start\"",
					  socket_path);
			} else {
				h->socket_path = strdup(socket_path);
				log_info("status_serving", "socket=%s", socket_path);
			}
		}
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
	if (!h)
		return;
	if (h->tcp)
		MHD_stop_daemon(h->tcp);
	if (h->local)
		MHD_stop_daemon(h->local);
	if (h->socket_path)
		unlink(h->socket_path);
	free(h->socket_path);
	free(h);
}

struct sink {
	char *buf;
	size_t len;
	bool too_big;
};

#define STATUS_MAX_BYTES ((size_t)8 * 1024 * 1024)

static size_t collect(char *data, size_t size, size_t n, void *userdata)
{
	struct sink *s = userdata;
	size_t add = size * n;
	char *grown;

	if (s->len + add > STATUS_MAX_BYTES) {
		s->too_big = true;
		return 0;
	}
	grown = realloc(s->buf, s->len + add + 1);
	if (!grown)
		return 0;
	memcpy(grown + s->len, data, add);
	s->len += add;
	grown[s->len] = '\0';
	s->buf = grown;
	return add;
}

int http_get(const struct http_request *req, char **body, char **error)
{
	CURL *curl;
	CURLcode rc;
	struct sink s = {0};
	long code = -1;
	struct curl_slist *headers = NULL;
	char *auth = NULL;

	*body = NULL;
	*error = NULL;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(curl = curl_easy_init())) {
		*error = strdup("libcurl could not start");
		return -1;
	}
	if (req->unix_socket)
		curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, req->unix_socket);
	if (req->bearer_token && asprintf(&auth, "Authorization: Bearer %s", req->bearer_token) >= 0)
		headers = curl_slist_append(headers, auth);
	headers = curl_slist_append(headers, "Accept: application/json");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	if (req->ca_file)
		curl_easy_setopt(curl, CURLOPT_CAINFO, req->ca_file);
	curl_easy_setopt(curl, CURLOPT_URL, req->url);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 10000L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	rc = curl_easy_perform(curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
	else if (asprintf(error, "%s: %s", req->unix_socket ? req->unix_socket : req->url,
			  s.too_big ? "the answer is too large" : curl_easy_strerror(rc)) < 0)
		*error = NULL;
	curl_easy_cleanup(curl);
	curl_global_cleanup();
	curl_slist_free_all(headers);
	if (auth) {
		memset(auth, 0, strlen(auth)); /* a credential */
		free(auth);
	}
	if (rc != CURLE_OK) {
		free(s.buf);
		return -1;
	}
	*body = s.buf ? s.buf : strdup("");
	return (int)code;
}

int http_get_unix(const char *socket_path, const char *path, char **body, char **error)
{
	char *url = NULL;
	int code;

	if (asprintf(&url, "http://localhost%s", path) < 0)
		url = NULL;
	struct http_request req = {.url = url ? url : "http://localhost/", .unix_socket = socket_path};
	code = http_get(&req, body, error);
	free(url);
	return code;
}
