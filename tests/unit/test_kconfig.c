/* The kernel build configuration reader: the values an operator's kernel may
 * have, prefixes that must not match, plain and gzip'd files, none at all. */
#include "testutil.h"

#include <errno.h>
#include <sys/stat.h>
#include <zlib.h>

#include "xevf_kconfig.h"

static struct xevf_kconfig *parsed(const char *text)
{
	struct xevf_kconfig *k = NULL;

	assert_int_equal(xevf_kconfig_parse(text, strlen(text), "test", &k), 0);
	return k;
}

static void test_each_kind_of_value(void **state)
{
	struct xevf_kconfig *k = parsed("# comment\nCONFIG_A=m\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=\"x\"\n"
					"CONFIG_E=64\nCONFIG_XE_VFIO_PCI_DEBUG=y\n# CONFIG_XE_VFIO_PCI_X is not set");
	(void)state;
	assert_int_equal(xevf_kconfig_get(k, "CONFIG_A"), XEVF_KCONFIG_MODULE);
	assert_int_equal(xevf_kconfig_get(k, "CONFIG_B"), XEVF_KCONFIG_BUILTIN);
	assert_int_equal(xevf_kconfig_get(k, "CONFIG_C"), XEVF_KCONFIG_NOT_SET);
	assert_int_equal(xevf_kconfig_get(k, "CONFIG_D"), XEVF_KCONFIG_OTHER);
	assert_int_equal(xevf_kconfig_get(k, "CONFIG_E"), XEVF_KCONFIG_OTHER);
	/* a longer symbol with the same start is another symbol */
	assert_int_equal(xevf_kconfig_get(k, "CONFIG_XE_VFIO_PCI"), XEVF_KCONFIG_ABSENT);
	assert_string_equal(xevf_kconfig_value_name(XEVF_KCONFIG_NOT_SET), "not set");
	assert_int_equal(xevf_kconfig_get(NULL, "CONFIG_A"), XEVF_KCONFIG_UNKNOWN);
	xevf_kconfig_close(k);
}

static void test_boot_first_then_proc_config_gz(void **state)
{
	char *dir = temp_dir(), *boot = pathf("%s/boot", dir), *proc = pathf("%s/proc", dir), *path;
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_kconfig *k = NULL;
	gzFile gz;

	(void)state;
	assert_int_equal(mkdir(boot, 0755) | mkdir(proc, 0755), 0);
	/* neither: ENOENT naming both files */
	assert_int_equal(xevf_kconfig_open(boot, proc, "6.1.0-x", &k, &err), -ENOENT);
	assert_non_null(strstr(xevf_err_msg(&err), "/boot/config-6.1.0-x"));
	assert_non_null(strstr(xevf_err_msg(&err), "/proc/config.gz"));
	xevf_err_clear(&err);
	/* only /proc/config.gz, gzip'd as the kernel keeps it */
	path = pathf("%s/config.gz", proc);
	assert_non_null(gz = gzopen(path, "wb"));
	gzputs(gz, "CONFIG_XE_VFIO_PCI=y\n");
	gzclose(gz);
	assert_int_equal(xevf_kconfig_open(boot, proc, "6.1.0-x", &k, &err), 0);
	assert_int_equal(xevf_kconfig_get(k, "CONFIG_XE_VFIO_PCI"), XEVF_KCONFIG_BUILTIN);
	assert_string_equal(xevf_kconfig_source(k), path);
	xevf_kconfig_close(k);
	free(path);
	/* /boot/config-<release> wins */
	path = pathf("%s/config-6.1.0-x", boot);
	write_file(path, "# CONFIG_XE_VFIO_PCI is not set\n", 32);
	assert_int_equal(xevf_kconfig_open(boot, proc, "6.1.0-x", &k, &err), 0);
	assert_int_equal(xevf_kconfig_get(k, "CONFIG_XE_VFIO_PCI"), XEVF_KCONFIG_NOT_SET);
	xevf_kconfig_close(k);
	free(path);
	free(boot);
	free(proc);
	rm_tree(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_each_kind_of_value),
		cmocka_unit_test(test_boot_first_then_proc_config_gz),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
