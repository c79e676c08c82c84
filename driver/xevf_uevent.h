/* Kernel uevents (NETLINK_KOBJECT_UEVENT): PCI devices added, removed, bound,
 * unbound, so that health changes are seen at once, not at the next rescan.
 * Uevents are sent to the host's network namespace: the agent's pod needs
 * hostNetwork to receive them; without them the periodic rescan still works. */
#ifndef XEVF_UEVENT_H
#define XEVF_UEVENT_H

#include <stddef.h>

#include "xevf_error.h"

struct xevf_uevent {
	char *action;    /* add, remove, bind, unbind, change, ... */
	char *devpath;   /* /devices/pci0000:00/0000:00:02.1 */
	char *subsystem; /* pci, vfio, ... */
	char *driver;    /* for bind */
	char *pci_slot;  /* PCI_SLOT_NAME, the device's address */
};

/* Parses one kernel uevent datagram ("ACTION@DEVPATH\0KEY=VALUE\0..."). The
 * bytes come from the kernel but are treated as untrusted: -EINVAL for
 * anything malformed, including udev's own "libudev" messages. */
int xevf_uevent_parse(const char *buf, size_t len, struct xevf_uevent *ev) XEVF_MUST_CHECK;
void xevf_uevent_clear(struct xevf_uevent *ev);

/* A non-blocking socket subscribed to kernel uevents. */
int xevf_uevent_open(int *fd, struct xevf_err *err) XEVF_MUST_CHECK;

/* A datagram socket bound at path that takes uevents in the kernel's format
 * from local senders instead: how tests on a simulated host send the events
 * a kernel would. */
int xevf_uevent_open_local(const char *path, int *fd, struct xevf_err *err) XEVF_MUST_CHECK;

/* Reads the next event: 1 with *ev filled, 0 when none is waiting, or a
 * negative errno. Datagrams that are not from the kernel are skipped. */
int xevf_uevent_next(int fd, struct xevf_uevent *ev);

#endif
