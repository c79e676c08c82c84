/* HTTP endpoints (libmicrohttpd, on its own threads): /metrics (Prometheus
 * text), /healthz, /readyz on a TCP port for the kubelet's probes and for
 * Prometheus; the same plus /status (JSON) on a local unix socket for
 * `xevf-agent status`. */
#ifndef XEVF_HTTP_H
#define XEVF_HTTP_H

struct http_server;

/* port 0: an ephemeral port (logged); port < 0: no TCP listener. socket_path
 * NULL or "": no unix socket. */
int http_start(const char *address, int port, const char *socket_path, struct http_server **out);
int http_port(const struct http_server *h);
void http_stop(struct http_server *h);

/* GET path over the unix socket (libcurl); the body (malloc'd) and the HTTP
 * status, or -1 with *error set. */
int http_get_unix(const char *socket_path, const char *path, char **body, char **error);

struct http_request {
	const char *url;
	const char *unix_socket;   /* NULL: TCP */
	const char *bearer_token;  /* NULL: none */
	const char *ca_file;       /* NULL: the system's CAs */
	long timeout_ms;           /* 0: 10 s */
};
/* GET with libcurl; the body (malloc'd, at most 8 MiB) and the HTTP status,
 * or -1 with *error set. */
int http_get(const struct http_request *req, char **body, char **error);

#endif
