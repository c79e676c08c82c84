#include "xevf_sriov.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>

#include "xevf_sysfs.h"

#define PROVISIONING_MAX_ATTRS 64

static int pf_path(const struct xevf_roots *roots, const char *pf_addr, const char *attr, char **out)
{
	const char *root = roots && roots->sysfs ? roots->sysfs : "/sys";
	return xevf_asprintf(out, "%s/bus/pci/devices/%s/%s", root, pf_addr, attr);
}

/* The PF's sriov_admin/vfN/profile directory for VF index vf_index (N counts
 * from 1), or a file in it when file is not NULL. */
static int vf_profile_path(const struct xevf_roots *roots, const char *pf_addr, unsigned vf_index, const char *file,
			   char **out)
{
	char *attr = NULL;
	int rc = file ? xevf_asprintf(&attr, "sriov_admin/vf%u/profile/%s", vf_index + 1, file)
		      : xevf_asprintf(&attr, "sriov_admin/vf%u/profile", vf_index + 1);

	if (rc == 0)
		rc = pf_path(roots, pf_addr, attr, out);
	free(attr);
	return rc;
}

/* xe's finer per-VF quotas, in debugfs per GT (<debugfs>/dri/<pf>/gt0/vfN/):
 * the GGTT, local memory, GuC contexts and doorbells a VF gets. xe-vfio-pci
 * restores a state only into a VF whose GGTT has the source's size. */
static const char *const debugfs_quotas[] = {"ggtt_quota", "lmem_quota", "contexts_quota", "doorbells_quota"};
#define NDEBUGFS_QUOTAS (sizeof(debugfs_quotas) / sizeof(debugfs_quotas[0]))

static bool is_debugfs_quota(const char *file)
{
	for (size_t i = 0; i < NDEBUGFS_QUOTAS; i++)
		if (strcmp(debugfs_quotas[i], file) == 0)
			return true;
	return false;
}

/* <debugfs>/dri/<pf>/gt0/vfN[/file] (debugfs is mounted at <sysfs>/kernel/debug). */
static int vf_quota_path(const struct xevf_roots *roots, const char *pf_addr, unsigned vf_index, const char *file,
			 char **out)
{
	const char *root = roots && roots->sysfs ? roots->sysfs : "/sys";

	return file ? xevf_asprintf(out, "%s/kernel/debug/dri/%s/gt0/vf%u/%s", root, pf_addr, vf_index + 1, file)
		    : xevf_asprintf(out, "%s/kernel/debug/dri/%s/gt0/vf%u", root, pf_addr, vf_index + 1);
}

bool xevf_sriov_quotas_exposed(const struct xevf_roots *roots, const char *pf_addr)
{
	char *path = NULL;
	bool exposed = vf_quota_path(roots, pf_addr, 0, NULL, &path) == 0 && xevf_path_exists(path);

	free(path);
	return exposed;
}

int xevf_sriov_count_vfs(const struct xevf_roots *roots, const char *pf_addr)
{
	char *dir_path = NULL;
	DIR *dir;
	struct dirent *e;
	int n = 0;

	if (pf_path(roots, pf_addr, "", &dir_path))
		return -ENOMEM;
	dir = opendir(dir_path);
	free(dir_path);
	if (!dir)
		return -errno;
	while ((e = readdir(dir)))
		if (strncmp(e->d_name, "virtfn", 6) == 0)
			n++;
	closedir(dir);
	return n;
}

static int read_attr(const struct xevf_roots *roots, const char *pf_addr, const char *attr, long *v,
		     struct xevf_err *err)
{
	char *path = NULL;
	int rc;

	if (pf_path(roots, pf_addr, attr, &path))
		return xevf_err_set(err, ENOMEM, "%s: out of memory", pf_addr);
	rc = xevf_read_long(path, 10, v, err);
	if (rc == -ENOENT)
		xevf_err_set(err, ENOENT, "%s: %s does not exist: this PF or kernel has no SR-IOV support "
			     "(CONFIG_PCI_IOV), or the device is gone", pf_addr, path);
	free(path);
	return rc;
}

static int write_attr(const struct xevf_roots *roots, const char *pf_addr, const char *attr, long v,
		      struct xevf_err *err)
{
	char *path = NULL, text[24];
	int rc;

	if (pf_path(roots, pf_addr, attr, &path))
		return xevf_err_set(err, ENOMEM, "%s: out of memory", pf_addr);
	snprintf(text, sizeof(text), "%ld", v);
	rc = xevf_sysfs_write(roots, path, text, err);
	if (rc) {
		/* prefix the PF so that the message names the device */
		char *inner = strdup(xevf_err_msg(err));
		xevf_err_set(err, -rc, "PF %s: %s", pf_addr, inner ? inner : "write failed");
		free(inner);
	}
	free(path);
	return rc;
}

static int wait_for_vfs(const struct xevf_roots *roots, const char *pf_addr, long want, const struct xevf_wait *wait,
			struct xevf_err *err)
{
	int waited = 0, n = -1;

	do {
		n = xevf_sriov_count_vfs(roots, pf_addr);
		if (n == want)
			return 0;
	} while (xevf_wait_step(wait, &waited));
	if (xevf_wait_stopped(wait))
		return xevf_err_set(err, ECANCELED, "PF %s: stopped waiting for %ld VF(s) after %d ms (%d there)", pf_addr,
				    want, waited, n);
	return xevf_err_set(err, ETIMEDOUT, "PF %s: sriov_numvfs was set to %ld but %d VF(s) appeared within %d ms; "
			    "check dmesg", pf_addr, want, n, wait ? wait->timeout_ms : 0);
}

int xevf_sriov_set_numvfs(const struct xevf_roots *roots, const char *pf_addr, long want, const struct xevf_wait *wait,
			  struct xevf_err *err)
{
	long total = 0, current = 0, autoprobe = 0;
	int rc;

	if (want < 0)
		return xevf_err_set(err, EINVAL, "PF %s: %ld is not a number of VFs", pf_addr, want);
	if ((rc = read_attr(roots, pf_addr, "sriov_totalvfs", &total, err)))
		return rc;
	if (want > total)
		return xevf_err_set(err, EINVAL, "PF %s supports at most %ld VFs (sriov_totalvfs); %ld were asked for",
				    pf_addr, total, want);
	if ((rc = read_attr(roots, pf_addr, "sriov_numvfs", &current, err)))
		return rc;
	/* Without this the kernel binds new VFs to the PF's own driver (xe),
	 * which the host would then have to give up again. */
	if (read_attr(roots, pf_addr, "sriov_drivers_autoprobe", &autoprobe, NULL) == 0 && autoprobe != 0 &&
	    (rc = write_attr(roots, pf_addr, "sriov_drivers_autoprobe", 0, err)))
		return rc;
	if (current == want)
		return wait_for_vfs(roots, pf_addr, want, wait, err);
	if (current != 0) {
		/* The kernel refuses to go from one non-zero count to another. */
		if ((rc = write_attr(roots, pf_addr, "sriov_numvfs", 0, err)))
			return rc;
		if ((rc = wait_for_vfs(roots, pf_addr, 0, wait, err)))
			return rc;
	}
	if (want == 0)
		return 0;
	if ((rc = write_attr(roots, pf_addr, "sriov_numvfs", want, err)))
		return rc;
	return wait_for_vfs(roots, pf_addr, want, wait, err);
}

const char *xevf_kv_get(const struct xevf_kv *kv, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(kv[i].key, key) == 0)
			return kv[i].value;
	return NULL;
}

void xevf_kv_free(struct xevf_kv *kv, size_t n)
{
	for (size_t i = 0; kv && i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

static int cmp_kv(const void *a, const void *b)
{
	return strcmp(((const struct xevf_kv *)a)->key, ((const struct xevf_kv *)b)->key);
}

/* Adds each readable attribute file of dir to kv (write-only ones are not
 * state); 0, or -errno when dir cannot be listed. */
static int read_dir_attrs(const char *dir_path, struct xevf_kv *kv, size_t *count)
{
	DIR *dir = opendir(dir_path);
	struct dirent *e;

	if (!dir)
		return -errno;
	while ((e = readdir(dir)) && *count < PROVISIONING_MAX_ATTRS) {
		char *path = NULL, *value = NULL;
		if (e->d_name[0] == '.')
			continue;
		if (xevf_asprintf(&path, "%s/%s", dir_path, e->d_name))
			break;
		if (xevf_read_text(path, 256, &value, NULL) == 0) {
			if (!(kv[*count].key = strdup(e->d_name))) {
				free(value);
				free(path);
				break;
			}
			kv[(*count)++].value = value;
		}
		free(path);
	}
	closedir(dir);
	return 0;
}

/* Adds the debugfs quotas the VF shows to kv; true when it shows any. */
static bool read_quotas(const struct xevf_roots *roots, const char *pf_addr, unsigned vf_index, struct xevf_kv *kv,
			size_t *count)
{
	bool any = false;

	for (size_t i = 0; i < NDEBUGFS_QUOTAS && *count < PROVISIONING_MAX_ATTRS; i++) {
		char *path = NULL, *value = NULL;
		if (vf_quota_path(roots, pf_addr, vf_index, debugfs_quotas[i], &path) == 0 &&
		    xevf_read_text(path, 256, &value, NULL) == 0) {
			if ((kv[*count].key = strdup(debugfs_quotas[i]))) {
				kv[(*count)++].value = value;
				value = NULL;
			}
			any = true;
		}
		free(value);
		free(path);
	}
	return any;
}

int xevf_sriov_read_provisioning(const struct xevf_roots *roots, const char *pf_addr, unsigned vf_index,
				 struct xevf_kv **out, size_t *n, struct xevf_err *err)
{
	char *dir_path = NULL;
	struct xevf_kv *kv;
	size_t count = 0;
	int rc;
	bool quotas;

	*out = NULL;
	*n = 0;
	if (vf_profile_path(roots, pf_addr, vf_index, NULL, &dir_path) ||
	    !(kv = calloc(PROVISIONING_MAX_ATTRS, sizeof(*kv)))) {
		free(dir_path);
		return xevf_err_set(err, ENOMEM, "%s: out of memory", pf_addr);
	}
	rc = read_dir_attrs(dir_path, kv, &count);
	quotas = read_quotas(roots, pf_addr, vf_index, kv, &count);
	if (rc < 0 && !quotas) {
		rc = xevf_err_set(err, -rc, "PF %s: cannot list %s: %s", pf_addr, dir_path, strerror(-rc));
		free(dir_path);
		xevf_kv_free(kv, count);
		return rc;
	}
	free(dir_path);
	if (count > 1)
		qsort(kv, count, sizeof(*kv), cmp_kv);
	*out = kv;
	*n = count;
	return 0;
}

int xevf_sriov_write_profile(const struct xevf_roots *roots, const char *pf_addr, unsigned vf_index, const char *file,
			     const char *value, struct xevf_err *err)
{
	char *path = NULL;
	int rc;

	if (is_debugfs_quota(file) ? vf_quota_path(roots, pf_addr, vf_index, file, &path)
				   : vf_profile_path(roots, pf_addr, vf_index, file, &path))
		return xevf_err_set(err, ENOMEM, "%s: out of memory", pf_addr);
	rc = xevf_sysfs_write(roots, path, value, err);
	free(path);
	return rc;
}
