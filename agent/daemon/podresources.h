/* The kubelet's PodResources API (podresources/v1 List and
 * GetAllocatableResources): which pod's container holds which device, and
 * which devices the kubelet counts. The kubelet offers a VF again as soon as
 * its container has ended, while the old VM may still hold it; this tells. */
#ifndef XEVF_DAEMON_PODRESOURCES_H
#define XEVF_DAEMON_PODRESOURCES_H

#include <stddef.h>

/* The devices of resource that pods hold, from the kubelet at socket:
 * 0 and ids[i] (device id: the VF's address) held by pods[i]
 * ("namespace/name"), both malloc'd (xevf_strv_free); 1 when there is no
 * such socket (no kubelet API to ask); or -errno with *error (malloc'd).
 * Waits timeout_ms at most. */
int podresources_held(const char *socket, const char *resource, int timeout_ms, char ***ids, char ***pods, size_t *n,
		      char **error);

/* The devices of resource the kubelet counts (GetAllocatableResources: what
 * the device plugin's ListAndWatch gave it), as podresources_held. */
int podresources_allocatable(const char *socket, const char *resource, int timeout_ms, char ***ids, size_t *n,
			     char **error);

#endif
