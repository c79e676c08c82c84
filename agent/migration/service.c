/* The Migration service's life cycle, the daemon's side of it, and the
 * helpers its handlers share. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "fail.h"
#include "log.h"
#include "metrics.h"
#include "migration_private.h"
#include "xevf_util.h"

/* ---- helpers ---- */

struct inventory *mig_inventory(struct migration *m)
{
	return inventory_ref(m->inv);
}

int mig_move(struct migration *m, struct record *r, enum phase to)
{
	int rc = record_move(&m->reg, r, to);

	if (rc == 0 && phase_ended(to))
		metrics_migration(phase_name(to));
	if (rc == 0 && to == PHASE_COMMITTED && r->role == ROLE_SOURCE) {
		char **grown = realloc(m->freed, (m->nfreed + 1) * sizeof(*grown));
		if (grown) {
			m->freed = grown;
			if ((m->freed[m->nfreed] = strdup(r->vf)))
				m->nfreed++;
		}
	}
	return rc;
}

int mig_write(struct migration *m, struct state_snapshot *snap, char **error)
{
	char *why = NULL;
	int rc = state_file_write(&m->file, snap, &why);

	if (m->wake)
		m->wake(); /* every change of the records is written: the daemon's loop looks again */

	if (rc)
		log_error("state_write_failed", "reason=\"%s\" hint=\"is --state-dir writable?\"", why ? why : "?");
	if (rc && error)
		agent_fail(error, -rc, "%s", why ? why : "the state file cannot be written");
	free(why);
	return rc;
}

struct record *mig_record_copy(struct migration *m, const char *id, bool *found)
{
	struct record *r, *copy = NULL;

	pthread_mutex_lock(&m->lock);
	r = registry_find(&m->reg, id);
	*found = r != NULL;
	if (r)
		copy = record_dup(r);
	pthread_mutex_unlock(&m->lock);
	return copy;
}

void mig_take_back(struct migration *m, const char *id, enum phase phase)
{
	struct record *r;

	pthread_mutex_lock(&m->lock);
	if ((r = registry_find(&m->reg, id)) && r->phase == phase) {
		registry_remove(&m->reg, r);
		record_free(r);
	}
	pthread_mutex_unlock(&m->lock);
}

void mig_fp_source(const struct migration *m, struct fp_source *src)
{
	*src = (struct fp_source){m->node, m->sysfs_root, m->dev_root, m->kernel_release};
}

/* Probes the VF's device: claimed under the lock, opened and asked without it. */
static void probe(struct migration *m, const struct inventory_vf *iv, bool busy, struct fp_probe *p,
		  struct xevf_err *err)
{
	struct mig_dev *d, *to_close;

	memset(p, 0, sizeof(*p));
	pthread_mutex_lock(&m->lock);
	if (busy && !devices_find(&m->devices, iv->vf->addr)) {
		pthread_mutex_unlock(&m->lock);
		return; /* somebody else uses it: never opened behind its VM's back */
	}
	p->asked = true;
	if (!(d = devices_claim(&m->devices, iv->vf->addr))) {
		/* a stream uses it: it was probed when the stream started */
		struct mig_dev *streaming = devices_find(&m->devices, iv->vf->addr);
		p->asked = streaming != NULL;
		p->flags = streaming ? streaming->dev.flags : 0;
		pthread_mutex_unlock(&m->lock);
		return;
	}
	pthread_mutex_unlock(&m->lock);
	if (devices_open(&m->devices, d, iv->vf, m->dev_root, err) == 0 && xevf_mig_probe(&d->dev, iv->vf->driver, err) == 0)
		p->flags = d->dev.flags;
	else
		p->errnum = err->errnum ? err->errnum : EIO;
	p->error = xevf_err_msg(err);
	pthread_mutex_lock(&m->lock);
	/* a device a migration relies on stays open: closing it resets its migration state */
	struct record *holder = registry_find_vf(&m->reg, iv->vf->addr, -1);
	to_close = devices_release(&m->devices, d, !(holder && phase_holds_device(holder->phase)));
	pthread_mutex_unlock(&m->lock);
	devices_close(&m->devices, to_close);
}

void mig_fingerprint(struct migration *m, const struct inventory_vf *iv, const struct busy_scan *scan,
		     Xevf__Migration__V1__Fingerprint *fp, bool *in_use)
{
	struct xevf_err err = XEVF_ERR_INIT;
	struct fp_probe p = {0};
	struct fp_source src;
	bool vfio = iv->vf->driver_kind == XEVF_DRIVER_VFIO_VARIANT || iv->vf->driver_kind == XEVF_DRIVER_VFIO_PCI;
	bool busy = busy_why(scan, iv, false) != NULL;

	if (vfio)
		probe(m, iv, busy, &p, &err);
	/* EBUSY: a VM holds it after all; that is "in use", never "migratable" */
	if (p.asked && p.errnum == EBUSY) {
		p.asked = false;
		busy = true;
	}
	if (in_use)
		*in_use = busy;
	mig_fp_source(m, &src);
	fingerprint_fill(&src, iv, &p, fp);
	xevf_err_clear(&err);
}

void mig_refuse(struct rpc_call *call, grpc_status_code code, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	(void)agent_vfail(&msg, EINVAL, fmt, ap);
	va_end(ap);
	log_warn("migration_call_refused", "method=%s peer=%s code=%d reason=\"%s\"", rpc_call_method(call),
		 rpc_call_peer(call), (int)code, msg ? msg : "?");
	rpc_call_finish(call, code, msg, NULL);
	free(msg);
}

void mig_status_of(const struct record *r, const char *device_state, Xevf__Migration__V1__MigrationStatus *st)
{
	xevf__migration__v1__migration_status__init(st);
	st->migration_id = r->id;
	st->role = (char *)role_name(r->role);
	st->vf = r->vf;
	st->phase = (char *)phase_name(r->phase);
	st->device_state = (char *)(device_state ? device_state : "");
	st->vm_namespace = r->vm_namespace ? r->vm_namespace : "";
	st->vm_name = r->vm_name ? r->vm_name : "";
	st->expires_unix_ms = r->expires_unix_ms;
	st->resource_name = r->resource ? r->resource : "";
}

/* ---- the daemon's side ---- */

void migration_update(struct migration *m, struct inventory *inv)
{
	struct inventory *old;

	inventory_ref(inv);
	pthread_mutex_lock(&m->lock);
	old = m->inv;
	m->inv = inv;
	pthread_mutex_unlock(&m->lock);
	inventory_unref(old);
}

/* A restored state whose reservation expired: its device is reset (the
 * foreign state must never run) before the record ends. */
struct expired_restore {
	char *id;
	bool claimed;                 /* its target pod got the VF */
	struct mig_dev *dev;
	struct expired_restore *next;
};

/* Lock held: the ttl of a target reservation counts in every phase before
 * commit. Reserved: it ends; restoring: its stream ends now (the restore then
 * falls back to reserved, which ends at the next tick); restored: its device
 * is claimed for a reset. Devices to close and restores to reset come back. */
static struct mig_dev *expire(struct migration *m, int64_t now, bool *changed, struct expired_restore **resets)
{
	struct mig_dev *to_close = NULL;

	for (struct record *r = m->reg.active, *next; r; r = next) {
		next = r->next;
		if (r->role != ROLE_TARGET || r->expires_unix_ms >= now)
			continue;
		if (r->phase == PHASE_RESTORING) {
			mig_cancel_stream(r);
			continue;
		}
		struct mig_dev *d = devices_claim(&m->devices, r->vf);
		if (r->phase == PHASE_RESTORED) {
			struct expired_restore *e = d ? calloc(1, sizeof(*e)) : NULL;
			if (e && (e->id = strdup(r->id))) {
				e->dev = d;
				e->claimed = r->claimed;
				e->next = *resets;
				*resets = e;
			} else {
				free(e);
				(void)devices_release(&m->devices, d, false);
			}
			continue;
		}
		log_info("reservation_expired", "migration=%s vf=%s vm=%s/%s", r->id, r->vf,
			 r->vm_namespace ? r->vm_namespace : "", r->vm_name ? r->vm_name : "");
		struct mig_dev *c = devices_release(&m->devices, d, true);
		if (c) {
			c->next = to_close;
			to_close = c;
		}
		(void)mig_move(m, r, PHASE_EXPIRED);
		*changed = true;
	}
	return to_close;
}

/* Lock not held: the reset of an expired restore, unless a VM holds the VF
 * (then the reservation stays, and the next tick tries again). */
static int reset_unless_busy(struct migration *m, const struct inventory *inv, const struct expired_restore *e,
			     struct xevf_err *err)
{
	const struct inventory_vf *iv = inventory_find(inv, e->dev->addr);
	const char *busy = iv ? busy_why_now(m, iv, e->claimed) : NULL;

	if (busy)
		return xevf_err_set(err, EBUSY, "VF %s is in use: %s; the restored state stays until it is free", e->dev->addr,
				    busy);
	return e->dev->open ? xevf_mig_reset(&e->dev->dev, err) : 0;
}

/* Lock not held: resets each expired restore's device, then ends its record. */
static void reset_expired(struct migration *m, struct expired_restore *list)
{
	struct state_snapshot snap = {0};
	struct inventory *inv = NULL;

	if (list) {
		pthread_mutex_lock(&m->lock);
		inv = mig_inventory(m);
		pthread_mutex_unlock(&m->lock);
	}
	while (list) {
		struct expired_restore *e = list;
		struct xevf_err err = XEVF_ERR_INIT;
		struct mig_dev *to_close;
		struct record *r;
		int rc = reset_unless_busy(m, inv, e, &err);

		list = e->next;
		pthread_mutex_lock(&m->lock);
		if (rc == 0 && (r = registry_find(&m->reg, e->id)) && mig_move(m, r, PHASE_EXPIRED) == 0) {
			log_info("reservation_expired", "migration=%s vf=%s phase=restored action=\"the restored state was "
				 "reset, never run\"", r->id, r->vf);
			state_file_render(&m->file, &m->reg, &snap);
		} else if (rc) {
			log_error("reservation_expiry_failed", "migration=%s reason=\"%s\"", e->id, xevf_err_msg(&err));
		}
		to_close = devices_release(&m->devices, e->dev, rc == 0);
		pthread_mutex_unlock(&m->lock);
		devices_close(&m->devices, to_close);
		xevf_err_clear(&err);
		free(e->id);
		free(e);
	}
	inventory_unref(inv);
	if (snap.seq)
		(void)mig_write(m, &snap, NULL);
}

size_t migration_tick(struct migration *m, char ***freed)
{
	struct state_snapshot snap = {0};
	struct expired_restore *resets = NULL;
	struct mig_dev *to_close;
	bool changed = false;
	size_t n;

	pthread_mutex_lock(&m->lock);
	to_close = expire(m, clock_unix_ms(), &changed, &resets);
	if (changed)
		state_file_render(&m->file, &m->reg, &snap);
	*freed = m->freed;
	n = m->nfreed;
	m->freed = NULL;
	m->nfreed = 0;
	pthread_mutex_unlock(&m->lock);
	while (to_close) {
		struct mig_dev *next = to_close->next;
		devices_close(&m->devices, to_close);
		to_close = next;
	}
	if (changed)
		(void)mig_write(m, &snap, NULL);
	reset_expired(m, resets);
	mig_retry_deferred_ends(m);
	return n;
}

bool migration_reserved_for(struct migration *m, const char *vf, bool *pending, char **vm_namespace, char **vm_name)
{
	struct record *r;

	if (vm_namespace)
		*vm_namespace = NULL;
	if (vm_name)
		*vm_name = NULL;
	if (!m)
		return false;
	pthread_mutex_lock(&m->lock);
	r = registry_find_vf(&m->reg, vf, ROLE_TARGET);
	if (r && pending)
		*pending = !r->claimed;
	if (r && vm_namespace)
		*vm_namespace = xevf_strdup_or_null(r->vm_namespace);
	if (r && vm_name)
		*vm_name = xevf_strdup_or_null(r->vm_name);
	pthread_mutex_unlock(&m->lock);
	return r != NULL;
}

char **migration_vfs(struct migration *m, size_t *n)
{
	char **vfs;
	size_t count = 0;

	*n = 0;
	pthread_mutex_lock(&m->lock);
	for (const struct record *r = m->reg.active; r; r = r->next)
		count++;
	vfs = calloc(count + 1, sizeof(*vfs));
	for (const struct record *r = m->reg.active; vfs && r; r = r->next) {
		if (xevf_strv_has(vfs, *n, r->vf))
			continue;
		if (!(vfs[*n] = strdup(r->vf))) {
			xevf_strv_free(vfs, *n);
			vfs = NULL;
			*n = 0;
			break;
		}
		(*n)++;
	}
	pthread_mutex_unlock(&m->lock);
	return vfs;
}

bool migration_has_pending(struct migration *m)
{
	bool pending = false;

	pthread_mutex_lock(&m->lock);
	for (const struct record *r = m->reg.active; r && !pending; r = r->next)
		pending = r->role == ROLE_TARGET && r->phase == PHASE_RESERVED && !r->claimed;
	pthread_mutex_unlock(&m->lock);
	return pending;
}

bool migration_has_records(struct migration *m)
{
	bool any;

	pthread_mutex_lock(&m->lock);
	any = m->reg.active != NULL;
	pthread_mutex_unlock(&m->lock);
	return any;
}

const char *migration_node(const struct migration *m)
{
	return m->node;
}

int migration_record_of(struct migration *m, const char *id, const char **role, char **vf, bool *claimed)
{
	struct record *r;
	int rc = 0;

	if (vf)
		*vf = NULL;
	pthread_mutex_lock(&m->lock);
	if (!(r = registry_find(&m->reg, id))) {
		rc = -ENOENT;
	} else {
		if (role)
			*role = role_name(r->role);
		if (claimed)
			*claimed = r->claimed;
		if (vf && !(*vf = strdup(r->vf)))
			rc = -ENOMEM;
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void migration_claim(struct migration *m, const char *vf)
{
	struct state_snapshot snap = {0};
	struct record *r;

	pthread_mutex_lock(&m->lock);
	r = registry_find_vf(&m->reg, vf, ROLE_TARGET);
	if (r && !r->claimed) {
		r->claimed = true;
		state_file_render(&m->file, &m->reg, &snap);
		log_info("reservation_claimed", "migration=%s vf=%s vm=%s/%s", r->id, r->vf,
			 r->vm_namespace ? r->vm_namespace : "", r->vm_name ? r->vm_name : "");
	}
	pthread_mutex_unlock(&m->lock);
	if (snap.seq)
		(void)mig_write(m, &snap, NULL);
}

int migration_state_parse(const char *text, size_t *count, char **why)
{
	struct record *recs = NULL;
	int rc;

	*count = 0;
	*why = NULL;
	if ((rc = state_file_parse(text, &recs, why)))
		return rc;
	for (struct record *r = recs; r; r = r->next)
		(*count)++;
	records_free(recs);
	return 0;
}

/* ---- life cycle ---- */

static int copy_settings(struct migration *m, const struct migration_settings *s)
{
	struct utsname u;
	char host[256] = "";

	gethostname(host, sizeof(host) - 1);
	m->unix_socket = xevf_strdup_or_null(s->unix_socket && *s->unix_socket ? s->unix_socket : NULL);
	m->tcp_address = xevf_strdup_or_null(s->tcp_address && *s->tcp_address ? s->tcp_address : NULL);
	m->tls_ca = xevf_strdup_or_null(s->tls_ca);
	m->tls_cert = xevf_strdup_or_null(s->tls_cert);
	m->tls_key = xevf_strdup_or_null(s->tls_key);
	m->tls_server_name = xevf_strdup_or_null(s->tls_server_name && *s->tls_server_name ? s->tls_server_name : NULL);
	m->sysfs_root = xevf_strdup_or_null(s->sysfs_root);
	m->dev_root = xevf_strdup_or_null(s->dev_root ? s->dev_root : "/dev");
	m->proc_root = xevf_strdup_or_null(s->proc_root);
	m->stream_idle_ms = s->stream_idle_ms;
	m->max_state_bytes = s->max_state_bytes ? s->max_state_bytes : UINT64_MAX;
	m->wake = s->wake;
	m->recently_allocated = s->recently_allocated;
	m->held_by_pod = s->held_by_pod;
	m->hooks_ctx = s->hooks_ctx;
	m->node = strdup(s->node_name && *s->node_name ? s->node_name : host);
	m->kernel_release = s->kernel_release ? strdup(s->kernel_release) : (uname(&u) == 0 ? strdup(u.release) : NULL);
	return m->node && m->dev_root && state_file_init(&m->file, s->state_dir) == 0 ? 0 : -ENOMEM;
}

static void load_state(struct migration *m, const char *state_dir)
{
	struct record *recs = NULL;
	char *aside = NULL, *error = NULL;

	if (state_dir && mkdir(state_dir, 0700) < 0 && errno != EEXIST)
		log_warn("state_dir_unusable", "dir=%s reason=\"%s\"", state_dir, strerror(errno));
	if (state_file_load(&m->file, &recs, &aside, &error) == 0) {
		size_t n = 0;
		for (struct record *r = recs; r; r = r->next)
			n++;
		m->reg.active = recs;
		if (m->file.path && n)
			log_info("state_loaded", "file=%s migrations=%zu", m->file.path, n);
	} else if (aside) {
		log_error("state_corrupt", "file=%s reason=\"%s\" moved_to=%s action=\"starting without reservations; "
			  "inspect the file\"", m->file.path, error ? error : "?", aside);
	} else {
		log_error("state_unreadable", "file=%s reason=\"%s\" action=\"%s\"", m->file.path, error ? error : "?",
			  m->file.broken ? m->file.broken : "starting without reservations");
	}
	free(aside);
	free(error);
}

static int listen_all(struct migration *m, char **error)
{
	struct rpc_tls tls = {m->tls_ca, m->tls_cert, m->tls_key};
	char *unix_addr = NULL;

	if (m->unix_socket) {
		(void)xevf_mkdir_parent(m->unix_socket, 0755); /* listening below says what went wrong */
		unlink(m->unix_socket);
		if (asprintf(&unix_addr, "unix:%s", m->unix_socket) < 0)
			return agent_fail(error, ENOMEM, "out of memory");
	}
	if (!unix_addr && !m->tcp_address)
		return 0;
	m->server = rpc_server_start(unix_addr, m->tcp_address, &tls, m->stream_idle_ms, mig_dispatch, m, &m->tcp_port,
				     error);
	free(unix_addr);
	if (!m->server)
		return -EIO;
	if (m->unix_socket)
		chmod(m->unix_socket, 0600);
	return 0;
}

struct migration *migration_start(const struct migration_settings *s, const struct mig_device_provider *devices,
				  char **error)
{
	struct migration *m = calloc(1, sizeof(*m));

	if (!m || migration_methods_check(error)) {
		if (!m)
			agent_fail(error, ENOMEM, "out of memory");
		free(m);
		return NULL;
	}
	pthread_mutex_init(&m->lock, NULL);
	m->devices.provider = devices;
	if (copy_settings(m, s)) {
		agent_fail(error, ENOMEM, "out of memory");
		migration_stop(m);
		return NULL;
	}
	if (peer_policy_parse(s->peer_identities ? s->peer_identities : XEVF_DEFAULT_PEER_IDENTITIES, &m->peers, error)) {
		migration_stop(m);
		return NULL;
	}
	load_state(m, s->state_dir);
	if (listen_all(m, error)) {
		migration_stop(m);
		return NULL;
	}
	if (m->server)
		log_info("migration_serving", "socket=%s tcp=%s tcp_port=%d tls=%s state_dir=%s node=%s devices=%s",
			 m->unix_socket ? m->unix_socket : "", m->tcp_address ? m->tcp_address : "", m->tcp_port,
			 m->tcp_port ? "mutual" : "off", s->state_dir ? s->state_dir : "", m->node, devices->kind);
	return m;
}

void migration_stop(struct migration *m)
{
	if (!m)
		return;
	/* a shutdown waits on no peer: every stream ends now, then the calls */
	pthread_mutex_lock(&m->lock);
	for (struct record *r = m->reg.active; r; r = r->next)
		mig_cancel_stream(r);
	pthread_mutex_unlock(&m->lock);
	rpc_server_stop(m->server);
	if (m->unix_socket && m->server)
		unlink(m->unix_socket);
	registry_free(&m->reg);
	inventory_unref(m->inv);
	xevf_strv_free(m->freed, m->nfreed);
	devices_free(&m->devices);
	state_file_destroy(&m->file);
	peer_policy_free(&m->peers);
	free(m->unix_socket);
	free(m->tcp_address);
	free(m->tls_ca);
	free(m->tls_cert);
	free(m->tls_key);
	free(m->tls_server_name);
	free(m->sysfs_root);
	free(m->dev_root);
	free(m->proc_root);
	free(m->node);
	free(m->kernel_release);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
