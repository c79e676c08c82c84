/* libFuzzer target: a kernel's build configuration (/boot/config-<release>). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "xevf_kconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const symbols[] = {"CONFIG_XE_VFIO_PCI", "CONFIG_IOMMUFD", "CONFIG_", ""};
	struct xevf_kconfig *k = NULL;

	if (xevf_kconfig_parse((const char *)data, size, "fuzz", &k) < 0)
		return 0;
	for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
		enum xevf_kconfig_value v = xevf_kconfig_get(k, symbols[i]);
		/* parsed text always has an answer other than "unknown" */
		if (v == XEVF_KCONFIG_UNKNOWN)
			abort();
		(void)xevf_kconfig_value_name(v);
	}
	xevf_kconfig_close(k);
	return 0;
}
