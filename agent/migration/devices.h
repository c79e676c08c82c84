/* The VFIO migration devices the service has open, behind a provider.
 *
 * The provider opens a VF's device: the kernel's (through its VFIO group), or,
 * in a test build, a simulated one. A device is used by one thread at a time:
 * that thread claims it under the service's lock, does its ioctls without the
 * lock, and gives it back under the lock. */
#ifndef XEVF_MIG_DEVICES_H
#define XEVF_MIG_DEVICES_H

#include <stdbool.h>

#include "xevf_discovery.h"
#include "xevf_vfio_mig.h"

struct mig_device_provider {
	const char *kind;           /* "vfio", "simulated": for the log */
	void *ctx;
	/* Opens vf's migration device into dev (xevf_mig_init'ed); *priv is the provider's. */
	int (*open)(void *ctx, const struct xevf_vf *vf, const char *dev_root, struct xevf_mig_device *dev,
		    void **priv, struct xevf_err *err);
	/* Does an open device still stand for vf (e.g. after a driver change)? NULL: always. */
	bool (*still_fits)(void *ctx, void *priv, const struct xevf_vf *vf);
	void (*close)(void *ctx, struct xevf_mig_device *dev, void *priv);
};

/* The kernel's devices: VFIO group nodes under the dev root. */
extern const struct mig_device_provider mig_kernel_devices;

struct mig_dev {
	char *addr;
	struct xevf_mig_device dev;
	void *priv;
	bool open;
	bool claimed;               /* a thread is using it */
	struct mig_dev *next;
};

struct mig_devices {
	const struct mig_device_provider *provider;
	struct mig_dev *list;
};

/* Lock held: the VF's entry, claimed for the caller (created, unopened, when
 * there is none); NULL when another thread has it claimed (or no memory). */
struct mig_dev *devices_claim(struct mig_devices *t, const char *addr);
/* Lock held: an open entry, claimed or not (for its flags), or NULL. */
struct mig_dev *devices_find(const struct mig_devices *t, const char *addr);
/* Lock not held: opens a claimed entry unless it is open and still fits vf. */
int devices_open(struct mig_devices *t, struct mig_dev *d, const struct xevf_vf *vf, const char *dev_root,
		 struct xevf_err *err);
/* Lock held: gives the claim back. With close (and a provider that does not
 * keep devices), the entry leaves the table and is returned: close it with
 * devices_close after unlocking. */
struct mig_dev *devices_release(struct mig_devices *t, struct mig_dev *d, bool close);
/* Lock not held. NULL is fine. */
void devices_close(const struct mig_devices *t, struct mig_dev *d);
/* At the end: every device closed. */
void devices_free(struct mig_devices *t);

#endif
