/* A rescan: discovery, a new inventory snapshot, the pools and the Migration
 * service brought up to date, and whatever the preparer should do next. */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "daemon_private.h"
#include "log.h"
#include "xevf_util.h"

#define NUMVFS_RETRY_MS 30000

static void report_notes(struct daemon *d, struct xevf_host *host)
{
	for (size_t i = 0; i < host->nnotes; i++)
		if (!xevf_strv_has(d->notes, d->nnotes, host->notes[i]))
			log_warn("discovery_problem", "detail=\"%s\"", host->notes[i]);
	for (size_t i = 0; i < d->nnotes; i++)
		if (!xevf_strv_has(host->notes, host->nnotes, d->notes[i]))
			log_info("discovery_problem_gone", "detail=\"%s\"", d->notes[i]);
	xevf_strv_free(d->notes, d->nnotes);
	/* take over the host's notes */
	d->notes = host->notes;
	d->nnotes = host->nnotes;
	host->notes = NULL;
	host->nnotes = 0;
}

/* Said once per PF, not on every rescan. */
static void tell_provisioning_missing(struct daemon *d, const char *pf)
{
	char **grown = realloc(d->told_pfs, (d->ntold_pfs + 1) * sizeof(*grown));

	if (!grown || !(grown[d->ntold_pfs] = strdup(pf))) {
		if (grown)
			d->told_pfs = grown;
		return;
	}
	d->told_pfs = grown;
	d->ntold_pfs++;
	log_info("provisioning_not_exposed", "pf=%s reason=\"this kernel's xe shows no sriov_admin/ for the PF: VF "
		 "profiles are neither read nor set\"", pf);
}

void daemon_request_prepare(struct daemon *d, const char *why)
{
	size_t n = 0, nm = 0;
	char **recent = ledger_recent_ids(&d->ledger, clock_mono_ms(), &n);
	char **migrating = d->migration ? migration_vfs(d->migration, &nm) : calloc(1, sizeof(char *));

	if (recent && migrating) {
		struct prepare_hold hold = {recent, n, migrating, nm};
		log_debug("prepare_requested", "reason=\"%s\" recent_allocations=%zu migrating=%zu", why, n, nm);
		preparer_request(d->preparer, &d->cfg, &hold);
	}
	xevf_strv_free(recent, n);
	xevf_strv_free(migrating, nm);
}

static bool remember_vf(struct daemon *d, const char *addr)
{
	char **grown;

	if (xevf_strv_has(d->known_vfs, d->nknown_vfs, addr))
		return false;
	grown = realloc(d->known_vfs, (d->nknown_vfs + 1) * sizeof(*grown));
	if (!grown)
		return true;
	d->known_vfs = grown;
	if ((d->known_vfs[d->nknown_vfs] = strdup(addr)))
		d->nknown_vfs++;
	return true;
}

static bool numvfs_drifted(const struct daemon *d, const struct xevf_pf *pf)
{
	for (size_t p = 0; p < d->cfg.npools; p++) {
		const struct pool_config *pc = &d->cfg.pools[p];
		if (pc->num_vfs >= 0 && pf->num_vfs != pc->num_vfs && selector_takes_pf(&pc->selector, pf))
			return true;
	}
	return false;
}

void daemon_retry_numvfs(struct daemon *d, int64_t now)
{
	if (!d->numvfs_drift || now < d->next_numvfs_retry_ms)
		return;
	d->next_numvfs_retry_ms = now + NUMVFS_RETRY_MS;
	daemon_request_prepare(d, "a PF's VF count differs from numVFs");
}

/* New VFs get prepared; a PF whose VF count drifted from numVFs is retried
 * now and then (daemon_retry_numvfs). */
static void check_prepare_needed(struct daemon *d, const struct inventory *inv)
{
	bool fresh = false, drift = false;

	for (size_t i = 0; i < inv->nvfs; i++)
		fresh |= remember_vf(d, inv->vfs[i].vf->addr);
	for (size_t i = 0; i < inv->host->npfs && !drift; i++)
		drift = numvfs_drifted(d, &inv->host->pfs[i]);
	if (!d->known_seeded) {
		/* the start-up pass has just prepared these */
		d->known_seeded = true;
		fresh = false;
	}
	d->numvfs_drift = drift;
	if (fresh)
		daemon_request_prepare(d, "new VFs");
	else
		daemon_retry_numvfs(d, clock_mono_ms());
}

static struct xevf_host *discover(struct daemon *d)
{
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_host *host = NULL;
	struct xevf_scan_opts opts = {0};
	int rc = config_pf_addresses(&d->cfg, (const char ***)&opts.extra_pfs, &opts.n_extra_pfs);

	if (rc == 0)
		rc = xevf_discover(&d->roots, &opts, &host, &err);
	free((void *)opts.extra_pfs);
	if (rc) {
		const char *why = err.msg ? xevf_err_msg(&err) : "out of memory";
		if (!d->scan_error || strcmp(d->scan_error, why) != 0) {
			log_error("discovery_failed", "reason=\"%s\"", why);
			free(d->scan_error);
			d->scan_error = strdup(why);
		}
		xevf_err_clear(&err);
		return NULL;
	}
	if (d->scan_error) {
		log_info("discovery_recovered", "pfs=%zu", host->npfs);
		free(d->scan_error);
		d->scan_error = NULL;
	}
	return host;
}

/* Pools in configuration order: a VF that several selectors match belongs to
 * the first. The snapshot learns which pool serves each VF. */
static void update_pools(struct daemon *d, struct inventory *inv)
{
	bool *taken = calloc(inv->nvfs + 1, sizeof(*taken));

	if (!taken)
		return;
	for (struct pool_slot *s = d->pools; s; s = s->next) {
		struct pool_change change;
		if (plugin_retired(s->plugin))
			continue;
		/* the work off the lock; under it only the swap and the lists sent */
		if (plugin_prepare_update(s->plugin, inv, taken, &change) == 0) {
			daemon_serving_lock(d);
			(void)plugin_apply_update(s->plugin, &change);
			daemon_serving_unlock(d);
		}
		for (size_t i = 0; i < inv->nvfs; i++)
			if (taken[i] && !inv->vfs[i].resource &&
			    inventory_set_resource(inv, i, plugin_pool(s->plugin)->cfg.resource_name))
				log_error("out_of_memory", "reason=\"recording which pool serves %s\"", inv->vfs[i].vf->addr);
	}
	free(taken);
}

void daemon_rescan(struct daemon *d)
{
	struct xevf_host *host = discover(d);

	daemon_rechecks_done(d); /* it looks at everything */
	if (host)
		daemon_take_host(d, host);
	/* A full discovery is rare (events drive the rest) and its transient
	 * memory (libpci's device list, every sysfs file read) is freed by now:
	 * hand those pages back rather than keep them for the next one. */
	(void)malloc_trim(0);
}

void daemon_take_host(struct daemon *d, struct xevf_host *host)
{
	struct inventory_note *notes = NULL;
	size_t nnotes = 0;
	struct inventory *inv;

	report_notes(d, host);
	for (size_t i = 0; i < host->npfs; i++)
		if (!host->pfs[i].provisioning_exposed && !xevf_strv_has(d->told_pfs, d->ntold_pfs, host->pfs[i].addr))
			tell_provisioning_missing(d, host->pfs[i].addr);
	preparer_notes(d->preparer, &notes, &nnotes);
	if (!(inv = inventory_new(host, notes, nnotes))) {
		log_error("out_of_memory", "reason=\"building the inventory\"");
		return;
	}
	ledger_prune(&d->ledger, inv);
	update_pools(d, inv);
	/* published: nobody changes it from here on */
	inventory_unref(d->inventory);
	d->inventory = inv;
	if (d->migration)
		migration_update(d->migration, inv);
	check_prepare_needed(d, inv);
}
