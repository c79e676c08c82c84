/* The Migration service's calls that look and reserve: Describe, CheckTarget,
 * Reserve, Release, List. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "text.h"
#include "migration_private.h"
#include "xevf_util.h"

#define DEFAULT_TTL_S 300
#define MAX_TTL_S 86400

/* The VF a Describe is about: the one named, or the one the kubelet says the
 * pod holds (malloc'd); NULL when the call is answered. */
static char *described_vf(struct migration *m, struct rpc_call *call, const Xevf__Migration__V1__DescribeRequest *req)
{
	char *vf = NULL, *error = NULL;
	int rc;

	if (*req->vf || !*req->pod_name)
		return strdup(req->vf);
	if (!text_dns_label(req->pod_namespace, strlen(req->pod_namespace)) || !text_dns_subdomain(req->pod_name) ||
	    !*req->resource_name || strlen(req->resource_name) > 253) {
		mig_refuse(call, GRPC_STATUS_INVALID_ARGUMENT, "a pod is named by a Kubernetes namespace and name, "
			   "with the resource_name of its VF");
		return NULL;
	}
	if (!m->held_by_pod) {
		mig_refuse(call, GRPC_STATUS_FAILED_PRECONDITION, "node %s cannot tell which VF a pod holds "
			   "(no PodResources socket configured)", m->node);
		return NULL;
	}
	rc = m->held_by_pod(m->hooks_ctx, req->resource_name, req->pod_namespace, req->pod_name, &vf, &error);
	if (rc < 0)
		mig_refuse(call, rc == -ENOENT ? GRPC_STATUS_NOT_FOUND : GRPC_STATUS_UNAVAILABLE, "node %s: pod %s/%s: %s",
			   m->node, req->pod_namespace, req->pod_name, error ? error : "?");
	free(error);
	return rc < 0 ? NULL : vf;
}

void handle_describe(struct migration *m, struct rpc_call *call, const ProtobufCMessage *msg)
{
	const Xevf__Migration__V1__DescribeRequest *req = (const Xevf__Migration__V1__DescribeRequest *)msg;
	Xevf__Migration__V1__Fingerprint fp;
	struct busy_scan scan = {0};
	struct inventory *inv;
	const struct inventory_vf *iv;
	char *vf = described_vf(m, call, req);

	if (!vf)
		return;
	pthread_mutex_lock(&m->lock);
	inv = mig_inventory(m);
	pthread_mutex_unlock(&m->lock);
	if (!(iv = inventory_find(inv, vf))) {
		mig_refuse(call, GRPC_STATUS_NOT_FOUND, "no VF %.64s on node %s", vf, m->node);
	} else {
		busy_scan(m, &scan);
		mig_fingerprint(m, iv, &scan, &fp, NULL);
		rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&fp);
		fingerprint_clear(&fp);
	}
	busy_scan_free(&scan);
	inventory_unref(inv);
	free(vf);
}

/* Why the node's VF i cannot take the source's state (malloc'd), or NULL.
 * taken[i]: the reason a migration already has it (decided under the lock).
 * A VF whose xe provisioning alone differs can take it once provisioned like
 * the source: provision does that now (Reserve); otherwise *note says what
 * a Reserve would change (malloc'd, or NULL). */
static char *why_not(struct migration *m, const struct inventory_vf *iv, const char *taken,
		     const struct busy_scan *scan, const Xevf__Migration__V1__Fingerprint *src, bool provision,
		     char **note)
{
	Xevf__Migration__V1__Fingerprint fp;
	const char *busy = busy_why(scan, iv, false);
	bool in_use = false;
	char *why = NULL, *plan = NULL;

	*note = NULL;
	if (!iv->vf->healthy)
		return strdup("unhealthy");
	if (busy)
		return asprintf(&why, "in use: %s", busy) < 0 ? NULL : why;
	if (taken)
		return strdup(taken);
	mig_fingerprint(m, iv, scan, &fp, &in_use);
	if (in_use)
		why = strdup("in use: its VFIO device is open elsewhere (EBUSY)");
	else if (!(why = compat_identity_why_not(&fp, src)) && !(why = provision_plan(iv, &fp, src, &plan)) && plan) {
		if (provision)
			why = provision_like(m, iv, &fp, src);
		else if (asprintf(note, "provisioned like the source when reserved: %s", plan) < 0)
			*note = NULL;
	}
	free(plan);
	fingerprint_clear(&fp);
	return why;
}

/* Lock held: for each VF of inv, why a migration already has it, or NULL. */
static char **taken_reasons(struct migration *m, const struct inventory *inv)
{
	char **taken = calloc(inv->nvfs + 1, sizeof(*taken));

	for (size_t i = 0; taken && i < inv->nvfs; i++) {
		const struct record *r = registry_find_vf(&m->reg, inv->vfs[i].vf->addr, -1);
		if (r && asprintf(&taken[i], "%s migration %s", r->role == ROLE_TARGET ? "reserved for" : "the source of",
				  r->id) < 0)
			taken[i] = NULL;
	}
	return taken;
}

/* The inventory and, per VF, why a migration already has it. */
static struct inventory *snapshot(struct migration *m, char ***taken)
{
	struct inventory *inv;

	pthread_mutex_lock(&m->lock);
	inv = mig_inventory(m);
	*taken = inv ? taken_reasons(m, inv) : NULL;
	pthread_mutex_unlock(&m->lock);
	return inv;
}

void handle_check(struct migration *m, struct rpc_call *call, const ProtobufCMessage *msg)
{
	const Xevf__Migration__V1__CheckTargetRequest *req = (const Xevf__Migration__V1__CheckTargetRequest *)msg;
	Xevf__Migration__V1__CheckTargetResponse resp = XEVF__MIGRATION__V1__CHECK_TARGET_RESPONSE__INIT;
	Xevf__Migration__V1__Candidate *cands;
	struct busy_scan scan = {0};
	char **taken = NULL;
	struct inventory *inv;

	if (!req->source) {
		mig_refuse(call, GRPC_STATUS_INVALID_ARGUMENT, "CheckTarget needs the source fingerprint");
		return;
	}
	inv = snapshot(m, &taken);
	busy_scan(m, &scan);
	cands = calloc(inv ? inv->nvfs + 1 : 1, sizeof(*cands));
	resp.candidates = calloc(inv ? inv->nvfs + 1 : 1, sizeof(Xevf__Migration__V1__Candidate *));
	for (size_t i = 0; inv && cands && resp.candidates && taken && i < inv->nvfs; i++) {
		char *note = NULL, *why = why_not(m, &inv->vfs[i], taken[i], &scan, req->source, false, &note);
		xevf__migration__v1__candidate__init(&cands[i]);
		cands[i].vf = (char *)inv->vfs[i].vf->addr;
		cands[i].compatible = why == NULL;
		cands[i].reason = why ? why : note ? note : (char *)protobuf_c_empty_string;
		resp.candidates[resp.n_candidates++] = &cands[i];
	}
	rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&resp);
	for (size_t i = 0; i < resp.n_candidates; i++)
		if (cands[i].reason != protobuf_c_empty_string)
			free(cands[i].reason);
	free(cands);
	free(resp.candidates);
	xevf_strv_free(taken, inv ? inv->nvfs : 0);
	busy_scan_free(&scan);
	inventory_unref(inv);
}

/* The first compatible VF (its index), provisioned like the source where its
 * xe provisioning alone differed, or -1 with every VF's reason in *reasons.
 * The VF at the source VF's own PCI address comes first: with it, the
 * address in the source's domain stays right on the target (KubeVirt does
 * not rewrite it yet, docs/kubevirt.md). */
static long first_compatible(struct migration *m, const struct inventory *inv, char **taken,
			     const Xevf__Migration__V1__Fingerprint *src, char **reasons)
{
	struct busy_scan scan = {0};
	size_t len = 0;
	FILE *rs = open_memstream(reasons, &len);
	long pick = -1;

	const struct inventory_vf *same = src->vf && *src->vf ? inventory_find(inv, src->vf) : NULL;
	size_t first = same ? (size_t)(same - inv->vfs) : 0;

	busy_scan(m, &scan);
	for (size_t n = 0; inv && taken && n < inv->nvfs && pick < 0; n++) {
		/* first, then every other VF in order */
		size_t i = n == 0 ? first : (n <= first ? n - 1 : n);
		char *note = NULL, *why = why_not(m, &inv->vfs[i], taken[i], &scan, src, true, &note);
		free(note);
		if (!why)
			pick = (long)i;
		else if (rs)
			fprintf(rs, "%s%s: %s", ftell(rs) ? "; " : "", inv->vfs[i].vf->addr, why);
		free(why);
	}
	if (rs)
		fclose(rs);
	busy_scan_free(&scan);
	return pick;
}

static void reply_reservation(struct rpc_call *call, const struct record *r)
{
	Xevf__Migration__V1__Reservation res = XEVF__MIGRATION__V1__RESERVATION__INIT;

	res.migration_id = r->id;
	res.vf = r->vf;
	res.resource_name = r->resource ? r->resource : "";
	res.expires_unix_ms = r->expires_unix_ms;
	res.phase = (char *)phase_name(r->phase);
	rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&res);
}

/* Lock held: the reservation, unless another call took the VF or the id meanwhile. */
static struct record *reserve_locked(struct migration *m, const Xevf__Migration__V1__ReserveRequest *req,
				     const struct inventory_vf *iv, uint32_t ttl, const char *caller)
{
	struct record *r;

	if (registry_find(&m->reg, req->migration_id) || registry_find_vf(&m->reg, iv->vf->addr, -1) ||
	    registry_count(&m->reg) >= REGISTRY_ACTIVE_MAX)
		return NULL;
	if (!(r = record_new(req->migration_id, ROLE_TARGET, iv->vf->addr, PHASE_RESERVED)))
		return NULL;
	r->resource = xevf_strdup_or_null(iv->resource);
	r->vm_namespace = xevf_strdup_or_null(req->vm_namespace);
	r->vm_name = xevf_strdup_or_null(req->vm_name);
	if (!(r->owner = strdup(caller))) {
		record_free(r);
		return NULL;
	}
	r->expires_unix_ms = clock_unix_ms() + (int64_t)ttl * 1000;
	registry_add(&m->reg, r);
	log_info("reserved", "migration=%s vf=%s resource=%s vm=%s/%s ttl_s=%u by=%s", r->id, r->vf,
		 r->resource ? r->resource : "", r->vm_namespace ? r->vm_namespace : "", r->vm_name ? r->vm_name : "", ttl,
		 r->owner);
	return r;
}

/* An existing reservation answers again (Reserve is idempotent); 1 when there is none. */
static int answer_existing(struct migration *m, struct rpc_call *call, const char *id)
{
	bool found;
	struct record *copy = mig_record_copy(m, id, &found);

	if (!found)
		return 1;
	if (!copy)
		mig_refuse(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	else if (copy->role != ROLE_TARGET)
		mig_refuse(call, GRPC_STATUS_ALREADY_EXISTS, "migration %s is this node's source side", id);
	else if (!record_may_end(copy, rpc_call_peer(call)))
		mig_refuse(call, GRPC_STATUS_ALREADY_EXISTS, "migration %s is another caller's reservation", id);
	else
		reply_reservation(call, copy);
	record_free(copy);
	return 0;
}

/* What a Reserve asks for is bounded and well formed before any of it is
 * kept (the state file holds it). */
_Static_assert(MIGRATION_ID_MAX == 128, "mig_reserve_invalid's message names the bound");

const char *mig_reserve_invalid(const Xevf__Migration__V1__ReserveRequest *req)
{
	if (!migration_id_valid(req->migration_id))
		return "migration_id must be 1..128 characters of [A-Za-z0-9._-]";
	if (!req->source)
		return "Reserve needs the source fingerprint";
	if (*req->vm_namespace && !text_dns_label(req->vm_namespace, strlen(req->vm_namespace)))
		return "vm_namespace must be a Kubernetes namespace name (at most 63 characters of a-z, 0-9 and '-')";
	if (*req->vm_name && !text_dns_subdomain(req->vm_name))
		return "vm_name must be a Kubernetes object name (at most 253 characters of a-z, 0-9, '-' and '.')";
	return NULL;
}

grpc_status_code mig_reserve(struct migration *m, const Xevf__Migration__V1__ReserveRequest *req,
				const char *caller, struct record **out, char **why)
{
	uint32_t ttl = req->ttl_seconds ? req->ttl_seconds : DEFAULT_TTL_S;
	struct state_snapshot snap = {0};
	char **taken = NULL, *reasons = NULL, *error = NULL;
	struct inventory *inv;
	struct record *r = NULL;
	grpc_status_code code = GRPC_STATUS_OK;
	long pick;

	*out = NULL;
	*why = NULL;
	inv = snapshot(m, &taken);
	pick = first_compatible(m, inv, taken, req->source, &reasons);
	pthread_mutex_lock(&m->lock);
	if (pick >= 0 && (r = reserve_locked(m, req, &inv->vfs[pick], ttl < MAX_TTL_S ? ttl : MAX_TTL_S, caller))) {
		state_file_render(&m->file, &m->reg, &snap);
		r = record_dup(r);
	}
	pthread_mutex_unlock(&m->lock);
	/* acknowledged only once it is on disk */
	if (r && mig_write(m, &snap, &error)) {
		mig_take_back(m, r->id, PHASE_RESERVED);
		code = GRPC_STATUS_UNAVAILABLE;
		if (asprintf(why, "migration %s: nothing reserved: %s", r->id, error) < 0)
			*why = NULL;
		record_free(r);
	} else if (r) {
		*out = r;
	} else {
		code = pick >= 0 ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_FAILED_PRECONDITION;
		if (asprintf(why, "no compatible free VF on node %s for migration %s: %s", m->node, req->migration_id,
			     pick >= 0 ? "another migration took it, or this node keeps too many; try again" :
			     reasons && *reasons ? reasons : "no VFs") < 0)
			*why = NULL;
	}
	free(error);
	free(reasons);
	xevf_strv_free(taken, inv ? inv->nvfs : 0);
	inventory_unref(inv);
	return code;
}

void handle_reserve(struct migration *m, struct rpc_call *call, const ProtobufCMessage *msg)
{
	const Xevf__Migration__V1__ReserveRequest *req = (const Xevf__Migration__V1__ReserveRequest *)msg;
	struct record *r = NULL;
	char *why = NULL;
	grpc_status_code code;

	const char *invalid = mig_reserve_invalid(req);

	if (invalid) {
		mig_refuse(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", invalid);
		return;
	}
	if (answer_existing(m, call, req->migration_id) == 0)
		return;
	code = mig_reserve(m, req, rpc_call_peer(call), &r, &why);
	if (r)
		reply_reservation(call, r);
	else
		mig_refuse(call, code, "%s", why ? why : "out of memory");
	record_free(r);
	free(why);
}

/* Release ends a reservation with nothing restored into it. Decided under
 * the lock; answered after it. */
void handle_release(struct migration *m, struct rpc_call *call, const ProtobufCMessage *msg)
{
	const Xevf__Migration__V1__MigrationRef *req = (const Xevf__Migration__V1__MigrationRef *)msg;
	Xevf__Migration__V1__MigrationStatus st;
	struct state_snapshot snap = {0};
	struct record *r = NULL, *copy = NULL;
	char *error = NULL;
	bool valid = migration_id_valid(req->migration_id), released = false, foreign = false;

	pthread_mutex_lock(&m->lock);
	if (valid && !(r = registry_find(&m->reg, req->migration_id)))
		r = registry_find_ended(&m->reg, req->migration_id); /* Release is idempotent */
	if (r && !record_may_end(r, rpc_call_peer(call))) {
		foreign = true;
		r = NULL;
	}
	if (r && r->role == ROLE_TARGET && r->phase == PHASE_RESERVED) {
		log_info("reservation_released", "migration=%s vf=%s", r->id, r->vf);
		(void)mig_move(m, r, PHASE_RELEASED);
		state_file_render(&m->file, &m->reg, &snap);
		released = true;
	}
	copy = r ? record_dup(r) : NULL;
	pthread_mutex_unlock(&m->lock);
	if (released && mig_write(m, &snap, &error)) {
		/* not durable: the reservation stands */
		pthread_mutex_lock(&m->lock);
		if ((r = registry_find_ended(&m->reg, req->migration_id)))
			(void)registry_reopen(&m->reg, r, PHASE_RESERVED);
		pthread_mutex_unlock(&m->lock);
		mig_refuse(call, GRPC_STATUS_UNAVAILABLE, "migration %s: still reserved: %s", req->migration_id, error);
	} else if (foreign)
		mig_refuse(call, GRPC_STATUS_PERMISSION_DENIED, "migration %s on node %s is not %s's reservation; only its "
			   "owner or the node-local socket may release it", req->migration_id, m->node, rpc_call_peer(call));
	else if (!r)
		mig_refuse(call, GRPC_STATUS_NOT_FOUND, "no migration %.128s on node %s", req->migration_id, m->node);
	else if (!copy)
		mig_refuse(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	else if (!released && !phase_ended(copy->phase) && (copy->phase == PHASE_SAVING || copy->phase == PHASE_RESTORING))
		mig_refuse(call, GRPC_STATUS_FAILED_PRECONDITION, "migration %s is %s; wait for it or Abort", copy->id,
			   phase_name(copy->phase));
	else if (!released && !phase_ended(copy->phase))
		mig_refuse(call, GRPC_STATUS_FAILED_PRECONDITION, "migration %s: only a reservation with nothing restored can "
			   "be released (%s %s); use Abort", copy->id, role_name(copy->role), phase_name(copy->phase));
	else {
		mig_status_of(copy, "", &st);
		rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&st);
	}
	free(error);
	record_free(copy);
}

void handle_list(struct migration *m, struct rpc_call *call, const ProtobufCMessage *msg)
{
	Xevf__Migration__V1__ListResponse resp = XEVF__MIGRATION__V1__LIST_RESPONSE__INIT;
	Xevf__Migration__V1__MigrationStatus *sts;
	struct record **copies;
	const char **states, *caller = rpc_call_peer(call);
	size_t n = 0, k = 0;

	(void)msg;
	/* a TLS caller sees the reservations it made, nothing of the node's other VMs */
	pthread_mutex_lock(&m->lock);
	for (struct record *r = m->reg.active; r; r = r->next)
		n++;
	n += m->reg.nended;
	copies = calloc(n + 1, sizeof(struct record *));
	states = calloc(n + 1, sizeof(*states));
	for (struct record *r = m->reg.active; r && copies && states; r = r->next, k++) {
		struct mig_dev *d = devices_find(&m->devices, r->vf);
		copies[k] = record_may_end(r, caller) ? record_dup(r) : NULL;
		states[k] = d && !d->claimed ? xevf_mig_state_name(d->dev.state) : "";
	}
	for (struct record *r = m->reg.ended; r && copies && states && k < n; r = r->next, k++) {
		copies[k] = record_may_end(r, caller) ? record_dup(r) : NULL;
		states[k] = "";
	}
	pthread_mutex_unlock(&m->lock);
	resp.migrations = calloc(n + 1, sizeof(Xevf__Migration__V1__MigrationStatus *));
	sts = calloc(n + 1, sizeof(*sts));
	for (size_t i = 0; copies && states && resp.migrations && sts && i < n; i++) {
		if (!copies[i])
			continue;
		mig_status_of(copies[i], states[i], &sts[resp.n_migrations]);
		resp.migrations[resp.n_migrations] = &sts[resp.n_migrations];
		resp.n_migrations++;
	}
	rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&resp);
	for (size_t i = 0; copies && i < n; i++)
		record_free(copies[i]);
	free(copies);
	free(states);
	free(resp.migrations);
	free(sts);
}
