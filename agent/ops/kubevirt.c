#include "kubevirt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fail.h"
#include "json_read.h"
#include "text.h"
#include "xevf_util.h"

#define MAX_RESOURCES 16

void kubevirt_target_pod_clear(struct kubevirt_target_pod *p)
{
	free(p->namespace_);
	free(p->name);
	free(p->uid);
	free(p->migration);
	free(p->vm_name);
	xevf_strv_free(p->resources, p->nresources);
	memset(p, 0, sizeof(*p));
}

static json_object *parse(const char *json, size_t len, const char *what, char **error)
{
	json_tokener *tok;
	json_object *root;

	if (len > INT32_MAX) {
		agent_fail(error, EFBIG, "%s is too large", what);
		return NULL;
	}
	if (!(tok = json_tokener_new())) {
		agent_fail(error, ENOMEM, "out of memory");
		return NULL;
	}
	root = json_tokener_parse_ex(tok, json, (int)len);
	if (root && json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(root);
		root = NULL;
	}
	json_tokener_free(tok);
	if (!root || !json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		agent_fail(error, EINVAL, "%s is not a JSON object", what);
		return NULL;
	}
	return root;
}

/* A label value (and a migration id): 1..63 of [A-Za-z0-9._-]. */
static bool label_value(const char *s)
{
	size_t len = s ? strlen(s) : 0;
	return len > 0 && len <= 63 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
}

static int dup_or_fail(char **out, const char *s, char **error)
{
	if (!s) {
		*out = NULL;
		return 0;
	}
	return (*out = strdup(s)) ? 0 : agent_fail(error, ENOMEM, "out of memory");
}

/* An extended resource's name (a domain, then '/') added once to a list of
 * at most MAX_RESOURCES (the rest are not for us anyway); 0 or -ENOMEM. */
static int add_resource(char ***list, size_t *n, const char *name, char **error)
{
	char **grown, *copy;

	if (!name || !strchr(name, '/') || strlen(name) > 253 || xevf_strv_index(*list, *n, name) >= 0 ||
	    *n >= MAX_RESOURCES)
		return 0;
	if (!(grown = realloc(*list, (*n + 1) * sizeof(*grown))))
		return agent_fail(error, ENOMEM, "out of memory");
	*list = grown;
	if (!(copy = strdup(name)))
		return agent_fail(error, ENOMEM, "out of memory");
	(*list)[(*n)++] = copy;
	return 0;
}

/* The extended resources (a domain, then '/') a container list asks for. */
static int add_resources(json_object *containers, struct kubevirt_target_pod *p, char **error)
{
	size_t n = containers && json_object_is_type(containers, json_type_array) ? json_object_array_length(containers) : 0;

	for (size_t i = 0; i < n; i++) {
		json_object *res = json_get(json_object_array_get_idx(containers, i), "resources");
		json_object *limits = json_get(res, "limits");
		if (!limits || !json_object_is_type(limits, json_type_object))
			continue;
		json_object_object_foreach(limits, key, value) {
			(void)value;
			if (add_resource(&p->resources, &p->nresources, key, error))
				return -ENOMEM;
		}
	}
	return 0;
}

int kubevirt_parse_watch_event(const char *line, size_t len, struct kubevirt_target_pod *pod, char **error)
{
	json_object *root, *obj, *meta, *labels, *annotations;
	const char *type, *ns, *name, *uid, *migration, *vm, *phase;
	int rc = 0;

	memset(pod, 0, sizeof(*pod));
	*error = NULL;
	if (!(root = parse(line, len, "the watch event", error)))
		return -EINVAL;
	type = json_get_string(root, "type");
	obj = json_get(root, "object");
	if (!type || !obj) {
		rc = agent_fail(error, EINVAL, "the watch event has no type or object");
		goto out;
	}
	if (strcmp(type, "ADDED") != 0 && strcmp(type, "MODIFIED") != 0)
		goto out; /* DELETED, BOOKMARK, ERROR (a Status): nothing to start */
	meta = json_get(obj, "metadata");
	labels = json_get(meta, "labels");
	annotations = json_get(meta, "annotations");
	ns = json_get_string(meta, "namespace");
	name = json_get_string(meta, "name");
	uid = json_get_string(meta, "uid");
	migration = json_get_string(labels, KUBEVIRT_MIGRATION_LABEL);
	vm = json_get_string(annotations, "kubevirt.io/domain");
	if (!vm)
		vm = json_get_string(labels, "kubevirt.io/domain");
	if (!vm)
		vm = json_get_string(labels, "vm.kubevirt.io/name");
	phase = json_get_string(json_get(obj, "status"), "phase");
	/* Kubernetes names only: they go into log lines, paths and records */
	if (!ns || !text_dns_label(ns, strlen(ns)) || !name || !text_dns_subdomain(name) || !label_value(migration) ||
	    !vm || !text_dns_subdomain(vm) || (uid && !label_value(uid)))
		goto out;
	pod->pending = phase && strcmp(phase, "Pending") == 0;
	if (dup_or_fail(&pod->namespace_, ns, error) || dup_or_fail(&pod->name, name, error) ||
	    dup_or_fail(&pod->uid, uid, error) || dup_or_fail(&pod->migration, migration, error) ||
	    dup_or_fail(&pod->vm_name, vm, error) ||
	    add_resources(json_get(json_get(obj, "spec"), "containers"), pod, error)) {
		rc = -ENOMEM;
		goto out;
	}
	rc = 1;
out:
	if (rc <= 0)
		kubevirt_target_pod_clear(pod);
	json_object_put(root);
	return rc;
}

int kubevirt_parse_vmi(const char *json, size_t len, char **node, char **uid, char **error)
{
	json_object *root = parse(json, len, "the VMI", error);
	const char *n, *u;
	int rc;

	*node = *uid = NULL;
	if (!root)
		return -EINVAL;
	n = json_get_string(json_get(root, "status"), "nodeName");
	u = json_get_string(json_get(root, "metadata"), "uid");
	if (!n || !text_dns_subdomain(n) || !label_value(u))
		rc = agent_fail(error, ENOENT, "the VMI runs on no node (status.nodeName) or has no uid");
	else if (dup_or_fail(node, n, error) || dup_or_fail(uid, u, error))
		rc = -ENOMEM;
	else
		rc = 0;
	if (rc < 0) {
		free(*node);
		free(*uid);
		*node = *uid = NULL;
	}
	json_object_put(root);
	return rc;
}

void kubevirt_vmi_clear(struct kubevirt_vmi *v)
{
	free(v->namespace_);
	free(v->name);
	free(v->uid);
	free(v->node);
	free(v->migration);
	free(v->source_node);
	free(v->target_node);
	free(v->source_pod);
	free(v->target_pod);
	xevf_strv_free(v->resources, v->nresources);
	memset(v, 0, sizeof(*v));
}

/* An optional name: absent is fine, present must be well formed. */
static int optional_name(json_object *o, const char *key, bool (*valid)(const char *), char **out, char **error)
{
	const char *s = json_get_string(o, key);

	*out = NULL;
	if (!s)
		return 0;
	if (!valid(s))
		return agent_fail(error, EINVAL, "the VMI's %s is not a Kubernetes name or uid", key);
	return dup_or_fail(out, s, error);
}

static bool subdomain(const char *s)
{
	return text_dns_subdomain(s);
}

/* The deviceName of each entry of a device list (hostDevices, gpus). */
static int add_device_names(json_object *list, struct kubevirt_vmi *v, char **error)
{
	size_t n = list && json_object_is_type(list, json_type_array) ? json_object_array_length(list) : 0;

	for (size_t i = 0; i < n; i++)
		if (add_resource(&v->resources, &v->nresources,
				 json_get_string(json_object_array_get_idx(list, i), "deviceName"), error))
			return -ENOMEM;
	return 0;
}

int kubevirt_parse_hook_vmi(const char *json, size_t len, struct kubevirt_vmi *vmi, char **error)
{
	json_object *root, *meta, *status, *mig, *devices;
	const char *ns, *name, *uid;
	int rc;

	memset(vmi, 0, sizeof(*vmi));
	*error = NULL;
	if (!(root = parse(json, len, "the VMI", error)))
		return -EINVAL;
	meta = json_get(root, "metadata");
	status = json_get(root, "status");
	mig = json_get(status, "migrationState");
	devices = json_get(json_get(json_get(root, "spec"), "domain"), "devices");
	ns = json_get_string(meta, "namespace");
	name = json_get_string(meta, "name");
	uid = json_get_string(meta, "uid");
	if (!ns || !text_dns_label(ns, strlen(ns)) || !name || !text_dns_subdomain(name) || !label_value(uid)) {
		rc = agent_fail(error, EINVAL, "the VMI has no well-formed metadata.namespace, name and uid");
	} else if (dup_or_fail(&vmi->namespace_, ns, error) || dup_or_fail(&vmi->name, name, error) ||
		   dup_or_fail(&vmi->uid, uid, error)) {
		rc = -ENOMEM;
	} else {
		rc = optional_name(status, "nodeName", subdomain, &vmi->node, error);
		if (!rc)
			rc = optional_name(mig, "migrationUid", label_value, &vmi->migration, error);
		if (!rc)
			rc = optional_name(mig, "sourceNode", subdomain, &vmi->source_node, error);
		if (!rc)
			rc = optional_name(mig, "targetNode", subdomain, &vmi->target_node, error);
		if (!rc)
			rc = optional_name(mig, "sourcePod", subdomain, &vmi->source_pod, error);
		if (!rc)
			rc = optional_name(mig, "targetPod", subdomain, &vmi->target_pod, error);
		if (!rc)
			rc = add_device_names(json_get(devices, "hostDevices"), vmi, error);
		if (!rc)
			rc = add_device_names(json_get(devices, "gpus"), vmi, error);
	}
	if (rc < 0)
		kubevirt_vmi_clear(vmi);
	json_object_put(root);
	return rc;
}

static const char *const vmim_outcome_names[] = {
	[VMIM_IN_PROGRESS] = "in_progress",
	[VMIM_SUCCEEDED] = "succeeded",
	[VMIM_FAILED] = "failed",
};

const char *kubevirt_vmim_outcome_name(enum kubevirt_vmim_outcome o)
{
	return (size_t)o < sizeof(vmim_outcome_names) / sizeof(vmim_outcome_names[0]) ? vmim_outcome_names[o] : "?";
}

void kubevirt_vmim_event_clear(struct kubevirt_vmim_event *e)
{
	free(e->namespace_);
	free(e->name);
	free(e->uid);
	memset(e, 0, sizeof(*e));
}

int kubevirt_parse_vmim_event(const char *line, size_t len, struct kubevirt_vmim_event *event, char **error)
{
	json_object *root, *obj, *meta;
	const char *type, *ns, *name, *uid, *phase;
	int rc = 0;

	memset(event, 0, sizeof(*event));
	*error = NULL;
	if (!(root = parse(line, len, "the watch event", error)))
		return -EINVAL;
	type = json_get_string(root, "type");
	obj = json_get(root, "object");
	if (!type || !obj) {
		rc = agent_fail(error, EINVAL, "the watch event has no type or object");
		goto out;
	}
	if (strcmp(type, "ADDED") != 0 && strcmp(type, "MODIFIED") != 0 && strcmp(type, "DELETED") != 0)
		goto out; /* BOOKMARK, ERROR (a Status) */
	meta = json_get(obj, "metadata");
	ns = json_get_string(meta, "namespace");
	name = json_get_string(meta, "name");
	uid = json_get_string(meta, "uid");
	phase = json_get_string(json_get(obj, "status"), "phase");
	if (!ns || !text_dns_label(ns, strlen(ns)) || !name || !text_dns_subdomain(name) || !label_value(uid))
		goto out;
	event->deleted = strcmp(type, "DELETED") == 0;
	if (phase && strcmp(phase, "Succeeded") == 0)
		event->outcome = VMIM_SUCCEEDED;
	else if ((phase && strcmp(phase, "Failed") == 0) || event->deleted)
		event->outcome = VMIM_FAILED;
	else
		event->outcome = VMIM_IN_PROGRESS;
	if (dup_or_fail(&event->namespace_, ns, error) || dup_or_fail(&event->name, name, error) ||
	    dup_or_fail(&event->uid, uid, error)) {
		rc = -ENOMEM;
		goto out;
	}
	rc = 1;
out:
	if (rc <= 0)
		kubevirt_vmim_event_clear(event);
	json_object_put(root);
	return rc;
}

/* The items of a PodList, or NULL and *error. */
static json_object *pod_items(json_object *root, char **error)
{
	json_object *items = json_get(root, "items");

	if (!items || !json_object_is_type(items, json_type_array)) {
		agent_fail(error, EINVAL, "the API server's answer has no items (not a PodList)");
		return NULL;
	}
	return items;
}

static bool running(json_object *pod)
{
	const char *phase = json_get_string(json_get(pod, "status"), "phase");
	return phase && strcmp(phase, "Running") == 0;
}

/* What one Running pod gives: 0 and *out, -ENOENT for the next pod, or
 * another -errno. */
typedef int (*pod_pick_fn)(json_object *pod, const void *arg, char **out, char **error);

/* The first Running pod of a PodList that pick takes; -ENOENT and
 * none_why when none does. */
static int first_running(const char *json, size_t len, pod_pick_fn pick, const void *arg, const char *none_why,
			 char **out, char **error)
{
	json_object *root = parse(json, len, "the pod list", error), *items;
	int rc = -ENOENT;

	*out = NULL;
	if (!root)
		return -EINVAL;
	if (!(items = pod_items(root, error))) {
		json_object_put(root);
		return -EINVAL;
	}
	for (size_t i = 0; i < json_object_array_length(items) && rc == -ENOENT; i++) {
		json_object *pod = json_object_array_get_idx(items, i);
		if (running(pod))
			rc = pick(pod, arg, out, error);
	}
	if (rc == -ENOENT)
		agent_fail(error, ENOENT, "%s", none_why);
	json_object_put(root);
	return rc;
}

static int pick_name(json_object *pod, const void *arg, char **out, char **error)
{
	const char *n = json_get_string(json_get(pod, "metadata"), "name");

	(void)arg;
	return n && text_dns_subdomain(n) ? dup_or_fail(out, n, error) : -ENOENT;
}

int kubevirt_parse_running_pod(const char *json, size_t len, char **name, char **error)
{
	return first_running(json, len, pick_name, NULL, "no Running pod", name, error);
}

/* The containerPort named port_name in a pod's spec, or 0. */
static long named_port(json_object *pod, const char *port_name)
{
	json_object *containers = json_get(json_get(pod, "spec"), "containers");
	size_t n = containers && json_object_is_type(containers, json_type_array) ? json_object_array_length(containers) : 0;

	for (size_t i = 0; i < n; i++) {
		json_object *ports = json_get(json_object_array_get_idx(containers, i), "ports");
		size_t np = ports && json_object_is_type(ports, json_type_array) ? json_object_array_length(ports) : 0;
		for (size_t j = 0; j < np; j++) {
			json_object *port = json_object_array_get_idx(ports, j);
			const char *pn = json_get_string(port, "name");
			json_object *number = json_get(port, "containerPort");
			if (pn && strcmp(pn, port_name) == 0 && number && json_object_is_type(number, json_type_int)) {
				int64_t v = json_object_get_int64(number);
				return v >= 1 && v <= 65535 ? (long)v : 0;
			}
		}
	}
	return 0;
}

/* "podIP:port" of the container port named arg. */
static int pick_peer(json_object *pod, const void *arg, char **out, char **error)
{
	const char *ip = json_get_string(json_get(pod, "status"), "podIP");
	unsigned char addr[sizeof(struct in6_addr)];
	long port = named_port(pod, arg);
	bool v4 = ip && inet_pton(AF_INET, ip, addr) == 1, v6 = !v4 && ip && inet_pton(AF_INET6, ip, addr) == 1;

	if ((!v4 && !v6) || !port)
		return -ENOENT;
	return xevf_asprintf(out, v6 ? "[%s]:%ld" : "%s:%ld", ip, port) ? agent_fail(error, ENOMEM, "out of memory") : 0;
}

int kubevirt_parse_peer(const char *json, size_t len, const char *port_name, char **host_port, char **error)
{
	char *why = NULL;
	int rc;

	if (xevf_asprintf(&why, "no Running agent pod with an IP and a container port named %s", port_name))
		return agent_fail(error, ENOMEM, "out of memory");
	rc = first_running(json, len, pick_peer, port_name, why, host_port, error);
	free(why);
	return rc;
}

/* GET path?k1=v1&k2=v2, the values escaped. */
static int get(struct kube *k, const char *what, const char *path, const char *k1, const char *v1, const char *k2,
	       const char *v2, char **body, char **error)
{
	char *full = kube_query_path(path, k1, v1, k2, v2);
	int rc = full ? kube_request(k, what, full, NULL, body, error) : agent_fail(error, ENOMEM, "out of memory");

	free(full);
	return rc;
}

int kubevirt_watch_targets(struct kube *k, struct http_stopper *stop, http_line_fn on_line, void *ctx, char **error)
{
	char *selector = NULL, *path = NULL;
	int rc;

	/* No resourceVersion: the API server first sends every such pod as
	 * ADDED, so a new watch also catches up with what came meanwhile. The
	 * server ends it after timeoutSeconds; the caller watches again. */
	if (xevf_asprintf(&selector, "spec.nodeName=%s", kube_node(k)) ||
	    !(path = kube_query_path("/api/v1/pods?watch=true&timeoutSeconds=600", "labelSelector",
				     KUBEVIRT_MIGRATION_LABEL, "fieldSelector", selector)))
		rc = agent_fail(error, ENOMEM, "out of memory");
	else
		rc = kube_stream(k, path, stop, on_line, ctx, error);
	free(path);
	free(selector);
	return rc;
}

int kubevirt_watch_migrations(struct kube *k, struct http_stopper *stop, http_line_fn on_line, void *ctx,
			      char **error)
{
	/* as kubevirt_watch_targets: a new watch first lists every VMIM as ADDED */
	return kube_stream(k, "/apis/kubevirt.io/v1/virtualmachineinstancemigrations?watch=true&timeoutSeconds=600", stop,
			   on_line, ctx, error);
}

int kubevirt_vmi_node(struct kube *k, const char *ns, const char *name, char **node, char **uid, char **error)
{
	char *path = NULL, *body = NULL;
	int rc;

	*node = *uid = NULL;
	if (xevf_asprintf(&path, "/apis/kubevirt.io/v1/namespaces/%s/virtualmachineinstances/%s", ns, name))
		return agent_fail(error, ENOMEM, "out of memory");
	rc = kube_request(k, "GET VMI", path, NULL, &body, error);
	if (rc == 0)
		rc = body ? kubevirt_parse_vmi(body, strlen(body), node, uid, error) : -ENOMEM;
	free(body);
	free(path);
	return rc;
}

int kubevirt_source_pod(struct kube *k, const char *ns, const char *vmi_uid, const char *node, char **name,
			char **error)
{
	char *path = NULL, *labels = NULL, *fields = NULL, *body = NULL;
	int rc;

	*name = NULL;
	if (xevf_asprintf(&path, "/api/v1/namespaces/%s/pods", ns) ||
	    xevf_asprintf(&labels, "kubevirt.io/created-by=%s", vmi_uid) ||
	    xevf_asprintf(&fields, "spec.nodeName=%s", node)) {
		rc = agent_fail(error, ENOMEM, "out of memory");
	} else {
		rc = get(k, "GET the VMI's pods", path, "labelSelector", labels, "fieldSelector", fields, &body, error);
		if (rc == 0)
			rc = body ? kubevirt_parse_running_pod(body, strlen(body), name, error) : -ENOMEM;
	}
	free(path);
	free(labels);
	free(fields);
	free(body);
	return rc;
}

int kubevirt_peer_agent(struct kube *k, const char *ns, const char *selector, const char *node, char **host_port,
			char **error)
{
	char *path = NULL, *fields = NULL, *body = NULL;
	int rc;

	*host_port = NULL;
	if (xevf_asprintf(&path, "/api/v1/namespaces/%s/pods", ns) || xevf_asprintf(&fields, "spec.nodeName=%s", node)) {
		rc = agent_fail(error, ENOMEM, "out of memory");
	} else {
		rc = get(k, "GET the agents' pods", path, "labelSelector", selector, "fieldSelector", fields, &body, error);
		if (rc == 0)
			rc = body ? kubevirt_parse_peer(body, strlen(body), "migration", host_port, error) : -ENOMEM;
	}
	free(path);
	free(fields);
	free(body);
	return rc;
}

int kubevirt_pod_event(struct kube *k, const struct kubevirt_target_pod *pod, const char *type, const char *reason,
		       const char *message, char **error)
{
	json_object *ev = json_object_new_object(), *meta = json_object_new_object(), *about = json_object_new_object(),
		    *source = json_object_new_object();
	char when[32], *generate = NULL, *path = NULL, *body = NULL;
	time_t now = time(NULL);
	struct tm tm;
	int rc;

	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!ev || !meta || !about || !source || xevf_asprintf(&generate, "%.200s.xevf-", pod->name) ||
	    xevf_asprintf(&path, "/api/v1/namespaces/%s/events", pod->namespace_)) {
		json_object_put(ev);
		json_object_put(meta);
		json_object_put(about);
		json_object_put(source);
		free(generate);
		return agent_fail(error, ENOMEM, "out of memory");
	}
	json_object_object_add(meta, "generateName", json_object_new_string(generate));
	json_object_object_add(meta, "namespace", json_object_new_string(pod->namespace_));
	json_object_object_add(about, "apiVersion", json_object_new_string("v1"));
	json_object_object_add(about, "kind", json_object_new_string("Pod"));
	json_object_object_add(about, "namespace", json_object_new_string(pod->namespace_));
	json_object_object_add(about, "name", json_object_new_string(pod->name));
	if (pod->uid)
		json_object_object_add(about, "uid", json_object_new_string(pod->uid));
	json_object_object_add(source, "component", json_object_new_string("xevf-agent"));
	json_object_object_add(source, "host", json_object_new_string(kube_node(k)));
	json_object_object_add(ev, "apiVersion", json_object_new_string("v1"));
	json_object_object_add(ev, "kind", json_object_new_string("Event"));
	json_object_object_add(ev, "metadata", meta);
	json_object_object_add(ev, "involvedObject", about);
	json_object_object_add(ev, "type", json_object_new_string(type));
	json_object_object_add(ev, "reason", json_object_new_string(reason));
	json_object_object_add(ev, "message", json_object_new_string(message));
	json_object_object_add(ev, "source", source);
	json_object_object_add(ev, "reportingComponent", json_object_new_string("xevf-agent"));
	json_object_object_add(ev, "reportingInstance", json_object_new_string(kube_node(k)));
	json_object_object_add(ev, "firstTimestamp", json_object_new_string(when));
	json_object_object_add(ev, "lastTimestamp", json_object_new_string(when));
	json_object_object_add(ev, "count", json_object_new_int(1));
	rc = kube_request(k, "POST event", path, json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN), &body,
			  error);
	json_object_put(ev);
	free(generate);
	free(path);
	free(body);
	return rc;
}
