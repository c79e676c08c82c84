/* The device-plugin gRPC server of one pool: its calls on the daemon's
 * completion queue (unary answers and ListAndWatch streams), and the server's
 * start, drain and stop. */
#include <errno.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "answers.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "plugin_private.h"
#include "rpc.h"
#include "xevf_util.h"

struct dp_call {
	struct plugin *plugin;
	enum dp_method method;
	struct dp_tag request_tag, done_tag, send_tag, close_tag;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_call_details details; /* M_UNKNOWN: the method asked for */
	grpc_metadata_array request_md;
	grpc_byte_buffer *payload;  /* the request */
	grpc_byte_buffer *response; /* being sent */
	grpc_slice status_details;
	bool has_details;
	int cancelled;
	int pending;                /* batches not yet completed */
	/* ListAndWatch */
	bool sending, closed, headers_sent;
	uint64_t sent_generation;
	struct dp_call *next_stream;
};

typedef void (*unary_fn)(struct dp_call *c, ProtobufCMessage *req);

static void answer_options(struct dp_call *c, ProtobufCMessage *req);
static void answer_preferred(struct dp_call *c, ProtobufCMessage *req);
static void answer_allocate(struct dp_call *c, ProtobufCMessage *req);
static void answer_pre_start(struct dp_call *c, ProtobufCMessage *req);

/* The v1beta1 DevicePlugin service: one row per method. */
static const struct {
	const char *path, *name;
	const ProtobufCMessageDescriptor *request; /* NULL: a stream (ListAndWatch) */
	unary_fn answer;
} dp_methods[M_COUNT] = {
	[M_OPTIONS] = {"/v1beta1.DevicePlugin/GetDevicePluginOptions", "GetDevicePluginOptions",
		       &v1beta1__empty__descriptor, answer_options},
	[M_LIST_AND_WATCH] = {"/v1beta1.DevicePlugin/ListAndWatch", "ListAndWatch", NULL, NULL},
	[M_PREFERRED] = {"/v1beta1.DevicePlugin/GetPreferredAllocation", "GetPreferredAllocation",
			 &v1beta1__preferred_allocation_request__descriptor, answer_preferred},
	[M_ALLOCATE] = {"/v1beta1.DevicePlugin/Allocate", "Allocate", &v1beta1__allocate_request__descriptor,
			answer_allocate},
	[M_PRE_START] = {"/v1beta1.DevicePlugin/PreStartContainer", "PreStartContainer",
			 &v1beta1__pre_start_container_request__descriptor, answer_pre_start},
};

static void request_call(struct plugin *pl, enum dp_method m);

static const char *method_name(enum dp_method m)
{
	return m == M_UNKNOWN ? "unknown" : dp_methods[m].name;
}

static void call_free(struct dp_call *c)
{
	struct plugin *pl = c->plugin;

	for (struct dp_call **pp = &pl->streams; *pp; pp = &(*pp)->next_stream) {
		if (*pp == c) {
			*pp = c->next_stream;
			break;
		}
	}
	if (c->call)
		grpc_call_unref(c->call);
	if (c->method == M_UNKNOWN)
		grpc_call_details_destroy(&c->details);
	grpc_metadata_array_destroy(&c->request_md);
	if (c->payload)
		grpc_byte_buffer_destroy(c->payload);
	if (c->response)
		grpc_byte_buffer_destroy(c->response);
	if (c->has_details)
		grpc_slice_unref(c->status_details);
	pl->live_calls--;
	free(c);
}

static void call_start_batch(struct dp_call *c, const grpc_op *ops, size_t n, struct dp_tag *tag)
{
	grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);

	if (e != GRPC_CALL_OK) {
		/* Only a bug of ours gets here (ops out of order); cancel so that the
		 * call ends rather than hangs. */
		log_error("grpc_batch_failed", "method=%s code=%d", method_name(c->method), (int)e);
		grpc_call_cancel(c->call, NULL);
		return;
	}
	c->pending++;
}

static void finish_unary(struct dp_call *c, grpc_status_code status, const char *message,
			 const ProtobufCMessage *response)
{
	grpc_op ops[4];
	size_t n = 0;

	memset(ops, 0, sizeof(ops));
	ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (status == GRPC_STATUS_OK && response) {
		c->response = rpc_pack(response);
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = c->response;
	}
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = status;
	if (message) {
		c->status_details = grpc_slice_from_copied_string(message);
		c->has_details = true;
		ops[n].data.send_status_from_server.status_details = &c->status_details;
	}
	n++;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
	call_start_batch(c, ops, n, &c->done_tag);
	if (c->pending == 0)
		call_free(c);
}

/* ---- ListAndWatch ---- */

static void stream_send(struct dp_call *c)
{
	struct arena a = {0};
	V1beta1__ListAndWatchResponse *list;
	grpc_op ops[2];
	size_t n = 0;

	if (c->sending || c->closed)
		return;
	list = plugin_list(&c->plugin->pool, &a);
	if (!list) {
		arena_free(&a);
		log_error("list_failed", "resource=%s reason=\"out of memory\"", c->plugin->pool.cfg.resource_name);
		return;
	}
	if (c->response)
		grpc_byte_buffer_destroy(c->response);
	c->response = rpc_pack(&list->base);
	arena_free(&a);
	memset(ops, 0, sizeof(ops));
	if (!c->headers_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		c->headers_sent = true;
	}
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n++].data.send_message.send_message = c->response;
	c->sending = true;
	c->sent_generation = c->plugin->pool.generation;
	call_start_batch(c, ops, n, &c->send_tag);
	if (!c->pending)
		c->sending = false;
}

void dp_push_lists(struct plugin *pl)
{
	for (struct dp_call *c = pl->streams; c; c = c->next_stream)
		if (!c->sending && !c->closed && c->sent_generation != pl->pool.generation)
			stream_send(c);
}

static void start_stream(struct dp_call *c)
{
	grpc_op op;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &c->cancelled;
	c->next_stream = c->plugin->streams;
	c->plugin->streams = c;
	call_start_batch(c, &op, 1, &c->close_tag);
	log_info("list_and_watch_opened", "resource=%s devices=%zu", c->plugin->pool.cfg.resource_name,
		 c->plugin->pool.ndevs);
	stream_send(c);
}

static void on_stream_event(struct dp_call *c, bool is_close, bool ok)
{
	c->pending--;
	if (is_close) {
		c->closed = true;
		log_info("list_and_watch_closed", "resource=%s", c->plugin->pool.cfg.resource_name);
	} else {
		c->sending = false;
		if (!ok)
			c->closed = true;
	}
	if (c->pending == 0 && c->closed) {
		call_free(c);
		return;
	}
	if (!c->closed && c->sent_generation != c->plugin->pool.generation)
		stream_send(c);
}

/* ---- unary answers ---- */

static void answer_options(struct dp_call *c, ProtobufCMessage *req)
{
	V1beta1__DevicePluginOptions opts = V1BETA1__DEVICE_PLUGIN_OPTIONS__INIT;

	(void)req;
	opts.pre_start_required = 0;
	opts.get_preferred_allocation_available = 1;
	finish_unary(c, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&opts);
}

static void answer_pre_start(struct dp_call *c, ProtobufCMessage *req)
{
	V1beta1__PreStartContainerResponse resp = V1BETA1__PRE_START_CONTAINER_RESPONSE__INIT;

	log_debug("pre_start_container", "resource=%s devices=%zu", c->plugin->pool.cfg.resource_name,
		  ((V1beta1__PreStartContainerRequest *)req)->n_devices_ids);
	finish_unary(c, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&resp);
}

static void log_allocated(const struct pool *pool, const V1beta1__AllocateResponse *resp, int64_t started)
{
	for (size_t i = 0; i < resp->n_container_responses; i++) {
		const V1beta1__ContainerAllocateResponse *cr = resp->container_responses[i];
		log_info("allocated", "resource=%s container=%zu %s=%s devices=%zu latency_us=%lld", pool->cfg.resource_name,
			 i, pool->env_name, cr->n_envs ? cr->envs[0]->value : "", cr->n_devices,
			 (long long)(clock_mono_us() - started));
	}
}

static void answer_allocate(struct dp_call *c, ProtobufCMessage *msg)
{
	const V1beta1__AllocateRequest *req = (const V1beta1__AllocateRequest *)msg;
	struct plugin *pl = c->plugin;
	const char *res = pl->pool.cfg.resource_name;
	V1beta1__AllocateResponse *resp;
	struct arena a = {0};
	char *error = NULL;
	int64_t started = clock_mono_us();
	int code = plugin_allocate(&pl->pool, req, &a, &resp, &error);

	if (code) {
		metrics_allocate_refused(res);
		log_warn("allocate_refused", "resource=%s reason=\"%s\"", res, error ? error : "?");
		finish_unary(c, (grpc_status_code)code, error, NULL);
	} else {
		size_t ndevices = 0;
		for (size_t i = 0; i < req->n_container_requests; i++) {
			const V1beta1__ContainerAllocateRequest *cr = req->container_requests[i];
			if (pl->hooks.allocated)
				pl->hooks.allocated(pl->hooks.ctx, res, (const char *const *)cr->devices_ids, cr->n_devices_ids);
			ndevices += cr->n_devices_ids;
		}
		metrics_allocated(res, resp->n_container_responses, ndevices, (double)(clock_mono_us() - started) / 1e6);
		log_allocated(&pl->pool, resp, started);
		finish_unary(c, GRPC_STATUS_OK, NULL, &resp->base);
	}
	free(error);
	arena_free(&a);
}

/* What one GetPreferredAllocation call knows about reservations and pods. */
struct steer_call {
	struct plugin *pl;
	bool pods_fetched, pods_known;
	struct kube_pod *pods;
	size_t npods;
	char **held, **held_by;        /* VFs a pod's container holds, and which pod (PodResources) */
	size_t nheld;
};

/* The kubelet offers a VF again once its container has ended, while its VM
 * may still be going away: such VFs go to a new pod only when no other will
 * do (the list keeps enough for the request). */
static void avoid_held(const struct steer_call *s, struct steer_output *out, size_t size)
{
	size_t kept = 0, held = 0, need = size > out->nmust ? size - out->nmust : 0;

	for (size_t i = 0; i < out->navail; i++)
		held += xevf_strv_has(s->held, s->nheld, out->avail[i]);
	if (!held || out->navail - held < need)
		return;
	for (size_t i = 0; i < out->navail; i++) {
		long k = xevf_strv_index(s->held, s->nheld, out->avail[i]);
		if (k < 0)
			out->avail[kept++] = out->avail[i];
		else
			log_info("vf_held_avoided", "resource=%s vf=%s pod=%s reason=\"the kubelet offers it, but the "
				 "pod's container that held it is still listed (its VM may not have let go)\"",
				 s->pl->pool.cfg.resource_name, out->avail[i], s->held_by[k]);
	}
	out->navail = kept;
}

static void fetch_pods(struct steer_call *s)
{
	char *error = NULL;
	int rc;

	s->pods_fetched = true;
	if (!s->pl->hooks.pending_pods)
		return;
	rc = s->pl->hooks.pending_pods(s->pl->hooks.ctx, s->pl->pool.cfg.resource_name, &s->pods, &s->npods, &error);
	s->pods_known = rc == 0;
	if (rc < 0)
		log_warn("kube_pods_unavailable", "reason=\"%s\" action=\"offering reserved VFs to the next allocation\"",
			 error ? error : "?");
	free(error);
}

static void log_steering(const struct steer_input *in, const struct steer_note *notes)
{
	for (size_t i = 0; i < in->nres; i++) {
		const struct steer_reservation *r = &in->res[i];
		if (notes[i].verdict == STEER_OFFERED && notes[i].pod)
			log_info("reservation_preferred", "vf=%s pod=%s/%s", r->vf, notes[i].pod->namespace_,
				 notes[i].pod->name);
		else if (notes[i].verdict == STEER_OFFERED)
			log_info("reservation_preferred", "vf=%s", r->vf);
		else if (notes[i].verdict == STEER_WITHHELD)
			log_info("reservation_withheld", "vf=%s vm=%s/%s pending_pods=%zu first=%s/%s reason=\"not the "
				 "migration's target pod\"", r->vf, r->vm_namespace ? r->vm_namespace : "",
				 r->vm_name ? r->vm_name : "", in->npods, notes[i].pod->namespace_, notes[i].pod->name);
	}
}

static int steer_container(void *ctx, const V1beta1__ContainerPreferredAllocationRequest *cr, struct arena *a,
			   struct preferred_lists *lists)
{
	struct steer_call *s = ctx;
	struct steer_reservation *res = calloc(cr->n_available_deviceids + 1, sizeof(*res));
	struct steer_note *notes = calloc(cr->n_available_deviceids + 1, sizeof(*notes));
	struct steer_input in = {cr->available_deviceids, cr->n_available_deviceids, cr->must_include_deviceids,
				 cr->n_must_include_deviceids, (size_t)cr->allocation_size, res, 0, NULL, 0, false};
	struct steer_output out;
	int rc = -ENOMEM;

	if (!res || !notes || !s->pl->hooks.reservations)
		goto out;
	in.nres = s->pl->hooks.reservations(s->pl->hooks.ctx, cr->available_deviceids, cr->n_available_deviceids, res);
	/* a reservation that became pending since prefetch_pods looked is offered
	 * as if nobody could tell the pods apart (pods_known false) */
	in.pods = s->pods;
	in.npods = s->npods;
	in.pods_known = s->pods_known;
	if ((rc = steer(&in, &out, notes)) == 0) {
		log_steering(&in, notes);
		avoid_held(s, &out, (size_t)cr->allocation_size);
		const char **avail = arena_alloc(a, (out.navail + 1) * sizeof(char *));
		const char **must = arena_alloc(a, (out.nmust + 1) * sizeof(char *));
		if (avail && must) {
			memcpy(avail, out.avail, out.navail * sizeof(char *));
			memcpy(must, out.must, out.nmust * sizeof(char *));
			*lists = (struct preferred_lists){avail, out.navail, must, out.nmust};
		} else {
			rc = -ENOMEM;
		}
		steer_output_free(&out);
	}
out:
	steer_reservations_free(res, in.nres);
	free(notes);
	return rc;
}

void steer_reservations_free(struct steer_reservation *r, size_t n)
{
	for (size_t i = 0; r && i < n; i++) {
		free((char *)r[i].vf);
		free((char *)r[i].vm_namespace);
		free((char *)r[i].vm_name);
	}
	free(r);
}

/* The pending pods, fetched before steering starts when a reservation among
 * the offered VFs waits for its pod: fetching may wait for the API server,
 * and the plugin's state may change meanwhile (pending_pods' contract). */
static void prefetch_pods(struct steer_call *s, const V1beta1__PreferredAllocationRequest *req)
{
	for (size_t i = 0; i < req->n_container_requests && !s->pods_fetched && s->pl->hooks.reservations; i++) {
		const V1beta1__ContainerPreferredAllocationRequest *cr = req->container_requests[i];
		struct steer_reservation *res = calloc(cr->n_available_deviceids + 1, sizeof(*res));
		size_t n = res ? s->pl->hooks.reservations(s->pl->hooks.ctx, cr->available_deviceids,
							   cr->n_available_deviceids, res) : 0;
		bool pending = false;

		for (size_t k = 0; k < n; k++)
			pending |= res[k].pending;
		steer_reservations_free(res, n);
		if (pending)
			fetch_pods(s);
	}
}

static void answer_preferred(struct dp_call *c, ProtobufCMessage *msg)
{
	struct steer_call s = {.pl = c->plugin};
	V1beta1__PreferredAllocationResponse *resp;
	struct arena a = {0};
	char *error = NULL;
	int code;

	if (s.pl->hooks.settle)
		s.pl->hooks.settle(s.pl->hooks.ctx, s.pl->pool.cfg.resource_name);
	prefetch_pods(&s, (const V1beta1__PreferredAllocationRequest *)msg);
	if (s.pl->hooks.held_devices &&
	    s.pl->hooks.held_devices(s.pl->hooks.ctx, s.pl->pool.cfg.resource_name, &s.held, &s.held_by, &s.nheld) < 0)
		s.nheld = 0;
	code = plugin_preferred(&c->plugin->pool, (const V1beta1__PreferredAllocationRequest *)msg, steer_container, &s,
				&a, &resp, &error);

	if (code) {
		log_warn("preferred_allocation_refused", "resource=%s reason=\"%s\"", c->plugin->pool.cfg.resource_name,
			 error ? error : "?");
		finish_unary(c, (grpc_status_code)code, error, NULL);
	} else {
		finish_unary(c, GRPC_STATUS_OK, NULL, &resp->base);
	}
	kube_pods_free(s.pods, s.npods);
	xevf_strv_free(s.held, s.nheld);
	xevf_strv_free(s.held_by, s.nheld);
	free(error);
	arena_free(&a);
}

static void answer_unary(struct dp_call *c)
{
	const ProtobufCMessageDescriptor *desc = dp_methods[c->method].request;
	ProtobufCMessage *req = rpc_unpack(desc, c->payload);

	if (!req) {
		log_warn("bad_request", "resource=%s method=%s reason=\"payload is not a valid %s\"",
			 c->plugin->pool.cfg.resource_name, dp_methods[c->method].name, desc->name);
		finish_unary(c, GRPC_STATUS_INVALID_ARGUMENT, "request payload could not be decoded", NULL);
		return;
	}
	dp_methods[c->method].answer(c, req);
	protobuf_c_message_free_unpacked(req, NULL);
}

/* ---- requests ---- */

static void on_request(struct dp_call *c, bool ok)
{
	struct plugin *pl = c->plugin;

	c->pending--;
	if (!ok) {
		/* The server is shutting down: no call arrived. */
		call_free(c);
		return;
	}
	if (pl->state == SERVER_SERVING)
		request_call(pl, c->method);
	if (c->method == M_UNKNOWN)
		finish_unary(c, GRPC_STATUS_UNIMPLEMENTED, "the v1beta1 device plugin has no such method", NULL);
	else if (c->method == M_LIST_AND_WATCH)
		start_stream(c);
	else
		answer_unary(c);
}

static void request_call(struct plugin *pl, enum dp_method m)
{
	struct dp_call *c = calloc(1, sizeof(*c));
	grpc_call_error e;

	if (!c) {
		log_error("out_of_memory", "resource=%s method=%s", pl->pool.cfg.resource_name, method_name(m));
		return;
	}
	c->plugin = pl;
	c->method = m;
	c->request_tag = (struct dp_tag){TAG_REQUEST, c};
	c->done_tag = (struct dp_tag){TAG_UNARY_DONE, c};
	c->send_tag = (struct dp_tag){TAG_STREAM_SEND, c};
	c->close_tag = (struct dp_tag){TAG_STREAM_CLOSE, c};
	grpc_metadata_array_init(&c->request_md);
	if (m == M_UNKNOWN) {
		grpc_call_details_init(&c->details);
		e = grpc_server_request_call(pl->server, &c->call, &c->details, &c->request_md, pl->cq, pl->cq,
					     &c->request_tag);
	} else {
		e = grpc_server_request_registered_call(pl->server, pl->methods[m], &c->call, &c->deadline,
							&c->request_md, &c->payload, pl->cq, pl->cq, &c->request_tag);
	}
	if (e != GRPC_CALL_OK) {
		log_error("grpc_request_failed", "resource=%s method=%s code=%d", pl->pool.cfg.resource_name, method_name(m),
			  (int)e);
		if (m == M_UNKNOWN)
			grpc_call_details_destroy(&c->details);
		grpc_metadata_array_destroy(&c->request_md);
		free(c);
		return;
	}
	c->pending = 1;
	pl->live_calls++;
}

bool dp_call_dispatch(struct dp_tag *tag, bool ok)
{
	struct dp_call *c = tag->obj;
	struct plugin *pl = c->plugin;

	switch ((enum dp_tag_kind)tag->kind) {
	case TAG_REQUEST:
		on_request(c, ok);
		break;
	case TAG_UNARY_DONE:
		if (--c->pending == 0)
			call_free(c);
		break;
	case TAG_STREAM_SEND:
		on_stream_event(c, false, ok);
		break;
	case TAG_STREAM_CLOSE:
		on_stream_event(c, true, ok);
		break;
	default:
		break;
	}
	/* a draining server's last call gone: it can be reaped */
	return pl->state == SERVER_DRAINING && pl->live_calls == 0;
}

/* ---- the server ---- */

int dp_file_id_of(const char *path, struct dp_file_id *id)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	*id = (struct dp_file_id){st.st_dev, st.st_ino, st.st_ctim};
	return 0;
}

bool dp_file_id_eq(const struct dp_file_id *a, const struct dp_file_id *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->ctime.tv_sec == b->ctime.tv_sec &&
	       a->ctime.tv_nsec == b->ctime.tv_nsec;
}

int dp_server_start(struct plugin *pl)
{
	char *address = NULL;
	grpc_server_credentials *creds;
	int port;

	if (unlink(pl->socket_path) < 0 && errno != ENOENT)
		log_warn("socket_unlink_failed", "resource=%s path=%s err=\"%s\"", pl->pool.cfg.resource_name,
			 pl->socket_path, strerror(errno));
	if (xevf_asprintf(&address, "unix:%s", pl->socket_path))
		return -ENOMEM;
	pl->server = grpc_server_create(NULL, NULL);
	grpc_server_register_completion_queue(pl->server, pl->cq, NULL);
	for (int m = 0; m < M_COUNT; m++)
		pl->methods[m] = grpc_server_register_method(pl->server, dp_methods[m].path, NULL,
							     GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	creds = grpc_insecure_server_credentials_create();
	port = grpc_server_add_http2_port(pl->server, address, creds);
	grpc_server_credentials_release(creds);
	free(address);
	if (port == 0) {
		/* said once; retries that fail the same way are not news */
		xlog(pl->serve_failures++ ? XLOG_DEBUG : XLOG_ERROR, "serve_failed", "resource=%s socket=%s reason=\"%s\"",
		     pl->pool.cfg.resource_name, pl->socket_path,
		     strlen(pl->socket_path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)
			     ? "the socket's path is longer than a unix socket's 107 bytes: use a shorter plugin directory"
			     : "cannot listen; is the plugin directory writable and on a local file system?");
		grpc_server_destroy(pl->server);
		pl->server = NULL;
		return -EIO;
	}
	/* only root (the kubelet) may talk to it, whatever the umask says */
	if (chmod(pl->socket_path, 0600) < 0)
		log_warn("socket_mode_failed", "resource=%s socket=%s err=\"%s\"", pl->pool.cfg.resource_name,
			 pl->socket_path, strerror(errno));
	grpc_server_start(pl->server);
	pl->serve_failures = 0;
	pl->state = SERVER_SERVING;
	pl->shutdown_notified = false;
	pl->serves++;
	if (dp_file_id_of(pl->socket_path, &pl->socket_id))
		memset(&pl->socket_id, 0, sizeof(pl->socket_id));
	for (int m = 0; m <= M_UNKNOWN; m++)
		request_call(pl, (enum dp_method)m);
	log_info("serving", "resource=%s socket=%s", pl->pool.cfg.resource_name, pl->socket_path);
	return 0;
}

void dp_server_stop(struct plugin *pl, const char *why)
{
	if (pl->state != SERVER_SERVING)
		return;
	log_info("server_stopping", "resource=%s socket=%s reason=\"%s\"", pl->pool.cfg.resource_name, pl->socket_path,
		 why);
	pl->state = SERVER_DRAINING;
	pl->shutdown_tag = (struct dp_tag){TAG_SHUTDOWN, pl};
	grpc_server_shutdown_and_notify(pl->server, pl->cq, &pl->shutdown_tag);
	grpc_server_cancel_all_calls(pl->server);
	pl->reg.registered = false;
}

bool plugin_reap(struct plugin *pl)
{
	struct dp_file_id id = {0};

	if (pl->state == SERVER_DRAINING && pl->shutdown_notified && pl->live_calls == 0) {
		grpc_server_destroy(pl->server);
		pl->server = NULL;
		pl->state = SERVER_STOPPED;
		/* Remove our socket, but never one that somebody else made since. */
		if (dp_file_id_of(pl->socket_path, &id) == 0 && dp_file_id_eq(&id, &pl->socket_id))
			unlink(pl->socket_path);
		log_info("server_stopped", "resource=%s", pl->pool.cfg.resource_name);
	}
	return pl->state == SERVER_STOPPED && !pl->reg.in_flight;
}
