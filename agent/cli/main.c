/* xevf-agent: Kubernetes device plugin for Intel Xe SR-IOV virtual functions. */
#include "cli.h"

int main(int argc, char **argv)
{
	return cli_main(argc, argv, &mig_kernel_devices);
}
