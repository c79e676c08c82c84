/* The outcome of KubeVirt's migrations, watched through the API server
 * (VirtualMachineInstanceMigrations): KubeVirt calls no hook when a migration
 * fails or is cancelled, and none on the source when it succeeds. A VMIM
 * that failed (or was deleted before it succeeded) aborts this node's record
 * of it: a target reservation is freed, a source Handover leaves the VF to
 * the VM that runs on. One that succeeded commits it: a source VF is reset
 * once the source QEMU has released it (tried again every second until
 * then). Records are matched by migration id = the VMIM's uid. */
#ifndef XEVF_DAEMON_MIGRATION_OUTCOMES_H
#define XEVF_DAEMON_MIGRATION_OUTCOMES_H

#include "kube.h"
#include "migration.h"

struct migration_outcomes;

/* Takes over k. NULL and *error when it cannot start (k is closed). */
struct migration_outcomes *migration_outcomes_start(struct kube *k, struct migration *m, char **error);
void migration_outcomes_stop(struct migration_outcomes *o);

#endif
