/* `xevf-agent discover`: Xe PFs and VFs with driver and health, as text or JSON. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "xevf_discovery.h"
#include "xevf_sriov.h"

static json_object *json_hex(int v)
{
	char buf[16];

	if (v < 0)
		return NULL;
	snprintf(buf, sizeof(buf), "0x%04x", v);
	return json_object_new_string(buf);
}

static json_object *json_str_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static json_object *json_int_or_null(int v)
{
	return v < 0 ? NULL : json_object_new_int(v);
}

static json_object *provisioning_json(const struct xevf_pf *pf, const struct xevf_vf *vf)
{
	json_object *prov;

	if (!pf->provisioning_exposed)
		return NULL;
	prov = json_object_new_object();
	for (size_t k = 0; k < vf->nprovisioning; k++)
		json_object_object_add(prov, vf->provisioning[k].key, json_object_new_string(vf->provisioning[k].value));
	return prov;
}

static json_object *vf_json(const struct xevf_pf *pf, const struct xevf_vf *vf)
{
	json_object *v = json_object_new_object(), *nodes = json_object_new_array();

	json_object_object_add(v, "address", json_object_new_string(vf->addr));
	json_object_object_add(v, "pf", json_object_new_string(vf->pf_addr));
	json_object_object_add(v, "index", json_object_new_int((int)vf->vf_index));
	json_object_object_add(v, "vendorId", json_hex(vf->vendor_id));
	json_object_object_add(v, "deviceId", json_hex(vf->device_id));
	json_object_object_add(v, "revision", json_int_or_null(vf->revision));
	json_object_object_add(v, "numaNode", json_int_or_null(vf->numa_node));
	json_object_object_add(v, "iommuGroup", json_int_or_null(vf->iommu_group));
	json_object_object_add(v, "driver", json_str_or_null(vf->driver));
	json_object_object_add(v, "driverKind", json_object_new_string(xevf_driver_kind_name(vf->driver_kind)));
	json_object_object_add(v, "migrationCapable", json_object_new_boolean(vf->migration_capable));
	if (vf->group_node)
		json_object_array_add(nodes, json_object_new_string(vf->group_node));
	if (vf->cdev_node)
		json_object_array_add(nodes, json_object_new_string(vf->cdev_node));
	json_object_object_add(v, "vfioNodes", nodes);
	json_object_object_add(v, "health", json_object_new_string(vf->healthy ? "Healthy" : "Unhealthy"));
	json_object_object_add(v, "reason", json_str_or_null(vf->reason));
	json_object_object_add(v, "provisioning", provisioning_json(pf, vf));
	return v;
}

static json_object *pf_json(const struct xevf_pf *pf)
{
	json_object *o = json_object_new_object(), *vfs = json_object_new_array();

	json_object_object_add(o, "address", json_object_new_string(pf->addr));
	json_object_object_add(o, "vendorId", json_hex(pf->vendor_id));
	json_object_object_add(o, "deviceId", json_hex(pf->device_id));
	json_object_object_add(o, "revision", json_int_or_null(pf->revision));
	json_object_object_add(o, "numaNode", json_int_or_null(pf->numa_node));
	json_object_object_add(o, "driver", json_str_or_null(pf->driver));
	json_object_object_add(o, "totalVfs", json_object_new_int64(pf->total_vfs));
	json_object_object_add(o, "numVfs", json_object_new_int64(pf->num_vfs));
	json_object_object_add(o, "provisioningExposed", json_object_new_boolean(pf->provisioning_exposed));
	for (size_t j = 0; j < pf->nvfs; j++)
		json_object_array_add(vfs, vf_json(pf, &pf->vfs[j]));
	json_object_object_add(o, "vfs", vfs);
	return o;
}

static void print_json(const struct xevf_host *host)
{
	json_object *root = json_object_new_object(), *pfs = json_object_new_array(), *notes = json_object_new_array();

	for (size_t i = 0; i < host->npfs; i++)
		json_object_array_add(pfs, pf_json(&host->pfs[i]));
	for (size_t i = 0; i < host->nnotes; i++)
		json_object_array_add(notes, json_object_new_string(host->notes[i]));
	json_object_object_add(root, "pfs", pfs);
	json_object_object_add(root, "vfioContainerNode", json_str_or_null(host->vfio_container_node));
	json_object_object_add(root, "iommufdNode", json_str_or_null(host->iommufd_node));
	json_object_object_add(root, "notes", notes);
	puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
}

/* "8086" or "????" when unreadable */
static const char *hex4(int v, char buf[8])
{
	if (v < 0)
		return "????";
	snprintf(buf, 8, "%04x", v & 0xffff);
	return buf;
}

static void print_text(const struct xevf_host *host)
{
	char b1[8], b2[8];

	if (host->npfs == 0)
		printf("No Intel Xe PF with SR-IOV found.\n");
	for (size_t i = 0; i < host->npfs; i++) {
		const struct xevf_pf *pf = &host->pfs[i];
		printf("PF %s  %04x:%04x rev %02x  numa %d  driver %s  VFs %ld enabled of %ld\n", pf->addr, pf->vendor_id,
		       pf->device_id, pf->revision < 0 ? 0xff : pf->revision, pf->numa_node,
		       pf->driver ? pf->driver : "(none)", pf->num_vfs, pf->total_vfs);
		for (size_t j = 0; j < pf->nvfs; j++) {
			const struct xevf_vf *vf = &pf->vfs[j];
			printf("  VF %s  #%u  %s:%s  group %d  driver %s%s  %s%s%s\n", vf->addr, vf->vf_index,
			       hex4(vf->vendor_id, b1), hex4(vf->device_id, b2), vf->iommu_group,
			       vf->driver ? vf->driver : "(none)", vf->migration_capable ? " (migratable)" : "",
			       vf->healthy ? "Healthy" : "Unhealthy", vf->healthy ? "" : ": ",
			       vf->healthy ? "" : (vf->reason ? vf->reason : "?"));
		}
	}
	for (size_t i = 0; i < host->nnotes; i++)
		printf("note: %s\n", host->notes[i]);
}

int cli_discover(const struct cli_args *a)
{
	const struct config_overrides *o = &a->overrides;
	int isys = settings_find_flag("sysfs-root"), idev = settings_find_flag("dev-root");
	struct xevf_roots roots = {o->values[isys], o->values[idev]};
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_host *host = NULL;
	struct xevf_scan_opts opts = {0};
	struct agent_config cfg;
	char *error = NULL;
	int rc = 0;

	/* With --config, PFs that pools name explicitly are listed too. */
	config_init(&cfg);
	if (o->config_path && config_load_file(o->config_path, &cfg, &error)) {
		fprintf(stderr, "xevf-agent: configuration error: %s\n", error ? error : "invalid");
		free(error);
		return EXIT_USAGE;
	}
	if (config_pf_addresses(&cfg, (const char ***)&opts.extra_pfs, &opts.n_extra_pfs) == 0)
		rc = xevf_discover(&roots, &opts, &host, &err);
	free((void *)opts.extra_pfs);
	config_free(&cfg);
	if (rc || !host) {
		fprintf(stderr, "xevf-agent: discovery failed: %s\n", err.msg ? xevf_err_msg(&err) : "out of memory");
		xevf_err_clear(&err);
		return 1;
	}
	if (a->json)
		print_json(host);
	else
		print_text(host);
	xevf_host_free(host);
	return 0;
}
