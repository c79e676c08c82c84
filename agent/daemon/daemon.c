/* The daemon's life: start-up as named steps, the loop (asleep in poll until
 * an event or a deadline), shutdown. */
#include <errno.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <poll.h>
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
#include "xevf_util.h"

#define SHUTDOWN_DRAIN_MS 10000
/* While something is in flight that has no event of its own (a migration's
 * reservations expiring, the API server's pods kept fresh for a pending
 * reservation, a shutdown draining, a dir that cannot be watched), the loop
 * also wakes this often. */
#define MIGRATION_LOOK_MS 1000
#define PODS_FRESH_MS 100
#define DRAIN_LOOK_MS 100
#define UNWATCHED_LOOK_MS 1000

static volatile sig_atomic_t got_term, got_hup;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		got_hup = 1;
	else
		got_term = 1;
	daemon_wake();
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
		.wake = daemon_wake, .recently_allocated = daemon_recently_allocated,
		.held_by_pod = daemon_held_by_pod, .hooks_ctx = d,
	};
	char *error = NULL;

	d->migration = migration_start(&ms, d->devices, &error);
	if (!d->migration)
		log_error("migration_unavailable", "reason=\"%s\" action=\"serving devices without the Migration service; "
			  "fix the setting and restart\"", error ? error : "?");
	free(error);
}

/* KubeVirt's migration target pods get their reservation by themselves when
 * the agents reach each other (mutual TLS) and it is not turned off. */
static void watch_targets(struct daemon *d, const struct kube_settings *ks)
{
	char *error = NULL;
	struct kube *k;

	if (!d->cfg.migration_targets)
		return;
	if (!d->cfg.migration_address || !*d->cfg.migration_address) {
		log_info("migration_targets_off", "reason=\"no --migration-address: the source node's agent cannot be "
			 "asked\" action=\"reserve with xevf-agent migrate reserve\"");
		return;
	}
	if (!(k = kube_open(ks, &error)) ||
	    !(d->targets = targets_start(k, d->migration, &d->served, d->cfg.peer_namespace, d->cfg.peer_selector,
						  &error))) {
		log_error("migration_targets_unavailable", "reason=\"%s\" action=\"reserve with xevf-agent migrate "
			  "reserve\"", error ? error : "?");
		free(error);
		return;
	}
	log_info("migration_targets_watching", "node=%s peer_selector=\"%s\"", d->cfg.node_name, d->cfg.peer_selector);
}

/* KubeVirt's migrations end this node's records by their outcome. */
static void watch_outcomes(struct daemon *d, const struct kube_settings *ks)
{
	char *error = NULL;
	struct kube *k;

	if (!d->cfg.watch_migrations)
		return;
	if (!(k = kube_open(ks, &error)) || !(d->outcomes = migration_outcomes_start(k, d->migration, &error))) {
		log_error("migration_outcomes_unavailable", "reason=\"%s\" action=\"end migrations with xevf-agent migrate "
			  "commit|abort\"", error ? error : "?");
		free(error);
		return;
	}
	log_info("migration_outcomes_watching", "node=%s", d->cfg.node_name ? d->cfg.node_name : "");
}

/* KubeVirt's node hooks, when a socket is set for them. */
static void serve_node_hooks(struct daemon *d)
{
	char *error = NULL;

	if (!d->cfg.node_hook_socket || !*d->cfg.node_hook_socket)
		return;
	if (!(d->kubevirt_hooks = kubevirt_hooks_start(d, d->cfg.node_hook_socket, &error))) {
		log_error("node_hooks_unavailable", "socket=%s reason=\"%s\" action=\"KubeVirt's node hooks fail; fix the "
			  "setting and restart\"", d->cfg.node_hook_socket, error ? error : "?");
		free(error);
		return;
	}
	log_info("node_hooks_serving", "socket=%s hooks=\"PreMigrationSource PreMigrationTarget PostMigrationTarget\"",
		 d->cfg.node_hook_socket);
}

void daemon_served_resources(struct daemon *d)
{
	char **names = calloc(d->cfg.npools + 1, sizeof(*names));

	if (!names)
		return;
	for (size_t i = 0; i < d->cfg.npools; i++)
		names[i] = d->cfg.pools[i].resource_name;
	served_resources_set(&d->served, names, d->cfg.npools);
	free(names); /* the strings are the configuration's */
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
	if (d->kube) {
		log_info("kube_api", "url=%s node=%s use=\"which pending pod is a migration's target\"", kube_cache_url(d->kube),
			 d->cfg.node_name);
		watch_targets(d, &ks);
		watch_outcomes(d, &ks);
	}
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
	/* the lock has no event to wait for: look now and then, answering probes */
	while (!got_term && daemon_plugin_dir_claim(d, holder, sizeof(holder)) == -EWOULDBLOCK) {
		metrics_heartbeat(clock_mono_ms());
		daemon_answer_asks(d);
		(void)poll(NULL, 0, 100);
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

static int start(struct daemon *d, const char *injected_uevents)
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
	if (daemon_wake_open()) {
		log_error("start_failed", "reason=\"cannot make the loop's wake-up descriptor: %s\"", strerror(errno));
		return -1;
	}
	if (preparer_start(&d->preparer, daemon_wake)) {
		log_error("start_failed", "reason=\"cannot start the VF preparation thread\"");
		return -1;
	}
	daemon_events_open(d, injected_uevents);
	grpc_init();
	d->cq = grpc_completion_queue_create_for_next(NULL);
	if (daemon_serving_start(d))
		return -1;
	metrics_set_refresh(daemon_ask_publish, d);
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
	daemon_serving_lock(d);
	create_pools(d);
	daemon_serving_unlock(d);
	daemon_served_resources(d);
	serve_node_hooks(d); /* once the pools' resources are known: a hook before would find no VF of ours */
	daemon_rescan(d);
	d->next_rescan_ms = clock_mono_ms() + d->cfg.rescan_interval_ms;
	return 0;
}

/* ---- the loop ---- */

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

/* A migration ended (aborted, committed, expired): the VFs it held, a target
 * provisioned like its source among them, get the pool's profile again. */
static void notice_migrations_ended(struct daemon *d)
{
	size_t n = 0;
	char **vfs = d->migration ? migration_vfs(d->migration, &n) : NULL;

	if (!vfs)
		return;
	if (n < d->migrating_vfs)
		daemon_request_prepare(d, "a migration ended");
	d->migrating_vfs = n;
	xevf_strv_free(vfs, n);
}

/* While a reservation waits for its target pod, the API server's answer is
 * kept fresh, so that the pod's allocation finds it ready. */
static bool keep_pods_fresh(struct daemon *d)
{
	if (!d->kube || !d->migration || !migration_has_pending(d->migration))
		return false;
	/* a pool's settings change on this thread only: read without the lock */
	for (struct pool_slot *s = d->pools; s; s = s->next)
		if (!plugin_retired(s->plugin))
			kube_cache_refresh(d->kube, plugin_pool(s->plugin)->cfg.resource_name);
	return true;
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

/* Under the serving lock. */
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
		daemon_serving_lock(d);
		for (struct pool_slot *s = d->pools; s; s = s->next)
			plugin_retire(s->plugin, "agent stopping");
		daemon_serving_unlock(d);
	}
	if (got_hup && !d->stopping) {
		got_hup = 0;
		log_info("reloading", "config=%s", d->overrides->config_path ? d->overrides->config_path : "(none)");
		daemon_reload(d);
	}
}

/* The plugins' part of a step: serve, register, notice removed sockets, reap. */
static void tend_plugins(struct daemon *d, int64_t now)
{
	daemon_serving_lock(d);
	for (struct pool_slot *s = d->pools; s && !d->plugin_dir_missing; s = s->next)
		plugin_tick(s->plugin, now, d->stopping);
	reap_pools(d);
	daemon_serving_unlock(d);
}

/* Everything that is due: what the events asked for, then the deadlines. */
static void step(struct daemon *d)
{
	int64_t now = clock_mono_ms();
	uint64_t passes;

	daemon_wake_drain();
	handle_signals(d);
	daemon_read_uevents(d, now);
	daemon_vfio_dir_events(d);
	daemon_plugin_dir_events(d);
	passes = preparer_counts(d->preparer).passes;
	if (passes != d->prepare_passes_seen) {
		/* a pass finished: show its outcome (new VFs, bindings, reasons) now */
		d->prepare_passes_seen = passes;
		d->next_rescan_ms = now;
	}
	collect_migration_releases(d, now);
	if (!d->stopping)
		notice_migrations_ended(d);
	if (!d->stopping && now >= d->next_rescan_ms) {
		daemon_rescan(d);
		d->next_rescan_ms = now + d->cfg.rescan_interval_ms;
	} else if (!d->stopping) {
		daemon_recheck(d);
	}
	if (!d->stopping)
		daemon_retry_numvfs(d, now);
	if (daemon_plugin_dir_ready(d) && !d->stopping && d->kubelet_socket)
		watch_kubelet(d);
	tend_plugins(d, clock_mono_ms());
	daemon_answer_asks(d);
}

static int64_t earlier(int64_t a, int64_t b) { return a < b ? a : b; }

/* How long the loop may sleep: until the earliest deadline, or for good
 * (-1) when only an event can give it work. */
static int sleep_ms(struct daemon *d, bool pods_pending)
{
	int64_t now = clock_mono_ms(), due = d->stopping ? now + DRAIN_LOOK_MS : d->next_rescan_ms;

	if (!d->stopping) {
		if (d->numvfs_drift)
			due = earlier(due, d->next_numvfs_retry_ms);
		due = earlier(due, daemon_events_next_due(d));
		daemon_serving_lock(d);
		for (struct pool_slot *s = d->pools; s && !d->plugin_dir_missing; s = s->next)
			due = earlier(due, plugin_next_due(s->plugin, d->stopping));
		daemon_serving_unlock(d);
		if (d->migration && migration_has_records(d->migration))
			due = earlier(due, now + MIGRATION_LOOK_MS);
		if (pods_pending)
			due = earlier(due, now + PODS_FRESH_MS);
		if (d->plugin_dir_watch < 0 || d->plugin_dir_missing)
			due = earlier(due, now + UNWATCHED_LOOK_MS);
	}
	if (due <= now)
		return 0;
	return due - now > INT32_MAX ? -1 : (int)(due - now);
}

static void sleep_until_due(struct daemon *d, int timeout_ms)
{
	struct pollfd fds[4];
	nfds_t n = 0;
	int fd[4] = {daemon_wake_fd(), d->uevent_fd, d->plugin_dir_watch, d->vfio_watch};

	for (size_t i = 0; i < 4; i++)
		if (fd[i] >= 0)
			fds[n++] = (struct pollfd){.fd = fd[i], .events = POLLIN};
	if (poll(fds, n, timeout_ms) < 0 && errno != EINTR)
		log_error("poll_failed", "err=\"%s\"", strerror(errno));
}

static void loop(struct daemon *d)
{
	int64_t shutdown_deadline = 0;
	uint64_t wakeups = 0;

	for (;;) {
		metrics_loop_wakeups(wakeups++);
		step(d);
		if (d->stopping) {
			if (!shutdown_deadline)
				shutdown_deadline = clock_mono_ms() + SHUTDOWN_DRAIN_MS;
			if (!d->pools)
				break;
			if (clock_mono_ms() > shutdown_deadline) {
				log_error("shutdown_timeout", "reason=\"calls did not drain in 10 s\"");
				break;
			}
		}
		sleep_until_due(d, sleep_ms(d, keep_pods_fresh(d)));
	}
}

/* ---- shutdown ---- */

static void stop(struct daemon *d)
{
	metrics_set_refresh(NULL, NULL); /* readers from here on read what was published last */
	if (d->cq) {
		grpc_completion_queue_shutdown(d->cq);
		if (d->serving_started)
			daemon_serving_join(d);
		else
			while (grpc_completion_queue_next(d->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
			       GRPC_QUEUE_SHUTDOWN)
				;
		grpc_completion_queue_destroy(d->cq);
		/* these ask the Migration service */
		kubevirt_hooks_stop(d->kubevirt_hooks);
		targets_stop(d->targets);
		migration_outcomes_stop(d->outcomes);
		migration_stop(d->migration);
		kube_cache_stop(d->kube);
		grpc_shutdown_blocking();
	}
	http_stop(d->http);
	metrics_reset();
	preparer_stop(d->preparer);
	daemon_events_close(d);
	daemon_wake_close();
	inventory_unref(d->inventory);
	daemon_plugin_dir_release(d);
	xevf_strv_free(d->known_vfs, d->nknown_vfs);
	xevf_strv_free(d->told_pfs, d->ntold_pfs);
	ledger_free(&d->ledger);
	xevf_strv_free(d->notes, d->nnotes);
	free(d->scan_error);
	free(d->kubelet_socket);
	free(d->pod_resources_socket);
	config_free(&d->cfg);
}

int daemon_run(const struct config_overrides *o, struct agent_config *cfg, const struct agent_world *world)
{
	struct daemon d;
	int rc;

	memset(&d, 0, sizeof(d));
	d.overrides = o;
	d.devices = world->devices;
	d.cfg = *cfg;
	config_init(cfg);
	d.uevent_fd = d.vfio_watch = d.dev_root_wd = -1;
	d.plugin_dir_lock = d.plugin_dir_watch = -1;
	ledger_init(&d.ledger);
	served_resources_init(&d.served);
	pthread_mutex_init(&d.serving_lock, NULL);
	pthread_mutex_init(&d.ask_lock, NULL);
	pthread_cond_init(&d.answered_cond, NULL);
	daemon_apply_settings(&d);
	d.pod_resources_socket = xevf_strdup_or_null(d.cfg.pod_resources_socket);
	daemon_hooks_init(&d);
	rc = start(&d, world->injected_uevents);
	if (rc == 0)
		loop(&d);
	stop(&d);
	served_resources_destroy(&d.served);
	pthread_cond_destroy(&d.answered_cond);
	pthread_mutex_destroy(&d.ask_lock);
	pthread_mutex_destroy(&d.serving_lock);
	if (rc)
		return 1;
	log_info("stopped", "status=0");
	return 0;
}
