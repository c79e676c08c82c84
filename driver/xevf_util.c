#include "xevf_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int xevf_asprintf(char **out, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(out, fmt, ap);
	va_end(ap);
	if (n < 0) {
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

char *xevf_strdup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int xevf_mkdir_parent(const char *path, mode_t mode)
{
	char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
	int rc = 0;

	if (!dir)
		return -ENOMEM;
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, mode) < 0 && errno != EEXIST)
			rc = -errno;
	}
	free(dir);
	return rc;
}

int xevf_write_file_atomic(const char *path, const void *data, size_t len, struct xevf_err *err)
{
	char *tmp = NULL, *dir = NULL, *slash;
	const char *p = data;
	int fd = -1, rc = 0;

	if (xevf_asprintf(&tmp, "%s.tmp", path) < 0 || !(dir = strdup(path))) {
		free(tmp);
		return xevf_err_set(err, ENOMEM, "%s: out of memory", path);
	}
	/* a fresh file of our own: whatever is left at the temporary name (a
	 * crashed write, or a link planted there) is removed, never followed */
	if (unlink(tmp) < 0 && errno != ENOENT) {
		rc = xevf_err_set(err, errno, "%s: cannot remove a stale temporary file: %s", tmp, strerror(errno));
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = xevf_err_set(err, errno, "%s: cannot create: %s", tmp, strerror(errno));
		goto out;
	}
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = xevf_err_set(err, n < 0 ? errno : EIO, "%s: write: %s", tmp, n < 0 ? strerror(errno) : "no progress");
			goto out;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0) {
		rc = xevf_err_set(err, errno, "%s: fsync: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = xevf_err_set(err, errno, "%s: close: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		rc = xevf_err_set(err, errno, "%s: rename to %s: %s", tmp, path, strerror(errno));
		goto out;
	}
	/* the rename itself must reach the disk */
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	int dfd = open(slash && slash != dir ? dir : (slash ? "/" : "."), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlink(tmp);
	free(tmp);
	free(dir);
	return rc;
}

void xevf_strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

long xevf_strv_index(char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return (long)i;
	return -1;
}

char **xevf_strv_dup(char *const *v, size_t n)
{
	char **copy = calloc(n + 1, sizeof(*copy));

	for (size_t i = 0; copy && i < n; i++) {
		if (!(copy[i] = strdup(v[i]))) {
			xevf_strv_free(copy, i);
			return NULL;
		}
	}
	return copy;
}

bool xevf_strv_has(char *const *v, size_t n, const char *s)
{
	return xevf_strv_index(v, n, s) >= 0;
}

#define WAIT_STEP_MS 20

bool xevf_wait_stopped(const struct xevf_wait *w)
{
	return w && w->stop && w->stop(w->ctx);
}

bool xevf_wait_step(const struct xevf_wait *w, int *waited)
{
	struct timespec ts = {0, WAIT_STEP_MS * 1000000L};

	if (!w || *waited >= w->timeout_ms || xevf_wait_stopped(w))
		return false;
	nanosleep(&ts, NULL);
	*waited += WAIT_STEP_MS;
	return !xevf_wait_stopped(w);
}
