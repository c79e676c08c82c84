#include "kube.h"

#include <errno.h>
#include <event2/http.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xevf_error.h"
#include "xevf_sysfs.h"
#include "xevf_util.h"
#include "fail.h"
#include "http_client.h"
#include "text.h"
#include "json_read.h"

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define MAX_TOKEN 65536
#define TIMEOUT_MS 2000L

struct kube {
	char *url;
	char *token_file;
	char *ca_file;
	char *node;
};

struct kube *kube_open(const struct kube_settings *s, char **error)
{
	struct kube *k;
	const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
	bool in_cluster = !s->api_url || !*s->api_url;

	*error = NULL;
	if (in_cluster && (!host || !*host))
		return NULL;
	if (!s->node_name || !*s->node_name) {
		*error = strdup("the node's name is needed to ask the API server about its pods (--node-name)");
		return NULL;
	}
	if (!in_cluster && strncmp(s->api_url, "https://", 8) != 0 && !s->allow_http) {
		agent_fail(error, EINVAL, "%s: the API server is asked with the service account's token, which never goes "
			   "out in clear: give an https:// URL (--kube-api-allow-http true is for tests only)", s->api_url);
		return NULL;
	}
	k = calloc(1, sizeof(*k));
	if (!k) {
		*error = strdup("out of memory");
		return NULL;
	}
	if (in_cluster) {
		bool v6 = strchr(host, ':') != NULL;
		if (asprintf(&k->url, v6 ? "https://[%s]:%s" : "https://%s:%s", host, port && *port ? port : "443") < 0)
			k->url = NULL;
	} else {
		k->url = strdup(s->api_url);
	}
	k->token_file = strdup(s->token_file && *s->token_file ? s->token_file : SA_DIR "/token");
	if (s->ca_file && *s->ca_file)
		k->ca_file = strdup(s->ca_file);
	else if (in_cluster)
		k->ca_file = strdup(SA_DIR "/ca.crt");
	k->node = strdup(s->node_name);
	if (!k->url || !k->token_file || !k->node) {
		kube_close(k);
		*error = strdup("out of memory");
		return NULL;
	}
	return k;
}

void kube_close(struct kube *k)
{
	if (!k)
		return;
	free(k->url);
	free(k->token_file);
	free(k->ca_file);
	free(k->node);
	free(k);
}

const char *kube_api_url(const struct kube *k) { return k ? k->url : ""; }

void kube_pods_free(struct kube_pod *pods, size_t n)
{
	for (size_t i = 0; pods && i < n; i++) {
		free(pods[i].namespace_);
		free(pods[i].name);
		free(pods[i].vm_name);
	}
	free(pods);
}

static bool has_key(json_object *o, const char *key)
{
	json_object *v;
	return o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, &v);
}

static bool requests(json_object *containers, const char *resource)
{
	if (!containers || !json_object_is_type(containers, json_type_array))
		return false;
	for (size_t i = 0; i < json_object_array_length(containers); i++) {
		json_object *res = json_get(json_object_array_get_idx(containers, i), "resources");
		if (has_key(json_get(res, "limits"), resource) || has_key(json_get(res, "requests"), resource))
			return true;
	}
	return false;
}

int kube_parse_pending_pods(const char *json, size_t len, const char *resource, struct kube_pod **pods, size_t *n,
			    char **error)
{
	json_tokener *tok = json_tokener_new();
	json_object *root = NULL, *items;
	int rc = -EINVAL;

	*pods = NULL;
	*n = 0;
	*error = NULL;
	if (!tok || len > INT32_MAX) {
		json_tokener_free(tok);
		return agent_fail(error, tok ? EFBIG : ENOMEM, "cannot parse the answer");
	}
	root = json_tokener_parse_ex(tok, json, (int)len);
	if (!root || json_tokener_get_error(tok) != json_tokener_success) {
		agent_fail(error, EINVAL, "the API server's answer is not JSON");
		goto out;
	}
	items = json_get(root, "items");
	if (!items || !json_object_is_type(items, json_type_array)) {
		agent_fail(error, EINVAL, "the API server's answer has no items (not a PodList)");
		goto out;
	}
	size_t count = json_object_array_length(items);
	*pods = calloc(count + 1, sizeof(**pods));
	if (!*pods) {
		rc = agent_fail(error, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < count; i++) {
		json_object *pod = json_object_array_get_idx(items, i);
		json_object *meta = json_get(pod, "metadata"), *spec = json_get(pod, "spec");
		const char *phase = json_get_string(json_get(pod, "status"), "phase");
		const char *ns = json_get_string(meta, "namespace"), *name = json_get_string(meta, "name");
		/* Kubernetes names only: anything else is no pod of the API server's
		 * (and would go into log lines) */
		if (!ns || !name || !text_dns_label(ns, strlen(ns)) || !text_dns_subdomain(name) ||
		    (phase && strcmp(phase, "Pending") != 0))
			continue;
		if (!requests(json_get(spec, "containers"), resource) && !requests(json_get(spec, "initContainers"), resource))
			continue;
		json_object *labels = json_get(meta, "labels");
		const char *vm = json_get_string(labels, "kubevirt.io/domain");
		if (!vm)
			vm = json_get_string(labels, "vm.kubevirt.io/name");
		if (vm && !text_dns_subdomain(vm))
			vm = NULL;
		struct kube_pod *p = &(*pods)[*n];
		p->namespace_ = strdup(ns);
		p->name = strdup(name);
		p->vm_name = vm ? strdup(vm) : NULL;
		(*n)++;
		if (!p->namespace_ || !p->name || (vm && !p->vm_name)) {
			rc = agent_fail(error, ENOMEM, "out of memory");
			goto out;
		}
	}
	rc = 0;
out:
	if (rc < 0) {
		kube_pods_free(*pods, *n);
		*pods = NULL;
		*n = 0;
	}
	if (root)
		json_object_put(root);
	json_tokener_free(tok);
	return rc;
}

bool kube_pod_runs_vm(const struct kube_pod *p, const char *vm_namespace, const char *vm_name)
{
	size_t len;

	if (!vm_namespace || !vm_name || !*vm_name || strcmp(p->namespace_, vm_namespace) != 0)
		return false;
	if (p->vm_name)
		return strcmp(p->vm_name, vm_name) == 0;
	/* KubeVirt names launcher pods virt-launcher-<vmi>-<5 chars> */
	len = strlen(vm_name);
	return strncmp(p->name, "virt-launcher-", 14) == 0 && strncmp(p->name + 14, vm_name, len) == 0 &&
	       p->name[14 + len] == '-' && strlen(p->name + 15 + len) == 5;
}

/* The service account token (malloc'd), or NULL and *error. */
static char *read_token(const struct kube *k, char **error)
{
	struct xevf_err err = XEVF_ERR_INIT;
	char *token = NULL;
	int rc = xevf_read_text(k->token_file, MAX_TOKEN, &token, &err);

	if (rc < 0) {
		agent_fail(error, -rc, "%s (the service account token)", xevf_err_msg(&err));
		xevf_err_clear(&err);
		return NULL;
	}
	token[strcspn(token, "\r\n")] = 0;
	return token;
}

/* The token and the URL of path, or -errno and *error. */
static int prepare(const struct kube *k, const char *path, char **token, char **url, char **error)
{
	*url = NULL;
	if (!(*token = read_token(k, error)))
		return -EACCES;
	if (xevf_asprintf(url, "%s%s", k->url, path)) {
		text_free_secret(*token);
		*token = NULL;
		return agent_fail(error, ENOMEM, "out of memory");
	}
	return 0;
}

static const char *rbac_hint(int code)
{
	return code == 401 || code == 403 ? " (the service account may not do this: check the RBAC rules)" : "";
}

int kube_request(struct kube *k, const char *what, const char *path, const char *post_json, char **body, char **error)
{
	char *token, *url;
	int code;

	*body = NULL;
	*error = NULL;
	if ((code = prepare(k, path, &token, &url, error)) < 0)
		return code;
	struct http_request req = {.url = url, .bearer_token = token, .ca_file = k->ca_file, .timeout_ms = TIMEOUT_MS,
				   .post_json = post_json};
	code = http_fetch(&req, body, error);
	if (code >= 0 && code / 100 != 2) {
		agent_fail(error, code == 404 ? ENOENT : EPROTO, "%s: HTTP %d%s", what, code, rbac_hint(code));
		free(*body);
		*body = NULL;
		code = code == 404 ? -ENOENT : -EPROTO;
	}
	if (code >= 0 && !*body)
		code = agent_fail(error, ENOMEM, "out of memory");
	free(url);
	text_free_secret(token);
	return code < 0 ? code : 0;
}

int kube_stream(struct kube *k, const char *path, struct http_stopper *stop, http_line_fn on_line, void *ctx,
		char **error)
{
	char *token, *url;
	int code;

	*error = NULL;
	if ((code = prepare(k, path, &token, &url, error)) < 0)
		return code;
	struct http_request req = {.url = url, .bearer_token = token, .ca_file = k->ca_file, .timeout_ms = TIMEOUT_MS};
	code = http_stream_lines(&req, stop, on_line, ctx, error);
	if (code > 0 && code / 100 != 2)
		code = agent_fail(error, EPROTO, "watch: HTTP %d%s", code, rbac_hint(code));
	free(url);
	text_free_secret(token);
	return code < 0 ? code : 0;
}

const char *kube_node(const struct kube *k) { return k->node; }

char *kube_own_namespace(void)
{
	char *ns = NULL;

	if (xevf_read_text(SA_DIR "/namespace", 256, &ns, NULL) < 0)
		return NULL;
	ns[strcspn(ns, "\r\n")] = 0;
	if (!text_dns_label(ns, strlen(ns))) {
		free(ns);
		return NULL;
	}
	return ns;
}

char *kube_query_path(const char *path, const char *k1, const char *v1, const char *k2, const char *v2)
{
	char *e1 = evhttp_uriencode(v1, -1, 0), *e2 = k2 ? evhttp_uriencode(v2, -1, 0) : NULL, *out = NULL;

	if (e1 && (!k2 || e2) &&
	    xevf_asprintf(&out, "%s%s%s=%s%s%s%s%s", path, strchr(path, '?') ? "&" : "?", k1, e1, k2 ? "&" : "",
			  k2 ? k2 : "", k2 ? "=" : "", k2 ? e2 : ""))
		out = NULL;
	free(e1);
	free(e2);
	return out;
}

int kube_pending_pods(struct kube *k, const char *resource, struct kube_pod **pods, size_t *n, char **error)
{
	char *path = NULL, *body = NULL, *selector = NULL;
	int rc = -ENOMEM;

	*pods = NULL;
	*n = 0;
	*error = NULL;
	if (xevf_asprintf(&selector, "spec.nodeName=%s,status.phase=Pending", k->node) ||
	    !(path = kube_query_path("/api/v1/pods", "fieldSelector", selector, NULL, NULL)))
		goto out;
	if ((rc = kube_request(k, "GET pods", path, NULL, &body, error)) < 0 || !body) {
		rc = rc < 0 ? rc : -ENOMEM;
		goto out;
	}
	rc = kube_parse_pending_pods(body, strlen(body), resource, pods, n, error);
out:
	if (rc < 0 && !*error)
		*error = strdup("out of memory");
	free(selector);
	free(path);
	free(body);
	return rc;
}
