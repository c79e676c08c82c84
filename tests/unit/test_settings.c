/* The settings table: one row per setting drives the file's keys, the flags,
 * --help, defaults and ranges; flags win over the file. */
#include "testutil.h"

#include <errno.h>

#include "config.h"

static void test_every_setting_has_a_flag_and_a_help_line(void **state)
{
	char *help = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&help, &len);
	(void)state;

	settings_print_help(f);
	fclose(f);
	assert_true(settings_count() >= 20);
	for (size_t i = 0; i < settings_count(); i++) {
		char *flag = pathf("--%s ", settings_flag(i));
		assert_int_equal(settings_find_flag(settings_flag(i)), (int)i);
		if (!strstr(help, flag))
			fail_msg("--help does not list %s", flag);
		free(flag);
	}
	assert_int_equal(settings_find_flag("vfio-sim"), -1); /* test builds only */
	free(help);
}

static void test_flag_values_are_checked_like_the_file(void **state)
{
	char *error = NULL;
	(void)state;

	assert_int_equal(settings_check_flag((size_t)settings_find_flag("rescan-interval"), "5", &error), -EINVAL);
	assert_string_equal(error, "--rescan-interval: '5' is out of range (50 to 600000)");
	free(error);
	error = NULL;
	assert_int_equal(settings_check_flag((size_t)settings_find_flag("http-port"), "-1", &error), 0);
	assert_int_equal(settings_check_flag((size_t)settings_find_flag("http-port"), "80x", &error), -EINVAL);
	free(error);
}

static void test_flags_win_over_the_file(void **state)
{
	char *dir = temp_dir(), *path = pathf("%s/config.json", dir), *error = NULL;
	const char *text = "{\"pluginDir\": \"/from/file\", \"logLevel\": \"debug\", \"rescanIntervalMs\": 300}";
	const char **values = calloc(settings_count(), sizeof(*values));
	struct config_overrides o = {.config_path = path, .values = values};
	struct agent_config cfg;
	(void)state;

	write_file(path, text, strlen(text));
	values[settings_find_flag("plugin-dir")] = "/from/flag";
	values[settings_find_flag("http-port")] = "-1";
	assert_int_equal(config_build(&o, &cfg, &error), 0);
	assert_string_equal(cfg.plugin_dir, "/from/flag");
	assert_string_equal(cfg.log_level, "debug");
	assert_int_equal(cfg.rescan_interval_ms, 300);
	assert_int_equal(cfg.http_port, -1);
	assert_string_equal(cfg.state_dir, XEVF_DEFAULT_STATE_DIR);
	config_free(&cfg);
	free(values);
	rm_tree(dir);
	free(path);
	free(dir);
}

static void test_resource_name_flag_leaves_numvfs_unset(void **state)
{
	const char **values = calloc(settings_count(), sizeof(*values));
	struct config_overrides o = {.resource_name = "intel.com/xe_vf_a", .allocation_policy = "spread", .values = values};
	struct agent_config cfg;
	char *error = NULL;
	(void)state;

	assert_int_equal(config_build(&o, &cfg, &error), 0);
	assert_int_equal(cfg.npools, 1);
	assert_string_equal(cfg.pools[0].resource_name, "intel.com/xe_vf_a");
	assert_int_equal(cfg.pools[0].policy, ALLOC_SPREAD);
	/* unset: the agent never writes sriov_numvfs for this pool */
	assert_int_equal(cfg.pools[0].num_vfs, -1);
	config_free(&cfg);
	free(values);
}

static void test_bad_values_name_the_key(void **state)
{
	struct agent_config cfg;
	char *error = NULL;
	const char *json = "{\"logLevel\": \"loud\"}";
	(void)state;

	assert_int_equal(config_parse_json(json, strlen(json), &cfg, &error), 0);
	assert_int_equal(config_finish(&cfg, &error), -EINVAL);
	assert_string_equal(error, "logLevel: 'loud' is not one of debug, info, warn, error");
	free(error);
	config_free(&cfg);
	json = "{\"pluginDir\": \"relative\"}";
	error = NULL;
	assert_int_equal(config_parse_json(json, strlen(json), &cfg, &error), 0);
	assert_int_equal(config_finish(&cfg, &error), -EINVAL);
	assert_string_equal(error, "pluginDir: 'relative' must be an absolute path");
	free(error);
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_setting_has_a_flag_and_a_help_line),
		cmocka_unit_test(test_flag_values_are_checked_like_the_file),
		cmocka_unit_test(test_flags_win_over_the_file),
		cmocka_unit_test(test_resource_name_flag_leaves_numvfs_unset),
		cmocka_unit_test(test_bad_values_name_the_key),
	};
	return cmocka_run_group_tests_name("settings", tests, NULL, NULL);
}
