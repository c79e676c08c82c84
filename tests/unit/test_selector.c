/* Pool selectors: the one reader of their fields. VF device ids mean VF
 * device ids everywhere; a PF is matched by the VF device id it announces. */
#include "testutil.h"

#include <errno.h>

#include "selector.h"

static struct selector parse(const char *json)
{
	struct selector sel = {0};
	json_object *obj = json_tokener_parse(json);
	char *error = NULL;

	if (selector_parse(obj, "s", &sel, &error))
		fail_msg("%s: %s", json, error);
	json_object_put(obj);
	return sel;
}

static void test_vf_device_ids_select_pfs_by_the_id_they_announce(void **state)
{
	struct selector sel = parse("{\"deviceIds\": [\"0xe212\"]}");
	struct xevf_pf bmg = {.addr = "0000:03:00.0", .vendor_id = 0x8086, .device_id = 0xe212, .vf_device_id = 0xe212};
	struct xevf_pf other = {.addr = "0000:13:00.0", .vendor_id = 0x8086, .device_id = 0xe212, .vf_device_id = 0xe213};
	struct xevf_pf nvme = {.addr = "0000:00:02.0", .vendor_id = 0x1b36, .device_id = 0x0010, .vf_device_id = 0xe212};
	(void)state;

	/* before any VF exists, the PF says which id its VFs will have */
	assert_true(selector_takes_pf(&sel, &bmg));
	assert_false(selector_takes_pf(&sel, &other));
	/* without pfAddresses, only Intel PFs */
	assert_false(selector_takes_pf(&sel, &nvme));
	selector_free(&sel);
}

static void test_addresses_drivers_and_preparation(void **state)
{
	struct selector sel = parse("{\"pfAddresses\": [\"0000:4D:00.0\"], \"drivers\": [\"xe-vfio-pci\"]}");
	struct xevf_pf pf = {.addr = "0000:4d:00.0", .vendor_id = 0x1b36};
	struct xevf_vf bound = {.addr = "0000:4d:00.1", .pf_addr = "0000:4d:00.0", .driver = (char *)"xe-vfio-pci"};
	struct xevf_vf unbound = {.addr = "0000:4d:00.2", .pf_addr = "0000:4d:00.0"};
	struct xevf_vf elsewhere = {.addr = "0000:4e:00.1", .pf_addr = "0000:4e:00.0", .driver = (char *)"xe-vfio-pci"};
	struct selector copy;
	(void)state;

	assert_true(selector_takes_pf(&sel, &pf)); /* named: any vendor */
	assert_true(selector_takes_vf(&sel, &bound));
	assert_false(selector_takes_vf(&sel, &unbound));
	/* what preparing a VF changes (its driver) does not keep the preparer away */
	assert_true(selector_prepares_vf(&sel, &unbound));
	assert_false(selector_prepares_vf(&sel, &elsewhere));
	assert_int_equal(selector_copy(&copy, &sel), 0);
	assert_true(selector_takes_vf(&copy, &bound));
	selector_free(&copy);
	selector_free(&sel);
}

static void test_shared_pfs(void **state)
{
	struct selector any = parse("{}"), a = parse("{\"pfAddresses\": [\"0000:03:00.0\"]}");
	struct selector b = parse("{\"pfAddresses\": [\"0000:13:00.0\", \"0000:03:00.0\"]}");
	struct selector c = parse("{\"pfAddresses\": [\"0000:23:00.0\"]}");
	(void)state;

	assert_true(selector_may_share_pf(&any, &a));
	assert_true(selector_may_share_pf(&a, &b));
	assert_false(selector_may_share_pf(&a, &c));
	selector_free(&any);
	selector_free(&a);
	selector_free(&b);
	selector_free(&c);
}

static void test_errors_name_the_key(void **state)
{
	struct selector sel = {0};
	json_object *obj = json_tokener_parse("{\"deviceIds\": [\"0xe212\", \"nope\"]}");
	char *error = NULL;
	(void)state;

	assert_int_equal(selector_parse(obj, "pools[2].selector", &sel, &error), -EINVAL);
	assert_string_equal(error, "pools[2].selector.deviceIds[1]: 'nope' is not a PCI device id like 0xe212");
	free(error);
	selector_free(&sel);
	json_object_put(obj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vf_device_ids_select_pfs_by_the_id_they_announce),
		cmocka_unit_test(test_addresses_drivers_and_preparation),
		cmocka_unit_test(test_shared_pfs),
		cmocka_unit_test(test_errors_name_the_key),
	};
	return cmocka_run_group_tests_name("selector", tests, NULL, NULL);
}
