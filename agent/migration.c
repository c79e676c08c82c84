#include "migration.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "../driver/xevf_sriov.h"
#include "../driver/xevf_sysfs.h"
#include "../driver/xevf_vfio_driver.h"
#include "../driver/xevf_vfio_mig.h"
#include "../driver/xevf_vfio_sim.h"
#include "json_get.h"
#include "log.h"
#include "metrics.h"
#include "rpc.h"
#include "state_stream.h"
#include "xevf/migration/v1/migration.pb-c.h"

#define SERVICE "/xevf.migration.v1.Migration/"
#define DEFAULT_TTL_S 300
#define MAX_TTL_S 86400
#define DEFAULT_CHUNK ((size_t)256 * 1024)
#define MAX_CHUNK ((size_t)4 * 1024 * 1024)
#define MAX_ENDED 64
#define MAX_ID_LEN 128
#define STATE_FILE "migrations.json"
#define MAX_STATE_FILE (4 << 20)

enum role { ROLE_SOURCE, ROLE_TARGET };

struct vf_info {
	char addr[XEVF_PCI_ADDR_SIZE];
	char pf[XEVF_PCI_ADDR_SIZE];
	char *resource;
	int vendor_id, device_id, revision, pf_device_id, numa_node;
	char *driver, *pf_driver;
	bool vfio;                /* bound to vfio-pci or a VFIO variant driver */
	bool variant;
	bool healthy;
	bool busy;
	char *group;              /* IOMMU group name, NULL if none */
	struct xevf_kv *prov;
	size_t nprov;
};

/* A VFIO device the service has open (simulated devices stay open for the
 * agent's life so that their FSM state persists between calls). */
struct device {
	char addr[XEVF_PCI_ADDR_SIZE];
	struct xevf_vfio_sim *sim;
	struct xevf_mig_device dev;
	bool open;
	bool variant;             /* opened while bound to a migration driver */
	bool busy;                /* a stream is using it */
	struct device *next;
};

struct record {
	char *id;
	enum role role;
	char vf[XEVF_PCI_ADDR_SIZE];
	char *resource;
	char *vm_namespace, *vm_name;
	char phase[16];
	int64_t expires_unix_ms;  /* target reservations */
	bool claimed;             /* the target pod got the VF */
	bool abort_requested;     /* Abort while a stream runs */
	struct record *next;
};

struct migration {
	struct migration_settings s;  /* strings owned below */
	char *own[9];
	char *node;
	char *kernel_release;
	pthread_mutex_t lock;
	struct vf_info *vfs;
	size_t nvfs;
	struct record *records;       /* active */
	struct record *ended;         /* committed/aborted/released/expired, newest first */
	size_t nended;
	struct device *devices;
	char **freed;
	size_t nfreed;
	struct rpc_server *server;
	int tcp_port;
};

/* ---- small helpers --------------------------------------------------------------- */

static int64_t unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *role_name(enum role r) { return r == ROLE_SOURCE ? "source" : "target"; }

static bool valid_id(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	if (n == 0 || n > MAX_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(id[i] == '-' || id[i] == '_' || id[i] == '.' || (id[i] >= '0' && id[i] <= '9') ||
		      (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z')))
			return false;
	return true;
}

static void record_free(struct record *r)
{
	if (!r)
		return;
	free(r->id);
	free(r->resource);
	free(r->vm_namespace);
	free(r->vm_name);
	free(r);
}

static struct record *find_record(struct migration *m, const char *id)
{
	for (struct record *r = m->records; r; r = r->next)
		if (strcmp(r->id, id) == 0)
			return r;
	return NULL;
}

static struct record *find_record_for_vf(struct migration *m, const char *vf, enum role role)
{
	for (struct record *r = m->records; r; r = r->next)
		if (r->role == role && strcmp(r->vf, vf) == 0)
			return r;
	return NULL;
}

static const struct vf_info *find_vf(const struct migration *m, const char *addr)
{
	for (size_t i = 0; i < m->nvfs; i++)
		if (strcmp(m->vfs[i].addr, addr) == 0)
			return &m->vfs[i];
	return NULL;
}

/* ---- the state file ------------------------------------------------------------------ */

static char *state_path(const struct migration *m, const char *suffix)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s%s", m->s.state_dir, STATE_FILE, suffix ? suffix : "") < 0)
		return NULL;
	return p;
}

/* Writes the active records atomically (xevf_write_file_atomic). Lock held. */
static int persist(struct migration *m)
{
	json_object *root = json_object_new_object(), *list = json_object_new_array();
	char *path = state_path(m, NULL);
	const char *text;
	struct xevf_err err = XEVF_ERR_INIT;
	int rc = -1;

	json_object_object_add(root, "version", json_object_new_int(1));
	for (struct record *r = m->records; r; r = r->next) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "id", json_object_new_string(r->id));
		json_object_object_add(o, "role", json_object_new_string(role_name(r->role)));
		json_object_object_add(o, "vf", json_object_new_string(r->vf));
		json_object_object_add(o, "resource", json_object_new_string(r->resource ? r->resource : ""));
		json_object_object_add(o, "vmNamespace", json_object_new_string(r->vm_namespace ? r->vm_namespace : ""));
		json_object_object_add(o, "vmName", json_object_new_string(r->vm_name ? r->vm_name : ""));
		json_object_object_add(o, "phase", json_object_new_string(r->phase));
		json_object_object_add(o, "expiresUnixMs", json_object_new_int64(r->expires_unix_ms));
		json_object_object_add(o, "claimed", json_object_new_boolean(r->claimed));
		json_object_array_add(list, o);
	}
	json_object_object_add(root, "migrations", list);
	text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY);
	if (path && xevf_write_file_atomic(path, text, strlen(text), &err) == 0)
		rc = 0;
	else
		log_error("state_write_failed", "reason=\"%s\" hint=\"is --state-dir writable?\"",
			  path ? xevf_err_msg(&err) : "out of memory");
	xevf_err_clear(&err);
	json_object_put(root);
	free(path);
	return rc;
}

/* Parses the file into records; false when anything is off (then nothing is taken). */
static bool parse_state(const char *text, struct record **out, char **why)
{
	json_object *root = json_tokener_parse(text), *list, *v;
	struct record *head = NULL, **tail = &head;
	bool ok = false;

	*out = NULL;
	if (!root || !json_object_is_type(root, json_type_object)) {
		*why = strdup("not a JSON object");
		goto out;
	}
	if (!json_object_object_get_ex(root, "version", &v) || json_object_get_int(v) != 1) {
		*why = strdup("no \"version\": 1");
		goto out;
	}
	if (!json_object_object_get_ex(root, "migrations", &list) || !json_object_is_type(list, json_type_array)) {
		*why = strdup("no \"migrations\" array");
		goto out;
	}
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *o = json_object_array_get_idx(list, i), *e, *c;
		const char *id = json_get_string(o, "id"), *role = json_get_string(o, "role"), *vf = json_get_string(o, "vf"), *phase = json_get_string(o, "phase");
		struct xevf_pci_addr addr;
		if (!id || !valid_id(id) || !role || (strcmp(role, "source") != 0 && strcmp(role, "target") != 0) || !vf ||
		    xevf_pci_addr_parse(vf, &addr) || !phase || strlen(phase) >= sizeof(head->phase) ||
		    !json_object_object_get_ex(o, "expiresUnixMs", &e) || !json_object_is_type(e, json_type_int)) {
			if (asprintf(why, "migrations[%zu] is incomplete or malformed", i) < 0)
				*why = NULL;
			goto out;
		}
		struct record *r = calloc(1, sizeof(*r));
		if (!r)
			goto out;
		*tail = r;
		tail = &r->next;
		r->id = strdup(id);
		r->role = (strcmp(role, "source") != 0) ? ROLE_TARGET : ROLE_SOURCE;
		snprintf(r->vf, sizeof(r->vf), "%s", vf);
		r->resource = xevf_strdup_or_null(json_get_string(o, "resource"));
		r->vm_namespace = xevf_strdup_or_null(json_get_string(o, "vmNamespace"));
		r->vm_name = xevf_strdup_or_null(json_get_string(o, "vmName"));
		snprintf(r->phase, sizeof(r->phase), "%s", phase);
		r->expires_unix_ms = json_object_get_int64(e);
		r->claimed = json_object_object_get_ex(o, "claimed", &c) && json_object_get_boolean(c);
	}
	ok = true;
out:
	if (root)
		json_object_put(root);
	if (!ok) {
		while (head) {
			struct record *n = head->next;
			record_free(head);
			head = n;
		}
	}
	*out = head;
	return ok;
}

int migration_state_parse(const char *text, size_t *count, char **why)
{
	struct record *recs;

	*count = 0;
	*why = NULL;
	if (!parse_state(text, &recs, why)) {
		if (!*why)
			*why = strdup("unreadable");
		return -1;
	}
	while (recs) {
		struct record *n = recs->next;
		record_free(recs);
		recs = n;
		(*count)++;
	}
	return 0;
}

static void load_state(struct migration *m)
{
	char *path = state_path(m, NULL), *text = NULL, *why = NULL;
	struct xevf_err err = XEVF_ERR_INIT;
	struct record *recs;

	if (!path)
		return;
	if (xevf_read_text(path, MAX_STATE_FILE, &text, &err) < 0) {
		if (err.errnum != ENOENT)
			log_error("state_unreadable", "file=%s reason=\"%s\"", path, xevf_err_msg(&err));
		goto out;
	}
	if (!parse_state(text, &recs, &why)) {
		char *aside = NULL;
		if (asprintf(&aside, "%s.corrupt-%lld", path, (long long)(unix_ms() / 1000)) >= 0 && rename(path, aside) == 0)
			log_error("state_corrupt", "file=%s reason=\"%s\" moved_to=%s action=\"starting without reservations; "
				  "inspect the file\"", path, why ? why : "?", aside);
		else
			log_error("state_corrupt", "file=%s reason=\"%s\" action=\"ignored\"", path, why ? why : "?");
		free(aside);
		goto out;
	}
	size_t n = 0;
	for (struct record *r = recs; r; r = r->next) {
		/* a stream cut by the restart: the device was released with the process */
		if (strcmp(r->phase, "saving") == 0 || strcmp(r->phase, "saved") == 0)
			snprintf(r->phase, sizeof(r->phase), "%s", "interrupted");
		if (strcmp(r->phase, "restoring") == 0 || strcmp(r->phase, "restored") == 0)
			snprintf(r->phase, sizeof(r->phase), "%s", "reserved");
		n++;
	}
	m->records = recs;
	log_info("state_loaded", "file=%s migrations=%zu", path, n);
out:
	xevf_err_clear(&err);
	free(text);
	free(why);
	free(path);
}

static void end_record(struct migration *m, struct record *r, const char *phase)
{
	struct record **pp = &m->records;
	while (*pp && *pp != r)
		pp = &(*pp)->next;
	if (*pp)
		*pp = r->next;
	snprintf(r->phase, sizeof(r->phase), "%s", phase);
	r->next = m->ended;
	m->ended = r;
	if (++m->nended > MAX_ENDED) {
		struct record *p = m->ended;
		for (size_t i = 1; i < MAX_ENDED && p->next; i++)
			p = p->next;
		struct record *drop = p->next;
		p->next = NULL;
		while (drop) {
			struct record *n = drop->next;
			record_free(drop);
			drop = n;
			m->nended--;
		}
	}
	metrics_migration(phase);
	(void)persist(m);
}

/* ---- devices ----------------------------------------------------------------------------- */

static struct device *find_device(struct migration *m, const char *addr)
{
	for (struct device *d = m->devices; d; d = d->next)
		if (strcmp(d->addr, addr) == 0 && d->open)
			return d;
	return NULL;
}

/* Opens (or finds) the VF's VFIO device. Lock held. */
static struct device *device_get(struct migration *m, const struct vf_info *vf, struct xevf_err *err)
{
	struct device *d;

	for (struct device **pp = &m->devices; *pp; pp = &(*pp)->next) {
		d = *pp;
		if (strcmp(d->addr, vf->addr) != 0 || !d->open)
			continue;
		if (d->sim && d->variant != vf->variant && !d->busy) {
			/* rebound to another driver: a simulated device follows, as a real one would */
			*pp = d->next;
			xevf_mig_close(&d->dev);
			xevf_vfio_sim_free(d->sim);
			free(d);
			break;
		}
		return d;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		xevf_err_set(err, ENOMEM, "%s: out of memory", vf->addr);
		return NULL;
	}
	snprintf(d->addr, sizeof(d->addr), "%s", vf->addr);
	d->variant = vf->variant;
	if (m->s.vfio_sim_dir) {
		char *file = NULL;
		uint64_t flags = vf->variant ? XEVF_MIG_F_STOP_COPY | XEVF_MIG_F_PRE_COPY : 0;
		if (asprintf(&file, "%s/%s.state", m->s.vfio_sim_dir, vf->addr) < 0 ||
		    xevf_vfio_sim_new(vf->addr, flags, NULL, 0, file, &d->sim, err) < 0 ||
		    xevf_mig_init(&d->dev, vf->addr, xevf_vfio_sim_fd(d->sim), true, xevf_vfio_sim_ops(d->sim), err) < 0) {
			free(file);
			xevf_vfio_sim_free(d->sim);
			free(d);
			return NULL;
		}
		free(file);
	} else {
		if (!vf->group) {
			xevf_err_set(err, ENODEV, "%s: no IOMMU group: it cannot be opened through VFIO", vf->addr);
			free(d);
			return NULL;
		}
		if (xevf_mig_open_group(&d->dev, m->s.dev_root, vf->group, vf->addr, err) < 0) {
			free(d);
			return NULL;
		}
	}
	d->open = true;
	d->next = m->devices;
	m->devices = d;
	return d;
}

/* Real devices are closed when a migration ends (the fd would keep the VF from
 * a VM); simulated ones stay. Lock held. */
static void device_put(struct migration *m, const char *addr)
{
	if (m->s.vfio_sim_dir)
		return;
	for (struct device **pp = &m->devices; *pp; pp = &(*pp)->next) {
		struct device *d = *pp;
		if (strcmp(d->addr, addr) == 0 && !d->busy) {
			*pp = d->next;
			xevf_mig_close(&d->dev);
			free(d);
			return;
		}
	}
}

static void devices_free(struct migration *m)
{
	while (m->devices) {
		struct device *d = m->devices;
		m->devices = d->next;
		xevf_mig_close(&d->dev);
		xevf_vfio_sim_free(d->sim);
		free(d);
	}
}

/* ---- fingerprints and compatibility -------------------------------------------------------- */

/* The driver's version for fingerprints; the kernel release where sysfs shows none */
static char *module_version(const struct migration *m, const char *driver)
{
	struct xevf_roots roots = {m->s.sysfs_root, m->s.dev_root};
	char *text = NULL;

	if (!driver || xevf_driver_version(&roots, driver, &text) < 0)
		return NULL;
	if (!text && m->kernel_release && asprintf(&text, "kernel %s", m->kernel_release) < 0)
		text = NULL;
	return text;
}

static char *firmware_version(const struct migration *m, const char *pf)
{
	struct xevf_roots roots = {m->s.sysfs_root, m->s.dev_root};
	char *ver = NULL;

	return xevf_guc_version(&roots, pf, &ver) == 0 ? ver : NULL;
}

static char *hex(uint32_t v)
{
	char *s = NULL;
	return asprintf(&s, "0x%04x", v) < 0 ? NULL : s;
}

/* Fills fp from the inventory (and the device's migration flags when it can be
 * opened). Lock held. Strings are malloc'd; free with fingerprint_clear. */
/* protobuf-c's init points unset strings at its own static empty string */
static void free_field(char *s)
{
	if (s != protobuf_c_empty_string)
		free(s);
}

static void empty_if_null(char **s)
{
	if (!*s)
		*s = (char *)protobuf_c_empty_string;
}

static void fingerprint_fill_fields(struct migration *m, const struct vf_info *vf, Xevf__Migration__V1__Fingerprint *fp);

static void fingerprint_fill(struct migration *m, const struct vf_info *vf, Xevf__Migration__V1__Fingerprint *fp)
{
	fingerprint_fill_fields(m, vf, fp);
	char **strs[] = {&fp->vf, &fp->node, &fp->pf, &fp->driver, &fp->driver_version, &fp->pf_driver,
			   &fp->pf_driver_version, &fp->firmware_version, &fp->resource_name, &fp->not_migratable_reason};
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		empty_if_null(strs[i]);
}

static void fingerprint_fill_fields(struct migration *m, const struct vf_info *vf, Xevf__Migration__V1__Fingerprint *fp)
{
	struct xevf_err err = XEVF_ERR_INIT;

	xevf__migration__v1__fingerprint__init(fp);
	fp->vf = strdup(vf->addr);
	fp->node = strdup(m->node);
	fp->vendor_id = (uint32_t)vf->vendor_id;
	fp->device_id = (uint32_t)vf->device_id;
	fp->revision = (uint32_t)vf->revision;
	fp->pf = strdup(vf->pf);
	fp->pf_device_id = (uint32_t)vf->pf_device_id;
	fp->driver = strdup(vf->driver ? vf->driver : "");
	fp->driver_version = module_version(m, vf->driver);
	fp->pf_driver = strdup(vf->pf_driver ? vf->pf_driver : "");
	fp->pf_driver_version = module_version(m, vf->pf_driver);
	fp->firmware_version = firmware_version(m, vf->pf);
	fp->resource_name = strdup(vf->resource ? vf->resource : "");
	if (vf->nprov) {
		fp->provisioning = calloc(vf->nprov, sizeof(Xevf__Migration__V1__KeyValue *));
		for (size_t i = 0; fp->provisioning && i < vf->nprov; i++) {
			Xevf__Migration__V1__KeyValue *kv = malloc(sizeof(*kv));
			if (!kv)
				break;
			xevf__migration__v1__key_value__init(kv);
			kv->key = strdup(vf->prov[i].key);
			kv->value = strdup(vf->prov[i].value);
			fp->provisioning[fp->n_provisioning++] = kv;
		}
	}
	if (!vf->vfio) {
		fp->migratable = 0;
		if (asprintf(&fp->not_migratable_reason,
			     "%s: not migratable: bound to %s, not to a VFIO driver (xe-vfio-pci migrates; CONFIG_XE_VFIO_PCI "
			     "is off by default in the kernel)", vf->addr, vf->driver ? vf->driver : "no driver") < 0)
			fp->not_migratable_reason = NULL;
		return;
	}
	if (vf->busy && !find_device(m, vf->addr)) {
		/* a container (a VM) has it: opening its VFIO group could stand in QEMU's way, so the
		 * driver tells; the device's own flags are QEMU's to read */
		fp->migratable = vf->variant;
		if (!vf->variant && asprintf(&fp->not_migratable_reason,
					     "%s: not migratable: its driver (%s) offers no VFIO migration; Xe VFs migrate "
					     "only when bound to xe-vfio-pci (CONFIG_XE_VFIO_PCI)", vf->addr, vf->driver) < 0)
			fp->not_migratable_reason = NULL;
		return;
	}
	struct device *d = device_get(m, vf, &err);
	/* a device busy with a stream was probed when the stream started */
	bool known = d && (d->busy || xevf_mig_probe(&d->dev, vf->driver, &err) == 0);
	if (known) {
		fp->migration_flags = d->dev.flags;
		fp->migratable = 1;
	} else if (err.errnum == EBUSY) {
		/* a VM holds it: the driver is the migration driver, the flags are QEMU's to read */
		fp->migratable = 1;
	} else {
		fp->migratable = 0;
		fp->not_migratable_reason = strdup(xevf_err_msg(&err));
	}
	if (d)
		device_put(m, vf->addr);
	xevf_err_clear(&err);
}

static void fingerprint_clear(Xevf__Migration__V1__Fingerprint *fp)
{
	char *strs[] = {fp->vf, fp->node, fp->pf, fp->driver, fp->driver_version, fp->pf_driver,
			fp->pf_driver_version, fp->firmware_version, fp->resource_name, fp->not_migratable_reason};
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		free_field(strs[i]);
	for (size_t i = 0; i < fp->n_provisioning; i++) {
		free(fp->provisioning[i]->key);
		free(fp->provisioning[i]->value);
		free(fp->provisioning[i]);
	}
	free(fp->provisioning);
}

static bool str_eq(const char *a, const char *b) { return (strcmp(a ? a : "", b ? b : "") == 0); }

/* Why candidate (this node) cannot take src's state; NULL when it can. Lock held. */
static char *incompatibility(struct migration *m, const struct vf_info *vf, const Xevf__Migration__V1__Fingerprint *src)
{
	Xevf__Migration__V1__Fingerprint fp;
	char *why = NULL;
	int rc = 0;

	if (!vf->healthy)
		return strdup("unhealthy");
	if (vf->busy)
		return strdup("in use by a container");
	for (struct record *r = m->records; r; r = r->next)
		if (strcmp(r->vf, vf->addr) == 0)
			return asprintf(&why, "%s migration %s", r->role == ROLE_TARGET ? "reserved for" : "the source of",
					r->id) < 0 ? NULL : why;
	fingerprint_fill(m, vf, &fp);
	if (!fp.migratable)
		rc = asprintf(&why, "%s", fp.not_migratable_reason ? fp.not_migratable_reason : "not migratable");
	else if (fp.vendor_id != src->vendor_id || fp.device_id != src->device_id) {
		char *a = hex(fp.device_id), *b = hex(src->device_id);
		rc = asprintf(&why, "device id %s differs from the source's %s", a ? a : "?", b ? b : "?");
		free(a);
		free(b);
	} else if (fp.revision != src->revision)
		rc = asprintf(&why, "revision %u differs from the source's %u", fp.revision, src->revision);
	else if (fp.pf_device_id != src->pf_device_id)
		rc = asprintf(&why, "PF model 0x%04x differs from the source's 0x%04x", fp.pf_device_id, src->pf_device_id);
	else if (!str_eq(fp.driver, src->driver))
		rc = asprintf(&why, "driver %s differs from the source's %s", fp.driver, src->driver);
	else if (!str_eq(fp.driver_version, src->driver_version))
		rc = asprintf(&why, "%s version %s differs from the source's %s", fp.driver, fp.driver_version ? fp.driver_version : "?",
			      src->driver_version);
	else if (!str_eq(fp.pf_driver_version, src->pf_driver_version))
		rc = asprintf(&why, "PF driver %s version %s differs from the source's %s", fp.pf_driver,
			      fp.pf_driver_version ? fp.pf_driver_version : "?", src->pf_driver_version);
	else if (!str_eq(fp.firmware_version, src->firmware_version))
		rc = asprintf(&why, "GuC firmware %s differs from the source's %s",
			      fp.firmware_version && *fp.firmware_version ? fp.firmware_version : "(not shown)",
			      src->firmware_version && *src->firmware_version ? src->firmware_version : "(not shown)");
	else if (src->migration_flags && fp.migration_flags &&
		 (src->migration_flags & XEVF_MIG_F_STOP_COPY) != (fp.migration_flags & XEVF_MIG_F_STOP_COPY))
		rc = asprintf(&why, "VFIO migration flags 0x%llx do not match the source's 0x%llx",
			      (unsigned long long)fp.migration_flags, (unsigned long long)src->migration_flags);
	else {
		size_t n = fp.n_provisioning > src->n_provisioning ? fp.n_provisioning : src->n_provisioning;
		for (size_t i = 0; i < n && !why; i++) {
			const char *key = i < src->n_provisioning ? src->provisioning[i]->key : fp.provisioning[i]->key;
			const char *want = NULL, *have = NULL;
			for (size_t k = 0; k < src->n_provisioning; k++)
				if (strcmp(src->provisioning[k]->key, key) == 0)
					want = src->provisioning[k]->value;
			for (size_t k = 0; k < fp.n_provisioning; k++)
				if (strcmp(fp.provisioning[k]->key, key) == 0)
					have = fp.provisioning[k]->value;
			if (!str_eq(want, have))
				rc = asprintf(&why, "provisioning %s is %s, the source has %s", key, have ? have : "(unset)",
					      want ? want : "(unset)");
		}
	}
	if (rc < 0)
		why = strdup("out of memory");
	fingerprint_clear(&fp);
	return why;
}

/* ---- RPC handlers ------------------------------------------------------------------------------- */

static void finish_status(struct rpc_call *call, grpc_status_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void finish_status(struct rpc_call *call, grpc_status_code code, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	(void)xevf_msg_vset(&msg, fmt, ap);
	va_end(ap);
	log_warn("migration_call_refused", "method=%s peer=%s code=%d reason=\"%s\"", rpc_call_method(call),
		 rpc_call_peer(call), (int)code, msg ? msg : "?");
	rpc_call_finish(call, code, msg, NULL);
	free(msg);
}

static void status_of(const struct record *r, const char *device_state, Xevf__Migration__V1__MigrationStatus *st)
{
	xevf__migration__v1__migration_status__init(st);
	st->migration_id = r->id;
	st->role = (char *)role_name(r->role);
	st->vf = (char *)r->vf;
	st->phase = (char *)r->phase;
	st->device_state = (char *)(device_state ? device_state : "");
	st->vm_namespace = r->vm_namespace ? r->vm_namespace : "";
	st->vm_name = r->vm_name ? r->vm_name : "";
	st->expires_unix_ms = r->expires_unix_ms;
	st->resource_name = r->resource ? r->resource : "";
}

static void handle_describe(struct migration *m, struct rpc_call *call, const Xevf__Migration__V1__DescribeRequest *req)
{
	Xevf__Migration__V1__Fingerprint fp;
	pthread_mutex_lock(&m->lock);
	const struct vf_info *vf = find_vf(m, req->vf);
	if (!vf) {
		pthread_mutex_unlock(&m->lock);
		finish_status(call, GRPC_STATUS_NOT_FOUND, "no VF %.64s on node %s", req->vf, m->node);
		return;
	}
	fingerprint_fill(m, vf, &fp);
	pthread_mutex_unlock(&m->lock);
	rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&fp);
	fingerprint_clear(&fp);
}

static void handle_check(struct migration *m, struct rpc_call *call, const Xevf__Migration__V1__CheckTargetRequest *req)
{
	Xevf__Migration__V1__CheckTargetResponse resp = XEVF__MIGRATION__V1__CHECK_TARGET_RESPONSE__INIT;
	if (!req->source) {
		finish_status(call, GRPC_STATUS_INVALID_ARGUMENT, "CheckTarget needs the source fingerprint");
		return;
	}
	pthread_mutex_lock(&m->lock);
	resp.candidates = calloc(m->nvfs + 1, sizeof(Xevf__Migration__V1__Candidate *));
	for (size_t i = 0; resp.candidates && i < m->nvfs; i++) {
		Xevf__Migration__V1__Candidate *c = malloc(sizeof(*c));
		if (!c)
			break;
		xevf__migration__v1__candidate__init(c);
		c->vf = m->vfs[i].addr;
		char *why = incompatibility(m, &m->vfs[i], req->source);
		c->compatible = why == NULL;
		c->reason = why ? why : (char *)protobuf_c_empty_string;
		resp.candidates[resp.n_candidates++] = c;
	}
	pthread_mutex_unlock(&m->lock);
	rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&resp);
	for (size_t i = 0; i < resp.n_candidates; i++) {
		free_field(resp.candidates[i]->reason);
		free(resp.candidates[i]);
	}
	free(resp.candidates);
}

static void handle_reserve(struct migration *m, struct rpc_call *call, const Xevf__Migration__V1__ReserveRequest *req)
{
	Xevf__Migration__V1__Reservation res = XEVF__MIGRATION__V1__RESERVATION__INIT;
	struct record *r;
	char *reasons = NULL;
	size_t rlen = 0;

	if (!valid_id(req->migration_id)) {
		finish_status(call, GRPC_STATUS_INVALID_ARGUMENT,
			      "migration_id must be 1..%d characters of [A-Za-z0-9._-]", MAX_ID_LEN);
		return;
	}
	if (!req->source) {
		finish_status(call, GRPC_STATUS_INVALID_ARGUMENT, "Reserve needs the source fingerprint");
		return;
	}
	uint32_t ttl = req->ttl_seconds ? req->ttl_seconds : DEFAULT_TTL_S;
	if (ttl > MAX_TTL_S)
		ttl = MAX_TTL_S;
	pthread_mutex_lock(&m->lock);
	r = find_record(m, req->migration_id);
	if (r && r->role != ROLE_TARGET) {
		pthread_mutex_unlock(&m->lock);
		finish_status(call, GRPC_STATUS_ALREADY_EXISTS, "migration %s is this node's source side", req->migration_id);
		return;
	}
	if (!r) {
		FILE *rs = open_memstream(&reasons, &rlen);
		for (size_t i = 0; i < m->nvfs && !r; i++) {
			char *why = incompatibility(m, &m->vfs[i], req->source);
			if (!why) {
				r = calloc(1, sizeof(*r));
				if (!r)
					break;
				r->id = strdup(req->migration_id);
				r->role = ROLE_TARGET;
				snprintf(r->vf, sizeof(r->vf), "%s", m->vfs[i].addr);
				r->resource = xevf_strdup_or_null(m->vfs[i].resource);
				r->vm_namespace = xevf_strdup_or_null(req->vm_namespace);
				r->vm_name = xevf_strdup_or_null(req->vm_name);
				snprintf(r->phase, sizeof(r->phase), "%s", "reserved");
				r->expires_unix_ms = unix_ms() + (int64_t)ttl * 1000;
				r->next = m->records;
				m->records = r;
				(void)persist(m);
				log_info("reserved", "migration=%s vf=%s resource=%s vm=%s/%s ttl_s=%u", r->id, r->vf,
					 r->resource ? r->resource : "", r->vm_namespace ? r->vm_namespace : "",
					 r->vm_name ? r->vm_name : "", ttl);
			} else if (rs) {
				fprintf(rs, "%s%s: %s", ftell(rs) ? "; " : "", m->vfs[i].addr, why);
			}
			free(why);
		}
		if (rs)
			fclose(rs);
	}
	if (!r) {
		pthread_mutex_unlock(&m->lock);
		finish_status(call, GRPC_STATUS_FAILED_PRECONDITION, "no compatible free VF on node %s for migration %s: %s",
			      m->node, req->migration_id, reasons && *reasons ? reasons : "no VFs");
		free(reasons);
		return;
	}
	free(reasons);
	res.migration_id = strdup(r->id);
	res.vf = strdup(r->vf);
	res.resource_name = strdup(r->resource ? r->resource : "");
	res.expires_unix_ms = r->expires_unix_ms;
	res.phase = strdup(r->phase);
	pthread_mutex_unlock(&m->lock);
	if (res.migration_id && res.vf && res.resource_name && res.phase)
		rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&res);
	else
		finish_status(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	free(res.migration_id);
	free(res.vf);
	free(res.resource_name);
	free(res.phase);
}

/* ---- state streams ---- */

/* Where saved chunks go: the SaveState caller's stream, or a target agent's RestoreState */
typedef int (*chunk_send_fn)(void *ctx, const ProtobufCMessage *chunk);

struct save_ctx {
	struct migration *m;
	struct record *rec;
	chunk_send_fn send;
	void *send_ctx;
	struct state_stream stream;
	const char *id, *vf;
};

static int save_sink(void *ctx, const char *phase, const void *buf, size_t len, struct xevf_err *err)
{
	struct save_ctx *s = ctx;
	Xevf__Migration__V1__StateChunk chunk = XEVF__MIGRATION__V1__STATE_CHUNK__INIT;
	bool abort_requested;

	pthread_mutex_lock(&s->m->lock);
	abort_requested = s->rec->abort_requested;
	pthread_mutex_unlock(&s->m->lock);
	if (abort_requested)
		return xevf_err_set(err, ECANCELED, "migration %s aborted", s->id);
	chunk.migration_id = (char *)s->id;
	chunk.vf = (char *)s->vf;
	chunk.offset = s->stream.offset;
	chunk.data.data = (uint8_t *)buf; /* only read by the packer */
	chunk.data.len = len;
	chunk.phase = (char *)phase;
	if (s->send(s->send_ctx, (const ProtobufCMessage *)&chunk) < 0)
		return xevf_err_set(err, ECONNRESET, "the receiver of migration %s went away", s->id);
	state_stream_add(&s->stream, buf, len);
	return 0;
}

/* Ends a source migration that failed: the device runs again, the record ends. Lock held. */
static void source_failed(struct migration *m, struct record *r, struct device *d, struct xevf_err *err)
{
	bool reset_used = false;
	struct xevf_err rerr = XEVF_ERR_INIT;

	if (d->dev.state != XEVF_MIG_RUNNING && xevf_mig_recover(&d->dev, XEVF_MIG_RUNNING, &reset_used, &rerr) < 0)
		log_error("source_recovery_failed", "migration=%s vf=%s reason=\"%s\"", r->id, r->vf, xevf_err_msg(&rerr));
	xevf_err_clear(&rerr);
	log_warn("save_failed", "migration=%s vf=%s reason=\"%s\" device_state=%s", r->id, r->vf, xevf_err_msg(err),
		 xevf_mig_state_name(d->dev.state));
	xevf_err_set(err, err->errnum, "%s (the source VF is %s)", xevf_err_msg(err), xevf_mig_state_name(d->dev.state));
	end_record(m, r, r->abort_requested ? "aborted" : "failed");
	device_put(m, r->vf);
}

/* Saves a VF's state for a migration into send, the final chunk with size and
 * SHA-256 included. 0: the device is in STOP, the record "saved", *bytes sent.
 * Else *code and err say why; the device runs again. */
static int save_state(struct migration *m, const char *id, const char *vf_addr, uint32_t chunk_size, const char *peer,
		      chunk_send_fn send, void *send_ctx, uint64_t *bytes, grpc_status_code *code, struct xevf_err *err)
{
	struct xevf_mig_report rep = {0};
	struct xevf_mig_options opts = {.precopy = true};
	struct save_ctx s = {.m = m, .send = send, .send_ctx = send_ctx};
	struct device *d = NULL;
	struct record *r;
	const struct vf_info *vf;

	*code = GRPC_STATUS_FAILED_PRECONDITION;
	if (!valid_id(id))
		return xevf_err_set(err, EINVAL, "migration_id must be 1..%d characters of [A-Za-z0-9._-]", MAX_ID_LEN);
	opts.chunk_size = chunk_size ? chunk_size : DEFAULT_CHUNK;
	if (opts.chunk_size > MAX_CHUNK)
		opts.chunk_size = MAX_CHUNK;
	pthread_mutex_lock(&m->lock);
	vf = find_vf(m, vf_addr);
	r = find_record(m, id);
	struct record *other = vf ? find_record_for_vf(m, vf->addr, ROLE_SOURCE) : NULL;
	int rc = 0;
	if (!vf) {
		*code = GRPC_STATUS_NOT_FOUND;
		rc = xevf_err_set(err, ENODEV, "no VF %.64s on node %s", vf_addr, m->node);
	} else if (r && (r->role != ROLE_SOURCE || strcmp(r->vf, vf->addr) != 0 || strcmp(r->phase, "saving") == 0)) {
		rc = xevf_err_set(err, EBUSY, "migration %s is %s of VF %s (%s)", r->id, role_name(r->role), r->vf, r->phase);
	} else if (other && other != r) {
		rc = xevf_err_set(err, EBUSY, "VF %s is already in migration %s", vf->addr, other->id);
	} else if (!(d = device_get(m, vf, err))) {
		rc = err->errnum ? -err->errnum : -EIO;
	} else if (d->busy) {
		*code = GRPC_STATUS_UNAVAILABLE;
		rc = xevf_err_set(err, EBUSY, "the device of VF %s is busy with another stream", vf->addr);
	} else if (!r && !(r = calloc(1, sizeof(*r)))) {
		*code = GRPC_STATUS_RESOURCE_EXHAUSTED;
		rc = xevf_err_set(err, ENOMEM, "out of memory");
	} else if (!r->id) {
		r->id = strdup(id);
		r->role = ROLE_SOURCE;
		snprintf(r->vf, sizeof(r->vf), "%s", vf->addr);
		r->resource = xevf_strdup_or_null(vf->resource);
		r->next = m->records;
		m->records = r;
	}
	if (rc < 0 || !r || !d) {
		pthread_mutex_unlock(&m->lock);
		return rc < 0 ? rc : -EIO;
	}
	snprintf(r->phase, sizeof(r->phase), "%s", "saving");
	r->abort_requested = false;
	d->busy = true;
	(void)persist(m);
	pthread_mutex_unlock(&m->lock);

	log_info("save_started", "migration=%s vf=%s peer=%s", r->id, r->vf, peer);
	s.rec = r;
	s.id = r->id;
	s.vf = r->vf;
	rc = state_stream_init(&s.stream) == 0 ? xevf_mig_save(&d->dev, &opts, save_sink, &s, &rep, err)
					       : xevf_err_set(err, ENOMEM, "no SHA-256 context");
	if (rc == 0) {
		Xevf__Migration__V1__StateChunk last = XEVF__MIGRATION__V1__STATE_CHUNK__INIT;
		state_stream_finish(&s.stream);
		last.migration_id = r->id;
		last.vf = r->vf;
		last.offset = s.stream.offset;
		last.last = 1;
		last.total_bytes = s.stream.offset;
		last.sha256 = s.stream.digest;
		last.phase = "stopcopy";
		if (send(send_ctx, (const ProtobufCMessage *)&last) < 0)
			rc = xevf_err_set(err, ECONNRESET, "the receiver went away before the final chunk");
	}
	*bytes = s.stream.offset;
	state_stream_free(&s.stream);
	pthread_mutex_lock(&m->lock);
	d->busy = false;
	if (rc == 0) {
		snprintf(r->phase, sizeof(r->phase), "%s", "saved");
		(void)persist(m);
		log_info("saved", "migration=%s vf=%s bytes=%llu precopy_bytes=%llu chunks=%u device_state=%s", r->id, r->vf,
			 (unsigned long long)*bytes, (unsigned long long)rep.precopy_bytes, rep.chunks,
			 xevf_mig_state_name(d->dev.state));
	} else {
		*code = err->errnum == ENOTTY ? GRPC_STATUS_FAILED_PRECONDITION : GRPC_STATUS_ABORTED;
		source_failed(m, r, d, err);
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

static int send_to_caller(void *ctx, const ProtobufCMessage *chunk)
{
	return rpc_call_send(ctx, chunk);
}

static void handle_save(struct migration *m, struct rpc_call *call, const Xevf__Migration__V1__SaveStateRequest *req)
{
	struct xevf_err err = XEVF_ERR_INIT;
	grpc_status_code code;
	uint64_t bytes = 0;

	if (save_state(m, req->migration_id, req->vf, req->chunk_size, rpc_call_peer(call), send_to_caller, call, &bytes,
		       &code, &err) == 0)
		rpc_call_finish(call, GRPC_STATUS_OK, NULL, NULL);
	else
		finish_status(call, code, "%s", xevf_err_msg(&err));
	xevf_err_clear(&err);
}

struct target_stream {
	struct rpc_stream *st;
	bool broke; /* a send failed: the target ended the call or could not be reached */
};

static int send_to_target(void *ctx, const ProtobufCMessage *chunk)
{
	struct target_stream *ts = ctx;
	if (rpc_stream_send(ts->st, chunk) == 0)
		return 0;
	ts->broke = true;
	return -1;
}

/* Agent to agent: this (source) agent streams the VF's state into the target
 * agent's RestoreState, over mutual TLS with its own certificate. */
static void handle_send(struct migration *m, struct rpc_call *call, const Xevf__Migration__V1__SendStateRequest *req)
{
	Xevf__Migration__V1__SendStateResponse resp = XEVF__MIGRATION__V1__SEND_STATE_RESPONSE__INIT;
	struct xevf_err err = XEVF_ERR_INIT;
	struct rpc_tls tls = {m->s.tls_ca, m->s.tls_cert, m->s.tls_key};
	struct rpc_result res = {0};
	ProtobufCMessage *reply = NULL;
	grpc_status_code code;
	grpc_channel *ch;
	struct rpc_stream *st;
	char *error = NULL;
	uint64_t bytes = 0;

	if (!req->target || !*req->target || req->target[0] == '/' || strncmp(req->target, "unix:", 5) == 0) {
		finish_status(call, GRPC_STATUS_INVALID_ARGUMENT, "SendState needs the target agent's HOST:PORT");
		return;
	}
	if (!m->s.tls_ca || !m->s.tls_cert || !m->s.tls_key) {
		finish_status(call, GRPC_STATUS_FAILED_PRECONDITION,
			      "this agent has no TLS files (--tls-ca, --tls-cert, --tls-key): it cannot reach other agents");
		return;
	}
	ch = rpc_channel_open(req->target, &tls, &error);
	st = ch ? rpc_stream_open(ch, SERVICE "RestoreState", 600000) : NULL;
	if (!st) {
		finish_status(call, GRPC_STATUS_UNAVAILABLE, "target %.128s: %s", req->target, error ? error : "cannot open a stream");
		free(error);
		if (ch)
			grpc_channel_destroy(ch);
		return;
	}
	struct target_stream ts = {st, false};
	int rc = save_state(m, req->migration_id, req->vf, req->chunk_size, rpc_call_peer(call), send_to_target, &ts,
			    &bytes, &code, &err);
	if (rc < 0 && ts.broke) {
		/* the call is over on the target's side: its status says why */
		rpc_stream_finish(st, &res);
		finish_status(call, GRPC_STATUS_ABORTED, "target %.128s did not take the state: %s; %s", req->target,
			      res.details && *res.details ? res.details : "no details", xevf_err_msg(&err));
	} else if (rc < 0) {
		rpc_stream_cancel(st, &res);
		finish_status(call, code, "%s", xevf_err_msg(&err));
	} else {
		(void)rpc_stream_close_send(st);
		(void)rpc_stream_recv(st, &xevf__migration__v1__restore_state_response__descriptor, &reply);
		rpc_stream_finish(st, &res);
		if (res.status == GRPC_STATUS_OK && reply) {
			Xevf__Migration__V1__RestoreStateResponse *r = (Xevf__Migration__V1__RestoreStateResponse *)reply;
			resp.migration_id = req->migration_id;
			resp.bytes = bytes;
			resp.target_vf = r->vf;
			resp.target_device_state = r->device_state;
			log_info("sent", "migration=%s vf=%s target=%s target_vf=%s bytes=%llu", req->migration_id, req->vf,
				 req->target, r->vf, (unsigned long long)bytes);
			rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&resp);
		} else {
			/* the target refused the state: the VM stays here, running */
			pthread_mutex_lock(&m->lock);
			struct record *r = find_record(m, req->migration_id);
			struct device *d = r ? find_device(m, r->vf) : NULL;
			xevf_err_set(&err, EREMOTEIO, "target %s did not take the state: %s", req->target,
				     res.details && *res.details ? res.details : "no details");
			if (r && d)
				source_failed(m, r, d, &err);
			pthread_mutex_unlock(&m->lock);
			finish_status(call, GRPC_STATUS_ABORTED, "%s", xevf_err_msg(&err));
		}
	}
	if (reply)
		protobuf_c_message_free_unpacked(reply, NULL);
	rpc_result_clear(&res);
	grpc_channel_destroy(ch);
	xevf_err_clear(&err);
}

struct restore_ctx {
	struct rpc_call *call;
	Xevf__Migration__V1__StateChunk *pending; /* the first chunk, read before the restore starts */
	struct state_stream stream;
	const char *id;
};

static ssize_t restore_source(void *ctx, void *buf, size_t cap, struct xevf_err *err)
{
	struct restore_ctx *s = ctx;

	for (;;) {
		Xevf__Migration__V1__StateChunk *c = s->pending;
		if (s->stream.done)
			return 0;
		s->pending = NULL;
		if (!c) {
			ProtobufCMessage *msg;
			int got = rpc_call_recv(s->call, &xevf__migration__v1__state_chunk__descriptor, &msg);
			if (got < 0)
				return xevf_err_set(err, ECONNRESET, "migration %s: the state stream broke off at byte %llu", s->id,
						    (unsigned long long)s->stream.offset);
			if (got == 0)
				return xevf_err_set(err, EPROTO,
						    "migration %s: the state stream ended at byte %llu without its final chunk "
						    "(truncated); nothing is resumed", s->id, (unsigned long long)s->stream.offset);
			c = (Xevf__Migration__V1__StateChunk *)msg;
		}
		int rc = state_stream_accept(&s->stream, c, cap, s->id, err);
		size_t n = c->data.len;
		if (rc == 0 && n)
			memcpy(buf, c->data.data, n);
		protobuf_c_message_free_unpacked(&c->base, NULL);
		if (rc < 0)
			return rc;
		if (n)
			return (ssize_t)n;
	}
}

static void handle_restore(struct migration *m, struct rpc_call *call)
{
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_mig_report rep = {0};
	struct restore_ctx s = {.call = call};
	struct xevf_mig_options opts = {.chunk_size = MAX_CHUNK};
	ProtobufCMessage *msg = NULL;
	struct record *r;
	struct device *d;
	const struct vf_info *vf;

	if (rpc_call_recv(call, &xevf__migration__v1__state_chunk__descriptor, &msg) <= 0) {
		finish_status(call, GRPC_STATUS_INVALID_ARGUMENT, "RestoreState: no state chunk arrived");
		return;
	}
	s.pending = (Xevf__Migration__V1__StateChunk *)msg;
	pthread_mutex_lock(&m->lock);
	r = valid_id(s.pending->migration_id) ? find_record(m, s.pending->migration_id) : NULL;
	if (!r || r->role != ROLE_TARGET || (strcmp(r->phase, "reserved") != 0 && strcmp(r->phase, "restored") != 0)) {
		pthread_mutex_unlock(&m->lock);
		finish_status(call, GRPC_STATUS_FAILED_PRECONDITION,
			      "migration %.128s has no reservation on node %s to restore into (Reserve first)",
			      s.pending->migration_id, m->node);
		protobuf_c_message_free_unpacked(msg, NULL);
		return;
	}
	vf = find_vf(m, r->vf);
	d = vf ? device_get(m, vf, &err) : NULL;
	if (!d || d->busy) {
		pthread_mutex_unlock(&m->lock);
		finish_status(call, GRPC_STATUS_UNAVAILABLE, "reserved VF %s: %s", r->vf,
			      d ? "busy with another stream" : vf ? xevf_err_msg(&err) : "gone from the node");
		protobuf_c_message_free_unpacked(msg, NULL);
		xevf_err_clear(&err);
		return;
	}
	d->busy = true;
	snprintf(r->phase, sizeof(r->phase), "%s", "restoring");
	(void)persist(m);
	pthread_mutex_unlock(&m->lock);

	s.id = r->id;
	log_info("restore_started", "migration=%s vf=%s peer=%s", r->id, r->vf, rpc_call_peer(call));
	int rc = state_stream_init(&s.stream) == 0 ? xevf_mig_restore(&d->dev, &opts, restore_source, &s, &rep, &err)
						   : xevf_err_set(&err, ENOMEM, "no SHA-256 context");
	state_stream_free(&s.stream);
	if (s.pending)
		protobuf_c_message_free_unpacked(&s.pending->base, NULL);

	pthread_mutex_lock(&m->lock);
	d->busy = false;
	const char *state = xevf_mig_state_name(d->dev.state);
	if (rc == 0) {
		Xevf__Migration__V1__RestoreStateResponse resp = XEVF__MIGRATION__V1__RESTORE_STATE_RESPONSE__INIT;
		snprintf(r->phase, sizeof(r->phase), "%s", "restored");
		(void)persist(m);
		log_info("restored", "migration=%s vf=%s bytes=%llu device_state=%s", r->id, r->vf,
			 (unsigned long long)rep.restored_bytes, state);
		resp.migration_id = r->id;
		resp.vf = r->vf;
		resp.bytes = rep.restored_bytes;
		resp.device_state = (char *)state;
		rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&resp);
		pthread_mutex_unlock(&m->lock);
	} else {
		/* the reservation stays: a new attempt may follow, or Abort */
		snprintf(r->phase, sizeof(r->phase), "%s", "reserved");
		(void)persist(m);
		log_warn("restore_failed", "migration=%s vf=%s reason=\"%s\" device_state=%s reset=%s", r->id, r->vf,
			 xevf_err_msg(&err), state, rep.reset_used ? "yes" : "no");
		char *m2 = NULL;
		if (asprintf(&m2, "%s (target VF %s is %s, reset: %s)", xevf_err_msg(&err), r->vf, state,
			     rep.reset_used ? "yes" : "no") < 0)
			m2 = NULL;
		device_put(m, r->vf);
		pthread_mutex_unlock(&m->lock);
		rpc_call_finish(call, err.errnum == EBADMSG || err.errnum == EPROTO ? GRPC_STATUS_DATA_LOSS : GRPC_STATUS_ABORTED,
				m2, NULL);
		free(m2);
	}
	xevf_err_clear(&err);
}


/* Commit or abort. Lock held on entry and exit. */
static void finish_migration(struct migration *m, struct rpc_call *call, struct record *r, bool commit)
{
	struct xevf_err err = XEVF_ERR_INIT;
	const struct vf_info *vf = find_vf(m, r->vf);
	struct device *d = find_device(m, r->vf);
	bool reset_used = false;
	int rc = 0;

	if (!d && vf && (strcmp(r->phase, "saved") == 0 || strcmp(r->phase, "restored") == 0))
		d = device_get(m, vf, &err);
	if (commit) {
		if (r->role == ROLE_TARGET && strcmp(r->phase, "restored") != 0) {
			finish_status(call, GRPC_STATUS_FAILED_PRECONDITION, "migration %s: nothing restored yet (%s)", r->id,
				      r->phase);
			return;
		}
		if (r->role == ROLE_SOURCE && strcmp(r->phase, "saved") != 0) {
			finish_status(call, GRPC_STATUS_FAILED_PRECONDITION, "migration %s: the state is not saved yet (%s)",
				      r->id, r->phase);
			return;
		}
		if (r->role == ROLE_TARGET) /* run the restored state */
			rc = d ? xevf_mig_step(&d->dev, XEVF_MIG_RUNNING, NULL, &err) : -ENODEV;
		else if (d) { /* the VM runs elsewhere now: wipe its state, the VF starts afresh */
			rc = xevf_mig_reset(&d->dev, &err);
			reset_used = rc == 0;
		}
	} else if (d) {
		if (r->role == ROLE_SOURCE) /* the VM keeps running here, with its state */
			rc = xevf_mig_recover(&d->dev, XEVF_MIG_RUNNING, &reset_used, &err);
		else if (strcmp(r->phase, "reserved") != 0) { /* a restored foreign state must never run */
			rc = xevf_mig_reset(&d->dev, &err);
			reset_used = rc == 0;
		}
	}
	Xevf__Migration__V1__MigrationStatus st;
	const char *state = d ? xevf_mig_state_name(d->dev.state) : "";
	if (rc < 0) {
		finish_status(call, GRPC_STATUS_ABORTED, "migration %s: %s", r->id, xevf_err_msg(&err));
		xevf_err_clear(&err);
		return;
	}
	if (r->role == ROLE_SOURCE && commit) {
		char **grown = realloc(m->freed, (m->nfreed + 1) * sizeof(*grown));
		if (grown) {
			m->freed = grown;
			m->freed[m->nfreed++] = strdup(r->vf);
		}
	}
	log_info(commit ? "migration_committed" : "migration_aborted", "migration=%s role=%s vf=%s device_state=%s reset=%s",
		 r->id, role_name(r->role), r->vf, state, reset_used ? "yes" : "no");
	end_record(m, r, commit ? "committed" : "aborted");
	status_of(r, state, &st);
	rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&st);
	device_put(m, r->vf);
	xevf_err_clear(&err);
}

static void handle_ref(struct migration *m, struct rpc_call *call, const char *method,
		       const Xevf__Migration__V1__MigrationRef *req)
{
	pthread_mutex_lock(&m->lock);
	struct record *r = valid_id(req->migration_id) ? find_record(m, req->migration_id) : NULL;
	if (!r) {
		for (struct record *e = m->ended; e && valid_id(req->migration_id); e = e->next)
			if (strcmp(e->id, req->migration_id) == 0) {
				Xevf__Migration__V1__MigrationStatus st;
				status_of(e, "", &st);
				if (strcmp(method, "Abort") == 0 && strcmp(e->phase, "committed") == 0)
					finish_status(call, GRPC_STATUS_FAILED_PRECONDITION, "migration %s is already committed",
						      e->id);
				else /* Commit/Abort/Release are idempotent */
					rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&st);
				pthread_mutex_unlock(&m->lock);
				return;
			}
		pthread_mutex_unlock(&m->lock);
		finish_status(call, GRPC_STATUS_NOT_FOUND, "no migration %.128s on node %s", req->migration_id, m->node);
		return;
	}
	if (strcmp(r->phase, "saving") == 0 || strcmp(r->phase, "restoring") == 0) {
		if (strcmp(method, "Abort") == 0) {
			/* the stream sees it at its next chunk and recovers the device */
			r->abort_requested = true;
			Xevf__Migration__V1__MigrationStatus st;
			status_of(r, "", &st);
			st.phase = "aborting";
			rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&st);
			log_info("migration_abort_requested", "migration=%s vf=%s", r->id, r->vf);
		} else {
			finish_status(call, GRPC_STATUS_FAILED_PRECONDITION, "migration %s is %s; wait for it or Abort", r->id,
				      r->phase);
		}
		pthread_mutex_unlock(&m->lock);
		return;
	}
	if (strcmp(method, "Release") == 0) {
		if (r->role != ROLE_TARGET || strcmp(r->phase, "reserved") != 0) {
			finish_status(call, GRPC_STATUS_FAILED_PRECONDITION,
				      "migration %s: only a reservation with nothing restored can be released (%s %s); use Abort",
				      r->id, role_name(r->role), r->phase);
		} else {
			Xevf__Migration__V1__MigrationStatus st;
			log_info("reservation_released", "migration=%s vf=%s", r->id, r->vf);
			end_record(m, r, "released");
			status_of(r, "", &st);
			rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&st);
		}
	} else {
		finish_migration(m, call, r, strcmp(method, "Commit") == 0);
	}
	pthread_mutex_unlock(&m->lock);
}

static void handle_list(struct migration *m, struct rpc_call *call)
{
	Xevf__Migration__V1__ListResponse resp = XEVF__MIGRATION__V1__LIST_RESPONSE__INIT;
	size_t n;

	pthread_mutex_lock(&m->lock);
	n = m->nended;
	for (struct record *r = m->records; r; r = r->next)
		n++;
	resp.migrations = calloc(n + 1, sizeof(Xevf__Migration__V1__MigrationStatus *));
	Xevf__Migration__V1__MigrationStatus *sts = calloc(n + 1, sizeof(*sts));
	if (resp.migrations && sts) {
		for (struct record *r = m->records; r; r = r->next) {
			struct device *d = find_device(m, r->vf);
			status_of(r, d && !d->busy ? xevf_mig_state_name(d->dev.state) : "", &sts[resp.n_migrations]);
			resp.migrations[resp.n_migrations] = &sts[resp.n_migrations];
			resp.n_migrations++;
		}
		for (struct record *r = m->ended; r && resp.n_migrations < n; r = r->next) {
			status_of(r, "", &sts[resp.n_migrations]);
			resp.migrations[resp.n_migrations] = &sts[resp.n_migrations];
			resp.n_migrations++;
		}
	}
	rpc_call_finish(call, GRPC_STATUS_OK, NULL, (const ProtobufCMessage *)&resp);
	pthread_mutex_unlock(&m->lock);
	free(resp.migrations);
	free(sts);
}

static void handle(struct rpc_call *call, void *ctx)
{
	struct migration *m = ctx;
	const char *full = rpc_call_method(call);
	const char *method = strncmp(full, SERVICE, strlen(SERVICE)) == 0 ? full + strlen(SERVICE) : NULL;
	const ProtobufCMessageDescriptor *desc = NULL;
	ProtobufCMessage *req = NULL;

	if (!method) {
		finish_status(call, GRPC_STATUS_UNIMPLEMENTED, "unknown service method %.128s", full);
		return;
	}
	if (strcmp(method, "RestoreState") == 0) {
		handle_restore(m, call);
		return;
	}
	if (strcmp(method, "Describe") == 0)
		desc = &xevf__migration__v1__describe_request__descriptor;
	else if (strcmp(method, "CheckTarget") == 0)
		desc = &xevf__migration__v1__check_target_request__descriptor;
	else if (strcmp(method, "Reserve") == 0)
		desc = &xevf__migration__v1__reserve_request__descriptor;
	else if (strcmp(method, "SaveState") == 0)
		desc = &xevf__migration__v1__save_state_request__descriptor;
	else if (strcmp(method, "SendState") == 0)
		desc = &xevf__migration__v1__send_state_request__descriptor;
	else if (strcmp(method, "Release") == 0 || strcmp(method, "Commit") == 0 || strcmp(method, "Abort") == 0)
		desc = &xevf__migration__v1__migration_ref__descriptor;
	else if (strcmp(method, "List") == 0)
		desc = &xevf__migration__v1__list_request__descriptor;
	if (!desc) {
		finish_status(call, GRPC_STATUS_UNIMPLEMENTED, "unknown method %.128s", method);
		return;
	}
	int got = rpc_call_recv(call, desc, &req);
	if (got <= 0) {
		finish_status(call, GRPC_STATUS_INVALID_ARGUMENT, "%s: the request could not be decoded", method);
		return;
	}
	if (desc == &xevf__migration__v1__describe_request__descriptor)
		handle_describe(m, call, (Xevf__Migration__V1__DescribeRequest *)req);
	else if (desc == &xevf__migration__v1__check_target_request__descriptor)
		handle_check(m, call, (Xevf__Migration__V1__CheckTargetRequest *)req);
	else if (desc == &xevf__migration__v1__reserve_request__descriptor)
		handle_reserve(m, call, (Xevf__Migration__V1__ReserveRequest *)req);
	else if (desc == &xevf__migration__v1__save_state_request__descriptor)
		handle_save(m, call, (Xevf__Migration__V1__SaveStateRequest *)req);
	else if (desc == &xevf__migration__v1__send_state_request__descriptor)
		handle_send(m, call, (Xevf__Migration__V1__SendStateRequest *)req);
	else if (desc == &xevf__migration__v1__list_request__descriptor)
		handle_list(m, call);
	else
		handle_ref(m, call, method, (Xevf__Migration__V1__MigrationRef *)req);
	protobuf_c_message_free_unpacked(req, NULL);
}

/* ---- life cycle and agent hooks -------------------------------------------------------------- */

static void vf_info_clear(struct vf_info *v)
{
	free(v->resource);
	free(v->driver);
	free(v->pf_driver);
	free(v->group);
	for (size_t i = 0; i < v->nprov; i++) {
		free(v->prov[i].key);
		free(v->prov[i].value);
	}
	free(v->prov);
}

void migration_update(struct migration *m, const struct migration_vf *vfs, size_t n)
{
	struct vf_info *info = calloc(n + 1, sizeof(*info));
	if (!info)
		return;
	for (size_t i = 0; i < n; i++) {
		const struct xevf_vf *vf = vfs[i].vf;
		struct vf_info *v = &info[i];
		snprintf(v->addr, sizeof(v->addr), "%s", vf->addr);
		snprintf(v->pf, sizeof(v->pf), "%s", vf->pf_addr);
		v->resource = xevf_strdup_or_null(vfs[i].resource);
		v->vendor_id = vf->vendor_id;
		v->device_id = vf->device_id;
		v->revision = vf->revision;
		v->numa_node = vf->numa_node;
		v->pf_device_id = vfs[i].pf ? vfs[i].pf->device_id : -1;
		v->driver = xevf_strdup_or_null(vf->driver);
		v->pf_driver = vfs[i].pf ? xevf_strdup_or_null(vfs[i].pf->driver) : NULL;
		v->variant = vf->driver_kind == XEVF_DRIVER_VFIO_VARIANT;
		v->vfio = v->variant || vf->driver_kind == XEVF_DRIVER_VFIO_PCI;
		v->healthy = vf->healthy;
		v->busy = vfs[i].busy;
		if (vf->iommu_group >= 0 && asprintf(&v->group, "%d", vf->iommu_group) < 0)
			v->group = NULL;
		if (vf->nprovisioning && (v->prov = calloc(vf->nprovisioning, sizeof(*v->prov)))) {
			for (size_t k = 0; k < vf->nprovisioning; k++) {
				v->prov[k].key = xevf_strdup_or_null(vf->provisioning[k].key);
				v->prov[k].value = xevf_strdup_or_null(vf->provisioning[k].value);
			}
			v->nprov = vf->nprovisioning;
		}
	}
	pthread_mutex_lock(&m->lock);
	struct vf_info *old = m->vfs;
	size_t nold = m->nvfs;
	m->vfs = info;
	m->nvfs = n;
	pthread_mutex_unlock(&m->lock);
	for (size_t i = 0; i < nold; i++)
		vf_info_clear(&old[i]);
	free(old);
}

size_t migration_tick(struct migration *m, char ***freed)
{
	int64_t now = unix_ms();
	size_t n;

	pthread_mutex_lock(&m->lock);
	for (struct record *r = m->records, *next; r; r = next) {
		next = r->next;
		if (r->role == ROLE_TARGET && strcmp(r->phase, "reserved") == 0 && r->expires_unix_ms < now) {
			log_info("reservation_expired", "migration=%s vf=%s vm=%s/%s", r->id, r->vf,
				 r->vm_namespace ? r->vm_namespace : "", r->vm_name ? r->vm_name : "");
			device_put(m, r->vf);
			end_record(m, r, "expired");
		}
	}
	*freed = m->freed;
	n = m->nfreed;
	m->freed = NULL;
	m->nfreed = 0;
	pthread_mutex_unlock(&m->lock);
	return n;
}

bool migration_reserved_for(struct migration *m, const char *vf, bool *pending, char **vm_namespace, char **vm_name)
{
	bool found = false;
	if (vm_namespace)
		*vm_namespace = NULL;
	if (vm_name)
		*vm_name = NULL;
	if (!m)
		return false;
	pthread_mutex_lock(&m->lock);
	for (struct record *r = m->records; r && !found; r = r->next)
		if (r->role == ROLE_TARGET && strcmp(r->vf, vf) == 0) {
			found = true;
			if (pending)
				*pending = !r->claimed;
			if (vm_namespace)
				*vm_namespace = xevf_strdup_or_null(r->vm_namespace);
			if (vm_name)
				*vm_name = xevf_strdup_or_null(r->vm_name);
		}
	pthread_mutex_unlock(&m->lock);
	return found;
}

void migration_claim(struct migration *m, const char *vf)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	for (struct record *r = m->records; r; r = r->next)
		if (r->role == ROLE_TARGET && strcmp(r->vf, vf) == 0 && !r->claimed) {
			r->claimed = true;
			(void)persist(m);
			log_info("reservation_claimed", "migration=%s vf=%s vm=%s/%s", r->id, r->vf,
				 r->vm_namespace ? r->vm_namespace : "", r->vm_name ? r->vm_name : "");
		}
	pthread_mutex_unlock(&m->lock);
}

struct migration *migration_start(const struct migration_settings *s, char **error)
{
	struct migration *m = calloc(1, sizeof(*m));
	struct utsname u;
	char host[256] = "";
	char *unix_addr = NULL;

	if (!m) {
		*error = strdup("out of memory");
		return NULL;
	}
	pthread_mutex_init(&m->lock, NULL);
	m->s = *s;
	const char **fields[] = {&m->s.unix_socket, &m->s.tcp_address, &m->s.tls_ca, &m->s.tls_cert, &m->s.tls_key,
				 &m->s.state_dir, &m->s.vfio_sim_dir, &m->s.sysfs_root, &m->s.dev_root};
	for (size_t i = 0; i < 9; i++)
		if (*fields[i]) {
			m->own[i] = strdup(*fields[i]);
			*fields[i] = m->own[i];
		}
	m->s.node_name = NULL;
	gethostname(host, sizeof(host) - 1);
	m->node = strdup(s->node_name && *s->node_name ? s->node_name : host);
	m->kernel_release = s->kernel_release ? strdup(s->kernel_release) : (uname(&u) == 0 ? strdup(u.release) : NULL);
	if (m->s.state_dir && mkdir(m->s.state_dir, 0700) < 0 && errno != EEXIST)
		log_warn("state_dir_unusable", "dir=%s reason=\"%s\"", m->s.state_dir, strerror(errno));
	load_state(m);
	if (m->s.unix_socket && *m->s.unix_socket) {
		(void)xevf_mkdir_parent(m->s.unix_socket, 0755); /* listening below says what went wrong */
		unlink(m->s.unix_socket);
		if (asprintf(&unix_addr, "unix:%s", m->s.unix_socket) < 0)
			unix_addr = NULL;
	}
	if (unix_addr || (m->s.tcp_address && *m->s.tcp_address)) {
		struct rpc_tls tls = {m->s.tls_ca, m->s.tls_cert, m->s.tls_key};
		m->server = rpc_server_start(unix_addr, m->s.tcp_address && *m->s.tcp_address ? m->s.tcp_address : NULL,
					     &tls, handle, m, &m->tcp_port, error);
		if (!m->server) {
			free(unix_addr);
			migration_stop(m);
			return NULL;
		}
		if (m->s.unix_socket && *m->s.unix_socket)
			chmod(m->s.unix_socket, 0600);
		log_info("migration_serving", "socket=%s tcp=%s tcp_port=%d tls=%s state_dir=%s node=%s devices=%s",
			 m->s.unix_socket ? m->s.unix_socket : "", m->s.tcp_address ? m->s.tcp_address : "", m->tcp_port,
			 m->tcp_port ? "mutual" : "off", m->s.state_dir ? m->s.state_dir : "", m->node,
			 m->s.vfio_sim_dir ? "simulated" : "vfio");
	}
	free(unix_addr);
	return m;
}

void migration_stop(struct migration *m)
{
	if (!m)
		return;
	rpc_server_stop(m->server);
	if (m->s.unix_socket && *m->s.unix_socket && m->server)
		unlink(m->s.unix_socket);
	for (struct record *lists[2] = {m->records, m->ended}, **l = lists; l < lists + 2; l++)
		while (*l) {
			struct record *n = (*l)->next;
			record_free(*l);
			*l = n;
		}
	for (size_t i = 0; i < m->nvfs; i++)
		vf_info_clear(&m->vfs[i]);
	free(m->vfs);
	for (size_t i = 0; i < m->nfreed; i++)
		free(m->freed[i]);
	free(m->freed);
	devices_free(m);
	for (size_t i = 0; i < 9; i++)
		free(m->own[i]);
	free(m->node);
	free(m->kernel_release);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
