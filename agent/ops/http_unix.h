/* A GET over a local unix socket: `xevf-agent status` asking the agent's
 * status socket (HTTP/1.0, so the answer ends where the connection does). */
#ifndef XEVF_HTTP_UNIX_H
#define XEVF_HTTP_UNIX_H

#include <stddef.h>

/* The answer's status (the body, malloc'd and NUL-terminated, in *body), or
 * -errno with *error set. The answer is read for 10 s and 8 MiB at most. */
int http_get_unix(const char *socket_path, const char *path, char **body, char **error);

/* The status and body of a whole HTTP/1.x answer of len bytes: the status,
 * or -EPROTO when it is not one. *body_at is the body's offset. */
int http_parse_answer(const char *answer, size_t len, size_t *body_at);

#endif
