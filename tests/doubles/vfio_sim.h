/* A simulated VFIO migration device, for tests and the simulated host.
 *
 * It answers the ioctls of xevf_vfio_mig.h the way a migration driver must and
 * is stricter than the kernel: it accepts only the FSM's direct arcs (never a
 * combination arc), so a test fails if the engine takes a shortcut. Its
 * "device state" is a byte string; its migration stream is a header (with the
 * device id and revision), the bytes and a checksum, so a truncated or
 * corrupted stream, or one from another kind of device, is refused when
 * RESUMING is left, as xe-vfio-pci refuses it. Errors can be scripted per arc
 * and for reset. Like xe-vfio-pci, its migration state lives only as long as
 * the object (an open device): sim_devices.c makes a fresh one per open.
 *
 * With a content path, the device state is loaded from that file when the
 * device is created and written back whenever the device (re)starts running
 * with a new state (after restore + RUNNING, or after a reset, which clears it).
 */
#ifndef XEVF_TESTS_VFIO_SIM_H
#define XEVF_TESTS_VFIO_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xevf_error.h"
#include "xevf_vfio_mig.h"

struct vfio_sim;

/* flags: XEVF_MIG_F_*, 0 for a device without migration (ENOTTY). content may
 * be NULL. content_path may be NULL (memory only). */
int vfio_sim_new(const char *name, uint64_t flags, const void *content, size_t len,
		      const char *content_path, struct vfio_sim **out, struct xevf_err *err) XEVF_MUST_CHECK;
void vfio_sim_free(struct vfio_sim *sim);

/* ops and a device fd to give xevf_mig_init (borrowed: the sim owns the fd) */
const struct xevf_vfio_ops *vfio_sim_ops(struct vfio_sim *sim);
int vfio_sim_fd(const struct vfio_sim *sim);

/* What the stream names and a restore checks (default 0, 0). */
void vfio_sim_set_kind(struct vfio_sim *sim, uint32_t device_id, uint32_t revision);
/* What VFIO_DEVICE_FEATURE_MIG_DATA_SIZE reports (0, the default: the size
 * of a stream of the current state). A real device reports what its kind of
 * state takes (for an xe VF: by its provisioning), not what it holds now. */
void vfio_sim_set_capacity(struct vfio_sim *sim, uint64_t bytes);
/* The largest stream a simulated device takes. */
uint64_t vfio_sim_max_stream(void);
/* "xe" (STOP_COPY | P2P, as xe-vfio-pci reports), "pre-copy", "p2p-pre-copy"
 * (as mtty reports), "stop-copy": 0, or -EINVAL. */
int vfio_sim_flags_parse(const char *name, uint64_t *flags);

/* The next SET from -> to fails with errnum and leaves the device in `leave_in`. */
void vfio_sim_fail_arc(struct vfio_sim *sim, uint32_t from, uint32_t to, int errnum, uint32_t leave_in);
void vfio_sim_fail_reset(struct vfio_sim *sim, int errnum);

uint32_t vfio_sim_state(const struct vfio_sim *sim);
const unsigned char *vfio_sim_content(const struct vfio_sim *sim, size_t *len);
unsigned vfio_sim_resets(const struct vfio_sim *sim);
unsigned vfio_sim_precopy_queries(const struct vfio_sim *sim);
/* Every arc taken, e.g. "RUNNING>PRE_COPY RUNNING>STOP_COPY ..." */
const char *vfio_sim_trace(const struct vfio_sim *sim);

#endif
