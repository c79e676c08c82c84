/* A VF profile: the scheduling and quota settings a pool gives its VFs
 * through xe's sriov_admin/vfN/profile/ files and its debugfs quotas
 * (gt0/vfN/..._quota), one table of keys for the configuration, the preparer,
 * the provisioning of a migration's target and what is reported. */
#ifndef XEVF_CONFIG_PROFILE_H
#define XEVF_CONFIG_PROFILE_H

#include <json-c/json.h>
#include <stdbool.h>

enum profile_key {
	PROFILE_EXEC_QUANTUM_MS,
	PROFILE_PREEMPT_TIMEOUT_US,
	PROFILE_SCHED_PRIORITY,
	PROFILE_VRAM_QUOTA,
	PROFILE_GGTT_QUOTA,
	PROFILE_CONTEXTS_QUOTA,
	PROFILE_DOORBELLS_QUOTA,
	PROFILE_NKEYS
};

struct profile_key_info {
	const char *config_key; /* in a pool's "profile" */
	const char *file;       /* in sriov_admin/vfN/profile/, or a debugfs quota (xevf_sriov.h) */
	long max;               /* numbers: 0..max; 0 for a choice */
	const char *const *choices; /* NULL-terminated, or NULL for a number */
};
const struct profile_key_info *profile_key_info(enum profile_key k);

/* values[k] is what to write (a decimal number or a choice), NULL: leave as
 * the kernel has it. */
struct vf_profile {
	char *values[PROFILE_NKEYS];
};

int vf_profile_parse(json_object *v, const char *key, struct vf_profile *p, char **error);
int vf_profile_copy(struct vf_profile *dst, const struct vf_profile *src);
void vf_profile_free(struct vf_profile *p);
bool vf_profile_empty(const struct vf_profile *p);

/* What a profile file says is set: xe shows a choice as "low [normal]
 * high"; the bracketed one, else the text as it is (malloc'd; NULL when out
 * of memory). */
char *profile_current_value(const char *shown);

#endif
