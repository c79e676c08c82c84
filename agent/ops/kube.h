/* The little the agent asks the Kubernetes API server: which pods on this node
 * are waiting (Pending) for a resource the agent serves. The device-plugin API
 * never says which pod an allocation is for; this is how a VF reserved for a
 * migration goes to the migrating VM's target pod and to no other.
 *
 * Read-only (pods: list), over HTTPS with the pod's service account, or a URL,
 * token and CA given in the configuration. */
#ifndef XEVF_KUBE_H
#define XEVF_KUBE_H

#include <stdbool.h>
#include <stddef.h>

#include "http_client.h"

struct kube;

struct kube_settings {
	const char *api_url;     /* NULL: in-cluster (KUBERNETES_SERVICE_HOST/PORT), else off */
	const char *token_file;  /* NULL: the service account's */
	const char *ca_file;     /* NULL: the service account's (in-cluster), else the system's */
	const char *node_name;   /* this node, as the API server knows it */
	bool allow_http;         /* an http:// URL gets the token in clear: testing only */
};

struct kube_pod {
	char *namespace_, *name;
	char *vm_name;           /* the VM a virt-launcher pod runs (kubevirt.io/domain or vm.kubevirt.io/name), or NULL */
};

/* NULL with *error NULL when no API server is configured or found; NULL with
 * *error when the settings are unusable. */
struct kube *kube_open(const struct kube_settings *s, char **error);
void kube_close(struct kube *k);
const char *kube_api_url(const struct kube *k);

/* Pending pods on this node that request `resource` (malloc'd array). */
int kube_pending_pods(struct kube *k, const char *resource, struct kube_pod **pods, size_t *n, char **error);

/* The parser behind it, for tests and fuzzing: a PodList's JSON. */
int kube_parse_pending_pods(const char *json, size_t len, const char *resource, struct kube_pod **pods, size_t *n,
			    char **error);
void kube_pods_free(struct kube_pod *pods, size_t n);

/* One request to the API server with the token: path (with its query), a
 * JSON body to POST or NULL for a GET; what names it in messages. 0 and the
 * body (malloc'd); -ENOENT (404), -EPROTO (another status) or -errno, with
 * *error. */
int kube_request(struct kube *k, const char *what, const char *path, const char *post_json, char **body, char **error);
/* A watch (path with watch=true): each event's line to on_line until the
 * server ends it or stop is stopped; 0, or -errno with *error. */
int kube_stream(struct kube *k, const char *path, struct http_stopper *stop, http_line_fn on_line, void *ctx,
		char **error);
/* path?k1=v1&k2=v2 with the values escaped ('&' first when path has a
 * query already; k2 NULL: one pair): malloc'd, or NULL (out of memory). */
char *kube_query_path(const char *path, const char *k1, const char *v1, const char *k2, const char *v2);
/* This pod's namespace, from its service account (malloc'd), or NULL. */
char *kube_own_namespace(void);
/* This node's name. */
const char *kube_node(const struct kube *k);

/* Is this pod a virt-launcher pod of VM namespace/name? */
bool kube_pod_runs_vm(const struct kube_pod *p, const char *vm_namespace, const char *vm_name);

#endif
