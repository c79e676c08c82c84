/* A VF's migration fingerprint (what must match between source and target)
 * and the compatibility rules that compare two of them. */
#ifndef XEVF_MIG_COMPAT_H
#define XEVF_MIG_COMPAT_H

#include <stdbool.h>
#include <stdint.h>

#include "inventory.h"
#include "xevf/migration/v1/migration.pb-c.h"

/* Where fingerprints read versions from. */
struct fp_source {
	const char *node;
	const char *sysfs_root, *dev_root;
	const char *kernel_release;
};

/* What opening the VF's device told (or why it could not be asked). */
struct fp_probe {
	bool asked;               /* false: somebody uses it (a VM), its device was not opened */
	int errnum;               /* 0: flags are the device's */
	uint64_t flags;
	const char *error;        /* the message when errnum != 0 */
};

/* Fills fp from the inventory and the probe (reads driver and firmware
 * versions from sysfs: call without the service's lock). Every string is
 * malloc'd or protobuf-c's empty string; release with fingerprint_clear. */
void fingerprint_fill(const struct fp_source *src, const struct inventory_vf *iv, const struct fp_probe *probe,
		      Xevf__Migration__V1__Fingerprint *fp);
void fingerprint_clear(Xevf__Migration__V1__Fingerprint *fp);

/* Why a VF with fingerprint have cannot take the state of want (malloc'd), or
 * NULL, for all but the xe provisioning: ids, drivers, firmware, flags, what
 * no one can change for a migration. The provisioning is provision.c's: it
 * may make it equal. */
char *compat_identity_why_not(const Xevf__Migration__V1__Fingerprint *have, const Xevf__Migration__V1__Fingerprint *want);
/* The value provisioning key has in fp, or NULL. */
const char *compat_provisioned(const Xevf__Migration__V1__Fingerprint *fp, const char *key);

#endif
