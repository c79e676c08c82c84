/* `xevf-agent doctor`: what stands in the way of live migration on this host,
 * per PF and VF, each finding with what to do about it. */
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "cli.h"
#include "xevf_discovery.h"
#include "xevf_kconfig.h"
#include "xevf_vfio_driver.h"
#include "xevf_xe_platform.h"

/* xe-vfio-pci offers migration only with this GuC firmware or newer. */
#define GUC_MIN_MAJOR 70
#define GUC_MIN_MINOR 54

enum verdict { V_OK, V_NOTE, V_UNKNOWN, V_BLOCKS };
static const char *const verdict_names[] = {[V_OK] = "ok", [V_NOTE] = "note", [V_UNKNOWN] = "unknown",
					    [V_BLOCKS] = "blocks"};

struct finding {
	enum verdict verdict;
	const char *check;
	char *detail;
};

struct findings {
	struct finding *f;
	size_t n;
};

static void say(struct findings *fs, enum verdict v, const char *check, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void say(struct findings *fs, enum verdict v, const char *check, const char *fmt, ...)
{
	struct finding *grown = realloc(fs->f, (fs->n + 1) * sizeof(*grown));
	va_list ap;
	char *detail = NULL;

	if (!grown)
		return;
	fs->f = grown;
	va_start(ap, fmt);
	if (vasprintf(&detail, fmt, ap) < 0)
		detail = NULL;
	va_end(ap);
	fs->f[fs->n++] = (struct finding){v, check, detail};
}

static void findings_free(struct findings *fs)
{
	for (size_t i = 0; i < fs->n; i++)
		free(fs->f[i].detail);
	free(fs->f);
	fs->f = NULL;
	fs->n = 0;
}

/* The worst finding, and the first with that verdict. */
static const struct finding *worst(const struct findings *fs)
{
	const struct finding *w = NULL;

	for (size_t i = 0; i < fs->n; i++)
		if (!w || fs->f[i].verdict > w->verdict)
			w = &fs->f[i];
	return w;
}

struct doctor {
	const struct agent_config *cfg;
	struct xevf_roots roots;
	const char *release;
	struct xevf_modules *modules; /* NULL: not readable (modules_error says why) */
	char *modules_error;
};

/* ---- the host ---- */

static void check_kernel(struct doctor *d, const struct xevf_host *host, struct findings *fs)
{
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_kconfig *kc = NULL;

	if (xevf_kconfig_open(d->cfg->boot_root, d->cfg->proc_root, d->release, &kc, &err) < 0) {
		say(fs, V_UNKNOWN, "kernel config", "%s: whether the kernel can have xe-vfio-pci is not known (mount the "
		    "host's /boot and give --boot-root)", xevf_err_msg(&err));
	} else {
		enum xevf_kconfig_value v = xevf_kconfig_get(kc, "CONFIG_XE_VFIO_PCI");
		if (v == XEVF_KCONFIG_MODULE || v == XEVF_KCONFIG_BUILTIN)
			say(fs, V_OK, "kernel config", "CONFIG_XE_VFIO_PCI=%s (%s)", xevf_kconfig_value_name(v),
			    xevf_kconfig_source(kc));
		else if (v == XEVF_KCONFIG_ABSENT)
			say(fs, V_BLOCKS, "kernel config", "kernel %s has no CONFIG_XE_VFIO_PCI at all (%s): it predates "
			    "xe-vfio-pci (Linux 6.19), so no VF on this host can migrate (VFs still work through vfio-pci); "
			    "boot a newer kernel built with CONFIG_XE_VFIO_PCI=m", d->release, xevf_kconfig_source(kc));
		else
			say(fs, V_BLOCKS, "kernel config", "kernel %s is built without CONFIG_XE_VFIO_PCI (%s: %s); xe "
			    "exports what xe-vfio-pci needs only when built with it, so no VF on this host can migrate "
			    "(VFs still work through vfio-pci); boot a kernel built with CONFIG_XE_VFIO_PCI=m",
			    d->release, xevf_kconfig_source(kc), xevf_kconfig_value_name(v));
		v = xevf_kconfig_get(kc, "CONFIG_IOMMUFD");
		if (v != XEVF_KCONFIG_MODULE && v != XEVF_KCONFIG_BUILTIN && !host->iommufd_node)
			say(fs, V_NOTE, "iommufd", "kernel %s has no IOMMUFD (CONFIG_IOMMUFD %s): nothing tracks a VF's "
			    "dirty pages, so QEMU migrates it only with enable-migration=on and "
			    "x-device-dirty-page-tracking=off on its vfio-pci device", d->release,
			    xevf_kconfig_value_name(v));
	}
	if (host->iommufd_node)
		say(fs, V_OK, "iommufd", "%s exists", host->iommufd_node);
	xevf_kconfig_close(kc);
	xevf_err_clear(&err);
}

/* ---- a PF ---- */

/* "70.54.0": *parsed says whether it reads as MAJOR.MINOR[...]. */
static bool guc_new_enough(const char *version, bool *parsed)
{
	char *end = NULL;
	unsigned long major, minor;

	errno = 0;
	major = strtoul(version, &end, 10);
	*parsed = !errno && end != version && *end == '.';
	if (!*parsed)
		return false;
	version = end + 1;
	minor = strtoul(version, &end, 10);
	*parsed = !errno && end != version;
	return *parsed && (major > GUC_MIN_MAJOR || (major == GUC_MIN_MAJOR && minor >= GUC_MIN_MINOR));
}

static void check_guc(struct doctor *d, const struct xevf_pf *pf, struct findings *fs)
{
	char *version = NULL;
	bool parsed;

	if (xevf_guc_version(&d->roots, pf->addr, &version) < 0 || !version)
		say(fs, V_UNKNOWN, "guc", "the GuC firmware version is not readable (xe's debugfs: "
		    "<sysfs>/kernel/debug/dri/%s/gt0/uc/guc_info); xe-vfio-pci needs %d.%d or newer", pf->addr,
		    GUC_MIN_MAJOR, GUC_MIN_MINOR);
	else if (guc_new_enough(version, &parsed))
		say(fs, V_OK, "guc", "GuC %s (xe-vfio-pci needs %d.%d or newer)", version, GUC_MIN_MAJOR, GUC_MIN_MINOR);
	else
		say(fs, parsed ? V_BLOCKS : V_UNKNOWN, "guc", "GuC %s: xe-vfio-pci offers migration with GuC %d.%d or "
		    "newer; update the GuC firmware (linux-firmware)", version, GUC_MIN_MAJOR, GUC_MIN_MINOR);
	free(version);
}

/* Whether the modules of this kernel have a VFIO variant driver for the PF's VFs. */
static void check_variant_module(struct doctor *d, const struct xevf_pf *pf, struct findings *fs)
{
	const char *modalias = pf->nvfs ? pf->vfs[0].modalias : NULL;
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_vfio_match match = {0};

	if (!d->modules) {
		say(fs, V_UNKNOWN, "xe-vfio-pci module", "%s", d->modules_error ? d->modules_error : "modules unreadable");
	} else if (!modalias) {
		say(fs, V_UNKNOWN, "xe-vfio-pci module", "no VF is enabled to look its driver up by");
	} else if (xevf_vfio_lookup(d->modules, modalias, &match, &err) < 0) {
		say(fs, V_UNKNOWN, "xe-vfio-pci module", "%s", xevf_err_msg(&err));
	} else if (match.variant && strcmp(match.variant, XEVF_XE_VFIO_MODULE) == 0) {
		say(fs, V_OK, "xe-vfio-pci module", "%s has it for these VFs", xevf_modules_dir(d->modules));
	} else {
		say(fs, V_BLOCKS, "xe-vfio-pci module", "%s has no xe-vfio-pci for these VFs (%s)%s%s",
		    xevf_modules_dir(d->modules), modalias, match.variant ? "; it has " : "",
		    match.variant ? match.variant : "");
	}
	xevf_vfio_match_free(&match);
	xevf_err_clear(&err);
}

static void check_pf(struct doctor *d, const struct xevf_pf *pf, struct findings *fs)
{
	const struct xevf_xe_platform *p = xevf_xe_platform_of(pf->device_id);

	if (p && p->sriov)
		say(fs, V_OK, "platform", "%s (0x%04x): xe does SR-IOV on it", p->name, pf->device_id);
	else if (p)
		say(fs, V_BLOCKS, "platform", "%s (0x%04x): %s", p->name, pf->device_id, p->note ? p->note : "no SR-IOV in xe");
	else
		say(fs, V_UNKNOWN, "platform", "device 0x%04x is not a Battlemage, Panther Lake or Wildcat Lake id, the "
		    "ones xe-vfio-pci takes", pf->device_id);
	if (pf->driver && strcmp(pf->driver, "xe") == 0)
		say(fs, V_OK, "pf driver", "xe");
	else
		say(fs, V_BLOCKS, "pf driver", "the PF is bound to %s, not xe; bind it to xe", pf->driver ? pf->driver : "nothing");
	check_guc(d, pf, fs);
	if (pf->provisioning_exposed)
		say(fs, V_OK, "provisioning", "sriov_admin/: VF profiles can be set, and a target VF provisioned like its source");
	else
		say(fs, V_NOTE, "provisioning", "no sriov_admin/ (xe before 6.19): VF profiles are neither read nor set, so a "
		    "target VF is provisioned like its source only if auto-provisioning made them alike (xe-vfio-pci "
		    "refuses a GGTT of another size)");
	check_variant_module(d, pf, fs);
}

static void check_vf(const struct xevf_vf *vf, struct findings *fs)
{
	switch (vf->driver_kind) {
	case XEVF_DRIVER_VFIO_VARIANT:
		if (vf->migration_capable)
			say(fs, V_OK, "vf driver", "%s", vf->driver);
		else
			say(fs, V_BLOCKS, "vf driver", "bound to %s, a VFIO variant driver that is not xe-vfio-pci", vf->driver);
		break;
	case XEVF_DRIVER_VFIO_PCI:
		say(fs, V_BLOCKS, "vf driver", "bound to plain vfio-pci: usable by a VM, not migratable; bind it to "
		    "xe-vfio-pci (pools do, where the kernel has it)");
		break;
	case XEVF_DRIVER_OTHER:
		say(fs, V_BLOCKS, "vf driver", "bound to %s, not a VFIO driver", vf->driver);
		break;
	case XEVF_DRIVER_NONE:
		say(fs, V_BLOCKS, "vf driver", "not bound to any driver");
		break;
	}
}

/* ---- output ---- */

static json_object *findings_json(const struct findings *fs)
{
	json_object *a = json_object_new_array();

	for (size_t i = 0; i < fs->n; i++) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "check", json_object_new_string(fs->f[i].check));
		json_object_object_add(o, "verdict", json_object_new_string(verdict_names[fs->f[i].verdict]));
		json_object_object_add(o, "detail", json_object_new_string(fs->f[i].detail ? fs->f[i].detail : ""));
		json_object_array_add(a, o);
	}
	return a;
}

static void print_findings(const struct findings *fs, const char *indent)
{
	for (size_t i = 0; i < fs->n; i++)
		printf("%s%-8s %-19s %s\n", indent, verdict_names[fs->f[i].verdict], fs->f[i].check,
		       fs->f[i].detail ? fs->f[i].detail : "");
}

/* A VF's verdict from the host's, its PF's and its own findings. */
static const char *vf_verdict(const struct findings *const levels[3], const struct finding **why)
{
	*why = NULL;
	for (int i = 0; i < 3; i++) {
		const struct finding *w = worst(levels[i]);
		if (w && (!*why || w->verdict > (*why)->verdict))
			*why = w;
	}
	if (!*why || (*why)->verdict <= V_NOTE)
		return "migratable";
	return (*why)->verdict == V_UNKNOWN ? "cannot tell" : "not migratable";
}

static int report(struct doctor *d, const struct xevf_host *host, bool as_json)
{
	struct findings hostf = {0};
	json_object *root = json_object_new_object(), *pfs = json_object_new_array();
	size_t nvfs = 0, migratable = 0;

	json_object_object_add(root, "pfs", pfs); /* root owns it, text or not */
	check_kernel(d, host, &hostf);
	if (!as_json) {
		printf("host  kernel %s\n", d->release);
		print_findings(&hostf, "  ");
	}
	for (size_t i = 0; i < host->npfs; i++) {
		const struct xevf_pf *pf = &host->pfs[i];
		const struct xevf_xe_platform *p = xevf_xe_platform_of(pf->device_id);
		struct findings pff = {0};
		json_object *pfo = json_object_new_object(), *vfs = json_object_new_array();

		check_pf(d, pf, &pff);
		if (!as_json) {
			printf("PF %s  %s 0x%04x  driver %s\n", pf->addr, p ? p->name : "unknown", pf->device_id & 0xffff,
			       pf->driver ? pf->driver : "(none)");
			print_findings(&pff, "  ");
		}
		for (size_t j = 0; j < pf->nvfs; j++) {
			const struct xevf_vf *vf = &pf->vfs[j];
			struct findings vff = {0};
			const struct findings *levels[3] = {&hostf, &pff, &vff};
			const struct finding *why;
			const char *verdict;

			check_vf(vf, &vff);
			verdict = vf_verdict(levels, &why);
			nvfs++;
			migratable += strcmp(verdict, "migratable") == 0;
			if (!as_json) {
				printf("  VF %s  %-12s %s%s%s%s%s\n", vf->addr, vf->driver ? vf->driver : "(none)", verdict,
				       why && why->verdict > V_NOTE ? ": " : "", why && why->verdict > V_NOTE ? why->check : "",
				       why && why->verdict > V_NOTE ? ": " : "",
				       why && why->verdict > V_NOTE && why->detail ? why->detail : "");
			} else {
				json_object *vo = json_object_new_object();
				json_object_object_add(vo, "address", json_object_new_string(vf->addr));
				json_object_object_add(vo, "driver", vf->driver ? json_object_new_string(vf->driver) : NULL);
				json_object_object_add(vo, "verdict", json_object_new_string(verdict));
				json_object_object_add(vo, "because", why && why->verdict > V_NOTE && why->detail
								     ? json_object_new_string(why->detail) : NULL);
				json_object_object_add(vo, "findings", findings_json(&vff));
				json_object_array_add(vfs, vo);
			}
			findings_free(&vff);
		}
		json_object_object_add(pfo, "address", json_object_new_string(pf->addr));
		json_object_object_add(pfo, "platform", p ? json_object_new_string(p->name) : NULL);
		json_object_object_add(pfo, "findings", findings_json(&pff));
		json_object_object_add(pfo, "vfs", vfs);
		json_object_array_add(pfs, pfo);
		findings_free(&pff);
	}
	if (as_json) {
		json_object *ho = json_object_new_object();
		json_object_object_add(ho, "kernelRelease", json_object_new_string(d->release));
		json_object_object_add(ho, "findings", findings_json(&hostf));
		json_object_object_add(root, "host", ho);
		json_object_object_add(root, "vfs", json_object_new_int64((int64_t)nvfs));
		json_object_object_add(root, "migratableVfs", json_object_new_int64((int64_t)migratable));
		puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	} else {
		if (!host->npfs)
			printf("No Intel Xe PF with SR-IOV found.\n");
		printf("%zu of %zu VFs can migrate\n", migratable, nvfs);
	}
	json_object_put(root);
	findings_free(&hostf);
	return nvfs && migratable == nvfs ? 0 : EXIT_MIGRATION_BLOCKED;
}

int cli_doctor(const struct cli_args *a)
{
	struct agent_config cfg;
	struct doctor d = {0};
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_host *host = NULL;
	struct xevf_scan_opts opts = {0};
	struct utsname u;
	char *error = NULL;
	int rc;

	if (config_build(&a->overrides, &cfg, &error)) {
		fprintf(stderr, "xevf-agent: configuration error: %s\n", error ? error : "invalid");
		free(error);
		return EXIT_USAGE;
	}
	d.cfg = &cfg;
	d.roots = (struct xevf_roots){cfg.sysfs_root, cfg.dev_root};
	d.release = cfg.kernel_release ? cfg.kernel_release : (uname(&u) == 0 ? u.release : "?");
	if (xevf_modules_open(cfg.modules_root, d.release, &d.modules, &err) < 0)
		d.modules_error = strdup(xevf_err_msg(&err));
	xevf_err_clear(&err);
	rc = config_pf_addresses(&cfg, (const char ***)&opts.extra_pfs, &opts.n_extra_pfs);
	if (rc == 0)
		rc = xevf_discover(&d.roots, &opts, &host, &err);
	free((void *)opts.extra_pfs);
	if (rc || !host) {
		fprintf(stderr, "xevf-agent: discovery failed: %s\n", err.msg ? xevf_err_msg(&err) : "out of memory");
		rc = 1;
	} else {
		rc = report(&d, host, a->json);
	}
	xevf_host_free(host);
	xevf_err_clear(&err);
	xevf_modules_close(d.modules);
	free(d.modules_error);
	config_free(&cfg);
	return rc;
}
