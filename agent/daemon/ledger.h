/* The allocation ledger: which VFs Allocate gave out lately. Such a VF's VM
 * may still be starting (its QEMU does not hold the VFIO node yet), so the
 * preparer leaves it alone and the Migration service counts it as in use.
 * Allocate records on the serving thread, the Migration service asks on its
 * own threads, the daemon prunes: every function takes the ledger's lock
 * (never across I/O). */
#ifndef XEVF_DAEMON_LEDGER_H
#define XEVF_DAEMON_LEDGER_H

#include <pthread.h>
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
	pthread_mutex_t lock;
	struct ledger_entry *entries;
	size_t n;
};

void ledger_init(struct ledger *l);
void ledger_record(struct ledger *l, const char *id, int64_t now);
bool ledger_recent(struct ledger *l, const char *id, int64_t now);
/* A committed migration's source VF: its VM left. */
void ledger_forget(struct ledger *l, const char *id);
/* An entry belongs to a VF object: once the VF is gone (VFs re-created), it protects nothing. */
void ledger_prune(struct ledger *l, const struct inventory *inv);
/* The ids allocated within the grace period: copies (xevf_strv_free), NULL when out of memory. */
char **ledger_recent_ids(struct ledger *l, int64_t now, size_t *n);
void ledger_free(struct ledger *l);

#endif
