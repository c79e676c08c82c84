/* The JSON config: what is accepted, and that every error names its key. */
#include "testutil.h"

#include <errno.h>

#include "config.h"

static char *parse_error(const char *json)
{
	struct agent_config cfg;
	char *error = NULL;

	if (config_parse_json(json, strlen(json), &cfg, &error) == 0) {
		config_free(&cfg);
		fail_msg("accepted: %s", json);
	}
	assert_non_null(error);
	return error;
}

static void expect_error(const char *json, const char *fragment)
{
	char *error = parse_error(json);
	if (!strstr(error, fragment))
		fail_msg("error '%s' does not contain '%s'", error, fragment);
	free(error);
}

static void test_full_config_is_read(void **state)
{
	const char *json = "{\"pluginDir\": \"/var/lib/kubelet/device-plugins\", \"logLevel\": \"debug\","
			   " \"rescanIntervalMs\": 250, \"sysfsRoot\": \"/host/sys\", \"devRoot\": \"/host/dev\","
			   " \"pools\": [{\"resourceName\": \"intel.com/xe_vf_migratable\", \"allocationPolicy\": \"spread\","
			   "  \"selector\": {\"pfAddresses\": [\"0000:4D:00.0\"], \"deviceIds\": [\"0xe211\", \"E212\"],"
			   "  \"drivers\": [\"xe-vfio-pci\"]}},"
			   " {\"resourceName\": \"intel.com/xe_vf\"}]}";
	struct agent_config cfg;
	char *error = NULL;
	(void)state;

	assert_int_equal(config_parse_json(json, strlen(json), &cfg, &error), 0);
	assert_int_equal(config_finish(&cfg, &error), 0);
	assert_int_equal(cfg.npools, 2);
	assert_string_equal(cfg.pools[0].resource_name, "intel.com/xe_vf_migratable");
	assert_int_equal(cfg.pools[0].policy, ALLOC_SPREAD);
	assert_int_equal(cfg.pools[0].selector.n_pf_addresses, 1);
	assert_string_equal(cfg.pools[0].selector.pf_addresses[0], "0000:4d:00.0"); /* canonical */
	assert_int_equal(cfg.pools[0].selector.n_device_ids, 2);
	assert_int_equal(cfg.pools[0].selector.device_ids[0], 0xe211);
	assert_int_equal(cfg.pools[0].selector.device_ids[1], 0xe212);
	assert_string_equal(cfg.pools[0].selector.drivers[0], "xe-vfio-pci");
	assert_int_equal(cfg.pools[1].policy, ALLOC_PACK);
	assert_int_equal(cfg.rescan_interval_ms, 250);
	assert_string_equal(cfg.sysfs_root, "/host/sys");
	config_free(&cfg);
}

static void test_defaults_fill_an_empty_config(void **state)
{
	struct agent_config cfg;
	char *error = NULL;
	(void)state;

	assert_int_equal(config_parse_json("{}", 2, &cfg, &error), 0);
	assert_int_equal(config_finish(&cfg, &error), 0);
	assert_int_equal(cfg.npools, 1);
	assert_string_equal(cfg.pools[0].resource_name, "intel.com/xe_vf");
	assert_string_equal(cfg.plugin_dir, "/var/lib/kubelet/device-plugins");
	assert_string_equal(cfg.sysfs_root, "/sys");
	assert_string_equal(cfg.dev_root, "/dev");
	assert_int_equal(cfg.rescan_interval_ms, XEVF_DEFAULT_RESCAN_MS);
	config_free(&cfg);

	/* an empty pool list means the default pool too (found by fuzzing: it leaked) */
	assert_int_equal(config_parse_json("{\"pools\": []}", strlen("{\"pools\": []}"), &cfg, &error), 0);
	assert_int_equal(config_finish(&cfg, &error), 0);
	assert_int_equal(cfg.npools, 1);
	assert_string_equal(cfg.pools[0].resource_name, "intel.com/xe_vf");
	config_free(&cfg);
}

static void test_errors_name_the_key(void **state)
{
	(void)state;
	expect_error("{\"pluginDirectory\": \"/x\"}", "pluginDirectory: unknown key");
	expect_error("{\"pools\": [{\"resourceName\": \"intel.com/a\"}, {\"resourceName\": \"intel.com/b\", \"selectr\": {}}]}",
		     "pools[1].selectr: unknown key");
	expect_error("{\"pools\": [{\"resourceName\": \"intel.com/a\", \"selector\": {\"deviceId\": []}}]}",
		     "pools[0].selector.deviceId: unknown key");
	expect_error("{\"pools\": [{\"resourceName\": 5}]}", "pools[0].resourceName: expected a string, found int");
	expect_error("{\"pools\": [{\"resourceName\": \"xe_vf\"}]}",
		     "pools[0].resourceName: 'xe_vf' is not a valid extended resource name");
	expect_error("{\"pools\": [{\"resourceName\": \"kubernetes.io/xe\"}]}", "reserved");
	expect_error("{\"pools\": [{}]}", "pools[0].resourceName: missing");
	expect_error("{\"pools\": [{\"resourceName\": \"intel.com/a\", \"selector\": {\"pfAddresses\": [\"03:00.0\"]}}]}",
		     "pools[0].selector.pfAddresses[0]: '03:00.0' is not a PCI address");
	expect_error("{\"pools\": [{\"resourceName\": \"intel.com/a\", \"selector\": {\"deviceIds\": [\"0xe211\", \"zz\"]}}]}",
		     "pools[0].selector.deviceIds[1]: 'zz' is not a PCI device id");
	expect_error("{\"pools\": [{\"resourceName\": \"intel.com/a\", \"allocationPolicy\": \"random\"}]}",
		     "pools[0].allocationPolicy: 'random' is not an allocation policy");
	expect_error("{\"rescanIntervalMs\": 1}", "rescanIntervalMs: 1 is out of range");
	expect_error("{\"rescanIntervalMs\": \"fast\"}", "rescanIntervalMs: expected an integer");
	expect_error("{\"pools\": {}}", "pools: expected an array");
	expect_error("[]", "the top level must be a JSON object");
}

static void test_a_pools_profile(void **state)
{
	const char *json = "{\"pools\": [{\"resourceName\": \"intel.com/a\", \"profile\": {\"execQuantumMs\": 25, "
			   "\"schedPriority\": \"high\", \"vramQuota\": 4294967296}}, {\"resourceName\": \"intel.com/b\"}]}";
	struct agent_config cfg;
	struct pool_config copy;
	char *error = NULL;

	(void)state;
	assert_int_equal(config_parse_json(json, strlen(json), &cfg, &error), 0);
	assert_string_equal(cfg.pools[0].profile.values[PROFILE_EXEC_QUANTUM_MS], "25");
	assert_null(cfg.pools[0].profile.values[PROFILE_PREEMPT_TIMEOUT_US]);
	assert_string_equal(cfg.pools[0].profile.values[PROFILE_SCHED_PRIORITY], "high");
	assert_string_equal(cfg.pools[0].profile.values[PROFILE_VRAM_QUOTA], "4294967296");
	assert_true(vf_profile_empty(&cfg.pools[1].profile));
	assert_int_equal(pool_config_copy(&copy, &cfg.pools[0]), 0);
	assert_string_equal(copy.profile.values[PROFILE_SCHED_PRIORITY], "high");
	pool_config_free(&copy);
	config_free(&cfg);
	expect_error("{\"pools\": [{\"resourceName\": \"intel.com/a\", \"profile\": {\"schedPriority\": \"max\"}}]}",
		     "pools[0].profile.schedPriority: 'max' is not low, normal or high");
	expect_error("{\"pools\": [{\"resourceName\": \"intel.com/a\", \"profile\": {\"execQuantumMs\": -1}}]}",
		     "pools[0].profile.execQuantumMs: -1 is out of range");
	expect_error("{\"pools\": [{\"resourceName\": \"intel.com/a\", \"profile\": {\"quantum\": 1}}]}",
		     "pools[0].profile.quantum: unknown key");
	/* what xe shows of a choice, and of a number */
	char *v = profile_current_value("low [normal] high\n");
	assert_string_equal(v, "normal");
	free(v);
	v = profile_current_value(" 25\n");
	assert_string_equal(v, "25");
	free(v);
}

static void test_malformed_json_is_refused(void **state)
{
	(void)state;
	expect_error("{\"pools\": [", "not valid JSON");
	expect_error("{} trailing", "not valid JSON at byte 3");
	expect_error("{\"a\": tru}", "not valid JSON");
	expect_error("{\"pluginDir\": \"\xff\xfe\"}", "not valid JSON");
	expect_error("", "not valid JSON");
}

static void test_duplicate_resource_names_are_refused(void **state)
{
	const char *json = "{\"pools\": [{\"resourceName\": \"intel.com/a\"}, {\"resourceName\": \"intel.com/a\"}]}";
	struct agent_config cfg;
	char *error = NULL;
	(void)state;

	assert_int_equal(config_parse_json(json, strlen(json), &cfg, &error), 0);
	assert_int_equal(config_finish(&cfg, &error), -EINVAL);
	assert_string_equal(error, "pools[1].resourceName: 'intel.com/a' is already used by pools[0]");
	free(error);
	config_free(&cfg);
}

static void test_resource_name_rules(void **state)
{
	const char *good[] = {"intel.com/xe_vf", "intel.com/xe-vf.v2", "a.b.c/X", "gpu.example.org/ArcProB60", NULL};
	const char *bad[] = {"", "intel.com/", "/xe", "intel.com/xe/vf", "Intel.com/xe", "intel..com/xe", "intel.com./xe",
			     "-intel.com/xe", "intel.com/_xe", "intel.com/xe_", "intel.com/x e", "kubernetes.io/xe",
			     "node.kubernetes.io/xe",
			     "intel.com/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL};
	const char *why;
	(void)state;

	for (size_t i = 0; good[i]; i++)
		if (!config_valid_resource_name(good[i], &why))
			fail_msg("'%s' refused: %s", good[i], why);
	for (size_t i = 0; bad[i]; i++)
		if (config_valid_resource_name(bad[i], &why))
			fail_msg("'%s' accepted", bad[i]);
}

static void test_load_file_names_the_file(void **state)
{
	char *dir = temp_dir(), *path = pathf("%s/config.json", dir), *error = NULL;
	struct agent_config cfg;
	(void)state;

	write_file(path, "{\"pool\": []}", 12);
	assert_int_equal(config_load_file(path, &cfg, &error), -EINVAL);
	assert_non_null(strstr(error, path));
	assert_non_null(strstr(error, "pool: unknown key"));
	free(error);
	error = NULL;
	unlink(path);
	assert_int_equal(config_load_file(path, &cfg, &error), -ENOENT);
	assert_non_null(strstr(error, "No such file or directory"));
	free(error);
	rm_tree(dir);
	free(path);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_config_is_read),
		cmocka_unit_test(test_defaults_fill_an_empty_config),
		cmocka_unit_test(test_errors_name_the_key),
		cmocka_unit_test(test_a_pools_profile),
		cmocka_unit_test(test_malformed_json_is_refused),
		cmocka_unit_test(test_duplicate_resource_names_are_refused),
		cmocka_unit_test(test_resource_name_rules),
		cmocka_unit_test(test_load_file_names_the_file),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
