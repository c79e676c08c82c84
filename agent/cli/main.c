/* xevf-agent: Kubernetes device plugin for Intel Xe SR-IOV virtual functions. */
#include "cli.h"

int main(int argc, char **argv)
{
	static const struct agent_world real = {&mig_kernel_devices, NULL};

	return cli_main(argc, argv, &real);
}
