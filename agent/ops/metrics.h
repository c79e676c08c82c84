/* Counters, gauges and the agent's published state, shared between the main
 * loop (which updates them) and the HTTP threads (which serve them). Every
 * function takes the one lock; none blocks for long, except metrics_refresh,
 * which waits for the main loop without holding it. */
#ifndef XEVF_METRICS_H
#define XEVF_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void metrics_set_pool(const char *resource, size_t healthy, size_t unhealthy, bool registered);
void metrics_forget_pool(const char *resource);
void metrics_allocated(const char *resource, size_t containers, size_t devices, double seconds);
void metrics_allocate_refused(const char *resource);
void metrics_registration(const char *resource, bool ok);
void metrics_bind_failures(uint64_t total);
void metrics_loop_wakeups(uint64_t total);
void metrics_profile_refusals(uint64_t total);

/* A pool VF's profile value, as xevf_vf_profile_info shows it. */
struct metrics_vf_profile {
	char *resource, *pci, *key, *value;
};
/* Replaces the set (copied). */
void metrics_set_vf_profiles(const struct metrics_vf_profile *samples, size_t n);
void metrics_migration(const char *outcome);
/* A KubeVirt migration target pod was handled (targets.c's outcome names). */
void metrics_migration_target(const char *outcome);

/* The main loop calls this whenever it publishes: /healthz fails when that
 * is too long ago. */
void metrics_heartbeat(int64_t now_ms);

/* What brings the published state up to date (the main loop publishes when
 * asked); readers call metrics_refresh before they read. */
void metrics_set_refresh(void (*refresh)(void *ctx), void *ctx);
void metrics_refresh(void);

/* The status document (JSON) that `xevf-agent status` shows; copied. */
void metrics_set_status(const char *json);

/* Prometheus text exposition format; malloc'd. */
char *metrics_render(void);
/* 200 or 503 and a one-line body (malloc'd). */
int metrics_health(int64_t now_ms, char **body);
int metrics_readiness(char **body);
char *metrics_status(void);

void metrics_reset(void);

#endif
