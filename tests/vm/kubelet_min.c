/* kubelet_min: the kubelet's minimal counterpart for the real-kernel VM test.
 *
 * Serves Registration on <dir>/kubelet.sock, and after a Register dials the
 * plugin back, keeps ListAndWatch open and prints every list, and once <want>
 * devices are healthy calls Allocate with all of them and checks that every
 * device node it is given exists. Prints one "KUBELET ..." line per event for
 * the test to read from the console; runs until <seconds> have passed.
 *
 * Usage: kubelet_min DIR WANT SECONDS
 */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deviceplugin/v1beta1/api.pb-c.h"

/* The clock /proc/uptime shows, for the shell's timestamps to compare with. */
static double boot_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static gpr_timespec in_ms(long ms)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static grpc_byte_buffer *pack(const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	grpc_slice s = grpc_slice_malloc(n);
	grpc_byte_buffer *bb;

	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader r;
	grpc_slice s;
	ProtobufCMessage *m;

	if (!bb || !grpc_byte_buffer_reader_init(&r, bb))
		return NULL;
	s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	m = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
	grpc_slice_unref(s);
	return m;
}

static int wait_tag(grpc_completion_queue *cq, void *tag, long ms)
{
	grpc_event ev = grpc_completion_queue_pluck(cq, tag, in_ms(ms), NULL);
	return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* Waits for one Register call; returns its request (or NULL). */
static V1beta1__RegisterRequest *serve_register(grpc_server *server, grpc_completion_queue *cq, long ms)
{
	grpc_call *call = NULL;
	grpc_call_details details;
	grpc_metadata_array md;
	grpc_byte_buffer *req_bb = NULL, *resp_bb;
	V1beta1__RegisterRequest *req = NULL;
	V1beta1__Empty empty = V1BETA1__EMPTY__INIT;
	grpc_op ops[4];
	int cancelled = 0;

	grpc_call_details_init(&details);
	grpc_metadata_array_init(&md);
	if (grpc_server_request_call(server, &call, &details, &md, cq, cq, (void *)1) != GRPC_CALL_OK ||
	    !wait_tag(cq, (void *)1, ms))
		goto out;
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_MESSAGE;
	ops[0].data.recv_message.recv_message = &req_bb;
	if (grpc_call_start_batch(call, ops, 1, (void *)2, NULL) != GRPC_CALL_OK || !wait_tag(cq, (void *)2, 5000))
		goto out;
	req = (V1beta1__RegisterRequest *)unpack(&v1beta1__register_request__descriptor, req_bb);
	resp_bb = pack((ProtobufCMessage *)&empty);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = resp_bb;
	ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[2].data.send_status_from_server.status = req ? GRPC_STATUS_OK : GRPC_STATUS_INVALID_ARGUMENT;
	ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[3].data.recv_close_on_server.cancelled = &cancelled;
	if (grpc_call_start_batch(call, ops, 4, (void *)3, NULL) == GRPC_CALL_OK)
		wait_tag(cq, (void *)3, 5000);
	grpc_byte_buffer_destroy(resp_bb);
out:
	if (req_bb)
		grpc_byte_buffer_destroy(req_bb);
	if (call)
		grpc_call_unref(call);
	grpc_call_details_destroy(&details);
	grpc_metadata_array_destroy(&md);
	return req;
}

static void allocate(grpc_channel *ch, V1beta1__ListAndWatchResponse *list)
{
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	V1beta1__AllocateRequest req = V1BETA1__ALLOCATE_REQUEST__INIT;
	V1beta1__ContainerAllocateRequest cr = V1BETA1__CONTAINER_ALLOCATE_REQUEST__INIT, *crp = &cr;
	char **ids = calloc(list->n_devices + 1, sizeof(char *));
	grpc_byte_buffer *send, *recv = NULL;
	grpc_metadata_array init_md, trail_md;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details;
	grpc_call *call;
	grpc_op ops[6];
	V1beta1__AllocateResponse *resp;

	for (size_t i = 0; i < list->n_devices; i++)
		ids[i] = list->devices[i]->id;
	cr.devices_ids = ids;
	cr.n_devices_ids = list->n_devices;
	req.container_requests = &crp;
	req.n_container_requests = 1;
	send = pack((ProtobufCMessage *)&req);
	grpc_metadata_array_init(&init_md);
	grpc_metadata_array_init(&trail_md);
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
					grpc_slice_from_static_string("/v1beta1.DevicePlugin/Allocate"), NULL, in_ms(10000),
					NULL);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &recv;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
	ops[5].data.recv_status_on_client.status = &status;
	ops[5].data.recv_status_on_client.status_details = &details;
	if (grpc_call_start_batch(call, ops, 6, (void *)9, NULL) != GRPC_CALL_OK || !wait_tag(cq, (void *)9, 15000))
		printf("KUBELET allocate-failed no-answer\n");
	resp = (V1beta1__AllocateResponse *)unpack(&v1beta1__allocate_response__descriptor, recv);
	if (status != GRPC_STATUS_OK || !resp || resp->n_container_responses != 1) {
		printf("KUBELET allocate-failed status=%d\n", (int)status);
	} else {
		V1beta1__ContainerAllocateResponse *c = resp->container_responses[0];
		for (size_t i = 0; i < c->n_envs; i++)
			printf("KUBELET allocate env %s=%s\n", c->envs[i]->key, c->envs[i]->value);
		for (size_t i = 0; i < c->n_devices; i++) {
			struct stat st;
			int exists = stat(c->devices[i]->host_path, &st) == 0;
			printf("KUBELET allocate device %s %s %s\n", c->devices[i]->host_path,
			       exists ? (S_ISCHR(st.st_mode) ? "char-device" : "exists-not-char") : "MISSING",
			       c->devices[i]->permissions);
		}
	}
	fflush(stdout);
	if (resp)
		protobuf_c_message_free_unpacked((ProtobufCMessage *)resp, NULL);
	if (recv)
		grpc_byte_buffer_destroy(recv);
	grpc_byte_buffer_destroy(send);
	grpc_call_unref(call);
	grpc_metadata_array_destroy(&init_md);
	grpc_metadata_array_destroy(&trail_md);
	free(ids);
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_destroy(cq);
}

static void watch(const char *dir, const char *endpoint, size_t want, long deadline_ms)
{
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	char target[512];
	grpc_channel *ch;
	grpc_call *call;
	grpc_byte_buffer *send, *recv = NULL;
	grpc_metadata_array init_md;
	V1beta1__Empty empty = V1BETA1__EMPTY__INIT;
	grpc_op ops[4];
	int allocated = 0;

	snprintf(target, sizeof(target), "unix:%s/%s", dir, endpoint);
	ch = grpc_channel_create(target, creds, NULL);
	grpc_channel_credentials_release(creds);
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
					grpc_slice_from_static_string("/v1beta1.DevicePlugin/ListAndWatch"), NULL,
					gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	send = pack((ProtobufCMessage *)&empty);
	grpc_metadata_array_init(&init_md);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
	if (grpc_call_start_batch(call, ops, 4, (void *)20, NULL) != GRPC_CALL_OK || !wait_tag(cq, (void *)20, 10000)) {
		printf("KUBELET watch-failed\n");
		goto out;
	}
	while (gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(deadline_ms, GPR_CLOCK_MONOTONIC)) < 0) {
		grpc_op op;
		grpc_event ev;
		V1beta1__ListAndWatchResponse *list;
		size_t healthy = 0;

		memset(&op, 0, sizeof(op));
		op.op = GRPC_OP_RECV_MESSAGE;
		op.data.recv_message.recv_message = &recv;
		if (grpc_call_start_batch(call, &op, 1, (void *)21, NULL) != GRPC_CALL_OK)
			break;
		do {
			ev = grpc_completion_queue_pluck(cq, (void *)21, in_ms(1000), NULL);
		} while (ev.type == GRPC_QUEUE_TIMEOUT &&
			 gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC),
				      gpr_time_from_millis(deadline_ms, GPR_CLOCK_MONOTONIC)) < 0);
		if (ev.type != GRPC_OP_COMPLETE || !recv) {
			printf("KUBELET watch-ended\n");
			break;
		}
		list = (V1beta1__ListAndWatchResponse *)unpack(&v1beta1__list_and_watch_response__descriptor, recv);
		grpc_byte_buffer_destroy(recv);
		recv = NULL;
		if (!list)
			break;
		printf("KUBELET list t=%.3f n=%zu", boot_seconds(), list->n_devices);
		for (size_t i = 0; i < list->n_devices; i++) {
			printf(" %s=%s", list->devices[i]->id, list->devices[i]->health);
			healthy += strcmp(list->devices[i]->health, "Healthy") == 0;
		}
		printf("\n");
		fflush(stdout);
		if (!allocated && healthy >= want && list->n_devices >= want) {
			allocate(ch, list);
			allocated = 1;
			printf("KUBELET allocated\n");
			fflush(stdout);
		}
		protobuf_c_message_free_unpacked((ProtobufCMessage *)list, NULL);
	}
out:
	grpc_call_cancel(call, NULL);
	grpc_call_unref(call);
	grpc_byte_buffer_destroy(send);
	grpc_metadata_array_destroy(&init_md);
	grpc_channel_destroy(ch);
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_past(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
}

int main(int argc, char **argv)
{
	char addr[512];
	grpc_server *server;
	grpc_completion_queue *cq;
	grpc_server_credentials *creds;
	V1beta1__RegisterRequest *req;
	long seconds, start_ms;

	if (argc != 4) {
		fprintf(stderr, "usage: kubelet_min DIR WANT SECONDS\n");
		return 2;
	}
	seconds = atol(argv[3]);
	grpc_init();
	start_ms = (long)(gpr_time_to_millis(gpr_now(GPR_CLOCK_MONOTONIC)));
	snprintf(addr, sizeof(addr), "unix:%s/kubelet.sock", argv[1]);
	cq = grpc_completion_queue_create_for_pluck(NULL);
	server = grpc_server_create(NULL, NULL);
	grpc_server_register_completion_queue(server, cq, NULL);
	creds = grpc_insecure_server_credentials_create();
	if (!grpc_server_add_http2_port(server, addr, creds)) {
		printf("KUBELET cannot-listen %s\n", addr);
		return 1;
	}
	grpc_server_credentials_release(creds);
	grpc_server_start(server);
	printf("KUBELET serving %s\n", addr);
	fflush(stdout);
	req = serve_register(server, cq, seconds * 1000);
	if (!req) {
		printf("KUBELET no-registration\n");
		return 1;
	}
	printf("KUBELET registered version=%s resource=%s endpoint=%s\n", req->version, req->resource_name,
	       req->endpoint);
	fflush(stdout);
	watch(argv[1], req->endpoint, (size_t)atol(argv[2]), start_ms + seconds * 1000);
	protobuf_c_message_free_unpacked((ProtobufCMessage *)req, NULL);
	printf("KUBELET done\n");
	fflush(stdout);
	return 0;
}
