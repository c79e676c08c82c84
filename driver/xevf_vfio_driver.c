#include "xevf_vfio_driver.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <libkmod.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "xevf_sysfs.h"

struct xevf_modules {
	struct kmod_ctx *ctx;
	char *dir;
	char *release;
};

int xevf_modules_open(const char *modules_root, const char *release, struct xevf_modules **out,
		      struct xevf_err *err)
{
	struct xevf_modules *m;
	struct utsname u;
	char *index = NULL;
	int rc;

	*out = NULL;
	if (!release) {
		if (uname(&u) < 0)
			return xevf_err_set(err, errno, "uname failed: %s", strerror(errno));
		release = u.release;
	}
	m = calloc(1, sizeof(*m));
	if (!m || !(m->release = strdup(release)) ||
	    xevf_asprintf(&m->dir, "%s/%s", modules_root ? modules_root : "/lib/modules", release) ||
	    xevf_asprintf(&index, "%s/modules.dep.bin", m->dir)) {
		xevf_modules_close(m);
		return xevf_err_set(err, ENOMEM, "opening the module index: out of memory");
	}
	if (!xevf_path_exists(m->dir)) {
		rc = xevf_err_set(err, ENOENT, "no modules for kernel %s: %s does not exist (mount the host's "
			     "/lib/modules into the agent's container)", release, m->dir);
		goto fail;
	}
	if (!xevf_path_exists(index)) {
		rc = xevf_err_set(err, ENOENT, "the module index %s is missing: run depmod %s", index, release);
		goto fail;
	}
	free(index);
	m->ctx = kmod_new(m->dir, NULL);
	if (!m->ctx) {
		xevf_modules_close(m);
		return xevf_err_set(err, ENOMEM, "libkmod could not open %s", release);
	}
	*out = m;
	return 0;
fail:
	free(index);
	xevf_modules_close(m);
	return rc;
}

void xevf_modules_close(struct xevf_modules *m)
{
	if (!m)
		return;
	if (m->ctx)
		kmod_unref(m->ctx);
	free(m->dir);
	free(m->release);
	free(m);
}

const char *xevf_modules_release(const struct xevf_modules *m)
{
	return m->release;
}

const char *xevf_modules_dir(const struct xevf_modules *m)
{
	return m->dir;
}

void xevf_vfio_match_free(struct xevf_vfio_match *match)
{
	free(match->variant);
	match->variant = NULL;
	match->generic = false;
}

int xevf_vfio_lookup(struct xevf_modules *m, const char *modalias, struct xevf_vfio_match *out,
		     struct xevf_err *err)
{
	struct kmod_list *list = NULL, *it;
	char *alias = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (strncmp(modalias, "pci:", 4) != 0)
		return xevf_err_set(err, EINVAL, "'%.64s' is not a PCI modalias", modalias);
	/* VFIO drivers declare their PCI ids with the "vfio_pci:" prefix
	 * (PCI_DRIVER_OVERRIDE_DEVICE_VFIO), so that udev never autoloads them. */
	if (xevf_asprintf(&alias, "vfio_%s", modalias))
		return xevf_err_set(err, ENOMEM, "module lookup: out of memory");
	rc = kmod_module_new_from_lookup(m->ctx, alias, &list);
	if (rc < 0) {
		xevf_err_set(err, -rc, "looking up %s in %s/modules.alias failed: %s", alias, m->dir, strerror(-rc));
		free(alias);
		return rc;
	}
	free(alias);
	kmod_list_foreach(it, list) {
		struct kmod_module *mod = kmod_module_get_module(it);
		const char *name = kmod_module_get_name(mod);
		if (strcmp(name, XEVF_GENERIC_VFIO_MODULE) == 0) {
			out->generic = true;
		} else if (!out->variant || strcmp(name, out->variant) < 0) {
			/* several variants for one device is unheard of; be deterministic */
			free(out->variant);
			out->variant = strdup(name);
		}
		kmod_module_unref(mod);
	}
	kmod_module_unref_list(list);
	return 0;
}

int xevf_module_load(struct xevf_modules *m, const struct xevf_roots *roots, const char *module,
		     struct xevf_err *err)
{
	struct kmod_module *mod = NULL;
	char *loaded = NULL;
	int rc;

	if (xevf_asprintf(&loaded, "%s/module/%s", roots && roots->sysfs ? roots->sysfs : "/sys", module))
		return xevf_err_set(err, ENOMEM, "out of memory");
	rc = xevf_path_exists(loaded);
	free(loaded);
	if (rc)
		return 0;
	rc = kmod_module_new_from_name(m->ctx, module, &mod);
	if (rc < 0)
		return xevf_err_set(err, -rc, "module %s: %s", module, strerror(-rc));
	rc = kmod_module_get_initstate(mod);
	if (rc == KMOD_MODULE_LIVE || rc == KMOD_MODULE_BUILTIN || rc == KMOD_MODULE_COMING) {
		kmod_module_unref(mod);
		return 0;
	}
	rc = kmod_module_probe_insert_module(mod, 0, NULL, NULL, NULL, NULL);
	kmod_module_unref(mod);
	if (rc == -EEXIST || rc == 0)
		return 0;
	if (rc > 0) /* blacklisted or similar */
		return xevf_err_set(err, EPERM, "module %s was not loaded: it is blacklisted", module);
	if (rc == -EPERM)
		return xevf_err_set(err, EPERM, "loading module %s of kernel %s: %s (the agent needs CAP_SYS_MODULE)",
				    module, m->release, strerror(-rc));
	if (rc == -ENOENT)
		return xevf_err_set(err, ENOENT, "module %s is not in %s: install the modules of kernel %s", module,
				    m->dir, m->release);
	return xevf_err_set(err, -rc, "loading module %s of kernel %s failed: %s (%s)", module, m->release,
			    strerror(-rc), xevf_errno_hint(-rc));
}

int xevf_module_pci_driver(const struct xevf_roots *roots, const char *module, char **driver)
{
	const char *root = roots && roots->sysfs ? roots->sysfs : "/sys";
	char *dir_path = NULL;
	DIR *dir;

	*driver = NULL;
	if (xevf_asprintf(&dir_path, "%s/module/%s/drivers", root, module))
		return -ENOMEM;
	dir = opendir(dir_path);
	free(dir_path);
	if (dir) {
		struct dirent *e;
		while ((e = readdir(dir)))
			if (strncmp(e->d_name, "pci:", 4) == 0 && e->d_name[4]) {
				*driver = strdup(e->d_name + 4);
				break;
			}
		closedir(dir);
	}
	if (!*driver) {
		*driver = strdup(module);
		for (char *p = *driver; p && *p; p++)
			if (*p == '_')
				*p = '-';
	}
	return *driver ? 0 : -ENOMEM;
}

static char *vf_path(const struct xevf_roots *roots, const char *vf_addr, const char *attr)
{
	const char *root = roots && roots->sysfs ? roots->sysfs : "/sys";
	char *p = NULL;

	if (xevf_asprintf(&p, "%s/bus/pci/devices/%s/%s", root, vf_addr, attr))
		return NULL;
	return p;
}

static char *current_driver(const struct xevf_roots *roots, const char *vf_addr)
{
	char *link = vf_path(roots, vf_addr, "driver"), *name = NULL;

	if (link && xevf_readlink_basename(link, &name, NULL))
		name = NULL;
	free(link);
	return name;
}

static int write_named(const struct xevf_roots *roots, const char *vf_addr, const char *path, const char *text,
		       struct xevf_err *err)
{
	int rc;

	if (!path)
		return xevf_err_set(err, ENOMEM, "%s: out of memory", vf_addr);
	rc = xevf_sysfs_write(roots, path, text, err);
	if (rc) {
		char *inner = strdup(xevf_err_msg(err));
		xevf_err_set(err, -rc, "VF %s: %s", vf_addr, inner ? inner : "write failed");
		free(inner);
	}
	return rc;
}

int xevf_vf_bind(const struct xevf_roots *roots, const char *vf_addr, const char *driver, const struct xevf_wait *wait,
		 struct xevf_err *err)
{
	const char *root = roots && roots->sysfs ? roots->sysfs : "/sys";
	char *now = current_driver(roots, vf_addr), *path;
	int rc, waited = 0;

	if (now && strcmp(now, driver) == 0) {
		free(now);
		return 0;
	}
	if (now) {
		path = vf_path(roots, vf_addr, "driver/unbind");
		rc = write_named(roots, vf_addr, path, vf_addr, err);
		free(path);
		if (rc) {
			free(now);
			return rc;
		}
	}
	free(now);
	path = vf_path(roots, vf_addr, "driver_override");
	rc = write_named(roots, vf_addr, path, driver, err);
	free(path);
	if (rc)
		return rc;
	path = NULL;
	if (xevf_asprintf(&path, "%s/bus/pci/drivers_probe", root))
		path = NULL;
	rc = write_named(roots, vf_addr, path, vf_addr, err);
	free(path);
	if (rc)
		return rc;
	for (;;) {
		now = current_driver(roots, vf_addr);
		if (now && strcmp(now, driver) == 0) {
			free(now);
			return 0;
		}
		if (!xevf_wait_step(wait, &waited))
			break;
		free(now);
	}
	if (xevf_wait_stopped(wait))
		rc = xevf_err_set(err, ECANCELED, "VF %s: stopped waiting for %s to bind after %d ms", vf_addr, driver, waited);
	else
		rc = xevf_err_set(err, ENODEV, "VF %s: still %s%s %d ms after asking for %s (driver_override + "
				  "drivers_probe); is the %s driver loaded? check dmesg", vf_addr, now ? "bound to " : "unbound",
				  now ? now : "", waited, driver, driver);
	free(now);
	return rc;
}

static int strv_add(char ***v, size_t *n, const char *s)
{
	char **grown;

	if (xevf_strv_has(*v, *n, s))
		return 0;
	grown = realloc(*v, (*n + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	*v = grown;
	(*v)[*n] = strdup(s);
	if (!(*v)[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

/* This process's id as <proc_root> numbers it ("" when it does not say, as a
 * generated tree does): its own VFIO fds are not "in use" by anybody else. */
static void own_pid(const char *root, char *pid, size_t size)
{
	char *self = NULL;
	ssize_t len = -1;

	if (xevf_asprintf(&self, "%s/self", root) == 0)
		len = readlink(self, pid, size - 1);
	free(self);
	pid[len > 0 ? len : 0] = '\0';
}

int xevf_vfio_nodes_in_use(const char *proc_root, char ***paths, size_t *n)
{
	const char *root = proc_root ? proc_root : "/proc";
	DIR *procs = opendir(root);
	struct dirent *p;
	char self[32];
	int rc = 0;

	*paths = NULL;
	*n = 0;
	if (!procs)
		return -errno;
	own_pid(root, self, sizeof(self));
	while (rc == 0 && (p = readdir(procs))) {
		char *fd_dir = NULL;
		DIR *fds;
		struct dirent *f;

		if (!isdigit((unsigned char)p->d_name[0]) || strcmp(p->d_name, self) == 0 ||
		    xevf_asprintf(&fd_dir, "%s/%s/fd", root, p->d_name))
			continue;
		fds = opendir(fd_dir); /* processes come and go: failures are normal */
		while (fds && rc == 0 && (f = readdir(fds))) {
			char *link = NULL, target[256];
			ssize_t len;
			if (f->d_name[0] == '.' || xevf_asprintf(&link, "%s/%s", fd_dir, f->d_name))
				continue;
			len = readlink(link, target, sizeof(target) - 1);
			free(link);
			/* only short /dev/vfio/... targets matter; longer ones are not ours */
			if (len <= 0 || (size_t)len >= sizeof(target) - 1)
				continue;
			target[len] = '\0';
			if (strncmp(target, "/dev/vfio/", 10) == 0 && strcmp(target, "/dev/vfio/vfio") != 0)
				rc = strv_add(paths, n, target);
		}
		if (fds)
			closedir(fds);
		free(fd_dir);
	}
	closedir(procs);
	if (rc) {
		xevf_strv_free(*paths, *n);
		*paths = NULL;
		*n = 0;
	}
	return rc;
}

int xevf_driver_version(const struct xevf_roots *roots, const char *driver, char **out)
{
	static const char *const files[] = {"version", "srcversion"};
	char *module, *path = NULL;

	*out = NULL;
	if (!driver)
		return 0;
	if (!(module = strdup(driver)))
		return -ENOMEM;
	for (char *p = module; *p; p++)
		if (*p == '-')
			*p = '_';
	for (size_t i = 0; i < 2 && !*out; i++) {
		free(path);
		if (xevf_asprintf(&path, "%s/module/%s/%s", roots && roots->sysfs ? roots->sysfs : "/sys", module, files[i])) {
			free(module);
			return -ENOMEM;
		}
		if (xevf_read_text(path, 256, out, NULL) < 0)
			*out = NULL;
	}
	free(path);
	free(module);
	return 0;
}
