/* The kubelet's plugin directory: this agent's claim on it, and a watch on
 * what happens to kubelet.sock there.
 *
 * Two agents on one directory (a DaemonSet rollout with maxSurge) would delete
 * each other's sockets over and over: the one that holds the lock serves, the
 * other waits and says why. The lock lives in a subdirectory, because a
 * starting kubelet removes every file of the plugin directory, but no
 * directory. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon_private.h"
#include "log.h"
#include "xevf_util.h"

#define LOCK_DIR ".xevf"
#define LOCK_FILE "agent.lock"

/* The pid the holder wrote into the lock file, for the message. */
static void holder_pid(int fd, char *pid, size_t size)
{
	ssize_t n = pread(fd, pid, size - 1, 0);

	pid[n > 0 ? n : 0] = '\0';
	pid[strcspn(pid, "\n")] = '\0';
}

int daemon_plugin_dir_claim(struct daemon *d, char *holder, size_t size)
{
	char *dir = NULL, *path = NULL, pid[24];
	int rc = 0;

	if (d->plugin_dir_lock >= 0)
		return 0;
	if (xevf_asprintf(&dir, "%s/" LOCK_DIR, d->cfg.plugin_dir) || xevf_asprintf(&path, "%s/" LOCK_FILE, dir)) {
		rc = -ENOMEM;
		goto out;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		goto out;
	}
	d->plugin_dir_lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (d->plugin_dir_lock < 0) {
		rc = -errno;
		goto out;
	}
	if (flock(d->plugin_dir_lock, LOCK_EX | LOCK_NB) < 0) {
		rc = -errno;
		holder_pid(d->plugin_dir_lock, holder, size);
		close(d->plugin_dir_lock);
		d->plugin_dir_lock = -1;
		goto out;
	}
	snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(d->plugin_dir_lock, 0) < 0 || pwrite(d->plugin_dir_lock, pid, strlen(pid), 0) < 0)
		log_warn("plugin_dir_lock_unwritten", "file=%s err=\"%s\"", path, strerror(errno));
out:
	free(dir);
	free(path);
	return rc;
}

void daemon_plugin_dir_release(struct daemon *d)
{
	if (d->plugin_dir_lock >= 0)
		close(d->plugin_dir_lock); /* the lock goes with the descriptor */
	d->plugin_dir_lock = -1;
	if (d->plugin_dir_watch >= 0)
		close(d->plugin_dir_watch);
	d->plugin_dir_watch = -1;
}

/* The plugin dir's parent, while the plugin dir does not exist yet: its
 * creation is seen at once (a kubelet that starts after the agent). */
static void watch_parent(struct daemon *d)
{
	char *parent = strdup(d->cfg.plugin_dir), *slash = parent ? strrchr(parent, '/') : NULL;

	if (slash && slash != parent) {
		*slash = '\0';
		if (inotify_add_watch(d->plugin_dir_watch, parent, IN_CREATE | IN_MOVED_TO) < 0)
			log_debug("plugin_dir_parent_unwatched", "dir=%s err=\"%s\" action=\"looking for it every tick\"", parent,
				  strerror(errno));
	}
	free(parent);
}

bool daemon_plugin_dir_ready(struct daemon *d)
{
	char holder[24] = "";
	int rc;

	if (!d->plugin_dir_missing)
		return true;
	if (access(d->cfg.plugin_dir, F_OK) != 0)
		return false;
	d->plugin_dir_missing = false;
	log_info("plugin_dir_found", "dir=%s action=\"serving\"", d->cfg.plugin_dir);
	if ((rc = daemon_plugin_dir_claim(d, holder, sizeof(holder))) != 0)
		log_warn("plugin_dir_unlocked", "dir=%s err=\"%s\" holder_pid=%s action=\"serving without the lock\"",
			 d->cfg.plugin_dir, strerror(-rc), *holder ? holder : "-");
	daemon_plugin_dir_watch(d);
	daemon_serving_lock(d);
	for (struct pool_slot *s = d->pools; s; s = s->next)
		plugin_serve_now(s->plugin);
	daemon_serving_unlock(d);
	return true;
}

void daemon_plugin_dir_watch(struct daemon *d)
{
	if (d->plugin_dir_watch < 0)
		d->plugin_dir_watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (d->plugin_dir_watch >= 0 && d->plugin_dir_missing) {
		watch_parent(d);
		return;
	}
	if (d->plugin_dir_watch >= 0 &&
	    inotify_add_watch(d->plugin_dir_watch, d->cfg.plugin_dir, IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM) < 0)
		log_warn("plugin_dir_unwatched", "dir=%s err=\"%s\" action=\"noticing kubelet restarts by kubelet.sock's "
			 "identity only\"", d->cfg.plugin_dir, strerror(errno));
}

/* A kubelet.sock created, removed or renamed: every pool registers again
 * (the kubelet takes a registration it already has). */
void daemon_plugin_dir_events(struct daemon *d)
{
	char buf[sizeof(struct inotify_event) + NAME_MAX + 1] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool kubelet = false;
	ssize_t n;

	while (d->plugin_dir_watch >= 0 && (n = read(d->plugin_dir_watch, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			if (ev->len && strcmp(ev->name, "kubelet.sock") == 0)
				kubelet = true;
			p += sizeof(*ev) + ev->len;
		}
	}
	daemon_serving_lock(d);
	for (struct pool_slot *s = d->pools; kubelet && s; s = s->next)
		plugin_kubelet_in_doubt(s->plugin);
	daemon_serving_unlock(d);
}
