/* The allocation ledger: which VFs Allocate gave out lately. Such a VF's VM
 * may still be starting (its QEMU does not hold the VFIO node yet), so the
 * preparer leaves it alone and the Migration service counts it as in use.
 * Owned by the daemon's thread. */
#ifndef XEVF_DAEMON_LEDGER_H
#define XEVF_DAEMON_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inventory.h"

#define LEDGER_GRACE_MS (5L * 60 * 1000)

struct ledger_entry {
	char *id;
	int64_t at_ms;
};

struct ledger {
	struct ledger_entry *entries;
	size_t n;
};

void ledger_record(struct ledger *l, const char *id, int64_t now);
bool ledger_recent(const struct ledger *l, const char *id, int64_t now);
/* A committed migration's source VF: its VM left. */
void ledger_forget(struct ledger *l, const char *id);
/* An entry belongs to a VF object: once the VF is gone (VFs re-created), it protects nothing. */
void ledger_prune(struct ledger *l, const struct inventory *inv);
/* The ids allocated within the grace period (a malloc'd array of borrowed strings). */
char **ledger_recent_ids(const struct ledger *l, int64_t now, size_t *n);
void ledger_free(struct ledger *l);

#endif
