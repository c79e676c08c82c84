/* xevf-agent-sim: the agent with simulated VFIO migration devices, for tests
 * and the demo. Takes three flags more than xevf-agent: --vfio-sim DIR,
 * --vfio-sim-flags KIND (xe by default: STOP_COPY | P2P, as xe-vfio-pci) and
 * --vfio-sim-state-size BYTES (what the devices report as their state size);
 * or --mtty-map FILE: the VFs stand for real mtty devices (mtty_devices.h);
 * and --inject-uevents PATH: uevents come from a datagram socket at PATH,
 * where tests send what the kernel would after they change the simulated host. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mtty_devices.h"
#include "sim_devices.h"
#include "vfio_sim.h"

/* --NAME VALUE or --NAME=VALUE at argv[*i]: the value, or NULL */
static const char *take(char **argv, int argc, int *i, const char *name)
{
	size_t n = strlen(name);

	if (strcmp(argv[*i], name) == 0 && *i + 1 < argc)
		return argv[++*i];
	if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=')
		return argv[*i] + n + 1;
	return NULL;
}

int main(int argc, char **argv)
{
	struct mig_device_provider sim;
	const char *dir = NULL, *kind = "xe", *size = "0", *mtty_map = NULL, *uevents = NULL, *v;
	struct agent_world world = {&mig_kernel_devices, NULL};
	uint64_t flags = 0, capacity;
	char *end;
	int kept = 0;

	for (int i = 0; i < argc; i++) {
		if ((v = take(argv, argc, &i, "--vfio-sim")))
			dir = v;
		else if ((v = take(argv, argc, &i, "--vfio-sim-flags")))
			kind = v;
		else if ((v = take(argv, argc, &i, "--vfio-sim-state-size")))
			size = v;
		else if ((v = take(argv, argc, &i, "--mtty-map")))
			mtty_map = v;
		else if ((v = take(argv, argc, &i, "--inject-uevents")))
			uevents = v;
		else
			argv[kept++] = argv[i];
	}
	argv[kept] = NULL;
	if (vfio_sim_flags_parse(kind, &flags)) {
		fprintf(stderr, "xevf-agent-sim: --vfio-sim-flags: '%s' is not xe, pre-copy, p2p-pre-copy or stop-copy\n", kind);
		return 2;
	}
	errno = 0;
	capacity = strtoull(size, &end, 10);
	if (errno || *end || *size == '-') {
		fprintf(stderr, "xevf-agent-sim: --vfio-sim-state-size: '%s' is not a number of bytes\n", size);
		return 2;
	}
	world.injected_uevents = uevents;
	if (mtty_map) {
		mtty_devices_init(&sim, mtty_map);
		world.devices = &sim;
	} else if (dir) {
		sim_devices_init(&sim, dir, flags, capacity);
		world.devices = &sim;
	}
	return cli_main(kept, argv, &world);
}
