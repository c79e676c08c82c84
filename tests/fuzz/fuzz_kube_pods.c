/* libFuzzer target: the API server's PodList answer (bytes from the network). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "kube.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kube_pod *pods;
	size_t n;
	char *error = NULL;

	if (kube_parse_pending_pods((const char *)data, size, "intel.com/xe_vf", &pods, &n, &error) == 0) {
		for (size_t i = 0; i < n; i++)
			(void)kube_pod_runs_vm(&pods[i], "prod", "db");
		kube_pods_free(pods, n);
	} else if (!error) {
		abort(); /* every refusal says why */
	}
	free(error);
	return 0;
}
