/* Finding, loading and binding a VF's VFIO driver; SR-IOV enablement; in-use
 * detection; uevent parsing. On generated trees, with the real depmod index
 * and, where the kernel must react, the simulated kernel. */
#include "testutil.h"

#include <errno.h>
#include <signal.h>

#include "xevf_sriov.h"
#include "xevf_uevent.h"
#include "xevf_discovery.h"
#include "xevf_vfio_driver.h"

#define RELEASE "6.99.0-sim"
#define XE_MODALIAS "pci:v00008086d0000E211sv00008086sd00000000bc03sc00i00"

static char *modules_root(const struct sim *s)
{
	return pathf("%s/lib/modules", s->dir);
}

/* Runs the simulated kernel in the background for a few seconds. */
static void start_sim_kernel(const struct sim *s, int seconds)
{
	char *line = pathf("(python3 %s kernel %s %d >%s/kernel.log 2>&1; touch %s/kernel.done) &", SIMHOST, s->dir,
			   seconds, s->dir, s->dir);
	assert_int_equal(system(line), 0);
	free(line);
	usleep(400 * 1000); /* python start-up */
}

/* Until the simulated kernel has ended and written its log: its run lasts
 * its seconds from its own start, which a loaded machine delays. */
static void wait_sim_kernel(const struct sim *s)
{
	char *done = pathf("%s/kernel.done", s->dir);

	for (int i = 0; i < 600 && access(done, F_OK) != 0; i++)
		usleep(100 * 1000);
	assert_int_equal(access(done, F_OK), 0);
	free(done);
}

static void test_module_index_errors_say_what_to_do(void **state)
{
	struct sim s = sim_create("--pfs 1 --vfs 1");
	struct xevf_modules *m = NULL;
	struct xevf_err err = XEVF_ERR_INIT;
	char *root = modules_root(&s), *dir = pathf("%s/%s", root, RELEASE), *expect;
	(void)state;

	assert_int_equal(xevf_modules_open(root, RELEASE, &m, &err), -ENOENT);
	expect = pathf("no modules for kernel %s: %s does not exist (mount the host's /lib/modules into the agent's "
		       "container)", RELEASE, dir);
	assert_string_equal(xevf_err_msg(&err), expect);
	free(expect);
	{
		char *lib = pathf("%s/lib", s.dir);
		assert_int_equal(mkdir(lib, 0755), 0);
		assert_int_equal(mkdir(root, 0755), 0);
		assert_int_equal(mkdir(dir, 0755), 0);
		free(lib);
	}
	assert_int_equal(xevf_modules_open(root, RELEASE, &m, &err), -ENOENT);
	assert_non_null(strstr(xevf_err_msg(&err), "modules.dep.bin is missing: run depmod " RELEASE));
	assert_null(m);
	xevf_err_clear(&err);
	free(root);
	free(dir);
	sim_destroy(&s);
}

static void test_lookup_finds_variant_and_generic(void **state)
{
	struct sim s = sim_create("--pfs 1 --vfs 1");
	struct xevf_modules *m = NULL;
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_vfio_match match;
	char *root = modules_root(&s);
	(void)state;

	simhost(s.dir, "add-modules", NULL);
	assert_int_equal(xevf_modules_open(root, RELEASE, &m, &err), 0);
	assert_string_equal(xevf_modules_release(m), RELEASE);
	assert_int_equal(xevf_vfio_lookup(m, XE_MODALIAS, &match, &err), 0);
	assert_string_equal(match.variant, "xe_vfio_pci");
	assert_true(match.generic);
	xevf_vfio_match_free(&match);
	/* an NVMe: only the generic driver matches */
	assert_int_equal(xevf_vfio_lookup(m, "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02", &match, &err), 0);
	assert_null(match.variant);
	assert_true(match.generic);
	xevf_vfio_match_free(&match);
	assert_int_equal(xevf_vfio_lookup(m, "usb:v1234p5678", &match, &err), -EINVAL);
	assert_non_null(strstr(xevf_err_msg(&err), "is not a PCI modalias"));
	xevf_err_clear(&err);
	xevf_modules_close(m);
	free(root);
	sim_destroy(&s);
}

static void test_loaded_module_and_its_driver_name(void **state)
{
	struct sim s = sim_create("--pfs 1 --vfs 1");
	struct xevf_roots roots = {s.sysfs, s.dev};
	struct xevf_modules *m = NULL;
	struct xevf_err err = XEVF_ERR_INIT;
	char *root = modules_root(&s), *driver = NULL;
	(void)state;

	simhost(s.dir, "add-modules", NULL);
	assert_int_equal(xevf_modules_open(root, RELEASE, &m, &err), 0);
	/* shown as loaded in the (simulated) sysfs: nothing is inserted */
	assert_int_equal(xevf_module_load(m, &roots, "xe_vfio_pci", &err), 0);
	assert_int_equal(xevf_module_pci_driver(&roots, "xe_vfio_pci", &driver), 0);
	assert_string_equal(driver, "xe-vfio-pci");
	free(driver);
	assert_int_equal(xevf_module_pci_driver(&roots, "mlx5_vfio_pci", &driver), 0);
	assert_string_equal(driver, "mlx5-vfio-pci"); /* not loaded: the name's convention */
	free(driver);
	xevf_modules_close(m);
	free(root);
	sim_destroy(&s);
}

static void test_bind_with_the_simulated_kernel(void **state)
{
	struct sim s = sim_create("--pfs 1 --vfs 2 --vf-driver none");
	struct xevf_roots roots = {s.sysfs, s.dev};
	struct xevf_err err = XEVF_ERR_INIT;
	char *link = sim_dev_file(&s, "0000:03:00.1", "driver"), *name = NULL;
	(void)state;

	start_sim_kernel(&s, 3);
	assert_int_equal(xevf_vf_bind(&roots, "0000:03:00.1", "vfio-pci", XEVF_WAIT_MS(2000), &err), 0);
	assert_int_equal(xevf_readlink_basename(link, &name, NULL), 0);
	assert_string_equal(name, "vfio-pci");
	free(name);
	/* already bound: nothing to do */
	assert_int_equal(xevf_vf_bind(&roots, "0000:03:00.1", "vfio-pci", XEVF_WAIT_MS(0), &err), 0);
	free(link);
	wait_sim_kernel(&s);
	sim_destroy(&s);
}

static void test_bind_that_does_not_happen_names_vf_and_driver(void **state)
{
	struct sim s = sim_create("--pfs 1 --vfs 1 --vf-driver none");
	struct xevf_roots roots = {s.sysfs, s.dev};
	struct xevf_err err = XEVF_ERR_INIT;
	char *override = sim_dev_file(&s, "0000:03:00.1", "driver_override"), *text = NULL;
	(void)state;

	/* no simulated kernel: the writes land, nothing binds */
	assert_int_equal(xevf_vf_bind(&roots, "0000:03:00.1", "xe-vfio-pci", XEVF_WAIT_MS(100), &err), -ENODEV);
	assert_string_equal(xevf_err_msg(&err), "VF 0000:03:00.1: still unbound 100 ms after asking for xe-vfio-pci "
						"(driver_override + drivers_probe); is the xe-vfio-pci driver loaded? check dmesg");
	assert_int_equal(xevf_read_text(override, 64, &text, NULL), 0);
	assert_string_equal(text, "xe-vfio-pci");
	free(text);
	/* a missing sysfs file: ENOENT with the file and what it means */
	assert_int_equal(unlink(override), 0);
	assert_int_equal(xevf_vf_bind(&roots, "0000:03:00.1", "xe-vfio-pci", XEVF_WAIT_MS(100), &err), -ENOENT);
	assert_non_null(strstr(xevf_err_msg(&err), "VF 0000:03:00.1: cannot open "));
	assert_non_null(strstr(xevf_err_msg(&err), "driver_override for writing: No such file or directory (the file does "
						   "not exist: the kernel or driver lacks this feature, or the device vanished)"));
	xevf_err_clear(&err);
	free(override);
	sim_destroy(&s);
}

static void test_numvfs(void **state)
{
	struct sim s = sim_create("--pfs 1 --vfs 2");
	struct xevf_roots roots = {s.sysfs, s.dev};
	struct xevf_err err = XEVF_ERR_INIT;
	char *log = pathf("%s/kernel.log", s.dir), *text = NULL, *autoprobe = sim_dev_file(&s, "0000:03:00.0",
												"sriov_drivers_autoprobe");
	(void)state;

	write_file(autoprobe, "1\n", 2);
	assert_int_equal(xevf_sriov_set_numvfs(&roots, "0000:03:00.0", 9, XEVF_WAIT_MS(100), &err), -EINVAL);
	assert_string_equal(xevf_err_msg(&err), "PF 0000:03:00.0 supports at most 2 VFs (sriov_totalvfs); 9 were asked for");
	/* already right: only autoprobe is turned off */
	assert_int_equal(xevf_sriov_set_numvfs(&roots, "0000:03:00.0", 2, XEVF_WAIT_MS(100), &err), 0);
	assert_int_equal(xevf_read_text(autoprobe, 16, &text, NULL), 0);
	assert_string_equal(text, "0");
	free(text);
	/* no kernel to remove the VFs: a timeout that says what happened */
	assert_int_equal(xevf_sriov_set_numvfs(&roots, "0000:03:00.0", 1, XEVF_WAIT_MS(100), &err), -ETIMEDOUT);
	assert_string_equal(xevf_err_msg(&err), "PF 0000:03:00.0: sriov_numvfs was set to 0 but 2 VF(s) appeared within "
						"100 ms; check dmesg");
	/* with the simulated kernel: through 0, then 1 */
	start_sim_kernel(&s, 3);
	assert_int_equal(xevf_sriov_set_numvfs(&roots, "0000:03:00.0", 1, XEVF_WAIT_MS(2000), &err), 0);
	assert_int_equal(xevf_sriov_count_vfs(&roots, "0000:03:00.0"), 1);
	wait_sim_kernel(&s);
	assert_int_equal(xevf_read_text(log, 4096, &text, NULL), 0);
	assert_string_equal(text, "numvfs 0000:03:00.0 0\nnumvfs 0000:03:00.0 1");
	free(text);
	/* a PF without SR-IOV attributes */
	assert_int_equal(xevf_sriov_set_numvfs(&roots, "0000:00:1f.0", 1, XEVF_WAIT_MS(100), &err), -ENOENT);
	assert_non_null(strstr(xevf_err_msg(&err), "has no SR-IOV support (CONFIG_PCI_IOV), or the device is gone"));
	xevf_err_clear(&err);
	free(log);
	free(autoprobe);
	sim_destroy(&s);
}

static void test_nodes_in_use_from_proc(void **state)
{
	char *proc = temp_dir(), *fd = pathf("%s/4242/fd", proc), *l1 = pathf("%s/3", fd), *l2 = pathf("%s/4", fd);
	char *l3 = pathf("%s/5", fd), *self = pathf("%s/self", proc), *pid = pathf("%s/4242", proc);
	char **paths = NULL;
	size_t n = 0;
	(void)state;

	assert_int_equal(mkdir(pid, 0755), 0);
	assert_int_equal(mkdir(fd, 0755), 0);
	assert_int_equal(mkdir(self, 0755), 0);
	assert_int_equal(symlink("/dev/vfio/12", l1), 0);
	assert_int_equal(symlink("/dev/vfio/vfio", l2), 0); /* the container node is shared, not a VF */
	assert_int_equal(symlink("/dev/vfio/devices/vfio3", l3), 0);
	assert_int_equal(xevf_vfio_nodes_in_use(proc, &paths, &n), 0);
	assert_int_equal(n, 2);
	assert_true(xevf_strv_has(paths, n, "/dev/vfio/12"));
	assert_true(xevf_strv_has(paths, n, "/dev/vfio/devices/vfio3"));
	assert_false(xevf_strv_has(paths, n, "/dev/vfio/vfio"));
	xevf_strv_free(paths, n);
	rm_tree(proc);
	free(proc);
	free(fd);
	free(l1);
	free(l2);
	free(l3);
	free(self);
	free(pid);
}

static void test_uevent_parsing(void **state)
{
	static const char bind[] = "bind@/devices/pci0000:00/0000:00:02.1\0ACTION=bind\0DEVPATH=/devices/pci0000:00/"
				   "0000:00:02.1\0SUBSYSTEM=pci\0DRIVER=vfio-pci\0PCI_SLOT_NAME=0000:00:02.1\0SEQNUM=1234";
	static const char udev[] = "libudev\0\xfe\xed\xca\xfe";
	struct xevf_uevent ev;
	(void)state;

	assert_int_equal(xevf_uevent_parse(bind, sizeof(bind), &ev), 0);
	assert_string_equal(ev.action, "bind");
	assert_string_equal(ev.devpath, "/devices/pci0000:00/0000:00:02.1");
	assert_string_equal(ev.subsystem, "pci");
	assert_string_equal(ev.driver, "vfio-pci");
	assert_string_equal(ev.pci_slot, "0000:00:02.1");
	xevf_uevent_clear(&ev);
	assert_int_equal(xevf_uevent_parse(udev, sizeof(udev), &ev), -EINVAL);
	assert_int_equal(xevf_uevent_parse("add@", 5, &ev), -EINVAL);
	assert_int_equal(xevf_uevent_parse("@/devices", 10, &ev), -EINVAL);
	assert_int_equal(xevf_uevent_parse("add@/devices", 12, &ev), -EINVAL); /* no NUL: truncated */
	assert_int_equal(xevf_uevent_parse("", 0, &ev), -EINVAL);
	/* keys without values and a last field without NUL are tolerated */
	assert_int_equal(xevf_uevent_parse("remove@/devices/x\0NOVALUE\0SUBSYSTEM=vfio", 40, &ev), 0);
	assert_string_equal(ev.subsystem, "vfio");
	xevf_uevent_clear(&ev);
}

static void test_errno_hints(void **state)
{
	(void)state;
	assert_non_null(strstr(xevf_errno_hint(EBUSY), "running VM"));
	assert_non_null(strstr(xevf_errno_hint(-EPERM), "privileged"));
	assert_non_null(strstr(xevf_errno_hint(ENODEV), "gone"));
	assert_non_null(strstr(xevf_errno_hint(ENOTTY), "does not support"));
	assert_non_null(strstr(xevf_errno_hint(EROFS), "read-write"));
	assert_non_null(xevf_errno_hint(12345));
}

/* mkdir -p */
static void mkdirs(const char *path)
{
	char *cmd = pathf("mkdir -p '%s'", path);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static void put(const char *dir, const char *name, const char *text)
{
	char *path = pathf("%s/%s", dir, name);
	mkdirs(dir);
	write_file(path, text, strlen(text));
	free(path);
}

static void test_driver_and_firmware_versions(void **state)
{
	(void)state;
	char *root = temp_dir(), *sys = pathf("%s/sys", root), *out = NULL;
	char *xvp = pathf("%s/module/xe_vfio_pci", sys), *xe = pathf("%s/module/xe", sys);
	char *uc = pathf("%s/kernel/debug/dri/0000:03:00.0/gt0/uc", sys);
	struct xevf_roots roots = {sys, NULL};

	put(xvp, "srcversion", "ABC123\n");
	put(xe, "version", "1.1\n");
	put(xe, "srcversion", "DEF\n");
	assert_int_equal(xevf_driver_version(&roots, "xe-vfio-pci", &out), 0); /* module xe_vfio_pci */
	assert_string_equal(out, "ABC123");
	free(out);
	assert_int_equal(xevf_driver_version(&roots, "xe", &out), 0); /* version before srcversion */
	assert_string_equal(out, "1.1");
	free(out);
	assert_int_equal(xevf_driver_version(&roots, "vfio-pci", &out), 0);
	assert_null(out);

	assert_int_equal(xevf_guc_version(&roots, "0000:03:00.0", &out), 0);
	assert_null(out); /* debugfs does not show it */
	put(uc, "guc_info", "GuC firmware: xe/bmg_guc_70.bin\n\tstatus: RUNNING\n\tversion: wanted 70.44.1, found 70.45.0\n");
	assert_int_equal(xevf_guc_version(&roots, "0000:03:00.0", &out), 0);
	assert_string_equal(out, "70.45.0");
	free(out);
	rm_tree(root);
	free(root);
	free(sys);
	free(xvp);
	free(xe);
	free(uc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_module_index_errors_say_what_to_do),
		cmocka_unit_test(test_lookup_finds_variant_and_generic),
		cmocka_unit_test(test_loaded_module_and_its_driver_name),
		cmocka_unit_test(test_bind_with_the_simulated_kernel),
		cmocka_unit_test(test_bind_that_does_not_happen_names_vf_and_driver),
		cmocka_unit_test(test_numvfs),
		cmocka_unit_test(test_nodes_in_use_from_proc),
		cmocka_unit_test(test_uevent_parsing),
		cmocka_unit_test(test_errno_hints),
		cmocka_unit_test(test_driver_and_firmware_versions),
	};
	return cmocka_run_group_tests_name("vfio_driver", tests, NULL, NULL);
}
