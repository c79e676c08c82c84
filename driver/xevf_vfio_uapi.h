/* linux/vfio.h, plus the parts of the migration uAPI that older kernel
 * headers lack (PRE_COPY and MIG_DATA_SIZE arrived in Linux 6.2 and 6.3;
 * Debian 12's headers are 6.1). */
#ifndef XEVF_VFIO_UAPI_H
#define XEVF_VFIO_UAPI_H

#include <linux/vfio.h>

#ifndef VFIO_MIG_GET_PRECOPY_INFO
struct vfio_precopy_info {
	__u32 argsz;
	__u32 flags;
	__aligned_u64 initial_bytes;
	__aligned_u64 dirty_bytes;
};
#define VFIO_MIG_GET_PRECOPY_INFO _IO(VFIO_TYPE, VFIO_BASE + 21)
#endif

#ifndef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
struct vfio_device_feature_mig_data_size {
	__aligned_u64 stop_copy_length;
};
#define VFIO_DEVICE_FEATURE_MIG_DATA_SIZE 9
#endif

#endif
