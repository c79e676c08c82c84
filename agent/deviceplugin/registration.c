/* Registering a pool's socket with the kubelet (v1beta1 Registration), and
 * registering again whenever a new kubelet appears. */
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <string.h>

#include "clock.h"
#include "deviceplugin/v1beta1/api.pb-c.h"
#include "log.h"
#include "metrics.h"
#include "plugin_private.h"
#include "rpc.h"
#include "text.h"
#include "xevf_util.h"

#define REGISTER_TIMEOUT_MS 5000
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000

void dp_register_cleanup(struct registration *r)
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
	r->details = grpc_empty_slice();
	r->call = NULL;
	r->channel = NULL;
	r->send = r->recv = NULL;
	r->in_flight = false;
}

static grpc_call *register_call(struct plugin *pl)
{
	struct registration *r = &pl->reg;
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	grpc_slice method = grpc_slice_from_static_string("/v1beta1.Registration/Register");
	char *target = NULL;

	if (xevf_asprintf(&target, "unix:%s", pl->kubelet_socket)) {
		grpc_channel_credentials_release(creds);
		return NULL;
	}
	/* a subchannel of its own: one shared with the last kubelet's dead
	 * connection would make a new kubelet wait out that one's reconnect backoff */
	grpc_arg local_pool = {GRPC_ARG_INTEGER, (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, {.integer = 1}};
	grpc_channel_args args = {1, &local_pool};
	r->channel = grpc_channel_create(target, creds, &args);
	grpc_channel_credentials_release(creds);
	free(target);
	return grpc_channel_create_call(r->channel, NULL, GRPC_PROPAGATE_DEFAULTS, pl->cq, method, NULL,
					gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
						     gpr_time_from_millis(REGISTER_TIMEOUT_MS, GPR_TIMESPAN)),
					NULL);
}

void dp_register_start(struct plugin *pl, const struct dp_file_id *kubelet_id)
{
	struct registration *r = &pl->reg;
	V1beta1__RegisterRequest req = V1BETA1__REGISTER_REQUEST__INIT;
	V1beta1__DevicePluginOptions opts = V1BETA1__DEVICE_PLUGIN_OPTIONS__INIT;
	grpc_op ops[6];

	opts.get_preferred_allocation_available = 1;
	req.version = (char *)DP_API_VERSION;
	req.endpoint = pl->endpoint;
	req.resource_name = pl->pool.cfg.resource_name;
	req.options = &opts;
	if (!(r->call = register_call(pl))) {
		dp_register_cleanup(r);
		return;
	}
	r->send = rpc_pack((const ProtobufCMessage *)&req);
	grpc_metadata_array_init(&r->initial_md);
	grpc_metadata_array_init(&r->trailing_md);
	r->tag = (struct dp_tag){TAG_REGISTER, pl};
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
	/* a new kubelet socket starts its own backoff: the failures of the one
	 * before (a kubelet going away) say nothing about this one, which may
	 * only have been a moment from listening */
	if (!dp_file_id_eq(&r->attempt_id, kubelet_id))
		r->backoff_ms = 0;
	r->attempt_id = *kubelet_id;
	r->attempt_serve = pl->serves;
	if (grpc_call_start_batch(r->call, ops, 6, &r->tag, NULL) != GRPC_CALL_OK) {
		log_error("register_failed", "resource=%s reason=\"could not start the call\"", pl->pool.cfg.resource_name);
		dp_register_cleanup(r);
		r->next_attempt_ms = clock_mono_ms() + BACKOFF_MAX_MS;
		return;
	}
	r->in_flight = true;
	log_debug("registering", "resource=%s kubelet=%s endpoint=%s", pl->pool.cfg.resource_name, pl->kubelet_socket,
		  pl->endpoint);
}

static void register_failed(struct plugin *pl)
{
	struct registration *r = &pl->reg;
	char *raw = grpc_slice_to_c_string(r->details), *details = raw ? printable_id(raw) : NULL;

	r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (r->backoff_ms > BACKOFF_MAX_MS)
		r->backoff_ms = BACKOFF_MAX_MS;
	r->next_attempt_ms = clock_mono_ms() + r->backoff_ms;
	r->failures++;
	metrics_registration(pl->pool.cfg.resource_name, false);
	/* The kubelet refuses for good reasons (resource name taken, bad version):
	 * say it at error level; a kubelet not answering yet is normal at start-up. */
	xlog(r->status == GRPC_STATUS_UNAVAILABLE || r->status == GRPC_STATUS_DEADLINE_EXCEEDED ? XLOG_WARN : XLOG_ERROR,
	     "register_failed", "resource=%s kubelet=%s status=%d details=\"%s\" retry_in_ms=%d attempt=%u",
	     pl->pool.cfg.resource_name, pl->kubelet_socket, (int)r->status, details ? details : "", r->backoff_ms,
	     r->failures);
	gpr_free(raw);
	free(details);
}

void dp_register_done(struct plugin *pl, bool ok)
{
	struct registration *r = &pl->reg;

	if (r->attempt_serve != pl->serves || pl->state != SERVER_SERVING) {
		/* an answer for a server since stopped (its socket was removed while
		 * the call was in flight) says nothing about the one serving now:
		 * that one registers at once, no backoff */
		log_debug("registration_outdated", "resource=%s", pl->pool.cfg.resource_name);
		r->next_attempt_ms = 0;
	} else if (ok && r->status == GRPC_STATUS_OK) {
		r->registered = true;
		r->registered_id = r->attempt_id;
		r->backoff_ms = 0;
		r->failures = 0;
		metrics_registration(pl->pool.cfg.resource_name, true);
		log_info("registered", "resource=%s kubelet=%s endpoint=%s version=%s", pl->pool.cfg.resource_name,
			 pl->kubelet_socket, pl->endpoint, DP_API_VERSION);
	} else {
		register_failed(pl);
	}
	dp_register_cleanup(r);
}

/* Registers when not registered with the kubelet behind kubelet.sock now. */
void dp_register_tick(struct plugin *pl, int64_t now)
{
	struct registration *r = &pl->reg;
	struct dp_file_id id = {0};
	bool doubt = r->in_doubt;

	if (pl->state != SERVER_SERVING || r->in_flight)
		return;
	r->in_doubt = false;
	r->no_kubelet = dp_file_id_of(pl->kubelet_socket, &id) != 0;
	if (r->no_kubelet)
		return; /* the daemon reports a missing kubelet once */
	if (r->registered && !doubt && dp_file_id_eq(&id, &r->registered_id))
		return;
	if (r->registered) {
		log_info("kubelet_restarted", "resource=%s kubelet=%s action=\"registering again\"",
			 pl->pool.cfg.resource_name, pl->kubelet_socket);
		r->registered = false;
		r->backoff_ms = 0;
		r->next_attempt_ms = 0;
	}
	if ((doubt || !dp_file_id_eq(&r->attempt_id, &id)) && r->next_attempt_ms > now)
		r->next_attempt_ms = now; /* a new kubelet socket appeared since the last failed attempt: try now */
	if (now >= r->next_attempt_ms)
		dp_register_start(pl, &id);
}
