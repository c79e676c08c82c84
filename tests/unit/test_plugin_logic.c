/* What the kubelet gets back: Allocate, ListAndWatch lists, preferred allocations. */
#include "testutil.h"

#include <grpc/status.h>

#include "log.h"
#include "answers.h"
#include "inventory.h"
#include "pool.h"

struct fixture {
	struct sim sim;
	struct pool pool;
};

static void load_pool(struct fixture *f)
{
	struct xevf_roots roots = {f->sim.sysfs, f->sim.dev};
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_host *host = NULL;
	bool taken[64] = {false};

	struct inventory *inv;

	if (xevf_discover(&roots, NULL, &host, &err))
		fail_msg("%s", xevf_err_msg(&err));
	assert_non_null(inv = inventory_new(host, NULL, 0));
	pool_update(&f->pool, inv, taken);
	inventory_unref(inv);
}

static int setup_with(void **state, const char *sim_args)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct pool_config cfg = {.resource_name = (char *)"intel.com/xe_vf"};

	log_set_level(XLOG_ERROR);
	f->sim = sim_create(sim_args);
	assert_int_equal(pool_init(&f->pool, &cfg), 0);
	load_pool(f);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, "--pfs 2 --vfs 3");
}

static int setup_cdev(void **state)
{
	return setup_with(state, "--pfs 1 --vfs 2 --cdev");
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	pool_destroy(&f->pool);
	sim_destroy(&f->sim);
	free(f);
	return 0;
}

static V1beta1__AllocateRequest *request(size_t ncontainers, char **ids[], const size_t nids[])
{
	static V1beta1__ContainerAllocateRequest cr[4];
	static V1beta1__ContainerAllocateRequest *crp[4];
	static V1beta1__AllocateRequest req;

	v1beta1__allocate_request__init(&req);
	for (size_t i = 0; i < ncontainers; i++) {
		v1beta1__container_allocate_request__init(&cr[i]);
		cr[i].devices_ids = ids[i];
		cr[i].n_devices_ids = nids[i];
		crp[i] = &cr[i];
	}
	req.container_requests = crp;
	req.n_container_requests = ncontainers;
	return &req;
}

static void test_env_and_socket_names(void **state)
{
	char *env = pool_env_name("intel.com/xe_vf"), *sock = pool_socket_name("intel.com/xe_vf");
	(void)state;
	assert_string_equal(env, "PCI_RESOURCE_INTEL_COM_XE_VF");
	assert_string_equal(sock, "xevf-intel.com_xe_vf.sock");
	free(env);
	free(sock);
	env = pool_env_name("gpu.example.org/arc-pro-b60.v2");
	assert_string_equal(env, "PCI_RESOURCE_GPU_EXAMPLE_ORG_ARC-PRO-B60_V2");
	free(env);
}

static void test_allocate_gives_vfio_nodes_and_kubevirt_env(void **state)
{
	struct fixture *f = *state;
	char *c0[] = {"0000:03:00.2", "0000:13:00.1"};
	char **ids[] = {c0};
	size_t n[] = {2};
	struct arena a = {0};
	V1beta1__AllocateResponse *resp = NULL;
	char *error = NULL;
	V1beta1__ContainerAllocateResponse *c;

	assert_int_equal(plugin_allocate(&f->pool, request(1, ids, n), &a, &resp, &error), 0);
	assert_int_equal(resp->n_container_responses, 1);
	c = resp->container_responses[0];
	assert_int_equal(c->n_envs, 1);
	assert_string_equal(c->envs[0]->key, "PCI_RESOURCE_INTEL_COM_XE_VF");
	assert_string_equal(c->envs[0]->value, "0000:03:00.2,0000:13:00.1");
	assert_int_equal(c->n_devices, 3);
	assert_string_equal(c->devices[0]->host_path, "/dev/vfio/vfio");
	assert_string_equal(c->devices[1]->host_path, "/dev/vfio/11");
	assert_string_equal(c->devices[2]->host_path, "/dev/vfio/13");
	assert_string_equal(c->devices[2]->container_path, "/dev/vfio/13");
	assert_string_equal(c->devices[2]->permissions, "rw");
	assert_int_equal(f->pool.allocations, 1);
	arena_free(&a);
}

static void test_allocate_with_iommufd_cdev(void **state)
{
	struct fixture *f = *state;
	char *c0[] = {"0000:03:00.2"};
	char **ids[] = {c0};
	size_t n[] = {1};
	struct arena a = {0};
	V1beta1__AllocateResponse *resp = NULL;
	char *error = NULL;
	V1beta1__ContainerAllocateResponse *c;

	assert_int_equal(plugin_allocate(&f->pool, request(1, ids, n), &a, &resp, &error), 0);
	c = resp->container_responses[0];
	assert_int_equal(c->n_devices, 4);
	assert_string_equal(c->devices[0]->host_path, "/dev/vfio/vfio");
	assert_string_equal(c->devices[1]->host_path, "/dev/vfio/11");
	assert_string_equal(c->devices[2]->host_path, "/dev/iommu");
	assert_string_equal(c->devices[3]->host_path, "/dev/vfio/devices/vfio1");
	arena_free(&a);
}

static void expect_refusal(struct fixture *f, V1beta1__AllocateRequest *req, const char *message)
{
	struct arena a = {0};
	V1beta1__AllocateResponse *resp = NULL;
	char *error = NULL;
	uint64_t before = f->pool.allocations;

	assert_int_equal(plugin_allocate(&f->pool, req, &a, &resp, &error), GRPC_STATUS_INVALID_ARGUMENT);
	assert_null(resp);
	if (strcmp(error, message) != 0)
		fail_msg("message '%s', expected '%s'", error, message);
	assert_int_equal(f->pool.allocations, before);
	free(error);
	arena_free(&a);
}

static void test_allocate_refuses_bad_ids_whole(void **state)
{
	struct fixture *f = *state;
	char *unknown[] = {"0000:03:00.1", "0000:99:00.1"};
	char *evil[] = {"\x01../../etc'"};
	char *dup[] = {"0000:03:00.1", "0000:03:00.1"};
	char *c0[] = {"0000:03:00.1"}, *c1[] = {"0000:13:00.2", "0000:03:00.1"};
	char **ids1[] = {unknown}, **ids2[] = {evil}, **ids3[] = {dup}, **ids4[] = {c0, c1};
	size_t n2[] = {2}, n1[] = {1}, n22[] = {1, 2};

	expect_refusal(f, request(1, ids1, n2),
		       "unknown device id '0000:99:00.1': not a VF of resource intel.com/xe_vf on this node");
	expect_refusal(f, request(1, ids2, n1),
		       "unknown device id '\\x01../../etc\\x27': not a VF of resource intel.com/xe_vf on this node");
	expect_refusal(f, request(1, ids3, n2), "device 0000:03:00.1 is requested more than once");
	expect_refusal(f, request(2, ids4, n22), "device 0000:03:00.1 is requested more than once");

	simhost(f->sim.dir, "set-driver", "0000:13:00.3 none");
	load_pool(f);
	{
		char *sick[] = {"0000:13:00.3"};
		char **ids5[] = {sick};
		expect_refusal(f, request(1, ids5, n1),
			       "device 0000:13:00.3 is unhealthy: not bound to any driver; bind it to xe-vfio-pci (or vfio-pci)");
	}
}

static void test_list_has_health_and_numa(void **state)
{
	struct fixture *f = *state;
	struct arena a = {0};
	V1beta1__ListAndWatchResponse *list;
	uint64_t gen = f->pool.generation;

	simhost(f->sim.dir, "set-driver", "0000:03:00.3 xe");
	load_pool(f);
	assert_int_equal(f->pool.generation, gen + 1);
	load_pool(f); /* nothing changed: no new list */
	assert_int_equal(f->pool.generation, gen + 1);
	list = plugin_list(&f->pool, &a);
	assert_int_equal(list->n_devices, 6);
	assert_string_equal(list->devices[0]->id, "0000:03:00.1");
	assert_string_equal(list->devices[0]->health, "Healthy");
	assert_string_equal(list->devices[2]->id, "0000:03:00.3");
	assert_string_equal(list->devices[2]->health, "Unhealthy");
	assert_int_equal(list->devices[3]->topology->n_nodes, 1);
	assert_int_equal(list->devices[3]->topology->nodes[0]->id, 1);
	arena_free(&a);
}

static void test_preferred_skips_unhealthy_and_unknown(void **state)
{
	struct fixture *f = *state;
	char *avail[] = {"0000:03:00.1", "0000:03:00.2", "bogus", "0000:13:00.1"};
	V1beta1__ContainerPreferredAllocationRequest cr = V1BETA1__CONTAINER_PREFERRED_ALLOCATION_REQUEST__INIT;
	V1beta1__ContainerPreferredAllocationRequest *crp = &cr;
	V1beta1__PreferredAllocationRequest req = V1BETA1__PREFERRED_ALLOCATION_REQUEST__INIT;
	V1beta1__PreferredAllocationResponse *resp;
	struct arena a = {0};
	char *error = NULL;

	simhost(f->sim.dir, "set-driver", "0000:03:00.1 none");
	load_pool(f);
	cr.available_deviceids = avail;
	cr.n_available_deviceids = 4;
	cr.allocation_size = 2;
	req.container_requests = &crp;
	req.n_container_requests = 1;
	assert_int_equal(plugin_preferred(&f->pool, &req, NULL, NULL, &a, &resp, &error), 0);
	assert_int_equal(resp->container_responses[0]->n_deviceids, 2);
	assert_string_equal(resp->container_responses[0]->deviceids[0], "0000:03:00.2");
	assert_string_equal(resp->container_responses[0]->deviceids[1], "0000:13:00.1");
	arena_free(&a);
	cr.allocation_size = -1;
	assert_int_equal(plugin_preferred(&f->pool, &req, NULL, NULL, &a, &resp, &error), GRPC_STATUS_INVALID_ARGUMENT);
	assert_string_equal(error, "allocation_size -1 is negative");
	free(error);
	arena_free(&a);
}

static void test_selector_takes_only_matching_vfs(void **state)
{
	struct fixture *f = *state;
	struct pool_config cfg = {.resource_name = (char *)"intel.com/arc_pro_b50"};
	int ids[] = {0xe212};
	struct pool p;
	struct xevf_roots roots = {f->sim.sysfs, f->sim.dev};
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_host *host = NULL;
	bool taken[64] = {false};

	cfg.selector.device_ids = ids;
	cfg.selector.n_device_ids = 1;
	assert_int_equal(pool_init(&p, &cfg), 0);
	struct inventory *inv;

	assert_int_equal(xevf_discover(&roots, NULL, &host, &err), 0);
	assert_non_null(inv = inventory_new(host, NULL, 0));
	pool_update(&p, inv, taken);
	assert_int_equal(p.ndevs, 3);
	assert_string_equal(p.devs[0].id, "0000:13:00.1");
	/* the default pool, after it, gets only what is left */
	pool_update(&f->pool, inv, taken);
	assert_int_equal(f->pool.ndevs, 3);
	assert_string_equal(f->pool.devs[2].id, "0000:03:00.3");
	inventory_unref(inv);
	pool_destroy(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_env_and_socket_names),
		cmocka_unit_test_setup_teardown(test_allocate_gives_vfio_nodes_and_kubevirt_env, setup, teardown),
		cmocka_unit_test_setup_teardown(test_allocate_with_iommufd_cdev, setup_cdev, teardown),
		cmocka_unit_test_setup_teardown(test_allocate_refuses_bad_ids_whole, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_has_health_and_numa, setup, teardown),
		cmocka_unit_test_setup_teardown(test_preferred_skips_unhealthy_and_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_selector_takes_only_matching_vfs, setup, teardown),
	};
	return cmocka_run_group_tests_name("plugin_logic", tests, NULL, NULL);
}
