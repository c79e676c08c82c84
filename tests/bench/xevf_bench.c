/* xevf-bench: the compiled half of `make bench`, so that the measuring side
 * costs little next to what it measures. tests/bench/bench.py drives it.
 *
 *   xevf-bench kubelet SOCKET        a kubelet's Registration service: prints
 *                                    "register <monotonic ns> <resource>" per call
 *   xevf-bench allocate SOCKET N ID...  N Allocate calls back to back (IDs in turn),
 *                                    prints the latency percentiles in us
 *   xevf-bench watch SOCKET          ListAndWatch: prints "list <monotonic ns>
 *                                    <healthy> <unhealthy>" per list
 *   xevf-bench bare-server SOCKET    a gRPC C-core server that serves nothing:
 *                                    the RSS floor any gRPC server has
 */
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "deviceplugin/v1beta1/api.pb-c.h"
#include "rpc.h"

static long long mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void wait_for_signal(void)
{
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigwait(&set, &sig);
}

static void block_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* ---- kubelet ---- */

static void on_register(struct rpc_call *call, void *ctx)
{
	ProtobufCMessage *msg = NULL;
	V1beta1__Empty empty = V1BETA1__EMPTY__INIT;
	long long at = mono_ns();

	(void)ctx;
	if (strcmp(rpc_call_method(call), "/v1beta1.Registration/Register") != 0 ||
	    rpc_call_recv(call, &v1beta1__register_request__descriptor, &msg) != 1) {
		rpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED, "only Register", NULL);
		return;
	}
	printf("register %lld %s\n", at, ((V1beta1__RegisterRequest *)msg)->resource_name);
	fflush(stdout);
	protobuf_c_message_free_unpacked(msg, NULL);
	rpc_call_finish(call, GRPC_STATUS_OK, NULL, &empty.base);
}

static int kubelet(const char *sock)
{
	char *addr = NULL, *error = NULL;
	struct rpc_server *s;
	int port = 0;

	if (asprintf(&addr, "unix:%s", sock) < 0)
		return 1;
	s = rpc_server_start(addr, NULL, NULL, 0, on_register, NULL, &port, &error);
	free(addr);
	if (!s) {
		fprintf(stderr, "xevf-bench kubelet: %s\n", error ? error : "cannot serve");
		free(error);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	wait_for_signal();
	rpc_server_stop(s);
	return 0;
}

/* ---- allocate ---- */

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

static long long percentile(const long long *sorted, size_t n, double p)
{
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return sorted[i < n ? i : n - 1];
}

static int allocate(const char *sock, long n, char **ids, int nids)
{
	char *target = NULL, *error = NULL;
	grpc_channel *ch;
	long long *lat = calloc((size_t)n, sizeof(*lat));
	long failures = 0;

	if (!lat || n <= 0 || asprintf(&target, "unix:%s", sock) < 0)
		return 1;
	if (!(ch = rpc_channel_open(target, NULL, NULL, &error))) {
		fprintf(stderr, "xevf-bench allocate: %s\n", error ? error : "no channel");
		return 1;
	}
	for (long i = 0; i < n; i++) {
		char *id = ids[i % nids];
		V1beta1__ContainerAllocateRequest cr = V1BETA1__CONTAINER_ALLOCATE_REQUEST__INIT;
		V1beta1__ContainerAllocateRequest *crs[1] = {&cr};
		V1beta1__AllocateRequest req = V1BETA1__ALLOCATE_REQUEST__INIT;
		ProtobufCMessage *reply = NULL;
		struct rpc_result res = {0};
		long long t0;

		cr.n_devices_ids = 1;
		cr.devices_ids = &id;
		req.n_container_requests = 1;
		req.container_requests = crs;
		t0 = mono_ns();
		(void)rpc_unary(ch, "/v1beta1.DevicePlugin/Allocate", &req.base, &v1beta1__allocate_response__descriptor,
				&reply, 5000, &res);
		lat[i] = mono_ns() - t0;
		failures += res.status != GRPC_STATUS_OK;
		if (reply)
			protobuf_c_message_free_unpacked(reply, NULL);
		rpc_result_clear(&res);
	}
	qsort(lat, (size_t)n, sizeof(*lat), cmp_ll);
	printf("allocate n=%ld failed=%ld p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f\n", n, failures,
	       (double)percentile(lat, (size_t)n, 0.50) / 1e3, (double)percentile(lat, (size_t)n, 0.99) / 1e3,
	       (double)percentile(lat, (size_t)n, 0.999) / 1e3, (double)lat[n - 1] / 1e3);
	grpc_channel_destroy(ch);
	free(lat);
	free(target);
	return failures ? 1 : 0;
}

/* ---- watch ---- */

static int watch(const char *sock)
{
	char *target = NULL, *error = NULL;
	V1beta1__Empty empty = V1BETA1__EMPTY__INIT;
	grpc_channel *ch;
	struct rpc_stream *st;
	ProtobufCMessage *msg;

	if (asprintf(&target, "unix:%s", sock) < 0)
		return 1;
	if (!(ch = rpc_channel_open(target, NULL, NULL, &error))) {
		fprintf(stderr, "xevf-bench watch: %s\n", error ? error : "no channel");
		return 1;
	}
	if (!(st = rpc_stream_open(ch, "/v1beta1.DevicePlugin/ListAndWatch", 3600 * 1000)) ||
	    rpc_stream_send(st, &empty.base) || rpc_stream_close_send(st)) {
		fprintf(stderr, "xevf-bench watch: cannot open ListAndWatch\n");
		return 1;
	}
	while (rpc_stream_recv(st, &v1beta1__list_and_watch_response__descriptor, &msg) == 1) {
		const V1beta1__ListAndWatchResponse *r = (const V1beta1__ListAndWatchResponse *)msg;
		long long at = mono_ns();
		size_t healthy = 0;
		for (size_t i = 0; i < r->n_devices; i++)
			healthy += strcmp(r->devices[i]->health, "Healthy") == 0;
		printf("list %lld %zu %zu\n", at, healthy, r->n_devices - healthy);
		fflush(stdout);
		protobuf_c_message_free_unpacked(msg, NULL);
	}
	return 0;
}

/* ---- bare server ---- */

static int bare_server(const char *sock)
{
	char *addr = NULL;
	grpc_completion_queue *cq;
	grpc_server *server;
	grpc_server_credentials *creds;
	grpc_call *call = NULL;
	grpc_call_details details;
	grpc_metadata_array md;

	if (asprintf(&addr, "unix:%s", sock) < 0)
		return 1;
	grpc_init();
	cq = grpc_completion_queue_create_for_next(NULL);
	server = grpc_server_create(NULL, NULL);
	grpc_server_register_completion_queue(server, cq, NULL);
	creds = grpc_insecure_server_credentials_create();
	if (!grpc_server_add_http2_port(server, addr, creds)) {
		fprintf(stderr, "xevf-bench bare-server: cannot listen on %s\n", addr);
		return 1;
	}
	grpc_server_credentials_release(creds);
	grpc_server_start(server);
	grpc_call_details_init(&details);
	grpc_metadata_array_init(&md);
	(void)grpc_server_request_call(server, &call, &details, &md, cq, cq, &details);
	printf("ready\n");
	fflush(stdout);
	/* asleep in the queue, as a server between calls is */
	(void)grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
	free(addr);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "kubelet") == 0) {
		block_signals();
		grpc_init();
		return kubelet(argv[2]);
	}
	if (argc >= 5 && strcmp(argv[1], "allocate") == 0) {
		grpc_init();
		return allocate(argv[2], atol(argv[3]), argv + 4, argc - 4);
	}
	if (argc >= 3 && strcmp(argv[1], "watch") == 0) {
		grpc_init();
		return watch(argv[2]);
	}
	if (argc >= 3 && strcmp(argv[1], "bare-server") == 0)
		return bare_server(argv[2]);
	fprintf(stderr, "usage: xevf-bench kubelet|watch|bare-server SOCKET | allocate SOCKET N ID...\n");
	return 2;
}
