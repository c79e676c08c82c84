#include "agent.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../driver/xevf_discovery.h"
#include "../driver/xevf_uevent.h"
#include "../driver/xevf_vfio_driver.h"
#include "http.h"
#include "kube.h"
#include "log.h"
#include "metrics.h"
#include "migration.h"
#include "prepare.h"
#include "rpc.h"
#include "plugin_logic.h"
#include "pool.h"

#define TICK_MS 100
#define REGISTER_TIMEOUT_MS 5000
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define API_VERSION "v1beta1"
#define NUMVFS_RETRY_MS 30000

enum method { M_OPTIONS, M_LIST_AND_WATCH, M_PREFERRED, M_ALLOCATE, M_PRE_START, M_COUNT };

static const char *const method_paths[M_COUNT] = {
	"/v1beta1.DevicePlugin/GetDevicePluginOptions", "/v1beta1.DevicePlugin/ListAndWatch",
	"/v1beta1.DevicePlugin/GetPreferredAllocation", "/v1beta1.DevicePlugin/Allocate",
	"/v1beta1.DevicePlugin/PreStartContainer",
};

static const char *const method_names[M_COUNT] = {
	"GetDevicePluginOptions", "ListAndWatch", "GetPreferredAllocation", "Allocate", "PreStartContainer",
};

/* Every completion-queue tag points at one of these; obj is the owner. */
enum tag_kind { TAG_REQUEST, TAG_UNARY_DONE, TAG_STREAM_SEND, TAG_STREAM_CLOSE, TAG_SHUTDOWN, TAG_REGISTER };
struct tag {
	enum tag_kind kind;
	void *obj;
};

struct plugin;

struct call {
	struct plugin *plugin;
	enum method method;
	struct tag request_tag, done_tag, send_tag, close_tag;
	grpc_call *call;
	gpr_timespec deadline;
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
	struct call *next_stream;
};

enum server_state { SERVER_STOPPED, SERVER_SERVING, SERVER_DRAINING };

struct registration {
	grpc_channel *channel;
	grpc_call *call;
	struct tag tag;
	grpc_byte_buffer *send, *recv;
	grpc_metadata_array initial_md, trailing_md;
	grpc_status_code status;
	grpc_slice details;
	bool in_flight;
	bool registered;
	ino_t attempt_ino;     /* kubelet.sock inode when the attempt started */
	ino_t registered_ino;  /* ... when the last attempt succeeded */
	int64_t next_attempt_ms;
	int backoff_ms;
	unsigned failures;
};

struct plugin {
	struct agent *agent;
	struct pool pool;
	char *socket_path;
	char *endpoint;          /* socket file name, as told to the kubelet */
	grpc_server *server;
	void *methods[M_COUNT];
	enum server_state state;
	struct tag shutdown_tag;
	bool shutdown_notified;
	int live_calls;          /* call objects, including pending requests */
	ino_t socket_ino;
	struct call *streams;    /* open ListAndWatch streams */
	struct registration reg;
	bool retired;            /* pool removed (reload) or agent stopping */
	struct plugin *next;
};

struct recent_allocation {
	char id[XEVF_PCI_ADDR_SIZE];
	int64_t at_ms;
};

struct agent {
	const struct cli_overrides *overrides;
	struct agent_config cfg;
	struct xevf_roots roots;
	struct preparer *preparer;
	uint64_t prepare_passes_seen;
	char **known_vfs;        /* every VF seen so far: a new one gets prepared */
	size_t nknown_vfs;
	bool known_seeded;       /* the first scan's VFs are not "new" */
	int64_t next_numvfs_retry_ms;
	struct recent_allocation *recent;
	size_t nrecent;
	int uevent_fd;
	grpc_completion_queue *cq;
	struct plugin *plugins;
	char *kubelet_socket;
	int64_t next_rescan_ms;
	char **notes;            /* discovery notes already reported */
	size_t nnotes;
	char *scan_error;        /* last discovery failure already reported */
	bool kubelet_missing_logged;
	bool stopping;
	bool status_dirty;       /* the published status and gauges need refreshing */
	struct http_server *http;
	struct migration *migration; /* NULL when the Migration service could not start */
	struct kube *kube;           /* NULL: no API server to tell pods apart */
};

static volatile sig_atomic_t got_term, got_hup;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		got_hup = 1;
	else
		got_term = 1;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static gpr_timespec deadline_in_ms(int64_t ms)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* ---- protobuf <-> gRPC byte buffers ------------------------------------- */

/* ---- calls ---------------------------------------------------------------- */

static void request_call(struct plugin *pl, enum method m);

static void call_free(struct call *c)
{
	struct plugin *pl = c->plugin;

	for (struct call **pp = &pl->streams; *pp; pp = &(*pp)->next_stream) {
		if (*pp == c) {
			*pp = c->next_stream;
			break;
		}
	}
	if (c->call)
		grpc_call_unref(c->call);
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

static void call_start_batch(struct call *c, const grpc_op *ops, size_t n, struct tag *tag)
{
	grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);

	if (e != GRPC_CALL_OK) {
		/* Only a bug of ours gets here (ops out of order); cancel so that the
		 * call ends rather than hangs. */
		log_error("grpc_batch_failed", "method=%s code=%d", method_names[c->method], (int)e);
		grpc_call_cancel(c->call, NULL);
		return;
	}
	c->pending++;
}

static void finish_unary(struct call *c, grpc_status_code status, const char *message,
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

static void stream_send(struct call *c)
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

static void push_lists(struct plugin *pl)
{
	for (struct call *c = pl->streams; c; c = c->next_stream)
		if (!c->sending && !c->closed && c->sent_generation != pl->pool.generation)
			stream_send(c);
}

static void start_stream(struct call *c)
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

/* Remembers what Allocate gave out, so that the preparer leaves those VFs
 * alone while their VM starts (before its QEMU holds the VFIO node). */
static void record_allocation(struct agent *ag, const V1beta1__AllocateRequest *req)
{
	int64_t now = now_ms();

	for (size_t c = 0; c < req->n_container_requests; c++)
		for (size_t i = 0; i < req->container_requests[c]->n_devices_ids; i++) {
			const char *id = req->container_requests[c]->devices_ids[i];
			struct recent_allocation *slot = NULL, *grown;
			for (size_t k = 0; k < ag->nrecent && !slot; k++)
				if (strcmp(ag->recent[k].id, id) == 0)
					slot = &ag->recent[k];
			if (!slot) {
				grown = realloc(ag->recent, (ag->nrecent + 1) * sizeof(*grown));
				if (!grown)
					return;
				ag->recent = grown;
				slot = &ag->recent[ag->nrecent++];
				/* ids were validated against the pool: canonical addresses */
				snprintf(slot->id, sizeof(slot->id), "%s", id);
			}
			slot->at_ms = now;
		}
}

/* Reservations for migrations steer the kubelet's choice: a VF reserved for a
 * target pod that has not got it yet is preferred (it must include it), and
 * other reserved VFs are left out while enough unreserved ones remain. The
 * request's arrays are replaced by arena copies (the strings stay the request's). */
struct steered {
	char **avail, **must;
	size_t navail, nmust;
};

/* The pending pods that want the pool's resource, fetched once per request. */
struct pod_view {
	bool fetched, ok;
	struct kube_pod *pods;
	size_t n;
};

/* Does a reservation waiting for its target pod go to this allocation? With
 * the API server: yes when a pod of the reservation's VM is among the pods
 * waiting on this node for the resource, no when only others wait. Without
 * it (or when it does not answer): yes, the next allocation is taken to be
 * the target pod's, which virt-controller creates right after Reserve. */
static bool offer_pending(struct agent *ag, const char *resource, const char *vf, const char *vm_ns,
			  const char *vm_name, struct pod_view *v)
{
	size_t targets = 0;

	if (!ag->kube)
		return true;
	if (!v->fetched) {
		char *error = NULL;
		v->fetched = true;
		v->ok = kube_pending_pods(ag->kube, resource, &v->pods, &v->n, &error) == 0;
		if (!v->ok)
			log_warn("kube_pods_unavailable", "api=%s reason=\"%s\" action=\"offering reserved VFs to the next "
				 "allocation\"", kube_api_url(ag->kube), error ? error : "?");
		free(error);
	}
	if (!v->ok || v->n == 0)
		return true;
	for (size_t i = 0; i < v->n; i++)
		if (kube_pod_runs_vm(&v->pods[i], vm_ns, vm_name)) {
			if (!targets)
				log_info("reservation_preferred", "vf=%s pod=%s/%s", vf, v->pods[i].namespace_, v->pods[i].name);
			targets++;
		}
	if (targets)
		return true;
	log_info("reservation_withheld", "vf=%s vm=%s/%s pending_pods=%zu first=%s/%s reason=\"not the migration's "
		 "target pod\"", vf, vm_ns ? vm_ns : "", vm_name ? vm_name : "", v->n, v->pods[0].namespace_, v->pods[0].name);
	return false;
}

static struct steered *steer_reservations(struct agent *ag, const char *resource, V1beta1__PreferredAllocationRequest *req,
					  struct arena *a)
{
	struct migration *m = ag->migration;
	struct pod_view view = {0};
	struct steered *saved;

	if (!m || !req->n_container_requests)
		return NULL;
	saved = arena_alloc(a, req->n_container_requests * sizeof(*saved));
	if (!saved)
		return NULL;
	for (size_t c = 0; c < req->n_container_requests; c++) {
		V1beta1__ContainerPreferredAllocationRequest *cr = req->container_requests[c];
		saved[c] = (struct steered){cr->available_deviceids, cr->must_include_deviceids,
					    cr->n_available_deviceids, cr->n_must_include_deviceids};
		size_t n = cr->n_available_deviceids, nfree = 0, nmust = cr->n_must_include_deviceids;
		char **avail = arena_alloc(a, (n + 1) * sizeof(char *));
		char **reserved = arena_alloc(a, (n + 1) * sizeof(char *));
		char **must = arena_alloc(a, (nmust + n + 1) * sizeof(char *));
		size_t nres = 0;
		if (!avail || !reserved || !must)
			continue;
		if (nmust)
			memcpy(must, cr->must_include_deviceids, nmust * sizeof(char *));
		for (size_t i = 0; i < n; i++) {
			bool pending = false;
			char *id = cr->available_deviceids[i], *vm_ns = NULL, *vm_name = NULL;
			if (!migration_reserved_for(m, id, &pending, &vm_ns, &vm_name)) {
				avail[nfree++] = id;
				continue;
			}
			reserved[nres++] = id;
			bool already = false;
			for (size_t k = 0; k < nmust; k++)
				already |= strcmp(must[k], id) == 0;
			if (pending && !already && nmust < (size_t)cr->allocation_size &&
			    offer_pending(ag, resource, id, vm_ns, vm_name, &view)) {
				must[nmust++] = id;
				if (!ag->kube)
					log_info("reservation_preferred", "vf=%s", id);
			}
			free(vm_ns);
			free(vm_name);
		}
		/* reserved VFs only when the unreserved ones do not suffice */
		if (nfree + (nmust - cr->n_must_include_deviceids) < (size_t)cr->allocation_size)
			for (size_t i = 0; i < nres; i++)
				avail[nfree++] = reserved[i];
		else
			for (size_t i = 0; i < nmust; i++) {
				bool listed = false;
				for (size_t k = 0; k < nfree; k++)
					listed |= avail[k] == must[i] || strcmp(avail[k], must[i]) == 0;
				if (!listed)
					avail[nfree++] = must[i];
			}
		cr->available_deviceids = avail;
		cr->n_available_deviceids = nfree;
		cr->must_include_deviceids = must;
		cr->n_must_include_deviceids = nmust;
	}
	kube_pods_free(view.pods, view.n);
	return saved;
}

/* Puts the request's own arrays back, so that freeing it frees what it owns. */
static void unsteer(V1beta1__PreferredAllocationRequest *req, const struct steered *saved)
{
	for (size_t c = 0; saved && c < req->n_container_requests; c++) {
		V1beta1__ContainerPreferredAllocationRequest *cr = req->container_requests[c];
		cr->available_deviceids = saved[c].avail;
		cr->n_available_deviceids = saved[c].navail;
		cr->must_include_deviceids = saved[c].must;
		cr->n_must_include_deviceids = saved[c].nmust;
	}
}

static void handle_unary(struct call *c)
{
	struct pool *pool = &c->plugin->pool;
	struct arena a = {0};
	char *error = NULL;
	const char *res = pool->cfg.resource_name;
	ProtobufCMessage *req = NULL;
	const ProtobufCMessageDescriptor *desc;
	int64_t started = now_ms();

	switch (c->method) {
	case M_OPTIONS:
		desc = &v1beta1__empty__descriptor;
		break;
	case M_PREFERRED:
		desc = &v1beta1__preferred_allocation_request__descriptor;
		break;
	case M_ALLOCATE:
		desc = &v1beta1__allocate_request__descriptor;
		break;
	case M_PRE_START:
		desc = &v1beta1__pre_start_container_request__descriptor;
		break;
	default:
		finish_unary(c, GRPC_STATUS_UNIMPLEMENTED, "not a unary method", NULL);
		return;
	}
	req = rpc_unpack(desc, c->payload);
	if (!req) {
		log_warn("bad_request", "resource=%s method=%s reason=\"payload is not a valid %s\"", res,
			 method_names[c->method], desc->name);
		finish_unary(c, GRPC_STATUS_INVALID_ARGUMENT, "request payload could not be decoded", NULL);
		return;
	}
	if (c->method == M_OPTIONS) {
		V1beta1__DevicePluginOptions opts = V1BETA1__DEVICE_PLUGIN_OPTIONS__INIT;
		opts.pre_start_required = 0;
		opts.get_preferred_allocation_available = 1;
		finish_unary(c, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&opts);
	} else if (c->method == M_PRE_START) {
		V1beta1__PreStartContainerResponse resp = V1BETA1__PRE_START_CONTAINER_RESPONSE__INIT;
		log_debug("pre_start_container", "resource=%s devices=%zu", res,
			  ((V1beta1__PreStartContainerRequest *)req)->n_devices_ids);
		finish_unary(c, GRPC_STATUS_OK, NULL, &resp.base);
	} else if (c->method == M_ALLOCATE) {
		V1beta1__AllocateResponse *resp;
		int code = plugin_allocate(pool, (V1beta1__AllocateRequest *)req, &a, &resp, &error);
		if (code) {
			metrics_allocate_refused(res);
			log_warn("allocate_refused", "resource=%s reason=\"%s\"", res, error ? error : "?");
			finish_unary(c, (grpc_status_code)code, error, NULL);
		} else {
			size_t ndevices = 0;
			record_allocation(c->plugin->agent, (V1beta1__AllocateRequest *)req);
			for (size_t i = 0; i < ((V1beta1__AllocateRequest *)req)->n_container_requests; i++)
				for (size_t k = 0; k < ((V1beta1__AllocateRequest *)req)->container_requests[i]->n_devices_ids; k++)
					migration_claim(c->plugin->agent->migration,
							((V1beta1__AllocateRequest *)req)->container_requests[i]->devices_ids[k]);
			for (size_t i = 0; i < ((V1beta1__AllocateRequest *)req)->n_container_requests; i++)
				ndevices += ((V1beta1__AllocateRequest *)req)->container_requests[i]->n_devices_ids;
			metrics_allocated(res, resp->n_container_responses, ndevices, (double)(now_ms() - started) / 1000.0);
			c->plugin->agent->status_dirty = true;
			for (size_t i = 0; i < resp->n_container_responses; i++)
				log_info("allocated", "resource=%s container=%zu %s=%s devices=%zu latency_ms=%lld", res, i,
					 pool->env_name,
					 resp->container_responses[i]->n_envs ? resp->container_responses[i]->envs[0]->value : "",
					 resp->container_responses[i]->n_devices, (long long)(now_ms() - started));
			finish_unary(c, GRPC_STATUS_OK, NULL, &resp->base);
		}
	} else {
		V1beta1__PreferredAllocationResponse *resp;
		struct steered *saved = steer_reservations(c->plugin->agent, res, (V1beta1__PreferredAllocationRequest *)req, &a);
		int code = plugin_preferred(pool, (V1beta1__PreferredAllocationRequest *)req, &a, &resp, &error);
		unsteer((V1beta1__PreferredAllocationRequest *)req, saved);
		if (code) {
			log_warn("preferred_allocation_refused", "resource=%s reason=\"%s\"", res, error ? error : "?");
			finish_unary(c, (grpc_status_code)code, error, NULL);
		} else {
			finish_unary(c, GRPC_STATUS_OK, NULL, &resp->base);
		}
	}
	free(error);
	arena_free(&a);
	protobuf_c_message_free_unpacked(req, NULL);
}

static void on_request(struct call *c, bool ok)
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
	if (c->method == M_LIST_AND_WATCH)
		start_stream(c);
	else
		handle_unary(c);
}

static void on_stream_event(struct call *c, bool is_close, bool ok)
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

static void request_call(struct plugin *pl, enum method m)
{
	struct call *c = calloc(1, sizeof(*c));
	grpc_call_error e;

	if (!c) {
		log_error("out_of_memory", "resource=%s method=%s", pl->pool.cfg.resource_name, method_names[m]);
		return;
	}
	c->plugin = pl;
	c->method = m;
	c->request_tag = (struct tag){TAG_REQUEST, c};
	c->done_tag = (struct tag){TAG_UNARY_DONE, c};
	c->send_tag = (struct tag){TAG_STREAM_SEND, c};
	c->close_tag = (struct tag){TAG_STREAM_CLOSE, c};
	grpc_metadata_array_init(&c->request_md);
	e = grpc_server_request_registered_call(pl->server, pl->methods[m], &c->call, &c->deadline,
						&c->request_md, &c->payload, pl->agent->cq, pl->agent->cq,
						&c->request_tag);
	if (e != GRPC_CALL_OK) {
		log_error("grpc_request_failed", "resource=%s method=%s code=%d", pl->pool.cfg.resource_name,
			  method_names[m], (int)e);
		grpc_metadata_array_destroy(&c->request_md);
		free(c);
		return;
	}
	c->pending = 1;
	pl->live_calls++;
}

/* ---- plugin servers --------------------------------------------------------- */

static int stat_ino(const char *path, ino_t *ino)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	*ino = st.st_ino;
	return 0;
}

static int server_start(struct plugin *pl)
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
	grpc_server_register_completion_queue(pl->server, pl->agent->cq, NULL);
	for (int m = 0; m < M_COUNT; m++)
		pl->methods[m] = grpc_server_register_method(pl->server, method_paths[m], NULL,
							     GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	creds = grpc_insecure_server_credentials_create();
	port = grpc_server_add_http2_port(pl->server, address, creds);
	grpc_server_credentials_release(creds);
	free(address);
	if (port == 0) {
		log_error("serve_failed", "resource=%s socket=%s reason=\"cannot listen; is the plugin directory "
			  "writable and on a local file system?\"", pl->pool.cfg.resource_name, pl->socket_path);
		grpc_server_destroy(pl->server);
		pl->server = NULL;
		return -EIO;
	}
	grpc_server_start(pl->server);
	pl->state = SERVER_SERVING;
	pl->shutdown_notified = false;
	if (stat_ino(pl->socket_path, &pl->socket_ino))
		pl->socket_ino = 0;
	for (int m = 0; m < M_COUNT; m++)
		request_call(pl, (enum method)m);
	log_info("serving", "resource=%s socket=%s", pl->pool.cfg.resource_name, pl->socket_path);
	return 0;
}

static void server_stop(struct plugin *pl, const char *why)
{
	if (pl->state != SERVER_SERVING)
		return;
	log_info("server_stopping", "resource=%s socket=%s reason=\"%s\"", pl->pool.cfg.resource_name,
		 pl->socket_path, why);
	pl->state = SERVER_DRAINING;
	pl->agent->status_dirty = true;
	pl->shutdown_tag = (struct tag){TAG_SHUTDOWN, pl};
	grpc_server_shutdown_and_notify(pl->server, pl->agent->cq, &pl->shutdown_tag);
	grpc_server_cancel_all_calls(pl->server);
	pl->reg.registered = false;
}

/* Destroys a drained server; true when the plugin has no server left. */
static bool server_reap(struct plugin *pl)
{
	ino_t ino = 0;

	if (pl->state == SERVER_DRAINING && pl->shutdown_notified && pl->live_calls == 0) {
		grpc_server_destroy(pl->server);
		pl->server = NULL;
		pl->state = SERVER_STOPPED;
		/* Remove our socket, but never one that somebody else made since. */
		if (stat_ino(pl->socket_path, &ino) == 0 && ino == pl->socket_ino)
			unlink(pl->socket_path);
		log_info("server_stopped", "resource=%s", pl->pool.cfg.resource_name);
	}
	return pl->state == SERVER_STOPPED;
}

/* ---- kubelet registration ---------------------------------------------------- */

static void registration_cleanup(struct registration *r)
{
	if (r->call)
		grpc_call_unref(r->call);
	if (r->channel)
		grpc_channel_destroy(r->channel);
	if (r->send)
		grpc_byte_buffer_destroy(r->send);
	if (r->recv)
		grpc_byte_buffer_destroy(r->recv);
	grpc_metadata_array_destroy(&r->initial_md);
	grpc_metadata_array_destroy(&r->trailing_md);
	grpc_slice_unref(r->details);
	r->call = NULL;
	r->channel = NULL;
	r->send = r->recv = NULL;
	r->in_flight = false;
}

static void register_start(struct plugin *pl, ino_t kubelet_ino)
{
	struct registration *r = &pl->reg;
	struct agent *ag = pl->agent;
	V1beta1__RegisterRequest req = V1BETA1__REGISTER_REQUEST__INIT;
	V1beta1__DevicePluginOptions opts = V1BETA1__DEVICE_PLUGIN_OPTIONS__INIT;
	grpc_channel_credentials *creds;
	char *target = NULL;
	grpc_slice method;
	grpc_op ops[6];

	if (xevf_asprintf(&target, "unix:%s", ag->kubelet_socket))
		return;
	opts.get_preferred_allocation_available = 1;
	req.version = (char *)API_VERSION;
	req.endpoint = pl->endpoint;
	req.resource_name = pl->pool.cfg.resource_name;
	req.options = &opts;

	creds = grpc_insecure_credentials_create();
	r->channel = grpc_channel_create(target, creds, NULL);
	grpc_channel_credentials_release(creds);
	free(target);
	method = grpc_slice_from_static_string("/v1beta1.Registration/Register");
	r->call = grpc_channel_create_call(r->channel, NULL, GRPC_PROPAGATE_DEFAULTS, ag->cq, method, NULL,
					   deadline_in_ms(REGISTER_TIMEOUT_MS), NULL);
	r->send = rpc_pack((const ProtobufCMessage *)&req);
	grpc_metadata_array_init(&r->initial_md);
	grpc_metadata_array_init(&r->trailing_md);
	r->details = grpc_empty_slice();
	r->tag = (struct tag){TAG_REGISTER, pl};
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = r->send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &r->initial_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &r->recv;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &r->trailing_md;
	ops[5].data.recv_status_on_client.status = &r->status;
	ops[5].data.recv_status_on_client.status_details = &r->details;
	r->attempt_ino = kubelet_ino;
	if (grpc_call_start_batch(r->call, ops, 6, &r->tag, NULL) != GRPC_CALL_OK) {
		log_error("register_failed", "resource=%s reason=\"could not start the call\"", pl->pool.cfg.resource_name);
		registration_cleanup(r);
		r->next_attempt_ms = now_ms() + BACKOFF_MAX_MS;
		return;
	}
	r->in_flight = true;
	log_debug("registering", "resource=%s kubelet=%s endpoint=%s", pl->pool.cfg.resource_name, ag->kubelet_socket,
		  pl->endpoint);
}

static void on_register_done(struct plugin *pl, bool ok)
{
	struct registration *r = &pl->reg;
	const char *res = pl->pool.cfg.resource_name;

	if (ok && r->status == GRPC_STATUS_OK && pl->state == SERVER_SERVING) {
		r->registered = true;
		r->registered_ino = r->attempt_ino;
		r->backoff_ms = 0;
		r->failures = 0;
		metrics_registration(pl->pool.cfg.resource_name, true);
		pl->agent->status_dirty = true;
		log_info("registered", "resource=%s kubelet=%s endpoint=%s version=%s", res, pl->agent->kubelet_socket,
			 pl->endpoint, API_VERSION);
	} else {
		char *details = grpc_slice_to_c_string(r->details);
		r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : BACKOFF_MIN_MS;
		if (r->backoff_ms > BACKOFF_MAX_MS)
			r->backoff_ms = BACKOFF_MAX_MS;
		r->next_attempt_ms = now_ms() + r->backoff_ms;
		r->failures++;
		metrics_registration(pl->pool.cfg.resource_name, false);
		/* The kubelet refuses for good reasons (resource name taken, bad
		 * version): say it at error level; a kubelet not answering yet is normal
		 * at start-up, so repeat it only at growing intervals. */
		if (r->status == GRPC_STATUS_UNAVAILABLE || r->status == GRPC_STATUS_DEADLINE_EXCEEDED)
			log_warn("register_failed", "resource=%s kubelet=%s status=%d details=\"%s\" retry_in_ms=%d attempt=%u",
				 res, pl->agent->kubelet_socket, (int)r->status, details ? details : "", r->backoff_ms,
				 r->failures);
		else
			log_error("register_failed", "resource=%s kubelet=%s status=%d details=\"%s\" retry_in_ms=%d attempt=%u",
				  res, pl->agent->kubelet_socket, (int)r->status, details ? details : "", r->backoff_ms,
				  r->failures);
		gpr_free(details);
	}
	registration_cleanup(r);
}

/* ---- plugins ------------------------------------------------------------------ */

static struct plugin *plugin_new(struct agent *ag, const struct pool_config *cfg)
{
	struct plugin *pl = calloc(1, sizeof(*pl));

	if (!pl)
		return NULL;
	pl->agent = ag;
	if (pool_init(&pl->pool, cfg)) {
		free(pl);
		return NULL;
	}
	pl->endpoint = strdup(pl->pool.socket_name);
	if (!pl->endpoint || xevf_asprintf(&pl->socket_path, "%s/%s", ag->cfg.plugin_dir, pl->endpoint)) {
		pool_destroy(&pl->pool);
		free(pl->endpoint);
		free(pl);
		return NULL;
	}
	pl->reg.details = grpc_empty_slice();
	return pl;
}

static void plugin_free(struct plugin *pl)
{
	metrics_forget_pool(pl->pool.cfg.resource_name);
	pool_destroy(&pl->pool);
	free(pl->socket_path);
	free(pl->endpoint);
	free(pl);
}

static void plugin_retire(struct plugin *pl, const char *why)
{
	pl->retired = true;
	server_stop(pl, why);
	if (pl->reg.in_flight)
		grpc_call_cancel(pl->reg.call, NULL);
}

/* Per tick: keep our socket alive and registered with the current kubelet. */
static void plugin_tick(struct plugin *pl, int64_t now)
{
	struct agent *ag = pl->agent;
	struct registration *r = &pl->reg;
	ino_t ino = 0;

	if (pl->retired)
		return;
	if (pl->state == SERVER_SERVING &&
	    (stat_ino(pl->socket_path, &ino) != 0 || ino != pl->socket_ino)) {
		/* The kubelet removes every plugin socket when it restarts; so may an
		 * operator. Stop, drain, then serve on a fresh socket (the old server
		 * must be gone first: gRPC unlinks its socket path on shutdown). */
		log_warn("socket_removed", "resource=%s socket=%s action=\"re-creating it\"", pl->pool.cfg.resource_name,
			 pl->socket_path);
		server_stop(pl, "socket removed");
	}
	if (pl->state == SERVER_STOPPED && !ag->stopping) {
		if (now >= r->next_attempt_ms && server_start(pl) != 0)
			r->next_attempt_ms = now + BACKOFF_MAX_MS / 10;
		return;
	}
	if (pl->state != SERVER_SERVING || r->in_flight)
		return;
	if (stat_ino(ag->kubelet_socket, &ino) != 0)
		return; /* reported once by the agent tick */
	if (r->registered && ino == r->registered_ino)
		return;
	if (r->registered && ino != r->registered_ino) {
		log_info("kubelet_restarted", "resource=%s kubelet=%s action=\"registering again\"",
			 pl->pool.cfg.resource_name, ag->kubelet_socket);
		r->registered = false;
		r->backoff_ms = 0;
		r->next_attempt_ms = 0;
	}
	if (!r->registered && r->attempt_ino != ino && r->next_attempt_ms > now) {
		/* A new kubelet socket appeared since the last failed attempt: try now. */
		r->next_attempt_ms = now;
	}
	if (now >= r->next_attempt_ms)
		register_start(pl, ino);
}

/* ---- discovery ------------------------------------------------------------------ */

static bool note_known(char **notes, size_t n, const char *line)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(notes[i], line) == 0)
			return true;
	return false;
}

static void report_notes(struct agent *ag, struct xevf_host *host)
{
	for (size_t i = 0; i < host->nnotes; i++)
		if (!note_known(ag->notes, ag->nnotes, host->notes[i]))
			log_warn("discovery_problem", "detail=\"%s\"", host->notes[i]);
	for (size_t i = 0; i < ag->nnotes; i++)
		if (!note_known(host->notes, host->nnotes, ag->notes[i]))
			log_info("discovery_problem_gone", "detail=\"%s\"", ag->notes[i]);
	for (size_t i = 0; i < ag->nnotes; i++)
		free(ag->notes[i]);
	free(ag->notes);
	/* take over the host's notes */
	ag->notes = host->notes;
	ag->nnotes = host->nnotes;
	host->notes = NULL;
	host->nnotes = 0;
}

static void request_prepare(struct agent *ag, const char *why)
{
	char **recent = calloc(ag->nrecent + 1, sizeof(char *));
	size_t n = 0;
	int64_t now = now_ms();

	if (!recent)
		return;
	for (size_t i = 0; i < ag->nrecent; i++)
		if (now - ag->recent[i].at_ms < PREPARE_ALLOCATION_GRACE_MS)
			recent[n++] = ag->recent[i].id;
	log_debug("prepare_requested", "reason=\"%s\" recent_allocations=%zu", why, n);
	preparer_request(ag->preparer, &ag->cfg, recent, n);
	free(recent);
}

/* New VFs get prepared; a PF whose VF count drifted from numVFs is retried
 * now and then (the kernel may have refused, e.g. a VF was busy). */
static void check_prepare_needed(struct agent *ag, const struct xevf_host *host)
{
	bool fresh = false, drift = false;

	for (size_t i = 0; i < host->npfs; i++) {
		const struct xevf_pf *pf = &host->pfs[i];
		for (size_t j = 0; j < pf->nvfs; j++) {
			char **grown;
			if (xevf_strv_has(ag->known_vfs, ag->nknown_vfs, pf->vfs[j].addr))
				continue;
			fresh = true;
			grown = realloc(ag->known_vfs, (ag->nknown_vfs + 1) * sizeof(*grown));
			if (!grown)
				break;
			ag->known_vfs = grown;
			if ((ag->known_vfs[ag->nknown_vfs] = strdup(pf->vfs[j].addr)))
				ag->nknown_vfs++;
		}
		for (size_t p = 0; p < ag->cfg.npools && !drift; p++) {
			const struct pool_config *pc = &ag->cfg.pools[p];
			if (pc->num_vfs >= 0 && pf->num_vfs != pc->num_vfs &&
			    (!pc->selector.n_pf_addresses ||
			     xevf_strv_has(pc->selector.pf_addresses, pc->selector.n_pf_addresses, pf->addr)))
				drift = true;
		}
	}
	if (!ag->known_seeded) {
		/* the start-up pass has just prepared these */
		ag->known_seeded = true;
		fresh = false;
	}
	if (fresh) {
		request_prepare(ag, "new VFs");
	} else if (drift && now_ms() >= ag->next_numvfs_retry_ms) {
		ag->next_numvfs_retry_ms = now_ms() + NUMVFS_RETRY_MS;
		request_prepare(ag, "a PF's VF count differs from numVFs");
	}
}

static bool recently_allocated(const struct agent *ag, const char *id);

/* The Migration service's view of the VFs: which pool serves each, which a container has. */
static void feed_migration(struct agent *ag, const struct xevf_host *host)
{
	size_t total = 0, n = 0;
	struct migration_vf *vfs;

	if (!ag->migration)
		return;
	for (size_t i = 0; i < host->npfs; i++)
		total += host->pfs[i].nvfs;
	vfs = calloc(total + 1, sizeof(*vfs));
	if (!vfs)
		return;
	for (size_t i = 0; i < host->npfs; i++)
		for (size_t k = 0; k < host->pfs[i].nvfs; k++) {
			const struct xevf_vf *vf = &host->pfs[i].vfs[k];
			struct migration_vf *mv = &vfs[n++];
			mv->vf = vf;
			mv->pf = &host->pfs[i];
			mv->busy = recently_allocated(ag, vf->addr);
			for (struct plugin *pl = ag->plugins; pl && !mv->resource; pl = pl->next)
				if (!pl->retired && pool_find(&pl->pool, vf->addr))
					mv->resource = pl->pool.cfg.resource_name;
		}
	migration_update(ag->migration, vfs, n);
	free(vfs);
}

static void rescan(struct agent *ag)
{
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_host *host = NULL;
	struct xevf_scan_opts opts = {0};
	struct prepare_note *notes = NULL;
	size_t total = 0, nnotes = 0;
	bool *taken;
	int rc;

	config_pf_addresses(&ag->cfg, (const char ***)&opts.extra_pfs, &opts.n_extra_pfs);
	rc = xevf_discover(&ag->roots, &opts, &host, &err);
	free((void *)opts.extra_pfs);
	if (rc) {
		if (!ag->scan_error || strcmp(ag->scan_error, xevf_err_msg(&err)) != 0) {
			log_error("discovery_failed", "reason=\"%s\"", xevf_err_msg(&err));
			free(ag->scan_error);
			ag->scan_error = strdup(xevf_err_msg(&err));
		}
		xevf_err_clear(&err);
		return;
	}
	if (ag->scan_error) {
		log_info("discovery_recovered", "pfs=%zu", host->npfs);
		free(ag->scan_error);
		ag->scan_error = NULL;
	}
	report_notes(ag, host);
	for (size_t i = 0; i < host->npfs; i++) {
		total += host->pfs[i].nvfs;
		if (!host->pfs[i].provisioning_exposed && !ag->stopping)
			log_debug("provisioning_not_exposed", "pf=%s", host->pfs[i].addr);
	}
	preparer_notes(ag->preparer, &notes, &nnotes);
	/* An allocation record belongs to a VF object; once the VF is gone (VFs
	 * re-created), the record no longer protects anything. */
	for (size_t i = 0; i < ag->nrecent;) {
		if (!xevf_host_find_vf(host, ag->recent[i].id))
			ag->recent[i] = ag->recent[--ag->nrecent];
		else
			i++;
	}
	taken = calloc(total + 1, sizeof(*taken));
	if (taken) {
		/* Pools in configuration order: a VF that several selectors match
		 * belongs to the first. */
		for (struct plugin *pl = ag->plugins; pl; pl = pl->next) {
			if (pl->retired)
				continue;
			if (pool_update(&pl->pool, host, taken, notes, nnotes))
				push_lists(pl);
		}
		free(taken);
	}
	prepare_notes_free(notes, nnotes);
	ag->status_dirty = true;
	feed_migration(ag, host);
	check_prepare_needed(ag, host);
	xevf_host_free(host);
}

/* ---- published state (metrics gauges, readiness, status) -------------------------------- */

static bool recently_allocated(const struct agent *ag, const char *id)
{
	int64_t now = now_ms();

	for (size_t i = 0; i < ag->nrecent; i++)
		if (strcmp(ag->recent[i].id, id) == 0 && now - ag->recent[i].at_ms < PREPARE_ALLOCATION_GRACE_MS)
			return true;
	return false;
}

static void publish(struct agent *ag)
{
	json_object *root = json_object_new_object(), *pools = json_object_new_array();

	ag->status_dirty = false;
	json_object_object_add(root, "version", json_object_new_string(XEVF_VERSION));
	json_object_object_add(root, "pluginDir", json_object_new_string(ag->cfg.plugin_dir));
	for (struct plugin *pl = ag->plugins; pl; pl = pl->next) {
		json_object *p, *devs;
		size_t healthy = 0;
		bool registered = pl->reg.registered && pl->state == SERVER_SERVING;

		if (pl->retired)
			continue;
		p = json_object_new_object();
		devs = json_object_new_array();
		for (size_t i = 0; i < pl->pool.ndevs; i++) {
			const struct pool_device *d = &pl->pool.devs[i];
			json_object *o = json_object_new_object();
			healthy += d->healthy;
			json_object_object_add(o, "id", json_object_new_string(d->id));
			json_object_object_add(o, "pf", json_object_new_string(d->pf));
			json_object_object_add(o, "numaNode", json_object_new_int(d->numa_node));
			json_object_object_add(o, "health", json_object_new_string(d->healthy ? HEALTHY : UNHEALTHY));
			json_object_object_add(o, "reason", d->reason ? json_object_new_string(d->reason) : NULL);
			json_object_object_add(o, "driver", d->driver ? json_object_new_string(d->driver) : NULL);
			json_object_object_add(o, "migratable", json_object_new_boolean(d->migratable));
			json_object_object_add(o, "allocatedRecently", json_object_new_boolean(recently_allocated(ag, d->id)));
			json_object_array_add(devs, o);
		}
		json_object_object_add(p, "resource", json_object_new_string(pl->pool.cfg.resource_name));
		json_object_object_add(p, "socket", json_object_new_string(pl->socket_path));
		json_object_object_add(p, "registered", json_object_new_boolean(registered));
		json_object_object_add(p, "allocations", json_object_new_int64((int64_t)pl->pool.allocations));
		json_object_object_add(p, "devices", devs);
		json_object_array_add(pools, p);
		metrics_set_pool(pl->pool.cfg.resource_name, healthy, pl->pool.ndevs - healthy, registered);
	}
	json_object_object_add(root, "pools", pools);
	metrics_set_status(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
	metrics_bind_failures(preparer_failures(ag->preparer));
}

/* ---- configuration ----------------------------------------------------------------- */

static int dup_override(char **field, const char *value)
{
	if (!value)
		return 0;
	free(*field);
	*field = strdup(value);
	return *field ? 0 : -ENOMEM;
}

int agent_build_config(const struct cli_overrides *o, struct agent_config *cfg, char **error)
{
	enum alloc_policy policy = ALLOC_PACK;
	enum log_level level;
	const char *why;

	memset(cfg, 0, sizeof(*cfg));
	if (o->allocation_policy && !alloc_policy_parse(o->allocation_policy, &policy))
		return xevf_msg_set(error, "--allocation-policy: '%s' is not pack or spread", o->allocation_policy);
	if (o->resource_name && !config_valid_resource_name(o->resource_name, &why))
		return xevf_msg_set(error, "--resource-name: '%s' is not a valid extended resource name: %s",
				 o->resource_name, why);
	if (o->config_path && config_load_file(o->config_path, cfg, error))
		return -1;
	if (dup_override(&cfg->plugin_dir, o->plugin_dir) || dup_override(&cfg->sysfs_root, o->sysfs_root) ||
	    dup_override(&cfg->dev_root, o->dev_root) || dup_override(&cfg->log_level, o->log_level) ||
	    dup_override(&cfg->modules_root, o->modules_root) || dup_override(&cfg->kernel_release, o->kernel_release) ||
	    dup_override(&cfg->proc_root, o->proc_root) || dup_override(&cfg->http_address, o->http_address) ||
	    dup_override(&cfg->status_socket, o->status_socket) ||
	    dup_override(&cfg->migration_socket, o->migration_socket) ||
	    dup_override(&cfg->migration_address, o->migration_address) ||
	    dup_override(&cfg->tls_ca, o->tls_ca) ||
	    dup_override(&cfg->tls_cert, o->tls_cert) ||
	    dup_override(&cfg->tls_key, o->tls_key) ||
	    dup_override(&cfg->state_dir, o->state_dir) ||
	    dup_override(&cfg->node_name, o->node_name) ||
	    dup_override(&cfg->vfio_sim, o->vfio_sim) || dup_override(&cfg->kube_api, o->kube_api) ||
	    dup_override(&cfg->kube_token_file, o->kube_token_file) || dup_override(&cfg->kube_ca_file, o->kube_ca_file))
		goto oom;
	if (o->http_port_set) {
		cfg->http_port = o->http_port;
		cfg->http_port_set = true;
	}
	if (o->rescan_interval_ms)
		cfg->rescan_interval_ms = o->rescan_interval_ms;
	if (o->resource_name && cfg->npools == 0) {
		cfg->pools = calloc(1, sizeof(*cfg->pools));
		if (!cfg->pools)
			goto oom;
		cfg->npools = 1;
		cfg->pools[0].resource_name = strdup(o->resource_name);
		if (!cfg->pools[0].resource_name)
			goto oom;
	}
	if (config_finish(cfg, error))
		goto fail;
	if (o->allocation_policy)
		for (size_t i = 0; i < cfg->npools; i++)
			cfg->pools[i].policy = policy;
	if (!log_level_parse(cfg->log_level, &level)) {
		xevf_msg_set(error, "logLevel: '%s' is not one of debug, info, warn, error", cfg->log_level);
		goto fail;
	}
	return 0;
oom:
	xevf_msg_set(error, "out of memory");
fail:
	config_free(cfg);
	return -1;
}

static void apply_settings(struct agent *ag)
{
	enum log_level lvl;

	if (log_level_parse(ag->cfg.log_level, &lvl))
		log_set_level(lvl);
	ag->roots.sysfs = ag->cfg.sysfs_root;
	ag->roots.dev = ag->cfg.dev_root;
	free(ag->kubelet_socket);
	if (xevf_asprintf(&ag->kubelet_socket, "%s/kubelet.sock", ag->cfg.plugin_dir))
		ag->kubelet_socket = NULL;
}

static struct plugin *find_plugin(struct agent *ag, const char *resource)
{
	for (struct plugin *pl = ag->plugins; pl; pl = pl->next)
		if (!pl->retired && strcmp(pl->pool.cfg.resource_name, resource) == 0)
			return pl;
	return NULL;
}

static void append_plugin(struct agent *ag, struct plugin *pl)
{
	struct plugin **pp = &ag->plugins;
	while (*pp)
		pp = &(*pp)->next;
	*pp = pl;
}

static void create_plugins(struct agent *ag)
{
	for (size_t i = 0; i < ag->cfg.npools; i++) {
		struct plugin *pl = plugin_new(ag, &ag->cfg.pools[i]);
		if (!pl) {
			log_error("out_of_memory", "resource=%s", ag->cfg.pools[i].resource_name);
			continue;
		}
		append_plugin(ag, pl);
	}
}

static void reload(struct agent *ag)
{
	struct agent_config fresh;
	char *error = NULL;
	bool dir_changed;

	if (agent_build_config(ag->overrides, &fresh, &error)) {
		log_error("reload_failed", "reason=\"%s\" action=\"keeping the running configuration\"",
			  error ? error : "?");
		free(error);
		return;
	}
	/* config_finish always sets plugin_dir */
	dir_changed = !fresh.plugin_dir || !ag->cfg.plugin_dir || strcmp(fresh.plugin_dir, ag->cfg.plugin_dir) != 0;
	/* Retire the pools that are gone (all of them when the plugin dir moved). */
	for (struct plugin *pl = ag->plugins; pl; pl = pl->next) {
		bool kept = false;
		for (size_t i = 0; i < fresh.npools && !kept && !dir_changed; i++)
			kept = strcmp(fresh.pools[i].resource_name, pl->pool.cfg.resource_name) == 0;
		if (!pl->retired && !kept)
			plugin_retire(pl, "removed from the configuration");
	}
	config_free(&ag->cfg);
	ag->cfg = fresh;
	apply_settings(ag);
	for (size_t i = 0; i < ag->cfg.npools; i++) {
		struct plugin *pl = find_plugin(ag, ag->cfg.pools[i].resource_name);
		if (pl) {
			struct pool_config copy;
			if (pool_config_copy(&copy, &ag->cfg.pools[i]) == 0) {
				pool_config_free(&pl->pool.cfg);
				pl->pool.cfg = copy;
			}
		} else if ((pl = plugin_new(ag, &ag->cfg.pools[i]))) {
			append_plugin(ag, pl);
		}
	}
	/* Pools must stay in configuration order for VF ownership. */
	{
		struct plugin *ordered = NULL, **tail = &ordered;
		for (size_t i = 0; i < ag->cfg.npools; i++) {
			for (struct plugin **pp = &ag->plugins; *pp; pp = &(*pp)->next) {
				if (!(*pp)->retired && strcmp((*pp)->pool.cfg.resource_name, ag->cfg.pools[i].resource_name) == 0) {
					struct plugin *pl = *pp;
					*pp = pl->next;
					pl->next = NULL;
					*tail = pl;
					tail = &pl->next;
					break;
				}
			}
		}
		*tail = ag->plugins; /* retired ones, draining */
		ag->plugins = ordered;
	}
	log_info("config_reloaded", "pools=%zu plugin_dir=%s", ag->cfg.npools, ag->cfg.plugin_dir);
	request_prepare(ag, "configuration reloaded");
	ag->next_rescan_ms = 0;
}

/* ---- the loop ------------------------------------------------------------------------ */

static void dispatch(struct agent *ag, struct tag *tag, bool ok)
{
	(void)ag;
	switch (tag->kind) {
	case TAG_REQUEST:
		on_request(tag->obj, ok);
		break;
	case TAG_UNARY_DONE: {
		struct call *c = tag->obj;
		c->pending--;
		if (c->pending == 0)
			call_free(c);
		break;
	}
	case TAG_STREAM_SEND:
		on_stream_event(tag->obj, false, ok);
		break;
	case TAG_STREAM_CLOSE:
		on_stream_event(tag->obj, true, ok);
		break;
	case TAG_SHUTDOWN:
		((struct plugin *)tag->obj)->shutdown_notified = true;
		break;
	case TAG_REGISTER:
		on_register_done(tag->obj, ok);
		break;
	}
}

static void reap_plugins(struct agent *ag)
{
	for (struct plugin **pp = &ag->plugins; *pp;) {
		struct plugin *pl = *pp;
		bool stopped = server_reap(pl);
		if (pl->retired && stopped && !pl->reg.in_flight) {
			*pp = pl->next;
			plugin_free(pl);
			continue;
		}
		pp = &pl->next;
	}
}

static void agent_tick(struct agent *ag)
{
	int64_t now = now_ms();
	ino_t ino = 0;

	if (got_term && !ag->stopping) {
		log_info("shutting_down", "reason=signal");
		ag->stopping = true;
		for (struct plugin *pl = ag->plugins; pl; pl = pl->next)
			plugin_retire(pl, "agent stopping");
	}
	if (got_hup && !ag->stopping) {
		got_hup = 0;
		log_info("reloading", "config=%s", ag->overrides->config_path ? ag->overrides->config_path : "(none)");
		reload(ag);
	}
	if (ag->uevent_fd >= 0) {
		struct xevf_uevent ev;
		int got;
		while ((got = xevf_uevent_next(ag->uevent_fd, &ev)) != 0) {
			if (got < 0) { /* lost events (ENOBUFS): rescan to be sure */
				ag->next_rescan_ms = now;
				break;
			}
			if (ev.subsystem && (strcmp(ev.subsystem, "pci") == 0 || strcmp(ev.subsystem, "vfio") == 0)) {
				log_debug("uevent", "action=%s devpath=%s subsystem=%s", ev.action, ev.devpath, ev.subsystem);
				ag->next_rescan_ms = now;
			}
			xevf_uevent_clear(&ev);
		}
	}
	if (preparer_passes(ag->preparer) != ag->prepare_passes_seen) {
		/* a pass finished: show its outcome (new VFs, bindings, reasons) now */
		ag->prepare_passes_seen = preparer_passes(ag->preparer);
		ag->next_rescan_ms = now;
	}
	if (ag->migration) {
		char **freed = NULL;
		size_t nfreed = migration_tick(ag->migration, &freed);
		for (size_t i = 0; i < nfreed; i++) {
			/* a committed source: the VM left, its VF is free for the next pod */
			for (size_t k = 0; k < ag->nrecent; k++)
				if (strcmp(ag->recent[k].id, freed[i]) == 0) {
					ag->recent[k] = ag->recent[--ag->nrecent];
					break;
				}
			log_info("vf_released_by_migration", "vf=%s", freed[i]);
			free(freed[i]);
			ag->next_rescan_ms = now;
		}
		free(freed);
	}
	if (!ag->stopping && now >= ag->next_rescan_ms) {
		rescan(ag);
		ag->next_rescan_ms = now + ag->cfg.rescan_interval_ms;
	}
	if (!ag->stopping && ag->kubelet_socket) {
		bool present = stat_ino(ag->kubelet_socket, &ino) == 0;
		if (!present && !ag->kubelet_missing_logged)
			log_warn("kubelet_not_found", "kubelet=%s action=\"waiting for the kubelet to create it\"",
				 ag->kubelet_socket);
		else if (present && ag->kubelet_missing_logged)
			log_info("kubelet_found", "kubelet=%s", ag->kubelet_socket);
		ag->kubelet_missing_logged = !present;
	}
	for (struct plugin *pl = ag->plugins; pl; pl = pl->next)
		plugin_tick(pl, now);
	reap_plugins(ag);
	metrics_heartbeat(now_ms());
	if (ag->status_dirty)
		publish(ag);
}

static int install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) || sigaction(SIGINT, &sa, NULL) || sigaction(SIGHUP, &sa, NULL))
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int agent_run(const struct cli_overrides *o, struct agent_config *cfg)
{
	struct agent ag;
	int64_t shutdown_deadline = 0;

	memset(&ag, 0, sizeof(ag));
	ag.overrides = o;
	ag.cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	apply_settings(&ag);
	if (install_signals()) {
		log_error("signals_failed", "err=\"%s\"", strerror(errno));
		config_free(&ag.cfg);
		return 1;
	}
	if (access(ag.cfg.plugin_dir, W_OK) != 0)
		log_warn("plugin_dir_unusable", "dir=%s err=\"%s\" action=\"will keep trying\"", ag.cfg.plugin_dir,
			 strerror(errno));
	ag.uevent_fd = -1;
	if (preparer_start(&ag.preparer)) {
		log_error("start_failed", "reason=\"cannot start the VF preparation thread\"");
		config_free(&ag.cfg);
		return 1;
	}
	{
		struct xevf_err err = XEVF_ERR_INIT;
		if (xevf_uevent_open(&ag.uevent_fd, &err))
			log_warn("uevents_unavailable", "reason=\"%s\" action=\"relying on the %ld ms rescan; run the pod "
				 "with hostNetwork to receive uevents\"", xevf_err_msg(&err), ag.cfg.rescan_interval_ms);
		xevf_err_clear(&err);
	}
	grpc_init();
	ag.cq = grpc_completion_queue_create_for_next(NULL);
	log_info("starting", "version=%s pools=%zu plugin_dir=%s sysfs_root=%s dev_root=%s rescan_ms=%ld", XEVF_VERSION,
		 ag.cfg.npools, ag.cfg.plugin_dir, ag.cfg.sysfs_root, ag.cfg.dev_root, ag.cfg.rescan_interval_ms);
	if (ag.cfg.http_port >= 0 || (ag.cfg.status_socket && *ag.cfg.status_socket)) {
		if (ag.cfg.status_socket && *ag.cfg.status_socket) {
			/* the socket's directory, e.g. /run/xevf, may not exist yet; listening says if that fails */
			(void)xevf_mkdir_parent(ag.cfg.status_socket, 0755);
		}
		(void)http_start(ag.cfg.http_address, (int)ag.cfg.http_port, ag.cfg.status_socket, &ag.http);
	}
	{
		struct migration_settings ms = {
			.unix_socket = ag.cfg.migration_socket, .tcp_address = ag.cfg.migration_address,
			.tls_ca = ag.cfg.tls_ca, .tls_cert = ag.cfg.tls_cert, .tls_key = ag.cfg.tls_key,
			.state_dir = ag.cfg.state_dir, .node_name = ag.cfg.node_name, .vfio_sim_dir = ag.cfg.vfio_sim,
			.sysfs_root = ag.cfg.sysfs_root, .dev_root = ag.cfg.dev_root, .kernel_release = ag.cfg.kernel_release,
		};
		char *error = NULL;
		ag.migration = migration_start(&ms, &error);
		if (!ag.migration)
			log_error("migration_unavailable", "reason=\"%s\" action=\"serving devices without the Migration "
				  "service; fix the setting and restart\"", error ? error : "?");
		free(error);
		if (ag.migration) {
			struct kube_settings ks = {ag.cfg.kube_api, ag.cfg.kube_token_file, ag.cfg.kube_ca_file, ag.cfg.node_name};
			ag.kube = kube_open(&ks, &error);
			if (ag.kube)
				log_info("kube_api", "url=%s node=%s use=\"which pending pod is a migration's target\"",
					 kube_api_url(ag.kube), ag.cfg.node_name);
			else
				log_warn("kube_api_unavailable", "reason=\"%s\" action=\"a VF reserved for a migration goes to the "
					 "next allocation of its pool\"", error ? error : "no API server configured (--kube-api) and "
					 "not in a cluster");
			free(error);
		}
	}
	metrics_heartbeat(now_ms());
	/* VFs ready before the kubelet hears of them: the first pass runs here. */
	preparer_run_now(ag.preparer, &ag.cfg, NULL, 0);
	ag.prepare_passes_seen = preparer_passes(ag.preparer);
	create_plugins(&ag);
	rescan(&ag);
	ag.next_rescan_ms = now_ms() + ag.cfg.rescan_interval_ms;

	for (;;) {
		grpc_event ev = grpc_completion_queue_next(ag.cq, deadline_in_ms(TICK_MS), NULL);
		if (ev.type == GRPC_OP_COMPLETE)
			dispatch(&ag, ev.tag, ev.success != 0);
		agent_tick(&ag);
		if (ag.stopping) {
			if (!shutdown_deadline)
				shutdown_deadline = now_ms() + 10000;
			if (!ag.plugins)
				break;
			if (now_ms() > shutdown_deadline) {
				log_error("shutdown_timeout", "reason=\"calls did not drain in 10 s\"");
				break;
			}
		}
	}
	grpc_completion_queue_shutdown(ag.cq);
	while (grpc_completion_queue_next(ag.cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(ag.cq);
	migration_stop(ag.migration);
	kube_close(ag.kube);
	grpc_shutdown_blocking();
	http_stop(ag.http);
	metrics_reset();
	preparer_stop(ag.preparer);
	if (ag.uevent_fd >= 0)
		close(ag.uevent_fd);
	xevf_strv_free(ag.known_vfs, ag.nknown_vfs);
	free(ag.recent);
	for (size_t i = 0; i < ag.nnotes; i++)
		free(ag.notes[i]);
	free(ag.notes);
	free(ag.scan_error);
	free(ag.kubelet_socket);
	config_free(&ag.cfg);
	log_info("stopped", "status=0");
	return 0;
}
