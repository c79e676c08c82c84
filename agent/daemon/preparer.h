/* Preparing VFs the way an operator would: enable SR-IOV on the pools' PFs
 * (numVFs), find the VF's VFIO driver through the kernel's "vfio_pci:" module
 * alias, load it and bind the VF to it, falling back to vfio-pci only where a
 * pool allows it. Runs on its own thread, because the kernel takes its time
 * (VF creation, module loading) and the gRPC loop must not wait for it.
 *
 * It never unbinds, rebinds or re-creates a VF that is in use: held open by a
 * process (a VM's QEMU holds its VFIO group or cdev) or given to a container
 * by Allocate in the last few minutes (its VM may still be starting). */
#ifndef XEVF_DAEMON_PREPARER_H
#define XEVF_DAEMON_PREPARER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "inventory.h"

struct preparer;

/* pass_done (may be NULL) is called on the preparer's thread after each pass. */
int preparer_start(struct preparer **out, void (*pass_done)(void));
/* Stops a running pass at its next step or wait, and the thread. */
void preparer_stop(struct preparer *p);

/* The VFs a pass leaves alone (no numVFs change under them, no profile):
 * those allocated lately, and those a live migration relies on. */
struct prepare_hold {
	char *const *recent;
	size_t nrecent;
	char *const *migrating;
	size_t nmigrating;
};

/* Asks for a pass with this configuration and these VFs held (both copied).
 * Passes asked for while one runs fold into one. */
void preparer_request(struct preparer *p, const struct agent_config *cfg, const struct prepare_hold *hold);


/* The notes of the last pass (copied, caller frees with
 * inventory_notes_free). */
void preparer_notes(struct preparer *p, struct inventory_note **notes, size_t *n);

/* Over all passes so far. */
struct preparer_counts {
	uint64_t passes;           /* completed */
	uint64_t failures;         /* VFs that could not be given a VFIO driver */
	uint64_t profile_refusals; /* profile values the kernel refused */
};
struct preparer_counts preparer_counts(struct preparer *p);

#endif
