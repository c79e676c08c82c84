/* xevf-agent-sim: the agent with simulated VFIO migration devices, for tests
 * and the demo. Takes one flag more than xevf-agent: --vfio-sim DIR. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "sim_devices.h"

int main(int argc, char **argv)
{
	struct mig_device_provider sim;
	const char *dir = NULL;
	int kept = 0;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--vfio-sim") == 0 && i + 1 < argc) {
			dir = argv[++i];
			continue;
		}
		if (strncmp(argv[i], "--vfio-sim=", 11) == 0) {
			dir = argv[i] + 11;
			continue;
		}
		argv[kept++] = argv[i];
	}
	argv[kept] = NULL;
	if (!dir)
		return cli_main(kept, argv, &mig_kernel_devices);
	sim_devices_init(&sim, dir);
	return cli_main(kept, argv, &sim);
}
