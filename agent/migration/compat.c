#include "compat.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "xevf_discovery.h"
#include "xevf_sriov.h"
#include "xevf_vfio_driver.h"
#include "xevf_vfio_mig.h"

/* protobuf-c's init points unset strings at its own static empty string */
static void free_field(char *s)
{
	if (s != protobuf_c_empty_string)
		free(s);
}

static char *dup_field(const char *s)
{
	char *copy = s ? strdup(s) : NULL;
	return copy ? copy : (char *)protobuf_c_empty_string;
}

static char *printf_field(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *printf_field(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s ? s : (char *)protobuf_c_empty_string;
}

/* The driver's version; the kernel release where sysfs shows none. */
static char *module_version(const struct fp_source *src, const char *driver)
{
	struct xevf_roots roots = {src->sysfs_root, src->dev_root};
	char *text = NULL;

	if (!driver || xevf_driver_version(&roots, driver, &text) < 0)
		return (char *)protobuf_c_empty_string;
	if (!text && src->kernel_release)
		return printf_field("kernel %s", src->kernel_release);
	return text ? text : (char *)protobuf_c_empty_string;
}

static char *firmware_version(const struct fp_source *src, const char *pf)
{
	struct xevf_roots roots = {src->sysfs_root, src->dev_root};
	char *ver = NULL;

	return xevf_guc_version(&roots, pf, &ver) == 0 && ver ? ver : (char *)protobuf_c_empty_string;
}

static void fill_provisioning(const struct xevf_vf *vf, Xevf__Migration__V1__Fingerprint *fp)
{
	if (!vf->nprovisioning || !(fp->provisioning = calloc(vf->nprovisioning, sizeof(Xevf__Migration__V1__KeyValue *))))
		return;
	for (size_t i = 0; i < vf->nprovisioning; i++) {
		Xevf__Migration__V1__KeyValue *kv = malloc(sizeof(*kv));
		if (!kv)
			break;
		xevf__migration__v1__key_value__init(kv);
		kv->key = dup_field(vf->provisioning[i].key);
		kv->value = dup_field(vf->provisioning[i].value);
		fp->provisioning[fp->n_provisioning++] = kv;
	}
}

static void judge_migratable(const struct xevf_vf *vf, const struct fp_probe *probe,
			     Xevf__Migration__V1__Fingerprint *fp)
{
	bool vfio = vf->driver_kind == XEVF_DRIVER_VFIO_VARIANT || vf->driver_kind == XEVF_DRIVER_VFIO_PCI;
	bool variant = vf->driver_kind == XEVF_DRIVER_VFIO_VARIANT;

	if (!vfio) {
		fp->not_migratable_reason = printf_field(
			"%s: not migratable: bound to %s, not to a VFIO driver (xe-vfio-pci migrates; CONFIG_XE_VFIO_PCI is "
			"off by default in the kernel)", vf->addr, vf->driver ? vf->driver : "no driver");
	} else if (!probe->asked) {
		/* somebody (a VM) uses it: opening its VFIO group could stand in
		 * QEMU's way, so the driver tells; the device's flags are QEMU's to read */
		fp->migratable = variant;
		if (!variant)
			fp->not_migratable_reason = printf_field(
				"%s: not migratable: its driver (%s) offers no VFIO migration; Xe VFs migrate only when bound "
				"to xe-vfio-pci (CONFIG_XE_VFIO_PCI)", vf->addr, vf->driver);
	} else if (probe->errnum == 0) {
		fp->migration_flags = probe->flags;
		fp->migratable = 1;
	} else {
		fp->not_migratable_reason = dup_field(probe->error);
	}
}

void fingerprint_fill(const struct fp_source *src, const struct inventory_vf *iv, const struct fp_probe *probe,
		      Xevf__Migration__V1__Fingerprint *fp)
{
	const struct xevf_vf *vf = iv->vf;

	xevf__migration__v1__fingerprint__init(fp);
	fp->vf = dup_field(vf->addr);
	fp->node = dup_field(src->node);
	fp->vendor_id = (uint32_t)vf->vendor_id;
	fp->device_id = (uint32_t)vf->device_id;
	fp->revision = (uint32_t)vf->revision;
	fp->pf = dup_field(vf->pf_addr);
	fp->pf_device_id = iv->pf ? (uint32_t)iv->pf->device_id : (uint32_t)-1;
	fp->driver = dup_field(vf->driver ? vf->driver : "");
	fp->driver_version = module_version(src, vf->driver);
	fp->pf_driver = dup_field(iv->pf && iv->pf->driver ? iv->pf->driver : "");
	fp->pf_driver_version = module_version(src, iv->pf ? iv->pf->driver : NULL);
	fp->firmware_version = firmware_version(src, vf->pf_addr);
	fp->resource_name = dup_field(iv->resource ? iv->resource : "");
	fill_provisioning(vf, fp);
	judge_migratable(vf, probe, fp);
}

void fingerprint_clear(Xevf__Migration__V1__Fingerprint *fp)
{
	char *strs[] = {fp->vf, fp->node, fp->pf, fp->driver, fp->driver_version, fp->pf_driver,
			fp->pf_driver_version, fp->firmware_version, fp->resource_name, fp->not_migratable_reason};

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		free_field(strs[i]);
	for (size_t i = 0; i < fp->n_provisioning; i++) {
		free_field(fp->provisioning[i]->key);
		free_field(fp->provisioning[i]->value);
		free(fp->provisioning[i]);
	}
	free(fp->provisioning);
	xevf__migration__v1__fingerprint__init(fp);
}

const char *compat_provisioned(const Xevf__Migration__V1__Fingerprint *fp, const char *key)
{
	for (size_t k = 0; k < fp->n_provisioning; k++)
		if (strcmp(fp->provisioning[k]->key, key) == 0)
			return fp->provisioning[k]->value;
	return NULL;
}

static const char *shown(const char *version)
{
	return version && *version ? version : "(not shown)";
}

char *compat_identity_why_not(const Xevf__Migration__V1__Fingerprint *have, const Xevf__Migration__V1__Fingerprint *want)
{
	char *why = NULL;
	int rc = 0;

	if (!have->migratable)
		rc = asprintf(&why, "%s", *have->not_migratable_reason ? have->not_migratable_reason : "not migratable");
	else if (have->vendor_id != want->vendor_id || have->device_id != want->device_id)
		rc = asprintf(&why, "device id 0x%04x differs from the source's 0x%04x", have->device_id, want->device_id);
	else if (have->revision != want->revision)
		rc = asprintf(&why, "revision %u differs from the source's %u", have->revision, want->revision);
	else if (have->pf_device_id != want->pf_device_id)
		rc = asprintf(&why, "PF model 0x%04x differs from the source's 0x%04x", have->pf_device_id, want->pf_device_id);
	else if (!text_eq(have->driver, want->driver))
		rc = asprintf(&why, "driver %s differs from the source's %s", have->driver, want->driver);
	else if (!text_eq(have->driver_version, want->driver_version))
		rc = asprintf(&why, "%s version %s differs from the source's %s", have->driver, shown(have->driver_version),
			      want->driver_version);
	else if (!text_eq(have->pf_driver_version, want->pf_driver_version))
		rc = asprintf(&why, "PF driver %s version %s differs from the source's %s", have->pf_driver,
			      shown(have->pf_driver_version), want->pf_driver_version);
	else if (!text_eq(have->firmware_version, want->firmware_version))
		rc = asprintf(&why, "GuC firmware %s differs from the source's %s", shown(have->firmware_version),
			      shown(want->firmware_version));
	else if (want->migration_flags && have->migration_flags &&
		 (want->migration_flags & XEVF_MIG_F_STOP_COPY) != (have->migration_flags & XEVF_MIG_F_STOP_COPY))
		rc = asprintf(&why, "VFIO migration flags 0x%llx do not match the source's 0x%llx",
			      (unsigned long long)have->migration_flags, (unsigned long long)want->migration_flags);
	else
		return NULL;
	return rc < 0 ? strdup("out of memory") : why;
}
