/* The daemon's life: start-up as named steps, the loop, shutdown. */
#include <errno.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "daemon_private.h"
#include "log.h"
#include "metrics.h"
#include "text.h"
#include "xevf_uevent.h"
#include "xevf_util.h"

#define TICK_MS 100
#define SHUTDOWN_DRAIN_MS 10000

static volatile sig_atomic_t got_term, got_hup;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		got_hup = 1;
	else
		got_term = 1;
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

/* ---- start-up steps ---- */

void daemon_apply_settings(struct daemon *d)
{
	enum log_level level;

	if (log_level_parse(d->cfg.log_level, &level))
		log_set_level(level);
	d->roots = (struct xevf_roots){d->cfg.sysfs_root, d->cfg.dev_root};
	free(d->kubelet_socket);
	if (xevf_asprintf(&d->kubelet_socket, "%s/kubelet.sock", d->cfg.plugin_dir))
		d->kubelet_socket = NULL;
}

static void open_uevents(struct daemon *d)
{
	struct xevf_err err = XEVF_ERR_INIT;

	if (xevf_uevent_open(&d->uevent_fd, &err))
		log_warn("uevents_unavailable", "reason=\"%s\" action=\"relying on the %ld ms rescan; run the pod with "
			 "hostNetwork to receive uevents\"", xevf_err_msg(&err), d->cfg.rescan_interval_ms);
	xevf_err_clear(&err);
}

static void start_http(struct daemon *d)
{
	const char *sock = d->cfg.status_socket;

	if (d->cfg.http_port < 0 && !(sock && *sock))
		return;
	if (sock && *sock)
		(void)xevf_mkdir_parent(sock, 0755); /* e.g. /run/xevf; listening says if that fails */
	(void)http_start(d->cfg.http_address, (int)d->cfg.http_port, sock, &d->http);
}

static void start_migration(struct daemon *d)
{
	struct migration_settings ms = {
		.unix_socket = d->cfg.migration_socket, .tcp_address = d->cfg.migration_address,
		.tls_ca = d->cfg.tls_ca, .tls_cert = d->cfg.tls_cert, .tls_key = d->cfg.tls_key,
		.peer_identities = d->cfg.peer_identities, .tls_server_name = d->cfg.tls_server_name,
		.state_dir = d->cfg.state_dir, .node_name = d->cfg.node_name, .sysfs_root = d->cfg.sysfs_root,
		.dev_root = d->cfg.dev_root, .proc_root = d->cfg.proc_root, .kernel_release = d->cfg.kernel_release,
		.stream_idle_ms = (int)d->cfg.stream_idle_timeout_ms, .max_state_bytes = (uint64_t)d->cfg.max_state_bytes,
	};
	char *error = NULL;

	d->migration = migration_start(&ms, d->devices, &error);
	if (!d->migration)
		log_error("migration_unavailable", "reason=\"%s\" action=\"serving devices without the Migration service; "
			  "fix the setting and restart\"", error ? error : "?");
	free(error);
}

static void open_kube(struct daemon *d)
{
	struct kube_settings ks = {d->cfg.kube_api, d->cfg.kube_token_file, d->cfg.kube_ca_file, d->cfg.node_name,
				   d->cfg.kube_api_allow_http != 0};
	char *error = NULL;

	if (!d->migration)
		return; /* the API server only tells a migration's target pod from others */
	struct kube *k = kube_open(&ks, &error);
	if (k)
		d->kube = kube_cache_start(k);
	if (!d->kube && error) {
		log_error("kube_api_refused", "reason=\"%s\" action=\"a VF reserved for a migration goes to the next "
			  "allocation of its pool\"", error);
		free(error);
		return;
	}
	if (d->kube)
		log_info("kube_api", "url=%s node=%s use=\"which pending pod is a migration's target\"", kube_cache_url(d->kube),
			 d->cfg.node_name);
	else
		log_warn("kube_api_unavailable", "reason=\"%s\" action=\"a VF reserved for a migration goes to the next "
			 "allocation of its pool\"", error ? error : "no API server configured (--kube-api) and not in a cluster");
	free(error);
}

static void create_pools(struct daemon *d)
{
	for (size_t i = 0; i < d->cfg.npools; i++)
		(void)daemon_add_pool(d, &d->cfg.pools[i]);
}

/* Waits, answering /healthz, while another agent serves the plugin dir; false
 * when asked to stop meanwhile. */
static bool claim_plugin_dir(struct daemon *d)
{
	char holder[24] = "";
	int rc = daemon_plugin_dir_claim(d, holder, sizeof(holder));

	if (rc == 0)
		return true;
	if (rc != -EWOULDBLOCK) {
		/* nothing to share it with, as far as anybody can tell: serve */
		log_warn("plugin_dir_unlocked", "dir=%s err=\"%s\" action=\"serving without the lock\"", d->cfg.plugin_dir,
			 strerror(-rc));
		return true;
	}
	log_warn("plugin_dir_busy", "dir=%s holder_pid=%s action=\"another xevf-agent serves this plugin directory; "
		 "waiting for it to exit before serving\"", d->cfg.plugin_dir, *holder ? holder : "?");
	while (!got_term && daemon_plugin_dir_claim(d, holder, sizeof(holder)) == -EWOULDBLOCK) {
		metrics_heartbeat(clock_mono_ms());
		usleep(100 * 1000);
	}
	if (got_term)
		return false;
	log_info("plugin_dir_taken_over", "dir=%s", d->cfg.plugin_dir);
	return true;
}

/* Every connection is a descriptor: the soft limit (often 1,024) goes up to
 * the hard one, so that a flood of idle connections does not take the last
 * descriptor the probes and the kubelet need. */
static void raise_descriptor_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("descriptor_limit_unchanged", "err=\"%s\"", strerror(errno));
	}
}

/* gRPC core's own log lines go through ours, in our format; what they say is
 * detail (the agent says what failed in its own words). */
static void grpc_core_log(gpr_log_func_args *args)
{
	char *message = printable_id(args->message ? args->message : "");

	log_debug("grpc_core", "file=%s line=%d message=\"%s\"", args->file ? args->file : "?", args->line,
		  message ? message : "?");
	free(message);
}

static int start(struct daemon *d)
{
	raise_descriptor_limit();
	gpr_set_log_function(grpc_core_log);
	if (install_signals()) {
		log_error("signals_failed", "err=\"%s\"", strerror(errno));
		return -1;
	}
	if (access(d->cfg.plugin_dir, F_OK) != 0) {
		/* normal while the kubelet has not started yet */
		d->plugin_dir_missing = true;
		log_info("plugin_dir_missing", "dir=%s action=\"waiting for the kubelet to create it\"", d->cfg.plugin_dir);
	} else if (access(d->cfg.plugin_dir, W_OK) != 0) {
		log_warn("plugin_dir_unusable", "dir=%s err=\"%s\" action=\"will keep trying\"", d->cfg.plugin_dir,
			 strerror(errno));
	}
	if (preparer_start(&d->preparer)) {
		log_error("start_failed", "reason=\"cannot start the VF preparation thread\"");
		return -1;
	}
	open_uevents(d);
	grpc_init();
	d->cq = grpc_completion_queue_create_for_next(NULL);
	log_info("starting", "version=%s pools=%zu plugin_dir=%s sysfs_root=%s dev_root=%s rescan_ms=%ld", XEVF_VERSION,
		 d->cfg.npools, d->cfg.plugin_dir, d->cfg.sysfs_root, d->cfg.dev_root, d->cfg.rescan_interval_ms);
	start_http(d);
	start_migration(d);
	open_kube(d);
	metrics_heartbeat(clock_mono_ms());
	if (!d->plugin_dir_missing && !claim_plugin_dir(d))
		return 0; /* stopping before it ever served */
	daemon_plugin_dir_watch(d);
	/* Serving and registering wait for nothing: the first preparation pass runs
	 * on its own thread, and what it makes ready reaches the kubelet through
	 * ListAndWatch as it comes. */
	daemon_request_prepare(d, "start");
	create_pools(d);
	daemon_rescan(d);
	d->next_rescan_ms = clock_mono_ms() + d->cfg.rescan_interval_ms;
	return 0;
}

/* ---- the loop ---- */

static void read_uevents(struct daemon *d, int64_t now)
{
	struct xevf_uevent ev;
	int got;

	while (d->uevent_fd >= 0 && (got = xevf_uevent_next(d->uevent_fd, &ev)) != 0) {
		if (got < 0) { /* lost events (ENOBUFS): rescan to be sure */
			d->next_rescan_ms = now;
			break;
		}
		if (ev.subsystem && (strcmp(ev.subsystem, "pci") == 0 || strcmp(ev.subsystem, "vfio") == 0)) {
			log_debug("uevent", "action=%s devpath=%s subsystem=%s", ev.action, ev.devpath, ev.subsystem);
			d->next_rescan_ms = now;
		}
		xevf_uevent_clear(&ev);
	}
}

static void collect_migration_releases(struct daemon *d, int64_t now)
{
	char **freed = NULL;
	size_t nfreed = d->migration ? migration_tick(d->migration, &freed) : 0;

	for (size_t i = 0; i < nfreed; i++) {
		/* a committed source: the VM left, its VF is free for the next pod */
		ledger_forget(&d->ledger, freed[i]);
		log_info("vf_released_by_migration", "vf=%s", freed[i]);
		d->next_rescan_ms = now;
	}
	xevf_strv_free(freed, nfreed);
}

/* While a reservation waits for its target pod, the API server's answer is
 * kept fresh, so that the pod's allocation finds it ready. */
static void keep_pods_fresh(struct daemon *d)
{
	if (!d->kube || !d->migration || !migration_has_pending(d->migration))
		return;
	for (struct pool_slot *s = d->pools; s; s = s->next)
		if (!plugin_retired(s->plugin))
			kube_cache_refresh(d->kube, plugin_pool(s->plugin)->cfg.resource_name);
}

static void watch_kubelet(struct daemon *d)
{
	bool present = access(d->kubelet_socket, F_OK) == 0;

	if (!present && !d->kubelet_missing_logged)
		log_warn("kubelet_not_found", "kubelet=%s action=\"waiting for the kubelet to create it\"", d->kubelet_socket);
	else if (present && d->kubelet_missing_logged)
		log_info("kubelet_found", "kubelet=%s", d->kubelet_socket);
	d->kubelet_missing_logged = !present;
}

static void reap_pools(struct daemon *d)
{
	for (struct pool_slot **pp = &d->pools; *pp;) {
		struct pool_slot *s = *pp;
		if (plugin_reap(s->plugin) && plugin_retired(s->plugin)) {
			*pp = s->next;
			plugin_free(s->plugin);
			free(s);
			continue;
		}
		pp = &s->next;
	}
}

static void handle_signals(struct daemon *d)
{
	if (got_term && !d->stopping) {
		log_info("shutting_down", "reason=signal");
		d->stopping = true;
		for (struct pool_slot *s = d->pools; s; s = s->next)
			plugin_retire(s->plugin, "agent stopping");
	}
	if (got_hup && !d->stopping) {
		got_hup = 0;
		log_info("reloading", "config=%s", d->overrides->config_path ? d->overrides->config_path : "(none)");
		daemon_reload(d);
	}
}

static void tick(struct daemon *d)
{
	int64_t now = clock_mono_ms();

	handle_signals(d);
	read_uevents(d, now);
	daemon_plugin_dir_events(d);
	if (preparer_passes(d->preparer) != d->prepare_passes_seen) {
		/* a pass finished: show its outcome (new VFs, bindings, reasons) now */
		d->prepare_passes_seen = preparer_passes(d->preparer);
		d->next_rescan_ms = now;
	}
	collect_migration_releases(d, now);
	keep_pods_fresh(d);
	if (!d->stopping && now >= d->next_rescan_ms) {
		daemon_rescan(d);
		d->next_rescan_ms = now + d->cfg.rescan_interval_ms;
	}
	if (daemon_plugin_dir_ready(d) && !d->stopping && d->kubelet_socket)
		watch_kubelet(d);
	for (struct pool_slot *s = d->pools; s && !d->plugin_dir_missing; s = s->next)
		plugin_tick(s->plugin, now, d->stopping);
	reap_pools(d);
	metrics_heartbeat(clock_mono_ms());
	if (d->status_dirty)
		daemon_publish(d);
}

static void loop(struct daemon *d)
{
	int64_t shutdown_deadline = 0;

	tick(d); /* serve and register as soon as the first inventory is there, not a tick later */
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(
			d->cq, gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(TICK_MS, GPR_TIMESPAN)), NULL);
		if (ev.type == GRPC_OP_COMPLETE)
			plugin_dispatch(ev.tag, ev.success != 0);
		tick(d);
		if (!d->stopping)
			continue;
		if (!shutdown_deadline)
			shutdown_deadline = clock_mono_ms() + SHUTDOWN_DRAIN_MS;
		if (!d->pools)
			break;
		if (clock_mono_ms() > shutdown_deadline) {
			log_error("shutdown_timeout", "reason=\"calls did not drain in 10 s\"");
			break;
		}
	}
}

/* ---- shutdown ---- */

static void stop(struct daemon *d)
{
	if (d->cq) {
		grpc_completion_queue_shutdown(d->cq);
		while (grpc_completion_queue_next(d->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(d->cq);
		migration_stop(d->migration);
		kube_cache_stop(d->kube);
		grpc_shutdown_blocking();
	}
	http_stop(d->http);
	metrics_reset();
	preparer_stop(d->preparer);
	if (d->uevent_fd >= 0)
		close(d->uevent_fd);
	inventory_unref(d->inventory);
	daemon_plugin_dir_release(d);
	xevf_strv_free(d->known_vfs, d->nknown_vfs);
	xevf_strv_free(d->told_pfs, d->ntold_pfs);
	ledger_free(&d->ledger);
	xevf_strv_free(d->notes, d->nnotes);
	free(d->scan_error);
	free(d->kubelet_socket);
	config_free(&d->cfg);
}

int daemon_run(const struct config_overrides *o, struct agent_config *cfg, const struct mig_device_provider *devices)
{
	struct daemon d;
	int rc;

	memset(&d, 0, sizeof(d));
	d.overrides = o;
	d.devices = devices;
	d.cfg = *cfg;
	config_init(cfg);
	d.uevent_fd = -1;
	d.plugin_dir_lock = d.plugin_dir_watch = -1;
	daemon_apply_settings(&d);
	daemon_hooks_init(&d);
	rc = start(&d);
	if (rc == 0)
		loop(&d);
	stop(&d);
	if (rc)
		return 1;
	log_info("stopped", "status=0");
	return 0;
}
