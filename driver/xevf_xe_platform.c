#include "xevf_xe_platform.h"

#include <stddef.h>

static const struct xevf_xe_platform battlemage = {"Battlemage", true, NULL};
static const struct xevf_xe_platform pantherlake = {"Panther Lake", true, NULL};
static const struct xevf_xe_platform wildcatlake = {"Wildcat Lake", true, NULL};
static const struct xevf_xe_platform flex = {
	"Data Center GPU Flex", false,
	"xe has no SR-IOV for it (only Intel's out-of-tree i915 does); its VFs cannot be used with xe-vfio-pci"};

static const struct {
	int id;
	const struct xevf_xe_platform *platform;
} ids[] = {
	{0xe202, &battlemage}, {0xe20b, &battlemage}, {0xe20c, &battlemage}, {0xe20d, &battlemage},
	{0xe210, &battlemage}, {0xe211, &battlemage}, {0xe212, &battlemage}, {0xe215, &battlemage},
	{0xe216, &battlemage},
	{0xb080, &pantherlake}, {0xb081, &pantherlake}, {0xb082, &pantherlake}, {0xb083, &pantherlake},
	{0xb084, &pantherlake}, {0xb085, &pantherlake}, {0xb086, &pantherlake}, {0xb087, &pantherlake},
	{0xb08f, &pantherlake}, {0xb090, &pantherlake}, {0xb0a0, &pantherlake}, {0xb0b0, &pantherlake},
	{0xfd80, &wildcatlake}, {0xfd81, &wildcatlake},
	{0x56c0, &flex}, {0x56c1, &flex}, {0x56c2, &flex},
};

const struct xevf_xe_platform *xevf_xe_platform_of(int device_id)
{
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		if (ids[i].id == device_id)
			return ids[i].platform;
	return NULL;
}
