#include "preparer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xevf_discovery.h"
#include "xevf_sriov.h"
#include "xevf_util.h"
#include "xevf_vfio_driver.h"

#define NUMVFS_TIMEOUT_MS 15000
#define BIND_TIMEOUT_MS 3000

struct pass_input {
	struct agent_config cfg;
	char **recent;
	size_t nrecent;
	char **migrating;  /* VFs a live migration relies on: reserved for one, or moving its state */
	size_t nmigrating;
};

struct preparer {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool thread_started;
	bool stopping;
	atomic_bool stop_now;    /* read by a running pass: the agent is stopping, give up waiting */
	bool pending;
	struct pass_input next;  /* the input of the pending pass */
	uint64_t passes;
	uint64_t failures;
	uint64_t profile_refusals;
	void (*pass_done)(void); /* told after each pass, from this thread */
	struct inventory_note *notes;
	size_t nnotes;
};

static void input_clear(struct pass_input *in)
{
	config_free(&in->cfg);
	xevf_strv_free(in->recent, in->nrecent);
	in->recent = NULL;
	in->nrecent = 0;
	xevf_strv_free(in->migrating, in->nmigrating);
	in->migrating = NULL;
	in->nmigrating = 0;
}

static int dup_str(char **dst, const char *src)
{
	*dst = src ? strdup(src) : NULL;
	return (src && !*dst) ? -ENOMEM : 0;
}

/* Deep copy of what a pass needs. */
static int input_fill(struct pass_input *in, const struct agent_config *cfg, const struct prepare_hold *hold)
{
	char *const *recent = hold->recent;
	size_t nrecent = hold->nrecent;

	memset(in, 0, sizeof(*in));
	if (dup_str(&in->cfg.sysfs_root, cfg->sysfs_root) || dup_str(&in->cfg.dev_root, cfg->dev_root) ||
	    dup_str(&in->cfg.modules_root, cfg->modules_root) || dup_str(&in->cfg.kernel_release, cfg->kernel_release) ||
	    dup_str(&in->cfg.proc_root, cfg->proc_root))
		goto oom;
	in->cfg.pools = calloc(cfg->npools + 1, sizeof(*in->cfg.pools));
	if (!in->cfg.pools)
		goto oom;
	for (size_t i = 0; i < cfg->npools; i++) {
		if (pool_config_copy(&in->cfg.pools[i], &cfg->pools[i]))
			goto oom;
		in->cfg.npools++;
	}
	in->recent = calloc(nrecent + 1, sizeof(char *));
	if (!in->recent)
		goto oom;
	for (size_t i = 0; i < nrecent; i++) {
		if (!(in->recent[i] = strdup(recent[i])))
			goto oom;
		in->nrecent++;
	}
	if (!(in->migrating = xevf_strv_dup(hold->migrating, hold->nmigrating)))
		goto oom;
	in->nmigrating = hold->nmigrating;
	return 0;
oom:
	input_clear(in);
	return -ENOMEM;
}

/* ---- one pass --------------------------------------------------------------- */

struct pass {
	struct preparer *preparer;
	const struct pass_input *in;
	struct xevf_roots roots;
	struct xevf_scan_opts opts;
	char **in_use;             /* VFIO nodes held open */
	size_t nin_use;
	struct xevf_modules *modules;
	char *modules_error;       /* why VFIO drivers cannot be looked up */
	bool told_missing_variant;
	struct inventory_note *notes;
	size_t nnotes;
	unsigned profile_refusals; /* profile values the kernel refused in this pass */
};

/* A pass gives up (between steps, and inside the kernel waits) once the
 * agent stops: a shutdown never waits on VFs that do not come. */
static bool pass_stopped(void *ctx)
{
	return atomic_load(&((struct preparer *)ctx)->stop_now);
}

static void add_note(struct pass *ps, const char *addr, const char *reason)
{
	struct inventory_note *grown = realloc(ps->notes, (ps->nnotes + 1) * sizeof(*grown));

	if (!grown)
		return;
	ps->notes = grown;
	ps->notes[ps->nnotes].addr = strdup(addr);
	ps->notes[ps->nnotes].reason = strdup(reason);
	ps->nnotes++;
}

/* Why a VF must not be touched, or NULL. */
static const char *vf_busy(const struct pass *ps, const struct xevf_vf *vf)
{
	if ((vf->group_node && xevf_strv_has(ps->in_use, ps->nin_use, vf->group_node)) ||
	    (vf->cdev_node && xevf_strv_has(ps->in_use, ps->nin_use, vf->cdev_node)))
		return "a process (a VM's QEMU) holds its VFIO device open";
	if (xevf_strv_has(ps->in->recent, ps->in->nrecent, vf->addr))
		return "it was allocated to a container in the last minutes";
	if (xevf_strv_has(ps->in->migrating, ps->in->nmigrating, vf->addr))
		return "a live migration relies on it (reserved and provisioned like its source, or its state on the move)";
	return NULL;
}

static void set_numvfs(struct pass *ps, const struct pool_config *pool, const struct xevf_pf *pf)
{
	struct xevf_err err = XEVF_ERR_INIT;

	for (size_t i = 0; i < pf->nvfs; i++) {
		const char *why = vf_busy(ps, &pf->vfs[i]);
		if (why) {
			log_error("numvfs_refused", "pf=%s resource=%s current=%ld wanted=%ld vf=%s reason=\"%s\" "
				  "action=\"keeping the current VFs and serving them; change numVFs when no VM uses them\"",
				  pf->addr, pool->resource_name, pf->num_vfs, pool->num_vfs, pf->vfs[i].addr, why);
			return;
		}
	}
	log_info("numvfs_setting", "pf=%s resource=%s current=%ld wanted=%ld", pf->addr, pool->resource_name,
		 pf->num_vfs, pool->num_vfs);
	struct xevf_wait wait = {NUMVFS_TIMEOUT_MS, pass_stopped, ps->preparer};

	if (xevf_sriov_set_numvfs(&ps->roots, pf->addr, pool->num_vfs, &wait, &err))
		log_error("numvfs_failed", "pf=%s wanted=%ld reason=\"%s\"", pf->addr, pool->num_vfs, xevf_err_msg(&err));
	else
		log_info("numvfs_set", "pf=%s vfs=%ld", pf->addr, pool->num_vfs);
	xevf_err_clear(&err);
}

static int load_and_bind(struct pass *ps, const struct xevf_vf *vf, const char *module, struct xevf_err *err)
{
	char *driver = NULL;
	int rc = xevf_module_load(ps->modules, &ps->roots, module, err);

	if (rc)
		return rc;
	if (xevf_module_pci_driver(&ps->roots, module, &driver))
		return xevf_err_set(err, ENOMEM, "out of memory");
	rc = xevf_vf_bind(&ps->roots, vf->addr, driver, &(struct xevf_wait){BIND_TIMEOUT_MS, pass_stopped, ps->preparer},
			  err);
	if (rc == 0)
		log_info("vf_bound", "pci=%s driver=%s module=%s migratable=%s", vf->addr, driver, module,
			 strcmp(module, XEVF_XE_VFIO_MODULE) == 0 ? "true" : "false");
	free(driver);
	return rc;
}

static void bind_vf(struct pass *ps, const struct pool_config *pool, const struct xevf_vf *vf)
{
	struct xevf_vfio_match match = {0};
	struct xevf_err err = XEVF_ERR_INIT;
	const char *release;
	char *reason = NULL;
	const char *why;

	/* Only VFs without a driver: VFIO-bound ones are ready (binding is
	 * idempotent), and one bound to another driver is the operator's choice
	 * (it is reported unhealthy with that reason). */
	if (vf->driver_kind != XEVF_DRIVER_NONE)
		return;
	why = vf_busy(ps, vf);
	if (why) {
		log_warn("vf_not_prepared", "pci=%s reason=\"%s\" action=\"leaving it as it is\"", vf->addr, why);
		return;
	}
	if (!ps->modules) {
		if (xevf_asprintf(&reason, "cannot look up its VFIO driver: %s", ps->modules_error))
			reason = NULL; /* the VF then just stays unhealthy */
		goto note;
	}
	if (!vf->modalias) {
		if (xevf_asprintf(&reason, "its modalias cannot be read, so its VFIO driver cannot be found"))
			reason = NULL; /* the VF then just stays unhealthy */
		goto note;
	}
	release = xevf_modules_release(ps->modules);
	if (xevf_vfio_lookup(ps->modules, vf->modalias, &match, &err)) {
		reason = strdup(xevf_err_msg(&err));
		goto note;
	}
	if (match.variant) {
		if (load_and_bind(ps, vf, match.variant, &err))
			reason = strdup(xevf_err_msg(&err));
		goto note;
	}
	if (!ps->told_missing_variant) {
		log_warn("vfio_variant_missing",
			 "kernel=%s modules=%s pci=%s reason=\"no VFIO variant driver matches vfio_%s in modules.alias: "
			 "xe-vfio-pci is missing. CONFIG_XE_VFIO_PCI is off by default in the kernel and must be enabled "
			 "(kernel %s) for VFs that can be live-migrated\" action=\"%s\"",
			 release, xevf_modules_dir(ps->modules), vf->addr, vf->modalias, release,
			 pool->fallback == FALLBACK_VFIO_PCI ? "binding to vfio-pci (fallback: vfio-pci), not migratable"
							    : "no fallback configured: these VFs stay unused and unhealthy");
		ps->told_missing_variant = true;
	}
	if (pool->fallback != FALLBACK_VFIO_PCI) {
		if (xevf_asprintf(&reason, "no VFIO variant driver: xe-vfio-pci is missing from kernel %s "
				  "(CONFIG_XE_VFIO_PCI is off by default; enable it), and pool %s has no fallback "
				  "(set fallback: vfio-pci to use it without live migration)", release, pool->resource_name))
			reason = NULL; /* the VF then just stays unhealthy */
	} else if (!match.generic) {
		if (xevf_asprintf(&reason, "neither xe-vfio-pci nor vfio-pci is available in kernel %s "
				    "(CONFIG_VFIO_PCI)", release))
			reason = NULL; /* the VF then just stays unhealthy */
	} else if (load_and_bind(ps, vf, XEVF_GENERIC_VFIO_MODULE, &err)) {
		reason = strdup(xevf_err_msg(&err));
	}
note:
	if (reason) {
		log_error("vf_prepare_failed", "pci=%s resource=%s reason=\"%s\"", vf->addr, pool->resource_name, reason);
		add_note(ps, vf->addr, reason);
	}
	free(reason);
	xevf_vfio_match_free(&match);
	xevf_err_clear(&err);
}

/* The pool's profile on a VF that nobody holds: each value the kernel does
 * not show yet is written; one the kernel refuses is said (file, errno) and
 * the VF keeps serving with the kernel's value. */
static void apply_profile(struct pass *ps, const struct pool_config *pool, const struct xevf_pf *pf,
			  const struct xevf_vf *vf)
{
	struct xevf_err err = XEVF_ERR_INIT;
	const char *why;

	if (vf_profile_empty(&pool->profile) || !pf->provisioning_exposed)
		return; /* the daemon says once per PF that provisioning is not exposed */
	if ((why = vf_busy(ps, vf))) {
		/* passes are rare (start, reload, new VFs): an operator sees why a profile did not land */
		log_info("vf_profile_deferred", "pci=%s resource=%s reason=\"%s\" action=\"set when the VF is free\"",
			 vf->addr, pool->resource_name, why);
		return;
	}
	for (int k = 0; k < PROFILE_NKEYS; k++) {
		const struct profile_key_info *info = profile_key_info((enum profile_key)k);
		const char *want = pool->profile.values[k], *shown = xevf_kv_get(vf->provisioning, vf->nprovisioning, info->file);
		char *have = shown ? profile_current_value(shown) : NULL;
		if (!want || (have && strcmp(have, want) == 0)) {
			free(have);
			continue;
		}
		if (xevf_sriov_write_profile(&ps->roots, pf->addr, vf->vf_index, info->file, want, &err) < 0) {
			log_error("vf_profile_refused", "pci=%s resource=%s key=%s value=%s reason=\"%s\" action=\"the VF "
				  "serves with the kernel's value; correct the pool's profile\"", vf->addr, pool->resource_name,
				  info->file, want, xevf_err_msg(&err));
			ps->profile_refusals++;
		} else {
			log_info("vf_profile_set", "pci=%s resource=%s key=%s value=%s was=%s", vf->addr, pool->resource_name,
				 info->file, want, have ? have : "unknown");
		}
		xevf_err_clear(&err);
		free(have);
	}
}

static int discover(struct pass *ps, struct xevf_host **host)
{
	struct xevf_err err = XEVF_ERR_INIT;
	int rc = xevf_discover(&ps->roots, &ps->opts, host, &err);

	if (rc)
		log_error("prepare_discovery_failed", "reason=\"%s\"", xevf_err_msg(&err));
	xevf_err_clear(&err);
	return rc;
}

static void run_pass(struct preparer *p, const struct pass_input *in, struct inventory_note **notes, size_t *nnotes,
		     unsigned *profile_refusals)
{
	struct pass ps;
	struct xevf_host *host = NULL;
	struct xevf_err err = XEVF_ERR_INIT;
	const char **extra = NULL;
	size_t nextra = 0;
	bool changed = false;

	memset(&ps, 0, sizeof(ps));
	ps.preparer = p;
	ps.in = in;
	ps.roots.sysfs = in->cfg.sysfs_root;
	ps.roots.dev = in->cfg.dev_root;
	if (config_pf_addresses(&in->cfg, &extra, &nextra))
		log_error("out_of_memory", "reason=\"listing the pools' PFs\"");
	ps.opts.extra_pfs = extra;
	ps.opts.n_extra_pfs = nextra;
	if (xevf_vfio_nodes_in_use(in->cfg.proc_root, &ps.in_use, &ps.nin_use))
		log_warn("in_use_scan_failed", "proc=%s action=\"treating only recent allocations as in use\"",
			 in->cfg.proc_root ? in->cfg.proc_root : "/proc");
	if (discover(&ps, &host))
		goto out;

	/* SR-IOV first: binding comes after the VFs exist. The first pool that
	 * sets numVFs for a PF decides. */
	for (size_t h = 0; h < host->npfs && !pass_stopped(p); h++) {
		for (size_t i = 0; i < in->cfg.npools; i++) {
			const struct pool_config *pool = &in->cfg.pools[i];
			if (!selector_takes_pf(&pool->selector, &host->pfs[h]) || pool->num_vfs < 0)
				continue;
			if (host->pfs[h].num_vfs != pool->num_vfs) {
				set_numvfs(&ps, pool, &host->pfs[h]);
				changed = true;
			}
			break;
		}
	}
	if (pass_stopped(p))
		goto out;
	if (changed) {
		xevf_host_free(host);
		host = NULL;
		if (discover(&ps, &host))
			goto out;
	}

	if (xevf_modules_open(in->cfg.modules_root, in->cfg.kernel_release, &ps.modules, &err)) {
		ps.modules_error = strdup(xevf_err_msg(&err));
		log_error("modules_unavailable", "reason=\"%s\"", xevf_err_msg(&err));
	}
	xevf_err_clear(&err);
	for (size_t h = 0; h < host->npfs; h++) {
		const struct xevf_pf *pf = &host->pfs[h];
		for (size_t i = 0; i < in->cfg.npools; i++) {
			const struct pool_config *pool = &in->cfg.pools[i];
			if (!selector_takes_pf(&pool->selector, pf))
				continue;
			for (size_t v = 0; v < pf->nvfs && !pass_stopped(p); v++)
				if (selector_prepares_vf(&pool->selector, &pf->vfs[v])) {
					bind_vf(&ps, pool, &pf->vfs[v]);
					apply_profile(&ps, pool, pf, &pf->vfs[v]);
				}
			break; /* a PF's VFs are prepared by its first pool */
		}
	}
out:
	xevf_modules_close(ps.modules);
	free(ps.modules_error);
	xevf_strv_free(ps.in_use, ps.nin_use);
	xevf_host_free(host);
	free(extra);
	*notes = ps.notes;
	*nnotes = ps.nnotes;
	*profile_refusals = ps.profile_refusals;
}

/* ---- the thread ----------------------------------------------------------------- */

static void publish(struct preparer *p, struct inventory_note *notes, size_t n, unsigned profile_refusals)
{
	pthread_mutex_lock(&p->lock);
	p->profile_refusals += profile_refusals;
	inventory_notes_free(p->notes, p->nnotes);
	p->notes = notes;
	p->nnotes = n;
	p->passes++;
	p->failures += n;
	pthread_mutex_unlock(&p->lock);
	if (p->pass_done)
		p->pass_done();
}

static void *thread_main(void *arg)
{
	struct preparer *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct pass_input in;
		struct inventory_note *notes = NULL;
		size_t n = 0;
		unsigned refusals = 0;

		while (!p->pending && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stopping)
			break;
		in = p->next;
		memset(&p->next, 0, sizeof(p->next));
		p->pending = false;
		pthread_mutex_unlock(&p->lock);
		run_pass(p, &in, &notes, &n, &refusals);
		input_clear(&in);
		publish(p, notes, n, refusals);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int preparer_start(struct preparer **out, void (*pass_done)(void))
{
	struct preparer *p = calloc(1, sizeof(*p));

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->pass_done = pass_done;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	atomic_init(&p->stop_now, false);
	if (pthread_create(&p->thread, NULL, thread_main, p) != 0) {
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->cond);
		free(p);
		return -EAGAIN;
	}
	p->thread_started = true;
	*out = p;
	return 0;
}

void preparer_stop(struct preparer *p)
{
	if (!p)
		return;
	atomic_store(&p->stop_now, true);
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (p->thread_started)
		pthread_join(p->thread, NULL);
	if (p->pending)
		input_clear(&p->next);
	inventory_notes_free(p->notes, p->nnotes);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

void preparer_request(struct preparer *p, const struct agent_config *cfg, const struct prepare_hold *hold)
{
	struct pass_input in;

	if (input_fill(&in, cfg, hold)) {
		log_error("out_of_memory", "reason=\"cannot copy the configuration for VF preparation\"");
		return;
	}
	pthread_mutex_lock(&p->lock);
	if (p->pending)
		input_clear(&p->next);
	p->next = in;
	p->pending = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

struct preparer_counts preparer_counts(struct preparer *p)
{
	struct preparer_counts c;

	pthread_mutex_lock(&p->lock);
	c = (struct preparer_counts){p->passes, p->failures, p->profile_refusals};
	pthread_mutex_unlock(&p->lock);
	return c;
}

void preparer_notes(struct preparer *p, struct inventory_note **notes, size_t *n)
{
	*notes = NULL;
	*n = 0;
	pthread_mutex_lock(&p->lock);
	if (p->nnotes) {
		*notes = calloc(p->nnotes, sizeof(**notes));
		for (size_t i = 0; *notes && i < p->nnotes; i++) {
			(*notes)[i].addr = strdup(p->notes[i].addr ? p->notes[i].addr : "");
			(*notes)[i].reason = strdup(p->notes[i].reason ? p->notes[i].reason : "");
			(*n)++;
		}
	}
	pthread_mutex_unlock(&p->lock);
}
