/* HTTP GET with libcurl: the agent's status over its unix socket, the API
 * server over HTTPS. Bodies are bounded. */
#ifndef XEVF_HTTP_CLIENT_H
#define XEVF_HTTP_CLIENT_H

/* GET path over the unix socket (libcurl); the body (malloc'd) and the HTTP
 * status, or -errno with *error set. */
int http_get_unix(const char *socket_path, const char *path, char **body, char **error);

struct http_request {
	const char *url;
	const char *unix_socket;   /* NULL: TCP */
	const char *bearer_token;  /* NULL: none */
	const char *ca_file;       /* NULL: the system's CAs */
	long timeout_ms;           /* 0: 10 s */
};
/* GET with libcurl; the body (malloc'd, at most 8 MiB) and the HTTP status,
 * or -errno with *error set. */
int http_get(const struct http_request *req, char **body, char **error);

#endif
