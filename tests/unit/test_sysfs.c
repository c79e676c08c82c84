/* Bounded sysfs text helpers and PCI address parsing. */
#include "testutil.h"

#include <errno.h>

#include "fail.h"
#include "xevf_roots.h"
#include "xevf_sysfs.h"

static void test_pci_addr_accepts_canonical_forms(void **state)
{
	struct xevf_pci_addr a;
	char buf[XEVF_PCI_ADDR_SIZE];
	(void)state;

	assert_int_equal(xevf_pci_addr_parse("0000:03:00.1", &a), 0);
	assert_int_equal(a.domain, 0);
	assert_int_equal(a.bus, 3);
	assert_int_equal(a.dev, 0);
	assert_int_equal(a.func, 1);
	assert_int_equal(xevf_pci_addr_parse("ABCD:EF:1f.7", &a), 0);
	xevf_pci_addr_format(&a, buf);
	assert_string_equal(buf, "abcd:ef:1f.7");
}

static void test_pci_addr_rejects_everything_else(void **state)
{
	const char *bad[] = {"", "0000:03:00", "0000:03:00.10", "000:03:00.1", "0000:03:20.1", "0000:03:00.8",
			     "0000-03:00.1", "0000:03:00.1 ", " 0000:03:00.1", "0000:0g:00.1", "0000:03:00.1x",
			     "../../../etc", NULL};
	(void)state;

	for (size_t i = 0; bad[i]; i++)
		assert_int_equal(xevf_pci_addr_parse(bad[i], NULL), -EINVAL);
	assert_int_equal(xevf_pci_addr_parse(NULL, NULL), -EINVAL);
}

static void test_read_text_trims_and_limits(void **state)
{
	char *dir = temp_dir(), *path = pathf("%s/attr", dir), *out = NULL;
	struct xevf_err err = XEVF_ERR_INIT;
	(void)state;

	write_file(path, "0x8086\n\n", 8);
	assert_int_equal(xevf_read_text(path, 64, &out, &err), 0);
	assert_string_equal(out, "0x8086");
	free(out);

	assert_int_equal(xevf_read_text(path, 4, &out, &err), -EFBIG);
	assert_null(out);
	assert_non_null(strstr(xevf_err_msg(&err), path));
	assert_non_null(strstr(xevf_err_msg(&err), "larger than 4 bytes"));

	write_file(path, "ab\0cd", 5);
	assert_int_equal(xevf_read_text(path, 64, &out, &err), -EILSEQ);
	assert_non_null(strstr(xevf_err_msg(&err), "NUL"));
	xevf_err_clear(&err);
	rm_tree(dir);
	free(path);
	free(dir);
}

static void test_read_text_names_missing_file(void **state)
{
	char *out = NULL;
	struct xevf_err err = XEVF_ERR_INIT;
	(void)state;

	assert_int_equal(xevf_read_text("/nonexistent/xevf/attr", 64, &out, &err), -ENOENT);
	assert_int_equal(err.errnum, ENOENT);
	assert_string_equal(xevf_err_msg(&err), "cannot open /nonexistent/xevf/attr: No such file or directory");
	xevf_err_clear(&err);
	assert_string_equal(xevf_err_msg(&err), "no error");
}

static void test_parse_long_whole_input_only(void **state)
{
	long v = 0;
	(void)state;

	assert_int_equal(xevf_parse_long("  42\n", 10, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(xevf_parse_long("0xe211", 0, &v), 0);
	assert_int_equal(v, 0xe211);
	assert_int_equal(xevf_parse_long("e211", 16, &v), 0);
	assert_int_equal(v, 0xe211);
	assert_int_equal(xevf_parse_long("12abc", 10, &v), -EINVAL);
	assert_int_equal(xevf_parse_long("", 10, &v), -EINVAL);
	assert_int_equal(xevf_parse_long("99999999999999999999999", 10, &v), -ERANGE);
}

static void test_read_long_names_file_and_value(void **state)
{
	char *dir = temp_dir(), *path = pathf("%s/sriov_numvfs", dir);
	struct xevf_err err = XEVF_ERR_INIT;
	long v;
	(void)state;

	write_file(path, "seven\n", 6);
	assert_int_equal(xevf_read_long(path, 10, &v, &err), -EINVAL);
	assert_non_null(strstr(xevf_err_msg(&err), path));
	assert_non_null(strstr(xevf_err_msg(&err), "'seven'"));
	xevf_err_clear(&err);
	rm_tree(dir);
	free(path);
	free(dir);
}

static void test_readlink_basename_any_length(void **state)
{
	char *dir = temp_dir(), *link = pathf("%s/driver", dir), *target, *out = NULL;
	struct xevf_err err = XEVF_ERR_INIT;
	char longname[600];
	(void)state;

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	target = pathf("../../bus/pci/drivers/%s", longname);
	assert_int_equal(symlink(target, link), 0);
	assert_int_equal(xevf_readlink_basename(link, &out, &err), 0);
	assert_string_equal(out, longname);
	free(out);
	unlink(link);
	assert_int_equal(xevf_readlink_basename(link, &out, &err), -ENOENT);
	assert_non_null(strstr(xevf_err_msg(&err), link));
	xevf_err_clear(&err);
	rm_tree(dir);
	free(target);
	free(link);
	free(dir);
}

static void test_write_text_reports_file_and_errno(void **state)
{
	char *dir = temp_dir(), *path = pathf("%s/sriov_numvfs", dir);
	struct xevf_err err = XEVF_ERR_INIT;
	(void)state;

	assert_int_equal(xevf_write_text(path, "4", &err), -ENOENT);
	assert_non_null(strstr(xevf_err_msg(&err), path));
	assert_non_null(strstr(xevf_err_msg(&err), "No such file or directory"));
	write_file(path, "", 0);
	assert_int_equal(xevf_write_text(path, "4", &err), 0);
	xevf_err_clear(&err);
	rm_tree(dir);
	free(path);
	free(dir);
}

static void test_write_file_atomic(void **state)
{
	(void)state;
	char *dir = temp_dir(), *path = NULL, *text = NULL;
	struct xevf_err err = XEVF_ERR_INIT;

	assert_int_equal(xevf_asprintf(&path, "%s/state.json", dir), 0);
	assert_int_equal(xevf_write_file_atomic(path, "first", 5, &err), 0);
	assert_int_equal(xevf_write_file_atomic(path, "second", 6, &err), 0);
	assert_int_equal(xevf_read_text(path, 64, &text, &err), 0);
	assert_string_equal(text, "second");
	free(text);
	free(path);
	assert_int_equal(xevf_asprintf(&path, "%s/state.json.tmp", dir), 0);
	assert_false(xevf_path_exists(path)); /* nothing left beside it */
	free(path);
	assert_int_equal(xevf_asprintf(&path, "%s/missing/state.json", dir), 0);
	assert_int_equal(xevf_write_file_atomic(path, "x", 1, &err), -ENOENT);
	assert_non_null(strstr(xevf_err_msg(&err), "missing/state.json.tmp: cannot create"));
	xevf_err_clear(&err);
	free(path);
	rm_tree(dir);
	free(dir);
}

static void test_mkdir_parent(void **state)
{
	(void)state;
	char *dir = temp_dir(), *path = NULL, *parent = NULL;

	assert_int_equal(xevf_asprintf(&path, "%s/run/status.sock", dir), 0);
	assert_int_equal(xevf_asprintf(&parent, "%s/run", dir), 0);
	assert_int_equal(xevf_mkdir_parent(path, 0755), 0);
	assert_true(xevf_path_exists(parent));
	assert_int_equal(xevf_mkdir_parent(path, 0755), 0); /* already there */
	free(path);
	assert_int_equal(xevf_asprintf(&path, "%s/no/such/status.sock", dir), 0);
	assert_int_equal(xevf_mkdir_parent(path, 0755), -ENOENT); /* one level only */
	assert_int_equal(xevf_mkdir_parent("relative.sock", 0755), 0);
	free(path);
	free(parent);
	rm_tree(dir);
	free(dir);
}

static void test_no_fifo_no_symlink_nothing_outside_the_root(void **state)
{
	char *dir = temp_dir(), *fifo = pathf("%s/config.json", dir), *attr = pathf("%s/sys/sriov_numvfs", dir);
	char *outside = pathf("%s/outside", dir), *link = pathf("%s/sys/driver_override", dir);
	char *sys = pathf("%s/sys", dir), *state_file = pathf("%s/migrations.json", dir), *text = NULL;
	struct xevf_roots roots = {sys, NULL};
	struct xevf_err err = XEVF_ERR_INIT;
	(void)state;

	/* a FIFO where a file belongs is refused at once, not waited on */
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(xevf_read_text(fifo, 100, &text, &err), -EINVAL);
	char *expected = pathf("%s is not a regular file", fifo);
	assert_string_equal(xevf_err_msg(&err), expected);
	free(expected);
	assert_int_equal(mkdir(sys, 0700), 0);
	write_file(attr, "0\n", 2);
	write_file(outside, "keep", 4);
	/* a link planted as an attribute is not followed */
	assert_int_equal(symlink(outside, link), 0);
	assert_int_equal(xevf_sysfs_write(&roots, link, "x", &err), -EXDEV);
	assert_non_null(strstr(xevf_err_msg(&err), "outside"));
	assert_int_equal(xevf_write_text(link, "x", &err), -ELOOP);
	assert_int_equal(xevf_sysfs_write(&roots, attr, "3", &err), 0);
	/* the temporary file of an atomic write is our own, never a planted link */
	char *tmp = pathf("%s.tmp", state_file);
	assert_int_equal(symlink(outside, tmp), 0);
	assert_int_equal(xevf_write_file_atomic(state_file, "{}", 2, &err), 0);
	assert_int_equal(xevf_read_text(outside, 100, &text, &err), 0);
	assert_string_equal(text, "keep");
	free(text);
	assert_int_equal(xevf_read_text(state_file, 100, &text, &err), 0);
	assert_string_equal(text, "{}");
	free(text);
	xevf_err_clear(&err);
	rm_tree(dir);
	free(tmp);
	free(fifo);
	free(attr);
	free(outside);
	free(link);
	free(sys);
	free(state_file);
	free(dir);
}

static void test_msg_set_may_quote_the_old_message(void **state)
{
	(void)state;
	char *msg = NULL;

	assert_int_equal(agent_fail(&msg, EINVAL, "first %d", 1), -EINVAL);
	assert_int_equal(agent_fail(&msg, ENOENT, "%s, then second", msg), -ENOENT);
	assert_string_equal(msg, "first 1, then second");
	free(msg);
	assert_int_equal(agent_fail(NULL, EINVAL, "nowhere"), -EINVAL);
	assert_null(xevf_strdup_or_null(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pci_addr_accepts_canonical_forms),
		cmocka_unit_test(test_pci_addr_rejects_everything_else),
		cmocka_unit_test(test_read_text_trims_and_limits),
		cmocka_unit_test(test_read_text_names_missing_file),
		cmocka_unit_test(test_parse_long_whole_input_only),
		cmocka_unit_test(test_read_long_names_file_and_value),
		cmocka_unit_test(test_readlink_basename_any_length),
		cmocka_unit_test(test_write_text_reports_file_and_errno),
		cmocka_unit_test(test_write_file_atomic),
		cmocka_unit_test(test_mkdir_parent),
		cmocka_unit_test(test_no_fifo_no_symlink_nothing_outside_the_root),
		cmocka_unit_test(test_msg_set_may_quote_the_old_message),
	};
	return cmocka_run_group_tests_name("sysfs", tests, NULL, NULL);
}
