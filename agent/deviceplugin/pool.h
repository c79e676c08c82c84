/* A pool: the VFs advertised under one extended resource name, kept up to date
 * from discovery. */
#ifndef XEVF_DP_POOL_H
#define XEVF_DP_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "inventory.h"
#include "xevf_discovery.h"

/* The kubelet's words for a device's health. */
const char *pool_health_name(bool healthy);

struct pool_device {
	char id[XEVF_PCI_ADDR_SIZE]; /* the VF's PCI address; also the device-plugin id */
	char pf[XEVF_PCI_ADDR_SIZE];
	int numa_node;
	bool healthy;
	bool migratable;
	char *reason;     /* why unhealthy */
	char *driver;
	char *group_node; /* host paths, NULL when absent */
	char *cdev_node;
};

struct pool {
	struct pool_config cfg;    /* own copy: survives config reloads */
	char *env_name;            /* PCI_RESOURCE_<NAME> */
	char *socket_name;         /* file name in the plugin dir */
	struct pool_device *devs;  /* sorted by id */
	size_t ndevs;
	char *vfio_container_node; /* /dev/vfio/vfio when present */
	char *iommufd_node;        /* /dev/iommu when present */
	uint64_t generation;       /* bumped whenever what ListAndWatch shows changes */
	uint64_t allocations;      /* successful Allocate containers */
};

int pool_init(struct pool *p, const struct pool_config *cfg);
void pool_destroy(struct pool *p);

/* A pool's next device list, made without changing the pool (so that it can
 * be made while the pool serves) and put in place by pool_change_apply. */
struct pool_change {
	struct pool_device *devs;
	size_t ndevs;
	char *vfio_container_node, *iommufd_node;
	bool visible;                /* ListAndWatch must send a new list */
};

/* The VFs of the snapshot that the pool selects and that no earlier pool
 * (taken[] per VF in inventory order, updated here) has. An unhealthy VF that
 * the preparer could not make usable gets the preparer's reason. VFs of a PF
 * that has disappeared stay listed, unhealthy. Logs every change of a device
 * (added, removed, health). 0, or -ENOMEM (logged; *c empty). */
int pool_change_make(const struct pool *p, const struct inventory *inv, bool *taken, struct pool_change *c);
/* Takes over c; true when ListAndWatch must send a new list. */
bool pool_change_apply(struct pool *p, struct pool_change *c);
/* Both at once. */
bool pool_update(struct pool *p, const struct inventory *inv, bool *taken);

const struct pool_device *pool_find(const struct pool *p, const char *id);

/* "PCI_RESOURCE_" + name upper-cased, '.' and '/' turned into '_'. */
char *pool_env_name(const char *resource_name);
/* "xevf-" + name with '/' turned into '_' + ".sock" */
char *pool_socket_name(const char *resource_name);

#endif
