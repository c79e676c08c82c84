/* libFuzzer target: what virt-handler sends to a node hook (bytes from
 * another process): the VMI's JSON, as ExecuteNodeHook carries it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kubevirt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kubevirt_vmi vmi;
	char *error = NULL;

	if (kubevirt_parse_hook_vmi((const char *)data, size, &vmi, &error) == 0) {
		/* what the agent then reads of it: names that are all there */
		if (!vmi.namespace_ || !vmi.name || !vmi.uid)
			abort();
		for (size_t i = 0; i < vmi.nresources; i++)
			if (!strchr(vmi.resources[i], '/'))
				abort();
		kubevirt_vmi_clear(&vmi);
	} else if (!error) {
		abort(); /* every refusal says why */
	}
	free(error);
	return 0;
}
