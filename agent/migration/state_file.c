#include "state_file.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fail.h"
#include "json_read.h"
#include "peer_identity.h"
#include "xevf_sysfs.h"

#define STATE_FILE "migrations.json"
#define STATE_FILE_MAX (4 << 20)

int state_file_init(struct state_file *f, const char *state_dir)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->write_lock, NULL);
	if (state_dir && asprintf(&f->path, "%s/%s", state_dir, STATE_FILE) < 0) {
		f->path = NULL;
		return -ENOMEM;
	}
	return 0;
}

void state_file_destroy(struct state_file *f)
{
	free(f->path);
	free(f->broken);
	pthread_mutex_destroy(&f->write_lock);
}

static json_object *record_json(const struct record *r)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "id", json_object_new_string(r->id));
	json_object_object_add(o, "role", json_object_new_string(role_name(r->role)));
	json_object_object_add(o, "vf", json_object_new_string(r->vf));
	json_object_object_add(o, "resource", json_object_new_string(r->resource ? r->resource : ""));
	json_object_object_add(o, "vmNamespace", json_object_new_string(r->vm_namespace ? r->vm_namespace : ""));
	json_object_object_add(o, "vmName", json_object_new_string(r->vm_name ? r->vm_name : ""));
	json_object_object_add(o, "owner", json_object_new_string(r->owner ? r->owner : "local"));
	json_object_object_add(o, "phase", json_object_new_string(phase_name(r->phase)));
	json_object_object_add(o, "expiresUnixMs", json_object_new_int64(r->expires_unix_ms));
	json_object_object_add(o, "claimed", json_object_new_boolean(r->claimed));
	return o;
}

void state_file_render(struct state_file *f, const struct registry *reg, struct state_snapshot *out)
{
	json_object *root = json_object_new_object(), *list = json_object_new_array();
	const char *text;

	json_object_object_add(root, "version", json_object_new_int(1));
	for (const struct record *r = reg->active; r; r = r->next)
		json_object_array_add(list, record_json(r));
	json_object_object_add(root, "migrations", list);
	text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY);
	out->text = text ? strdup(text) : NULL;
	out->seq = ++f->rendered;
	json_object_put(root);
}

int state_file_write(struct state_file *f, struct state_snapshot *snap, char **error)
{
	struct xevf_err err = XEVF_ERR_INIT;
	int rc = 0;

	if (!f->path) {
		free(snap->text);
		return 0;
	}
	if (f->broken) {
		free(snap->text);
		snap->text = NULL;
		return agent_fail(error, EIO, "%s: %s", f->path, f->broken);
	}
	if (!snap->text)
		return agent_fail(error, ENOMEM, "%s: out of memory", f->path);
	pthread_mutex_lock(&f->write_lock);
	if (snap->seq > f->written) {
		rc = xevf_write_file_atomic(f->path, snap->text, strlen(snap->text), &err);
		if (rc == 0)
			f->written = snap->seq;
		else
			agent_fail(error, -rc, "%s", xevf_err_msg(&err));
	}
	pthread_mutex_unlock(&f->write_lock);
	xevf_err_clear(&err);
	free(snap->text);
	snap->text = NULL;
	return rc;
}

static struct record *parse_record(json_object *o)
{
	const char *id = json_get_string(o, "id"), *role = json_get_string(o, "role"), *vf = json_get_string(o, "vf");
	const char *phase_text = json_get_string(o, "phase"), *owner;
	json_object *expires = json_get(o, "expiresUnixMs"), *claimed = json_get(o, "claimed");
	struct xevf_pci_addr addr;
	enum phase phase;
	struct record *r;

	if (!migration_id_valid(id) || !role || (strcmp(role, "source") != 0 && strcmp(role, "target") != 0) || !vf ||
	    xevf_pci_addr_parse(vf, &addr) || !phase_text || !phase_parse(phase_text, &phase) || phase_ended(phase) ||
	    !expires || !json_object_is_type(expires, json_type_int))
		return NULL;
	if (!(r = record_new(id, strcmp(role, "source") == 0 ? ROLE_SOURCE : ROLE_TARGET, vf, phase)))
		return NULL;
	r->resource = xevf_strdup_or_null(json_get_string(o, "resource"));
	r->vm_namespace = xevf_strdup_or_null(json_get_string(o, "vmNamespace"));
	r->vm_name = xevf_strdup_or_null(json_get_string(o, "vmName"));
	/* a file from before owners were kept: the node's own, so a TLS caller cannot end it */
	owner = json_get_string(o, "owner");
	r->owner = strdup(owner && peer_identity_valid(owner) ? owner : "local");
	r->expires_unix_ms = json_object_get_int64(expires);
	r->claimed = claimed && json_object_get_boolean(claimed);
	return r;
}

int state_file_parse(const char *text, struct record **records, char **error)
{
	json_object *root = json_tokener_parse(text), *list = json_get(root, "migrations"), *version = json_get(root, "version");
	struct record *head = NULL, **tail = &head;
	int rc = 0;

	*records = NULL;
	if (!root || !json_object_is_type(root, json_type_object))
		rc = agent_fail(error, EINVAL, "not a JSON object");
	else if (!version || json_object_get_int(version) != 1)
		rc = agent_fail(error, EINVAL, "no \"version\": 1");
	else if (!list || !json_object_is_type(list, json_type_array))
		rc = agent_fail(error, EINVAL, "no \"migrations\" array");
	for (size_t i = 0; rc == 0 && i < json_object_array_length(list); i++) {
		if (!(*tail = parse_record(json_object_array_get_idx(list, i)))) {
			rc = agent_fail(error, EINVAL, "migrations[%zu] is incomplete or malformed", i);
			break;
		}
		tail = &(*tail)->next;
	}
	json_object_put(root);
	if (rc)
		records_free(head);
	else
		*records = head;
	return rc;
}

/* What a restart did to a stream: the device was released with the process. */
static void restarted(struct record *r)
{
	if (r->phase == PHASE_SAVING || r->phase == PHASE_SAVED)
		r->phase = PHASE_INTERRUPTED;
	if (r->phase == PHASE_RESTORING || r->phase == PHASE_RESTORED)
		r->phase = PHASE_RESERVED;
}

int state_file_load(struct state_file *f, struct record **records, char **aside, char **error)
{
	struct xevf_err err = XEVF_ERR_INIT;
	char *text = NULL;
	int rc;

	*records = NULL;
	*aside = NULL;
	if (!f->path)
		return 0;
	rc = xevf_read_text(f->path, STATE_FILE_MAX, &text, &err);
	if (rc == -ENOENT) {
		xevf_err_clear(&err);
		return 0;
	}
	if (rc == 0)
		rc = state_file_parse(text, records, error);
	else
		agent_fail(error, -rc, "%s", xevf_err_msg(&err));
	xevf_err_clear(&err);
	free(text);
	if (rc == 0) {
		for (struct record *r = *records; r; r = r->next)
			restarted(r);
		return 0;
	}
	/* unreadable or corrupt: out of the way before anything is written over it */
	if (asprintf(aside, "%s.corrupt-%lld", f->path, (long long)(clock_unix_ms() / 1000)) < 0)
		*aside = NULL;
	if (!*aside || rename(f->path, *aside) != 0) {
		int e = *aside ? errno : ENOMEM;
		free(*aside);
		*aside = NULL;
		if (asprintf(&f->broken, "it could not be read (%s) nor moved aside (%s): nothing is written over it; "
			     "move it away and restart", *error ? *error : "?", strerror(e)) < 0)
			f->broken = NULL;
	}
	return rc;
}
