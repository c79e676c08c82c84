#include "profile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "json_read.h"

static const char *const priorities[] = {"low", "normal", "high", NULL};

/* xe takes 32-bit times; a VRAM quota in bytes (1 PiB is far beyond any card);
 * the GGTT is a 4 GiB space; GuC context ids and doorbells are 16-bit. */
static const struct profile_key_info keys[PROFILE_NKEYS] = {
	[PROFILE_EXEC_QUANTUM_MS] = {"execQuantumMs", "exec_quantum_ms", 4294967295L, NULL},
	[PROFILE_PREEMPT_TIMEOUT_US] = {"preemptTimeoutUs", "preempt_timeout_us", 4294967295L, NULL},
	[PROFILE_SCHED_PRIORITY] = {"schedPriority", "sched_priority", 0, priorities},
	[PROFILE_VRAM_QUOTA] = {"vramQuota", "vram_quota", 1L << 50, NULL},
	[PROFILE_GGTT_QUOTA] = {"ggttQuota", "ggtt_quota", 1L << 32, NULL},
	[PROFILE_CONTEXTS_QUOTA] = {"contextsQuota", "contexts_quota", 65535, NULL},
	[PROFILE_DOORBELLS_QUOTA] = {"doorbellsQuota", "doorbells_quota", 65535, NULL},
};

const struct profile_key_info *profile_key_info(enum profile_key k)
{
	return (unsigned)k < PROFILE_NKEYS ? &keys[k] : NULL;
}

static bool is_choice(const char *const *choices, const char *s)
{
	for (size_t i = 0; choices[i]; i++)
		if (strcmp(choices[i], s) == 0)
			return true;
	return false;
}

static int parse_key(const char *k, const char *name, json_object *v, void *ctx, char **error)
{
	struct vf_profile *p = ctx;

	for (int i = 0; i < PROFILE_NKEYS; i++) {
		const struct profile_key_info *info = &keys[i];
		char *s = NULL;
		long n;
		int rc;
		if (strcmp(name, info->config_key) != 0)
			continue;
		if (info->choices) {
			if ((rc = json_read_string(v, k, &s, error)))
				return rc;
			if (!is_choice(info->choices, s)) {
				rc = agent_fail(error, EINVAL, "%s: '%s' is not low, normal or high", k, s);
				free(s);
				return rc;
			}
		} else {
			if ((rc = json_read_long(v, k, 0, info->max, &n, error)))
				return rc;
			if (asprintf(&s, "%ld", n) < 0)
				return agent_fail(error, ENOMEM, "%s: out of memory", k);
		}
		free(p->values[i]);
		p->values[i] = s;
		return 0;
	}
	return agent_fail(error, EINVAL, "%s: unknown key (known: execQuantumMs, preemptTimeoutUs, schedPriority, vramQuota)",
			  k);
}

int vf_profile_parse(json_object *v, const char *key, struct vf_profile *p, char **error)
{
	return json_read_object(v, key, parse_key, p, error);
}

int vf_profile_copy(struct vf_profile *dst, const struct vf_profile *src)
{
	memset(dst, 0, sizeof(*dst));
	for (int i = 0; i < PROFILE_NKEYS; i++)
		if (src->values[i] && !(dst->values[i] = strdup(src->values[i]))) {
			vf_profile_free(dst);
			return -ENOMEM;
		}
	return 0;
}

void vf_profile_free(struct vf_profile *p)
{
	for (int i = 0; i < PROFILE_NKEYS; i++) {
		free(p->values[i]);
		p->values[i] = NULL;
	}
}

bool vf_profile_empty(const struct vf_profile *p)
{
	for (int i = 0; i < PROFILE_NKEYS; i++)
		if (p->values[i])
			return false;
	return true;
}

char *profile_current_value(const char *shown)
{
	const char *open = strchr(shown, '['), *close = open ? strchr(open, ']') : NULL;
	size_t start = 0, len = strlen(shown);

	if (open && close)
		return strndup(open + 1, (size_t)(close - open - 1));
	while (start < len && (shown[start] == ' ' || shown[start] == '\t' || shown[start] == '\n'))
		start++;
	while (len > start && (shown[len - 1] == ' ' || shown[len - 1] == '\t' || shown[len - 1] == '\n'))
		len--;
	return strndup(shown + start, len - start);
}
