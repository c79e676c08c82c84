/* What the device plugin's own files share: the plugin, its calls and its
 * registration. Not for use outside deviceplugin/. */
#ifndef XEVF_DP_PLUGIN_PRIVATE_H
#define XEVF_DP_PLUGIN_PRIVATE_H

#include <grpc/grpc.h>
#include <sys/types.h>

#include "plugin.h"

#define DP_API_VERSION "v1beta1"

enum dp_tag_kind { TAG_REQUEST, TAG_UNARY_DONE, TAG_STREAM_SEND, TAG_STREAM_CLOSE, TAG_SHUTDOWN, TAG_REGISTER };

/* M_UNKNOWN: any other method path, answered UNIMPLEMENTED (never left queued) */
enum dp_method { M_OPTIONS, M_LIST_AND_WATCH, M_PREFERRED, M_ALLOCATE, M_PRE_START, M_COUNT, M_UNKNOWN = M_COUNT };

/* Which file a path names now: a new kubelet's socket may get the inode
 * number the old one had (ext4 reuses them), never also its ctime. */
struct dp_file_id {
	dev_t dev;
	ino_t ino;
	struct timespec ctime;
};

struct registration {
	grpc_channel *channel;
	grpc_call *call;
	struct dp_tag tag;
	grpc_byte_buffer *send, *recv;
	grpc_metadata_array initial_md, trailing_md;
	grpc_status_code status;
	grpc_slice details;
	bool in_flight;
	bool registered;
	struct dp_file_id attempt_id;    /* kubelet.sock when the attempt started */
	unsigned attempt_serve;          /* ... and which of the plugin's servers it announced */
	struct dp_file_id registered_id; /* ... when the last attempt succeeded */
	bool in_doubt;         /* the plugin dir changed around kubelet.sock: register again */
	bool no_kubelet;       /* kubelet.sock was missing at the last look: only an event brings it */
	int64_t next_attempt_ms;
	int backoff_ms;
	unsigned failures;
};

struct dp_call;

struct plugin {
	struct dp_hooks hooks;
	grpc_completion_queue *cq;
	struct pool pool;
	char *socket_path;
	char *endpoint;          /* socket file name, as told to the kubelet */
	char *kubelet_socket;
	grpc_server *server;
	void *methods[M_COUNT];
	enum server_state state;
	struct dp_tag shutdown_tag;
	bool shutdown_notified;
	int live_calls;          /* call objects, including pending requests */
	struct dp_file_id socket_id;
	struct dp_call *streams; /* open ListAndWatch streams */
	struct registration reg;
	bool retired;            /* pool removed (reload) or agent stopping */
	unsigned serve_failures; /* listening failed this often in a row */
	unsigned serves;         /* servers started so far: a registration is for one of them */
};

/* server.c */
int dp_server_start(struct plugin *pl);
void dp_server_stop(struct plugin *pl, const char *why);
/* true when the plugin may now be reaped */
bool dp_call_dispatch(struct dp_tag *tag, bool ok);
void dp_push_lists(struct plugin *pl);
int dp_file_id_of(const char *path, struct dp_file_id *id);
bool dp_file_id_eq(const struct dp_file_id *a, const struct dp_file_id *b);

/* registration.c */
void dp_register_start(struct plugin *pl, const struct dp_file_id *kubelet_id);
void dp_register_done(struct plugin *pl, bool ok);
void dp_register_cleanup(struct registration *r);
void dp_register_tick(struct plugin *pl, int64_t now);

#endif
