/* Discovery on generated sysfs trees: what `xevf-agent discover` would show. */
#include "testutil.h"

#include <errno.h>

#include "xevf_discovery.h"

static struct xevf_host *discover_ok(const struct sim *s)
{
	struct xevf_roots roots = {s->sysfs, s->dev};
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_host *host = NULL;

	if (xevf_discover(&roots, NULL, &host, &err))
		fail_msg("discovery failed: %s", xevf_err_msg(&err));
	assert_non_null(host);
	return host;
}

static const struct xevf_vf *vf(const struct xevf_host *h, const char *addr)
{
	const struct xevf_vf *v = xevf_host_find_vf(h, addr);
	if (!v)
		fail_msg("VF %s not discovered", addr);
	return v;
}

static bool has_note(const struct xevf_host *h, const char *a, const char *b)
{
	for (size_t i = 0; i < h->nnotes; i++)
		if (strstr(h->notes[i], a) && (!b || strstr(h->notes[i], b)))
			return true;
	return false;
}

static void test_no_pf_on_a_host_without_xe(void **state)
{
	struct sim s = sim_create("--pfs 0");
	struct xevf_host *h;
	(void)state;

	/* The host still has an Intel ISA bridge, an Intel GPU without SR-IOV and
	 * an NVIDIA GPU with SR-IOV: none of them is an Xe PF. */
	h = discover_ok(&s);
	assert_int_equal(h->npfs, 0);
	assert_int_equal(h->nnotes, 0);
	xevf_host_free(h);
	sim_destroy(&s);
}

static void test_two_pfs_with_seven_vfs_each(void **state)
{
	struct sim s = sim_create("--pfs 2 --vfs 7");
	struct xevf_host *h;
	(void)state;

	h = discover_ok(&s);
	assert_int_equal(h->npfs, 2);
	assert_string_equal(h->pfs[0].addr, "0000:03:00.0");
	assert_string_equal(h->pfs[1].addr, "0000:13:00.0");
	assert_int_equal(h->pfs[0].device_id, 0xe211);
	assert_int_equal(h->pfs[1].device_id, 0xe212);
	assert_int_equal(h->pfs[0].total_vfs, 7);
	assert_int_equal(h->pfs[0].num_vfs, 7);
	assert_string_equal(h->pfs[0].driver, "xe");
	assert_int_equal(h->pfs[1].numa_node, 1);
	assert_non_null(h->vfio_container_node);
	assert_string_equal(h->vfio_container_node, "/dev/vfio/vfio");
	for (size_t p = 0; p < 2; p++) {
		assert_int_equal(h->pfs[p].nvfs, 7);
		for (size_t i = 0; i < 7; i++) {
			const struct xevf_vf *v = &h->pfs[p].vfs[i];
			assert_int_equal(v->vf_index, i);
			assert_string_equal(v->pf_addr, h->pfs[p].addr);
			assert_int_equal(v->vendor_id, 0x8086);
			assert_int_equal(v->revision, 8);
			assert_int_equal(v->numa_node, (int)p);
			assert_string_equal(v->driver, "xe-vfio-pci");
			assert_int_equal(v->driver_kind, XEVF_DRIVER_VFIO_VARIANT);
			assert_true(v->migration_capable);
			assert_true(v->healthy);
			assert_null(v->reason);
			assert_null(v->cdev_node);
		}
	}
	/* VF 7 of the first PF is function 0 of the next device: 0000:03:01.0 */
	assert_string_equal(h->pfs[0].vfs[6].addr, "0000:03:00.7");
	assert_int_equal(vf(h, "0000:03:00.1")->iommu_group, 10);
	assert_string_equal(vf(h, "0000:03:00.1")->group_node, "/dev/vfio/10");
	assert_string_equal(vf(h, "0000:13:00.7")->group_node, "/dev/vfio/23");
	assert_int_equal(h->nnotes, 0);
	xevf_host_free(h);
	sim_destroy(&s);
}

static void test_vf_on_the_wrong_driver_is_unhealthy(void **state)
{
	struct sim s = sim_create("--pfs 1 --vfs 3");
	struct xevf_host *h;
	(void)state;

	simhost(s.dir, "set-driver", "0000:03:00.2 xe");
	simhost(s.dir, "set-driver", "0000:03:00.3 none");
	simhost(s.dir, "set-driver", "0000:03:00.1 vfio-pci");
	h = discover_ok(&s);
	assert_false(vf(h, "0000:03:00.2")->healthy);
	assert_int_equal(vf(h, "0000:03:00.2")->driver_kind, XEVF_DRIVER_OTHER);
	assert_string_equal(vf(h, "0000:03:00.2")->reason,
			    "bound to xe, which is not a VFIO driver; bind it to xe-vfio-pci (or vfio-pci)");
	assert_false(vf(h, "0000:03:00.3")->healthy);
	assert_null(vf(h, "0000:03:00.3")->driver);
	assert_non_null(strstr(vf(h, "0000:03:00.3")->reason, "not bound to any driver"));
	/* generic vfio-pci: usable, but not migratable */
	assert_true(vf(h, "0000:03:00.1")->healthy);
	assert_int_equal(vf(h, "0000:03:00.1")->driver_kind, XEVF_DRIVER_VFIO_PCI);
	assert_false(vf(h, "0000:03:00.1")->migration_capable);
	xevf_host_free(h);
	sim_destroy(&s);
}

static void test_vf_without_iommu_group(void **state)
{
	struct sim s = sim_create("--pfs 1 --vfs 2");
	char *link = sim_dev_file(&s, "0000:03:00.2", "iommu_group");
	struct xevf_host *h;
	(void)state;

	assert_int_equal(unlink(link), 0);
	h = discover_ok(&s);
	assert_int_equal(vf(h, "0000:03:00.2")->iommu_group, -1);
	assert_null(vf(h, "0000:03:00.2")->group_node);
	assert_false(vf(h, "0000:03:00.2")->healthy);
	assert_non_null(strstr(vf(h, "0000:03:00.2")->reason, "no IOMMU group"));
	assert_non_null(strstr(vf(h, "0000:03:00.2")->reason, "intel_iommu=on"));
	assert_true(vf(h, "0000:03:00.1")->healthy);
	xevf_host_free(h);
	free(link);
	sim_destroy(&s);
}

static void test_missing_group_node_under_dev_root(void **state)
{
	struct sim s = sim_create("--pfs 1 --vfs 2");
	struct xevf_host *h;
	char *expect;
	(void)state;

	simhost(s.dir, "remove-group-node", "0000:03:00.1");
	h = discover_ok(&s);
	expect = pathf("its VFIO group node %s/vfio/10 does not exist", s.dev);
	assert_false(vf(h, "0000:03:00.1")->healthy);
	assert_string_equal(vf(h, "0000:03:00.1")->reason, expect);
	assert_true(vf(h, "0000:03:00.2")->healthy);
	xevf_host_free(h);
	free(expect);
	sim_destroy(&s);
}

/* The cheap look after a bind/unbind or a VFIO node change: only what can
 * change is read again, the rest is the scan's copy. */
static void test_recheck_reads_driver_and_nodes_again(void **state)
{
	struct sim s = sim_create("--pfs 2 --vfs 2");
	struct xevf_roots roots = {s.sysfs, s.dev};
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_host *h = discover_ok(&s), *one = NULL, *all = NULL;
	(void)state;

	simhost(s.dir, "set-driver", "0000:03:00.2 none");
	simhost(s.dir, "remove-group-node", "0000:13:00.1");
	/* one VF: only it changes */
	assert_int_equal(xevf_host_recheck(&roots, h, "0000:03:00.2", &one, &err), 0);
	assert_false(vf(one, "0000:03:00.2")->healthy);
	assert_non_null(strstr(vf(one, "0000:03:00.2")->reason, "not bound to any driver"));
	assert_true(vf(one, "0000:13:00.1")->healthy); /* not looked at */
	assert_int_equal(vf(one, "0000:03:00.2")->device_id, vf(h, "0000:03:00.2")->device_id);
	assert_int_equal(one->npfs, h->npfs);
	/* every VF: the missing group node shows too; the scan's host is untouched */
	assert_int_equal(xevf_host_recheck(&roots, h, NULL, &all, &err), 0);
	assert_false(vf(all, "0000:03:00.2")->healthy);
	assert_false(vf(all, "0000:13:00.1")->healthy);
	assert_non_null(strstr(vf(all, "0000:13:00.1")->reason, "does not exist"));
	assert_true(vf(all, "0000:13:00.2")->healthy);
	assert_true(vf(h, "0000:03:00.2")->healthy);
	/* bound again: healthy again */
	simhost(s.dir, "set-driver", "0000:03:00.2 xe-vfio-pci");
	xevf_host_free(one);
	assert_int_equal(xevf_host_recheck(&roots, all, "0000:03:00.2", &one, &err), 0);
	assert_true(vf(one, "0000:03:00.2")->healthy);
	assert_true(vf(one, "0000:03:00.2")->migration_capable);
	xevf_host_free(one);
	xevf_host_free(all);
	xevf_host_free(h);
	sim_destroy(&s);
}

static void test_truncated_config_space(void **state)
{
	struct sim s = sim_create("--pfs 1 --vfs 2");
	char *config = sim_dev_file(&s, "0000:03:00.2", "config");
	struct xevf_host *h;
	(void)state;

	write_file(config, "\x86\x80", 2);
	h = discover_ok(&s);
	/* Still listed and usable; what cannot be read is unknown, and said so. */
	assert_int_equal(vf(h, "0000:03:00.2")->revision, -1);
	assert_int_equal(vf(h, "0000:03:00.2")->device_id, 0xe211);
	assert_true(vf(h, "0000:03:00.2")->healthy);
	assert_true(has_note(h, "0000:03:00.2", "config"));
	assert_true(has_note(h, "0000:03:00.2", "revision unknown"));
	assert_int_equal(vf(h, "0000:03:00.1")->revision, 8);
	xevf_host_free(h);
	free(config);
	sim_destroy(&s);
}

static void test_unreadable_files_affect_only_their_device(void **state)
{
	struct sim s = sim_create("--pfs 2 --vfs 2");
	char *vendor = sim_dev_file(&s, "0000:03:00.1", "vendor");
	char *numvfs = sim_dev_file(&s, "0000:13:00.0", "sriov_numvfs");
	struct xevf_host *h;
	(void)state;

	/* A directory where a file should be: reading fails with EISDIR even as
	 * root, which chmod 000 would not achieve. */
	assert_int_equal(unlink(vendor), 0);
	assert_int_equal(mkdir(vendor, 0755), 0);
	assert_int_equal(unlink(numvfs), 0);
	assert_int_equal(mkdir(numvfs, 0755), 0);
	h = discover_ok(&s);
	assert_int_equal(h->npfs, 2);
	assert_false(vf(h, "0000:03:00.1")->healthy);
	assert_int_equal(vf(h, "0000:03:00.1")->vendor_id, -1);
	assert_true(has_note(h, "0000:03:00.1", "vendor"));
	assert_true(vf(h, "0000:03:00.2")->healthy);
	assert_int_equal(h->pfs[1].num_vfs, -1);
	assert_true(has_note(h, "0000:13:00.0", "sriov_numvfs"));
	assert_int_equal(h->pfs[1].nvfs, 2);
	assert_true(vf(h, "0000:13:00.2")->healthy);
	xevf_host_free(h);
	free(vendor);
	free(numvfs);
	sim_destroy(&s);
}

static void test_iommufd_cdev_is_found(void **state)
{
	struct sim s = sim_create("--pfs 1 --vfs 2 --cdev");
	struct xevf_host *h;
	(void)state;

	h = discover_ok(&s);
	assert_string_equal(h->iommufd_node, "/dev/iommu");
	assert_string_equal(vf(h, "0000:03:00.1")->cdev_node, "/dev/vfio/devices/vfio0");
	assert_string_equal(vf(h, "0000:03:00.2")->cdev_node, "/dev/vfio/devices/vfio1");
	/* With the cdev, a VF is usable even when its legacy group node is gone. */
	simhost(s.dir, "remove-group-node", "0000:03:00.2");
	xevf_host_free(h);
	h = discover_ok(&s);
	assert_true(vf(h, "0000:03:00.2")->healthy);
	xevf_host_free(h);
	sim_destroy(&s);
}

static void test_missing_sysfs_is_an_error_naming_the_path(void **state)
{
	struct xevf_roots roots = {"/nonexistent/xevf-sys", "/nonexistent/xevf-dev"};
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_host *h = NULL;
	(void)state;

	assert_int_equal(xevf_discover(&roots, NULL, &h, &err), -ENOENT);
	assert_null(h);
	assert_string_equal(xevf_err_msg(&err), "cannot scan PCI devices: /nonexistent/xevf-sys/bus/pci/devices "
						"does not exist (is sysfs mounted there?)");
	xevf_err_clear(&err);
}

static void test_pf_with_sriov_disabled_has_no_vfs(void **state)
{
	struct sim s = sim_create("--pfs 1 --vfs 3");
	struct xevf_host *h;
	(void)state;

	simhost(s.dir, "remove-vfs", "0000:03:00.0");
	h = discover_ok(&s);
	assert_int_equal(h->npfs, 1);
	assert_int_equal(h->pfs[0].nvfs, 0);
	assert_int_equal(h->pfs[0].num_vfs, 0);
	assert_int_equal(h->pfs[0].total_vfs, 3);
	xevf_host_free(h);
	sim_destroy(&s);
}

static void test_bogus_virtfn_link_is_noted_not_followed(void **state)
{
	struct sim s = sim_create("--pfs 1 --vfs 1");
	char *link = sim_dev_file(&s, "0000:03:00.0", "virtfn5");
	struct xevf_host *h;
	(void)state;

	assert_int_equal(symlink("../../../etc/passwd", link), 0);
	h = discover_ok(&s);
	assert_int_equal(h->pfs[0].nvfs, 1);
	assert_true(has_note(h, "virtfn5", "not a PCI address"));
	xevf_host_free(h);
	free(link);
	sim_destroy(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_pf_on_a_host_without_xe),
		cmocka_unit_test(test_two_pfs_with_seven_vfs_each),
		cmocka_unit_test(test_vf_on_the_wrong_driver_is_unhealthy),
		cmocka_unit_test(test_vf_without_iommu_group),
		cmocka_unit_test(test_missing_group_node_under_dev_root),
		cmocka_unit_test(test_truncated_config_space),
		cmocka_unit_test(test_unreadable_files_affect_only_their_device),
		cmocka_unit_test(test_iommufd_cdev_is_found),
		cmocka_unit_test(test_missing_sysfs_is_an_error_naming_the_path),
		cmocka_unit_test(test_pf_with_sriov_disabled_has_no_vfs),
		cmocka_unit_test(test_bogus_virtfn_link_is_noted_not_followed),
		cmocka_unit_test(test_recheck_reads_driver_and_nodes_again),
	};
	return cmocka_run_group_tests_name("discovery", tests, NULL, NULL);
}
