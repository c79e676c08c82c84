#include "xevf_uevent.h"

#include <errno.h>
#include <stdbool.h>
#include <linux/netlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/uio.h>
#include <unistd.h>

/* The kernel's own limit for one uevent (UEVENT_BUFFER_SIZE). */
#define UEVENT_MAX 2048

void xevf_uevent_clear(struct xevf_uevent *ev)
{
	free(ev->action);
	free(ev->devpath);
	free(ev->subsystem);
	free(ev->driver);
	free(ev->pci_slot);
	memset(ev, 0, sizeof(*ev));
}

static int take(char **field, const char *value, size_t len)
{
	free(*field);
	*field = strndup(value, len);
	return *field ? 0 : -ENOMEM;
}

int xevf_uevent_parse(const char *buf, size_t len, struct xevf_uevent *ev)
{
	const char *end = buf + len, *p = buf, *at;
	size_t n;
	int rc = 0;

	memset(ev, 0, sizeof(*ev));
	if (len == 0 || len > UEVENT_MAX)
		return -EINVAL;
	/* header: "action@devpath" up to the first NUL */
	n = strnlen(p, len);
	if (n == len)
		return -EINVAL;
	at = memchr(p, '@', n);
	if (!at || at == p || at + 1 == p + n || at[1] != '/')
		return -EINVAL;
	if (take(&ev->action, p, (size_t)(at - p)) || take(&ev->devpath, at + 1, (size_t)(p + n - at - 1))) {
		xevf_uevent_clear(ev);
		return -ENOMEM;
	}
	p += n + 1;
	while (p < end && rc == 0) {
		const char *eq;
		n = strnlen(p, (size_t)(end - p));
		eq = memchr(p, '=', n);
		if (eq) {
			size_t klen = (size_t)(eq - p), vlen = n - klen - 1;
			if (klen == 9 && memcmp(p, "SUBSYSTEM", 9) == 0)
				rc = take(&ev->subsystem, eq + 1, vlen);
			else if (klen == 6 && memcmp(p, "DRIVER", 6) == 0)
				rc = take(&ev->driver, eq + 1, vlen);
			else if (klen == 13 && memcmp(p, "PCI_SLOT_NAME", 13) == 0)
				rc = take(&ev->pci_slot, eq + 1, vlen);
		}
		p += n + 1;
	}
	if (rc) {
		xevf_uevent_clear(ev);
		return rc;
	}
	return 0;
}

int xevf_uevent_open(int *fd, struct xevf_err *err)
{
	struct sockaddr_nl addr;
	int s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);

	*fd = -1;
	if (s < 0)
		return xevf_err_set(err, errno, "cannot open a uevent socket: %s", strerror(errno));
	memset(&addr, 0, sizeof(addr));
	addr.nl_family = AF_NETLINK;
	addr.nl_groups = 1; /* the kernel's uevent multicast group */
	if (bind(s, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int e = errno;
		close(s);
		return xevf_err_set(err, e, "cannot subscribe to kernel uevents: %s", strerror(e));
	}
	*fd = s;
	return 0;
}

/* The kernel sends from port 0; a process could send to our port too.
 * A local datagram socket is the one a test bound (xevf_uevent_open_local):
 * its senders are unnamed (no address at all, or just the family). */
static bool from_kernel_or_injected(const struct sockaddr_storage *from, socklen_t len)
{
	if (len == 0)
		return true;
	if (from->ss_family == AF_NETLINK)
		return ((const struct sockaddr_nl *)(const void *)from)->nl_pid == 0;
	return from->ss_family == AF_UNIX;
}

int xevf_uevent_open_local(const char *path, int *fd, struct xevf_err *err)
{
	struct sockaddr_un addr;
	int s;

	*fd = -1;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(addr.sun_path))
		return xevf_err_set(err, ENAMETOOLONG, "uevent socket %s: path too long", path);
	memcpy(addr.sun_path, path, strlen(path) + 1);
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return xevf_err_set(err, errno, "uevent socket %s: %s", path, strerror(errno));
	(void)unlink(path);
	if (bind(s, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int e = errno;
		close(s);
		return xevf_err_set(err, e, "uevent socket %s: cannot bind: %s", path, strerror(e));
	}
	*fd = s;
	return 0;
}

int xevf_uevent_next(int fd, struct xevf_uevent *ev)
{
	char buf[UEVENT_MAX + 1];

	for (;;) {
		struct sockaddr_storage from;
		struct iovec iov = {buf, UEVENT_MAX};
		struct msghdr msg;
		ssize_t n;

		memset(&msg, 0, sizeof(msg));
		memset(&from, 0, sizeof(from));
		msg.msg_name = &from;
		msg.msg_namelen = sizeof(from);
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		n = recvmsg(fd, &msg, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			/* ENOBUFS: events were lost; the caller rescans anyway */
			return -errno;
		}
		if ((msg.msg_flags & MSG_TRUNC) || !from_kernel_or_injected(&from, msg.msg_namelen))
			continue; /* cut short, or not from the kernel */
		if (xevf_uevent_parse(buf, (size_t)n, ev) == 0)
			return 1;
	}
}
