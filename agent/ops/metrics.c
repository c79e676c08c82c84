#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEARTBEAT_STALE_MS 5000

static const double latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
#define NBUCKETS (sizeof(latency_buckets) / sizeof(latency_buckets[0]))

struct pool_metrics {
	char *resource;
	size_t healthy, unhealthy;
	bool registered;
	bool active;
	uint64_t allocations, allocated_devices, refused, registrations_ok, registrations_failed;
};

struct outcome {
	char *name;
	uint64_t count;
};

/* A counter by outcome (the label's values as they come). */
struct outcomes {
	struct outcome *v;
	size_t n;
};

static struct {
	pthread_mutex_t lock;
	struct pool_metrics *pools;
	size_t npools;
	uint64_t buckets[NBUCKETS];
	uint64_t latency_count;
	double latency_sum;
	uint64_t bind_failures;
	uint64_t loop_wakeups;
	uint64_t profile_refusals;
	struct metrics_vf_profile *profiles; /* label values escaped already */
	size_t nprofiles;
	struct outcomes migrations, migration_targets;
	int64_t heartbeat_ms;
	char *status;
	void (*refresh)(void *ctx);
	void *refresh_ctx;
} m = {.lock = PTHREAD_MUTEX_INITIALIZER};

void metrics_set_refresh(void (*refresh)(void *ctx), void *ctx)
{
	pthread_mutex_lock(&m.lock);
	m.refresh = refresh;
	m.refresh_ctx = ctx;
	pthread_mutex_unlock(&m.lock);
}

void metrics_refresh(void)
{
	void (*refresh)(void *ctx);
	void *ctx;

	pthread_mutex_lock(&m.lock);
	refresh = m.refresh;
	ctx = m.refresh_ctx;
	pthread_mutex_unlock(&m.lock);
	if (refresh)
		refresh(ctx); /* outside the lock: it waits for the publisher, which takes it */
}

/* Under the lock. NULL on allocation failure. */
static struct pool_metrics *pool_get(const char *resource)
{
	struct pool_metrics *grown;

	for (size_t i = 0; i < m.npools; i++)
		if (strcmp(m.pools[i].resource, resource) == 0)
			return &m.pools[i];
	grown = realloc(m.pools, (m.npools + 1) * sizeof(*grown));
	if (!grown)
		return NULL;
	m.pools = grown;
	memset(&m.pools[m.npools], 0, sizeof(m.pools[0]));
	m.pools[m.npools].resource = strdup(resource);
	if (!m.pools[m.npools].resource)
		return NULL;
	return &m.pools[m.npools++];
}

void metrics_set_pool(const char *resource, size_t healthy, size_t unhealthy, bool registered)
{
	struct pool_metrics *p;

	pthread_mutex_lock(&m.lock);
	if ((p = pool_get(resource))) {
		p->healthy = healthy;
		p->unhealthy = unhealthy;
		p->registered = registered;
		p->active = true;
	}
	pthread_mutex_unlock(&m.lock);
}

void metrics_forget_pool(const char *resource)
{
	struct pool_metrics *p;

	pthread_mutex_lock(&m.lock);
	/* counters stay (they are totals); the pool just stops counting as live */
	if ((p = pool_get(resource)))
		p->active = false;
	pthread_mutex_unlock(&m.lock);
}

void metrics_allocated(const char *resource, size_t containers, size_t devices, double seconds)
{
	struct pool_metrics *p;

	pthread_mutex_lock(&m.lock);
	if ((p = pool_get(resource))) {
		p->allocations += containers;
		p->allocated_devices += devices;
	}
	for (size_t i = 0; i < NBUCKETS; i++)
		if (seconds <= latency_buckets[i])
			m.buckets[i]++;
	m.latency_count++;
	m.latency_sum += seconds;
	pthread_mutex_unlock(&m.lock);
}

void metrics_allocate_refused(const char *resource)
{
	struct pool_metrics *p;

	pthread_mutex_lock(&m.lock);
	if ((p = pool_get(resource)))
		p->refused++;
	pthread_mutex_unlock(&m.lock);
}

void metrics_registration(const char *resource, bool ok)
{
	struct pool_metrics *p;

	pthread_mutex_lock(&m.lock);
	if ((p = pool_get(resource))) {
		if (ok)
			p->registrations_ok++;
		else
			p->registrations_failed++;
	}
	pthread_mutex_unlock(&m.lock);
}

void metrics_bind_failures(uint64_t total)
{
	pthread_mutex_lock(&m.lock);
	m.bind_failures = total;
	pthread_mutex_unlock(&m.lock);
}

void metrics_profile_refusals(uint64_t total)
{
	pthread_mutex_lock(&m.lock);
	m.profile_refusals = total;
	pthread_mutex_unlock(&m.lock);
}

/* A label value as the exposition format wants it: \\, \" and \n escaped
 * (the values come from sysfs: anything may be in them). */
static char *label_escape(const char *s)
{
	size_t n = 0;
	char *out, *o;

	for (const char *p = s; *p; p++)
		n += (*p == '\\' || *p == '"' || *p == '\n') ? 2 : 1;
	if (!(out = malloc(n + 1)))
		return NULL;
	for (o = out; *s; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n') {
			*o++ = '\\';
			*o++ = (char)(*s == '\n' ? 'n' : *s);
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
	return out;
}

static void profile_clear(struct metrics_vf_profile *p)
{
	free(p->resource);
	free(p->pci);
	free(p->key);
	free(p->value);
	memset(p, 0, sizeof(*p));
}

static void profiles_free(struct metrics_vf_profile *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		profile_clear(&p[i]);
	free(p);
}

void metrics_set_vf_profiles(const struct metrics_vf_profile *samples, size_t n)
{
	struct metrics_vf_profile *copy = calloc(n + 1, sizeof(*copy));
	size_t kept = 0;

	for (size_t i = 0; copy && i < n; i++) {
		struct metrics_vf_profile *c = &copy[kept];
		c->resource = label_escape(samples[i].resource);
		c->pci = label_escape(samples[i].pci);
		c->key = label_escape(samples[i].key);
		c->value = label_escape(samples[i].value);
		if (c->resource && c->pci && c->key && c->value) {
			kept++;
			continue;
		}
		profile_clear(c);
	}
	pthread_mutex_lock(&m.lock);
	profiles_free(m.profiles, m.nprofiles);
	m.profiles = copy;
	m.nprofiles = copy ? kept : 0;
	pthread_mutex_unlock(&m.lock);
}

void metrics_loop_wakeups(uint64_t total)
{
	pthread_mutex_lock(&m.lock);
	m.loop_wakeups = total;
	pthread_mutex_unlock(&m.lock);
}

/* Lock held. */
static void count_outcome(struct outcomes *o, const char *outcome)
{
	struct outcome *grown;

	for (size_t i = 0; i < o->n; i++) {
		if (strcmp(o->v[i].name, outcome) == 0) {
			o->v[i].count++;
			return;
		}
	}
	grown = realloc(o->v, (o->n + 1) * sizeof(*grown));
	if (grown) {
		o->v = grown;
		o->v[o->n].name = strdup(outcome);
		o->v[o->n].count = 1;
		if (o->v[o->n].name)
			o->n++;
	}
}

static void outcomes_free(struct outcomes *o)
{
	for (size_t i = 0; i < o->n; i++)
		free(o->v[i].name);
	free(o->v);
	o->v = NULL;
	o->n = 0;
}

void metrics_migration(const char *outcome)
{
	pthread_mutex_lock(&m.lock);
	count_outcome(&m.migrations, outcome);
	pthread_mutex_unlock(&m.lock);
}

void metrics_migration_target(const char *outcome)
{
	pthread_mutex_lock(&m.lock);
	count_outcome(&m.migration_targets, outcome);
	pthread_mutex_unlock(&m.lock);
}

void metrics_heartbeat(int64_t now_ms)
{
	pthread_mutex_lock(&m.lock);
	m.heartbeat_ms = now_ms;
	pthread_mutex_unlock(&m.lock);
}

void metrics_set_status(const char *json)
{
	char *copy = strdup(json);

	pthread_mutex_lock(&m.lock);
	if (copy) {
		free(m.status);
		m.status = copy;
	}
	pthread_mutex_unlock(&m.lock);
}

char *metrics_status(void)
{
	char *copy;

	pthread_mutex_lock(&m.lock);
	copy = strdup(m.status ? m.status : "{}");
	pthread_mutex_unlock(&m.lock);
	return copy;
}

/* A growing text buffer for the exposition. */
struct text {
	char *buf;
	size_t len, cap;
	bool failed;
};

static void add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	char *piece = NULL;
	size_t n;
	int rc;

	if (t->failed)
		return;
	va_start(ap, fmt);
	rc = vasprintf(&piece, fmt, ap);
	va_end(ap);
	if (rc < 0) {
		t->failed = true;
		return;
	}
	n = (size_t)rc;
	if (t->len + n + 1 > t->cap) {
		size_t cap = (t->cap ? t->cap * 2 : 4096) + n;
		char *grown = realloc(t->buf, cap);
		if (!grown) {
			free(piece);
			t->failed = true;
			return;
		}
		t->buf = grown;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, piece, n + 1);
	t->len += n;
	free(piece);
}

char *metrics_render(void)
{
	struct text t = {0};

	pthread_mutex_lock(&m.lock);
	add(&t, "# HELP xevf_build_info The agent's version.\n# TYPE xevf_build_info gauge\n"
		"xevf_build_info{version=\"%s\"} 1\n", XEVF_VERSION);
	add(&t, "# HELP xevf_vfs VFs of each pool by health.\n# TYPE xevf_vfs gauge\n");
	for (size_t i = 0; i < m.npools; i++)
		if (m.pools[i].active)
			add(&t, "xevf_vfs{resource=\"%s\",health=\"healthy\"} %zu\nxevf_vfs{resource=\"%s\",health=\"unhealthy\"} %zu\n",
			    m.pools[i].resource, m.pools[i].healthy, m.pools[i].resource, m.pools[i].unhealthy);
	add(&t, "# HELP xevf_kubelet_registered Whether the pool is registered with the kubelet.\n"
		"# TYPE xevf_kubelet_registered gauge\n");
	for (size_t i = 0; i < m.npools; i++)
		if (m.pools[i].active)
			add(&t, "xevf_kubelet_registered{resource=\"%s\"} %d\n", m.pools[i].resource, m.pools[i].registered);
	add(&t, "# HELP xevf_kubelet_registrations_total Registration attempts with the kubelet.\n"
		"# TYPE xevf_kubelet_registrations_total counter\n");
	for (size_t i = 0; i < m.npools; i++)
		add(&t, "xevf_kubelet_registrations_total{resource=\"%s\",result=\"success\"} %llu\n"
			"xevf_kubelet_registrations_total{resource=\"%s\",result=\"failure\"} %llu\n",
		    m.pools[i].resource, (unsigned long long)m.pools[i].registrations_ok, m.pools[i].resource,
		    (unsigned long long)m.pools[i].registrations_failed);
	add(&t, "# HELP xevf_allocations_total Containers given VFs by Allocate.\n# TYPE xevf_allocations_total counter\n");
	for (size_t i = 0; i < m.npools; i++)
		add(&t, "xevf_allocations_total{resource=\"%s\"} %llu\n", m.pools[i].resource,
		    (unsigned long long)m.pools[i].allocations);
	add(&t, "# HELP xevf_allocated_devices_total VFs given out by Allocate.\n"
		"# TYPE xevf_allocated_devices_total counter\n");
	for (size_t i = 0; i < m.npools; i++)
		add(&t, "xevf_allocated_devices_total{resource=\"%s\"} %llu\n", m.pools[i].resource,
		    (unsigned long long)m.pools[i].allocated_devices);
	add(&t, "# HELP xevf_allocate_refused_total Allocate requests refused (unknown, unhealthy or repeated ids).\n"
		"# TYPE xevf_allocate_refused_total counter\n");
	for (size_t i = 0; i < m.npools; i++)
		add(&t, "xevf_allocate_refused_total{resource=\"%s\"} %llu\n", m.pools[i].resource,
		    (unsigned long long)m.pools[i].refused);
	add(&t, "# HELP xevf_allocate_duration_seconds Time to answer Allocate.\n"
		"# TYPE xevf_allocate_duration_seconds histogram\n");
	/* each observation was counted in every bucket it fits: already cumulative */
	for (size_t i = 0; i < NBUCKETS; i++)
		add(&t, "xevf_allocate_duration_seconds_bucket{le=\"%g\"} %llu\n", latency_buckets[i],
		    (unsigned long long)m.buckets[i]);
	add(&t, "xevf_allocate_duration_seconds_bucket{le=\"+Inf\"} %llu\nxevf_allocate_duration_seconds_sum %.6f\n"
		"xevf_allocate_duration_seconds_count %llu\n",
	    (unsigned long long)m.latency_count, m.latency_sum, (unsigned long long)m.latency_count);
	add(&t, "# HELP xevf_driver_bind_failures_total VFs that could not be given a VFIO driver.\n"
		"# TYPE xevf_driver_bind_failures_total counter\nxevf_driver_bind_failures_total %llu\n",
	    (unsigned long long)m.bind_failures);
	add(&t, "# HELP xevf_vf_profile_refused_total Profile values the kernel refused to set on a VF.\n"
		"# TYPE xevf_vf_profile_refused_total counter\nxevf_vf_profile_refused_total %llu\n",
	    (unsigned long long)m.profile_refusals);
	add(&t, "# HELP xevf_vf_profile_info A pool VF's profile and quotas as xe shows them (sriov_admin/, debugfs).\n"
		"# TYPE xevf_vf_profile_info gauge\n");
	for (size_t i = 0; i < m.nprofiles; i++)
		add(&t, "xevf_vf_profile_info{resource=\"%s\",pci=\"%s\",key=\"%s\",value=\"%s\"} 1\n",
		    m.profiles[i].resource, m.profiles[i].pci, m.profiles[i].key, m.profiles[i].value);
	add(&t, "# HELP xevf_loop_wakeups_total Times the agent's main loop woke up (an event or a deadline); at idle it sleeps.\n"
		"# TYPE xevf_loop_wakeups_total counter\nxevf_loop_wakeups_total %llu\n",
	    (unsigned long long)m.loop_wakeups);
	add(&t, "# HELP xevf_migrations_total Live migrations by outcome.\n# TYPE xevf_migrations_total counter\n");
	for (size_t i = 0; i < m.migrations.n; i++)
		add(&t, "xevf_migrations_total{outcome=\"%s\"} %llu\n", m.migrations.v[i].name,
		    (unsigned long long)m.migrations.v[i].count);
	add(&t, "# HELP xevf_migration_targets_total KubeVirt migration target pods this agent found a VF for, by "
		"outcome.\n# TYPE xevf_migration_targets_total counter\n");
	for (size_t i = 0; i < m.migration_targets.n; i++)
		add(&t, "xevf_migration_targets_total{outcome=\"%s\"} %llu\n", m.migration_targets.v[i].name,
		    (unsigned long long)m.migration_targets.v[i].count);
	pthread_mutex_unlock(&m.lock);
	if (t.failed) {
		free(t.buf);
		return NULL;
	}
	return t.buf;
}

static char *str(const char *s)
{
	return strdup(s);
}

int metrics_health(int64_t now_ms, char **body)
{
	int64_t age;

	pthread_mutex_lock(&m.lock);
	age = now_ms - m.heartbeat_ms;
	pthread_mutex_unlock(&m.lock);
	if (age > HEARTBEAT_STALE_MS) {
		*body = str("main loop stalled\n");
		return 503;
	}
	*body = str("ok\n");
	return 200;
}

int metrics_readiness(char **body)
{
	struct text t = {0};
	int code = 200;
	size_t active = 0;

	pthread_mutex_lock(&m.lock);
	for (size_t i = 0; i < m.npools; i++) {
		if (!m.pools[i].active)
			continue;
		active++;
		if (!m.pools[i].registered) {
			add(&t, "%s: not registered with the kubelet\n", m.pools[i].resource);
			code = 503;
		}
	}
	pthread_mutex_unlock(&m.lock);
	if (!active) {
		add(&t, "no pool is serving yet\n");
		code = 503;
	}
	if (code == 200)
		add(&t, "ok\n");
	*body = t.failed ? NULL : t.buf;
	if (!*body)
		*body = str("?\n");
	return code;
}

void metrics_reset(void)
{
	pthread_mutex_lock(&m.lock);
	for (size_t i = 0; i < m.npools; i++)
		free(m.pools[i].resource);
	free(m.pools);
	outcomes_free(&m.migrations);
	outcomes_free(&m.migration_targets);
	free(m.status);
	m.refresh = NULL;
	m.refresh_ctx = NULL;
	m.pools = NULL;
	m.status = NULL;
	m.npools = 0;
	memset(m.buckets, 0, sizeof(m.buckets));
	m.latency_count = 0;
	m.latency_sum = 0;
	m.bind_failures = 0;
	m.loop_wakeups = 0;
	m.profile_refusals = 0;
	profiles_free(m.profiles, m.nprofiles);
	m.profiles = NULL;
	m.nprofiles = 0;
	pthread_mutex_unlock(&m.lock);
}
