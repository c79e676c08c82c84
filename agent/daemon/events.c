/* What kernel and file events mean for the inventory: a uevent or a change
 * in the VFIO device directory asks for a cheap recheck of the VFs it names,
 * a device that came or went for a full discovery. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "clock.h"
#include "daemon_private.h"
#include "log.h"
#include "xevf_uevent.h"
#include "xevf_util.h"

/* Without uevents (no hostNetwork), health is looked at this often. */
#define RECHECK_WITHOUT_UEVENTS_MS 1000
/* One VF named by the events since the last look is rechecked alone; a
 * second one, or an event that names none, and every VF is. */
static void want_recheck_of(struct daemon *d, const char *vf)
{
	if (d->recheck_all || (d->recheck_vf && strcmp(d->recheck_vf, vf) == 0))
		return;
	if (d->recheck_vf || !(d->recheck_vf = strdup(vf)))
		d->recheck_all = true;
}

void daemon_rechecks_done(struct daemon *d)
{
	free(d->recheck_vf);
	d->recheck_vf = NULL;
	d->recheck_all = false;
}

static bool is_known_pf(const struct daemon *d, const char *addr)
{
	const struct xevf_host *host = d->inventory ? d->inventory->host : NULL;

	for (size_t i = 0; host && i < host->npfs; i++)
		if (strcmp(host->pfs[i].addr, addr) == 0)
			return true;
	return false;
}

/* A PCI device added or removed, a PF bound or unbound: discovery. A VF
 * bound or unbound: a recheck of that VF. Anything else: nothing. */
static void consider_uevent(struct daemon *d, const struct xevf_uevent *ev, int64_t now)
{
	const char *slot = ev->pci_slot;

	if (strcmp(ev->subsystem, "vfio") == 0 || strcmp(ev->subsystem, "vfio-dev") == 0) {
		d->recheck_all = true; /* a group or cdev node: which VF it serves is in sysfs */
		return;
	}
	if (strcmp(ev->subsystem, "pci") != 0)
		return;
	if (strcmp(ev->action, "add") == 0 || strcmp(ev->action, "remove") == 0 || (slot && is_known_pf(d, slot))) {
		d->next_rescan_ms = now;
		return;
	}
	if (slot && inventory_find(d->inventory, slot))
		want_recheck_of(d, slot);
}

void daemon_read_uevents(struct daemon *d, int64_t now)
{
	struct xevf_uevent ev;
	int got;

	while (d->uevent_fd >= 0 && (got = xevf_uevent_next(d->uevent_fd, &ev)) != 0) {
		if (got < 0) { /* lost events (ENOBUFS): rescan to be sure */
			log_debug("uevents_lost", "err=\"%s\" action=\"rescanning\"", strerror(-got));
			d->next_rescan_ms = now;
			break;
		}
		if (ev.subsystem) {
			log_debug("uevent", "action=%s devpath=%s subsystem=%s", ev.action, ev.devpath, ev.subsystem);
			consider_uevent(d, &ev, now);
		}
		xevf_uevent_clear(&ev);
	}
}

/* ---- the VFIO device directory ---- */

/* <dev>/vfio and <dev>/vfio/devices, and the dev root itself for vfio and
 * iommu appearing (the modules loaded) */
static void watch_vfio_dirs(struct daemon *d)
{
	static const char *const dirs[] = {"", "/vfio", "/vfio/devices"};

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char *path = NULL;
		int wd;
		if (xevf_asprintf(&path, "%s%s", d->cfg.dev_root, dirs[i]))
			continue;
		wd = inotify_add_watch(d->vfio_watch, path, IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM);
		if (wd < 0 && errno != ENOENT)
			log_debug("vfio_dir_unwatched", "dir=%s err=\"%s\"", path, strerror(errno));
		if (i == 0)
			d->dev_root_wd = wd;
		free(path);
	}
}

void daemon_events_open(struct daemon *d, const char *injected_uevents)
{
	struct xevf_err err = XEVF_ERR_INIT;
	int rc = injected_uevents ? xevf_uevent_open_local(injected_uevents, &d->uevent_fd, &err)
				  : xevf_uevent_open(&d->uevent_fd, &err);

	if (rc) {
		log_warn("uevents_unavailable", "reason=\"%s\" action=\"health is looked at every %d ms and VFs that come "
			 "or go are seen by the full rescan every %ld ms; run the pod with hostNetwork to receive uevents\"",
			 xevf_err_msg(&err), RECHECK_WITHOUT_UEVENTS_MS, d->cfg.rescan_interval_ms);
		d->next_recheck_ms = clock_mono_ms() + RECHECK_WITHOUT_UEVENTS_MS;
	}
	xevf_err_clear(&err);
	if ((d->vfio_watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0)
		log_warn("vfio_dir_unwatched", "dir=%s/vfio err=\"%s\"", d->cfg.dev_root, strerror(errno));
	else
		watch_vfio_dirs(d);
}

void daemon_events_close(struct daemon *d)
{
	if (d->uevent_fd >= 0)
		close(d->uevent_fd);
	if (d->vfio_watch >= 0)
		close(d->vfio_watch);
	d->uevent_fd = d->vfio_watch = -1;
	daemon_rechecks_done(d);
}

void daemon_vfio_dir_events(struct daemon *d)
{
	char buf[sizeof(struct inotify_event) + NAME_MAX + 1] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool relevant = false, rewatch = false;
	ssize_t n;

	while (d->vfio_watch >= 0 && (n = read(d->vfio_watch, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			bool named = ev->len > 0;
			/* in the dev root only vfio and iommu matter; below it everything */
			bool ours = ev->wd != d->dev_root_wd ||
				    (named && (strcmp(ev->name, "vfio") == 0 || strcmp(ev->name, "iommu") == 0));
			relevant |= ours;
			rewatch |= ours && named && (ev->mask & (IN_CREATE | IN_MOVED_TO)) &&
				   (strcmp(ev->name, "vfio") == 0 || strcmp(ev->name, "devices") == 0);
			p += sizeof(*ev) + ev->len;
		}
	}
	if (rewatch)
		watch_vfio_dirs(d);
	if (relevant)
		d->recheck_all = true;
}

/* ---- the recheck ---- */

void daemon_recheck(struct daemon *d)
{
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_host *host = NULL;
	int64_t now = clock_mono_ms();
	const char *only = d->recheck_all ? NULL : d->recheck_vf;
	bool due = d->recheck_all || d->recheck_vf;

	if (d->next_recheck_ms && now >= d->next_recheck_ms) {
		due = true;
		only = NULL;
		d->next_recheck_ms = now + RECHECK_WITHOUT_UEVENTS_MS;
	}
	if (!due)
		return;
	if (!d->inventory) {
		d->next_rescan_ms = now;
	} else if (xevf_host_recheck(&d->roots, d->inventory->host, only, &host, &err) == 0) {
		log_debug("rechecked", "vfs=%s", only ? only : "all");
		daemon_take_host(d, host);
	} else {
		log_error("recheck_failed", "reason=\"%s\" action=\"rescanning\"", xevf_err_msg(&err));
		d->next_rescan_ms = now;
	}
	xevf_err_clear(&err);
	daemon_rechecks_done(d);
}

int64_t daemon_events_next_due(const struct daemon *d)
{
	return d->next_recheck_ms ? d->next_recheck_ms : INT64_MAX;
}
