/* libFuzzer target: bytes from the kubelet's side of the socket, decoded as
 * AllocateRequest and PreferredAllocationRequest and answered by the plugin
 * logic on a pool of six VFs (three healthy per PF, one unhealthy). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "answers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct pool pool;

static void setup(void)
{
	static const char *const ids[] = {"0000:03:00.1", "0000:03:00.2", "0000:03:00.3",
					  "0000:13:00.1", "0000:13:00.2", "0000:13:00.3"};
	struct pool_config cfg = {.resource_name = (char *)"intel.com/xe_vf"};

	log_set_level(XLOG_ERROR + 1);
	if (pool_init(&pool, &cfg))
		abort();
	pool.devs = calloc(6, sizeof(*pool.devs));
	pool.ndevs = 6;
	pool.vfio_container_node = strdup("/dev/vfio/vfio");
	for (int i = 0; i < 6; i++) {
		struct pool_device *d = &pool.devs[i];
		memcpy(d->id, ids[i], XEVF_PCI_ADDR_SIZE);
		memcpy(d->pf, i < 3 ? "0000:03:00.0" : "0000:13:00.0", XEVF_PCI_ADDR_SIZE);
		d->numa_node = i < 3 ? 0 : 1;
		d->healthy = i != 5;
		d->reason = d->healthy ? NULL : strdup("not bound to any driver");
		if (asprintf(&d->group_node, "/dev/vfio/%d", 10 + i) < 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	V1beta1__AllocateRequest *alloc;
	V1beta1__PreferredAllocationRequest *pref;

	if (!pool.ndevs)
		setup();
	alloc = v1beta1__allocate_request__unpack(NULL, size, data);
	if (alloc) {
		struct arena a = {0};
		V1beta1__AllocateResponse *resp = NULL;
		char *error = NULL;
		if (plugin_allocate(&pool, alloc, &a, &resp, &error) == 0) {
			/* the answer must pack: it goes back on the wire */
			size_t n = v1beta1__allocate_response__get_packed_size(resp);
			uint8_t *buf = malloc(n + 1);
			v1beta1__allocate_response__pack(resp, buf);
			free(buf);
		} else if (!error) {
			abort();
		}
		free(error);
		arena_free(&a);
		v1beta1__allocate_request__free_unpacked(alloc, NULL);
	}
	pref = v1beta1__preferred_allocation_request__unpack(NULL, size, data);
	if (pref) {
		struct arena a = {0};
		V1beta1__PreferredAllocationResponse *resp = NULL;
		char *error = NULL;
		if (plugin_preferred(&pool, pref, NULL, NULL, &a, &resp, &error) == 0)
			free(malloc(v1beta1__preferred_allocation_response__get_packed_size(resp) + 1));
		free(error);
		arena_free(&a);
		v1beta1__preferred_allocation_request__free_unpacked(pref, NULL);
	}
	return 0;
}
