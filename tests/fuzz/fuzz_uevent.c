/* libFuzzer target: kernel uevent datagrams (NETLINK_KOBJECT_UEVENT). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xevf_uevent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xevf_uevent ev;

	if (xevf_uevent_parse((const char *)data, size, &ev) == 0) {
		/* a parsed event always has an action and a devpath starting with '/' */
		if (!ev.action || !ev.devpath || ev.devpath[0] != '/' || !ev.action[0])
			abort();
		xevf_uevent_clear(&ev);
	}
	return 0;
}
