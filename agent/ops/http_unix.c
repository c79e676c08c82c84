#include "http_unix.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fail.h"

#define ANSWER_MAX_BYTES ((size_t)8 * 1024 * 1024 + (size_t)64 * 1024)
#define ANSWER_TIMEOUT_MS 10000

int http_parse_answer(const char *answer, size_t len, size_t *body_at)
{
	const char *end = memmem(answer, len, "\r\n\r\n", 4);
	int code = 0;

	/* "HTTP/1.x NNN " */
	if (!end || len < 13 || memcmp(answer, "HTTP/1.", 7) != 0 || answer[8] != ' ' || answer[12] != ' ')
		return -EPROTO;
	for (int i = 9; i < 12; i++) {
		if (answer[i] < '0' || answer[i] > '9')
			return -EPROTO;
		code = code * 10 + (answer[i] - '0');
	}
	if (code < 100)
		return -EPROTO;
	*body_at = (size_t)(end - answer) + 4;
	return code;
}

static int connect_unix(const char *socket_path, char **error)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(socket_path) >= sizeof(addr.sun_path))
		return agent_fail(error, ENAMETOOLONG, "%s: the path is too long for a unix socket", socket_path);
	memcpy(addr.sun_path, socket_path, strlen(socket_path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return agent_fail(error, errno, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int e = errno;
		close(fd);
		return agent_fail(error, e, "%s: %s", socket_path, strerror(e));
	}
	return fd;
}

static int send_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads until the peer closes: 0 and the bytes in *out (malloc'd,
 * NUL-terminated), or -errno with *error set. */
static int read_all(int fd, const char *socket_path, char **out, size_t *len, char **error)
{
	uint64_t give_up = clock_mono_ms() + ANSWER_TIMEOUT_MS;
	size_t cap = 16384;
	char *buf = malloc(cap);
	int rc = 0;

	*out = NULL;
	*len = 0;
	if (!buf)
		return agent_fail(error, ENOMEM, "out of memory");
	while (rc == 0) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		uint64_t now = clock_mono_ms();
		ssize_t n;
		int ready = now >= give_up ? 0 : poll(&p, 1, (int)(give_up - now));

		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0) {
			rc = agent_fail(error, ETIMEDOUT, "%s: no whole answer within %d ms", socket_path, ANSWER_TIMEOUT_MS);
			break;
		}
		if (cap - *len < 4096) {
			char *grown = cap >= ANSWER_MAX_BYTES ? NULL : realloc(buf, cap * 2);
			if (!grown) {
				rc = agent_fail(error, cap >= ANSWER_MAX_BYTES ? EFBIG : ENOMEM, "%s: the answer is larger than "
						"%zu bytes", socket_path, cap >= ANSWER_MAX_BYTES ? ANSWER_MAX_BYTES : cap);
				break;
			}
			buf = grown;
			cap *= 2;
		}
		n = read(fd, buf + *len, cap - *len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = agent_fail(error, errno, "%s: %s", socket_path, strerror(errno));
			break;
		}
		if (n == 0) {
			buf[*len] = '\0';
			*out = buf;
			return 0;
		}
		*len += (size_t)n;
	}
	free(buf);
	return rc;
}

int http_get_unix(const char *socket_path, const char *path, char **body, char **error)
{
	char *request = NULL, *answer;
	size_t len, body_at;
	int fd, code;

	*body = NULL;
	*error = NULL;
	if ((fd = connect_unix(socket_path, error)) < 0)
		return fd;
	if (asprintf(&request, "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path) < 0) {
		close(fd);
		return agent_fail(error, ENOMEM, "out of memory");
	}
	code = send_all(fd, request, strlen(request));
	free(request);
	if (code < 0) {
		code = agent_fail(error, errno, "%s: %s", socket_path, strerror(errno));
		close(fd);
		return code;
	}
	code = read_all(fd, socket_path, &answer, &len, error);
	close(fd);
	if (code < 0 || !answer)
		return code < 0 ? code : -EIO;
	code = http_parse_answer(answer, len, &body_at);
	if (code < 0) {
		free(answer);
		return agent_fail(error, EPROTO, "%s: the answer is not HTTP", socket_path);
	}
	memmove(answer, answer + body_at, len - body_at + 1);
	*body = answer;
	return code;
}
