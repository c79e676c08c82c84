/* The VFIO migration uAPI engine (linux/vfio.h, "migration v2").
 *
 * It drives VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE one FSM arc at a time, only
 * along the uAPI's direct arcs for the device's flags (never a combination
 * the kernel would split), and moves the migration data stream through the
 * data fd in bounded chunks. On a P2P device (xe-vfio-pci is one) the engine
 * steps through RUNNING_P2P and PRE_COPY_P2P itself:
 *   source: RUNNING -> PRE_COPY (when offered) [-> PRE_COPY_P2P] -> STOP_COPY -> STOP
 *           (RUNNING [-> RUNNING_P2P] -> STOP -> STOP_COPY -> STOP without PRE_COPY)
 *   target: RUNNING [-> RUNNING_P2P] -> STOP -> RESUMING -> STOP, then
 *           STOP [-> RUNNING_P2P] -> RUNNING on commit
 * When an arc fails it reads the state the kernel left the device in and walks
 * back from there to the state the caller wants (RUNNING on the source); a
 * VFIO_DEVICE_RESET is the last resort: when the device is in ERROR, when the
 * walk back fails, or to abandon a RESUMING session (the uAPI's only way out).
 *
 * The ioctls go through struct xevf_vfio_ops so that unit tests can run the
 * engine against a simulated device (xevf_vfio_sim.h).
 */
#ifndef XEVF_VFIO_MIG_H
#define XEVF_VFIO_MIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "xevf_error.h"

/* enum vfio_device_mig_state; PRE_COPY states are newer than some kernel headers */
enum xevf_mig_state {
	XEVF_MIG_ERROR = 0,
	XEVF_MIG_STOP = 1,
	XEVF_MIG_RUNNING = 2,
	XEVF_MIG_STOP_COPY = 3,
	XEVF_MIG_RESUMING = 4,
	XEVF_MIG_RUNNING_P2P = 5,
	XEVF_MIG_PRE_COPY = 6,
	XEVF_MIG_PRE_COPY_P2P = 7,
	XEVF_MIG_NSTATES = 8,
};

/* VFIO_DEVICE_FEATURE_MIGRATION flags */
#define XEVF_MIG_F_STOP_COPY (1u << 0)
#define XEVF_MIG_F_P2P       (1u << 1)
#define XEVF_MIG_F_PRE_COPY  (1u << 2)

/* ioctl(2) on a VFIO device fd or a migration data fd: returns >= 0, or -1 with errno */
struct xevf_vfio_ops {
	int (*ioctl)(void *ctx, int fd, unsigned long request, void *arg);
	void *ctx;
};
extern const struct xevf_vfio_ops xevf_vfio_kernel_ops;

struct xevf_mig_device {
	char *name;                        /* PCI address, for messages (owned) */
	int fd;                            /* VFIO device fd (owned unless fd_borrowed) */
	bool fd_borrowed;
	int container_fd;                  /* legacy /dev/vfio/vfio container, -1 if none (owned) */
	const struct xevf_vfio_ops *ops;
	uint64_t flags;                    /* XEVF_MIG_F_*, valid after xevf_mig_probe */
	bool probed;
	uint32_t state;                    /* last state read or set */
};

struct xevf_mig_report {
	uint64_t precopy_bytes;
	uint64_t stopcopy_bytes;
	uint64_t restored_bytes;
	unsigned chunks;
	uint32_t final_state;
	bool reset_used;                   /* recovery needed VFIO_DEVICE_RESET */
};

struct xevf_mig_options {
	size_t chunk_size;                 /* bytes per read/write, 0: 256 KiB; capped at 16 MiB */
	bool precopy;                      /* use PRE_COPY when the device offers it */
	uint64_t precopy_max_bytes;        /* stop pre-copy after this many bytes, 0: 1 GiB */
};

/* Called with each chunk read from the device; non-zero stops the save (the
 * engine then recovers the device to RUNNING). phase is "precopy" or "stopcopy". */
typedef int (*xevf_mig_sink_fn)(void *ctx, const char *phase, const void *buf, size_t len,
				struct xevf_err *err);
/* Fills buf with up to cap bytes of the stream to restore: > 0 bytes, 0 at the
 * end, < 0 to stop the restore (the device is then reset: it never runs a
 * partial state). */
typedef ssize_t (*xevf_mig_source_fn)(void *ctx, void *buf, size_t cap, struct xevf_err *err);

const char *xevf_mig_state_name(uint32_t state);

/* Whether the uAPI defines a direct arc from -> to for a device with these flags. */
bool xevf_mig_arc_allowed(uint64_t flags, uint32_t from, uint32_t to);

/* Takes over fd (closed by xevf_mig_close unless borrowed). */
int xevf_mig_init(struct xevf_mig_device *dev, const char *name, int fd, bool borrow_fd,
		  const struct xevf_vfio_ops *ops, struct xevf_err *err) XEVF_MUST_CHECK;
void xevf_mig_close(struct xevf_mig_device *dev);

/* Opens the VFIO device of a VF through its legacy group node
 * (<dev_root>/vfio/<group>, the container <dev_root>/vfio/vfio). EBUSY when
 * another process (a VM) holds the group: the agent never takes a VF from a VM. */
int xevf_mig_open_group(struct xevf_mig_device *dev, const char *dev_root, const char *group,
			const char *pci_addr, struct xevf_err *err) XEVF_MUST_CHECK;

/* Reads VFIO_DEVICE_FEATURE_MIGRATION. ENOTTY (or no STOP_COPY) comes back as
 * -ENOTTY with a "not migratable" message naming the device and its driver. */
int xevf_mig_probe(struct xevf_mig_device *dev, const char *driver, struct xevf_err *err) XEVF_MUST_CHECK;

int xevf_mig_get_state(struct xevf_mig_device *dev, uint32_t *state, struct xevf_err *err) XEVF_MUST_CHECK;

/* VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: the device's estimate of its STOP_COPY
 * data. -ENOTTY when the driver does not say (older kernels, some drivers). */
int xevf_mig_data_size(struct xevf_mig_device *dev, uint64_t *bytes, struct xevf_err *err) XEVF_MUST_CHECK;

/* One arc. Refuses (EINVAL, without an ioctl) an arc the uAPI does not define.
 * *data_fd receives the new data fd on arcs that open a session, else -1. On
 * failure the device is left where the kernel put it (dev->state). */
int xevf_mig_step(struct xevf_mig_device *dev, uint32_t to, int *data_fd, struct xevf_err *err) XEVF_MUST_CHECK;

/* From dev->state to `wanted` along the shortest path of direct arcs that
 * crosses no saving state (PRE_COPY*, STOP_COPY, RESUMING) on the way, e.g.
 * STOP -> RUNNING_P2P -> RUNNING on a P2P device. On failure the device is
 * where the failed step left it. */
int xevf_mig_walk(struct xevf_mig_device *dev, uint32_t wanted, struct xevf_err *err) XEVF_MUST_CHECK;

/* Brings the device to `wanted` from wherever it is, along defined arcs; resets
 * it when it is in ERROR or a step fails. 0 when it ends in `wanted` (or in
 * RUNNING after a reset and wanted is RUNNING). */
int xevf_mig_recover(struct xevf_mig_device *dev, uint32_t wanted, bool *reset_used,
		     struct xevf_err *err) XEVF_MUST_CHECK;

/* VFIO_DEVICE_RESET: back to RUNNING with a fresh state. For discarding a
 * restored state that must not run; the engine itself resets only as the last resort. */
int xevf_mig_reset(struct xevf_mig_device *dev, struct xevf_err *err) XEVF_MUST_CHECK;

/* Source side: saves the device state into sink. Success leaves the device in
 * STOP (its state is now elsewhere); failure leaves it RUNNING again. */
int xevf_mig_save(struct xevf_mig_device *dev, const struct xevf_mig_options *opts,
		  xevf_mig_sink_fn sink, void *ctx, struct xevf_mig_report *rep,
		  struct xevf_err *err) XEVF_MUST_CHECK;

/* Target side: loads the stream into the device. Success leaves it in STOP
 * with the new state (xevf_mig_step(RUNNING) resumes it); failure resets it. */
int xevf_mig_restore(struct xevf_mig_device *dev, const struct xevf_mig_options *opts,
		     xevf_mig_source_fn source, void *ctx, struct xevf_mig_report *rep,
		     struct xevf_err *err) XEVF_MUST_CHECK;

#endif
