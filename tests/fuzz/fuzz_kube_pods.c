/* libFuzzer target: the API server's answers (bytes from the network): a
 * PodList of pending pods, a watch event of a migration target pod or of a
 * VirtualMachineInstanceMigration, a VMI, a PodList of source pods and of
 * agents. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "kube.h"
#include "kubevirt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct kubevirt_target_pod target;
	struct kubevirt_vmim_event vmim;
	struct kube_pod *pods;
	char *error = NULL, *a = NULL, *b = NULL;
	size_t n;
	int rc;

	if (kube_parse_pending_pods(text, size, "intel.com/xe_vf", &pods, &n, &error) == 0) {
		for (size_t i = 0; i < n; i++)
			(void)kube_pod_runs_vm(&pods[i], "prod", "db");
		kube_pods_free(pods, n);
	} else if (!error) {
		abort(); /* every refusal says why */
	}
	free(error);
	error = NULL;
	if ((rc = kubevirt_parse_watch_event(text, size, &target, &error)) == 1)
		kubevirt_target_pod_clear(&target);
	else if (rc < 0 && !error)
		abort();
	free(error);
	error = NULL;
	if ((rc = kubevirt_parse_vmim_event(text, size, &vmim, &error)) == 1)
		kubevirt_vmim_event_clear(&vmim);
	else if (rc < 0 && !error)
		abort();
	free(error);
	error = NULL;
	if (kubevirt_parse_vmi(text, size, &a, &b, &error) < 0 && !error)
		abort();
	free(a);
	free(b);
	free(error);
	error = NULL;
	if (kubevirt_parse_running_pod(text, size, &a, &error) < 0 && !error)
		abort();
	free(a);
	free(error);
	error = NULL;
	if (kubevirt_parse_peer(text, size, "migration", &a, &error) < 0 && !error)
		abort();
	free(a);
	free(error);
	return 0;
}
