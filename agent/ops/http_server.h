/* HTTP endpoints (libevent's evhttp, on a thread of their own): /metrics (Prometheus
 * text), /healthz, /readyz on a TCP port for the kubelet's probes and for
 * Prometheus; the same plus /status (JSON) on a local unix socket for
 * `xevf-agent status`. */
#ifndef XEVF_HTTP_SERVER_H
#define XEVF_HTTP_SERVER_H

struct http_server;

/* port 0: an ephemeral port (logged); port < 0: no TCP listener. socket_path
 * NULL or "": no unix socket. */
int http_start(const char *address, int port, const char *socket_path, struct http_server **out);
int http_port(const struct http_server *h);
void http_stop(struct http_server *h);

#endif
