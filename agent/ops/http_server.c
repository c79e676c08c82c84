#include "http_server.h"

#include <arpa/inet.h>
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

#include "clock.h"
#include "log.h"
#include "metrics.h"

/* Idle (and half-open) connections close after HTTP_IDLE_S; one address holds
 * at most HTTP_MAX_PER_IP of the TCP listener's HTTP_MAX_CONNECTIONS. */
#define HTTP_IDLE_S 10
#define HTTP_MAX_CONNECTIONS 4096
#define HTTP_MAX_PER_IP 256
#define HTTP_MAX_LOCAL 64

struct http_server {
	struct MHD_Daemon *tcp;
	struct MHD_Daemon *local;
	char *socket_path;
	int port;
};

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
	if (strcmp(url, "/metrics") == 0 || strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 ||
	    (local && strcmp(url, "/status") == 0))
		metrics_refresh(); /* published when asked for, not after every change */
	if (strcmp(url, "/metrics") == 0)
		return reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", metrics_render());
	if (strcmp(url, "/healthz") == 0) {
		code = metrics_health(clock_mono_ms(), &body);
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
	/* epoll: no select() limit of 1,024 descriptors, so a flood of idle
	 * connections cannot starve the kubelet's probes */
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;

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
					  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_S,
					  MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_MAX_CONNECTIONS,
					  MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)HTTP_MAX_PER_IP, MHD_OPTION_END);
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
						    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_S,
						    MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_MAX_LOCAL, MHD_OPTION_END);
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

