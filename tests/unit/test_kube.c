/* Which pending pods want a resource, and which of them runs a given VM; what
 * KubeVirt says of a migrating VMI (node hooks) and of a migration's outcome. */
#include "testutil.h"

#include <errno.h>

#include "http_client.h"
#include "http_unix.h"
#include "kube.h"
#include "kubevirt.h"

static const char pod_list[] =
	"{\"kind\": \"PodList\", \"items\": ["
	"{\"metadata\": {\"namespace\": \"prod\", \"name\": \"virt-launcher-db-abcde\", \"labels\": "
	"{\"kubevirt.io/domain\": \"db\"}}, \"spec\": {\"containers\": [{\"resources\": {\"limits\": "
	"{\"intel.com/xe_vf\": \"1\"}}}]}, \"status\": {\"phase\": \"Pending\"}},"
	"{\"metadata\": {\"namespace\": \"prod\", \"name\": \"web\"}, \"spec\": {\"containers\": [{\"resources\": "
	"{\"requests\": {\"intel.com/xe_vf\": \"2\"}}}]}},"
	"{\"metadata\": {\"namespace\": \"prod\", \"name\": \"other-resource\"}, \"spec\": {\"containers\": "
	"[{\"resources\": {\"limits\": {\"example.com/x\": \"1\"}}}]}},"
	"{\"metadata\": {\"namespace\": \"prod\", \"name\": \"running\"}, \"spec\": {\"containers\": [{\"resources\": "
	"{\"limits\": {\"intel.com/xe_vf\": \"1\"}}}]}, \"status\": {\"phase\": \"Running\"}},"
	"{\"metadata\": {\"namespace\": \"prod\", \"name\": \"init-only\"}, \"spec\": {\"initContainers\": "
	"[{\"resources\": {\"limits\": {\"intel.com/xe_vf\": \"1\"}}}], \"containers\": []}},"
	"{\"metadata\": {\"name\": \"no-namespace\"}}, 42, null]}";

static void test_pending_pods(void **state)
{
	(void)state;
	struct kube_pod *pods;
	size_t n;
	char *error;

	assert_int_equal(kube_parse_pending_pods(pod_list, strlen(pod_list), "intel.com/xe_vf", &pods, &n, &error), 0);
	assert_int_equal(n, 3);
	assert_string_equal(pods[0].name, "virt-launcher-db-abcde");
	assert_string_equal(pods[0].vm_name, "db");
	assert_string_equal(pods[1].name, "web");
	assert_null(pods[1].vm_name);
	assert_string_equal(pods[2].name, "init-only");
	assert_true(kube_pod_runs_vm(&pods[0], "prod", "db"));
	assert_false(kube_pod_runs_vm(&pods[0], "staging", "db"));
	assert_false(kube_pod_runs_vm(&pods[0], "prod", "d"));
	assert_false(kube_pod_runs_vm(&pods[1], "prod", "web"));
	kube_pods_free(pods, n);

	struct {
		const char *json, *why;
	} bad[] = {
		{"", "the API server's answer is not JSON"},
		{"{\"items\": [", "the API server's answer is not JSON"},
		{"{\"kind\": \"Status\", \"code\": 403}", "the API server's answer has no items (not a PodList)"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(kube_parse_pending_pods(bad[i].json, strlen(bad[i].json), "r/x", &pods, &n, &error), -EINVAL);
		assert_string_equal(error, bad[i].why);
		assert_null(pods);
		free(error);
	}
}

static void test_launcher_pod_names(void **state)
{
	(void)state;
	struct kube_pod p = {"prod", "virt-launcher-db-abcde", NULL};
	assert_true(kube_pod_runs_vm(&p, "prod", "db"));
	p.name = "virt-launcher-db-backup-abcde"; /* another VM's, named db-backup */
	assert_false(kube_pod_runs_vm(&p, "prod", "db"));
	assert_true(kube_pod_runs_vm(&p, "prod", "db-backup"));
	p.name = "virt-launcher-db";
	assert_false(kube_pod_runs_vm(&p, "prod", "db"));
	p.name = "virt-launcher-db-abcde";
	assert_false(kube_pod_runs_vm(&p, "prod", ""));
	assert_false(kube_pod_runs_vm(&p, NULL, "db"));
}

static void test_open(void **state)
{
	(void)state;
	char *error;
	struct kube_settings none = {0};
	unsetenv("KUBERNETES_SERVICE_HOST");
	assert_null(kube_open(&none, &error));
	assert_null(error); /* not configured, not in a cluster: off, no error */
	struct kube_settings no_node = {"https://api.example:6443", NULL, NULL, NULL, false};
	assert_null(kube_open(&no_node, &error));
	assert_non_null(strstr(error, "--node-name"));
	free(error);
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	struct kube_settings in_cluster = {NULL, NULL, NULL, "node-1", false};
	struct kube *k = kube_open(&in_cluster, &error);
	assert_non_null(k);
	assert_string_equal(kube_api_url(k), "https://[fd00::1]:443");
	kube_close(k);
	unsetenv("KUBERNETES_SERVICE_HOST");
	/* the token never goes out in clear, unless a test says so */
	struct kube_settings plain = {"http://api.example:8080", NULL, NULL, "node-1", false};
	assert_null(kube_open(&plain, &error));
	assert_non_null(strstr(error, "give an https:// URL"));
	free(error);
	plain.allow_http = true;
	assert_non_null(k = kube_open(&plain, &error));
	kube_close(k);
}

static void test_query_path(void **state)
{
	(void)state;
	char *q = kube_query_path("/api/v1/pods", "fieldSelector", "spec.nodeName=node-b,status.phase=Pending",
				  "labelSelector", "kubevirt.io in (virt-launcher)");
	assert_string_equal(q, "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-b%2Cstatus.phase%3DPending"
			       "&labelSelector=kubevirt.io%20in%20%28virt-launcher%29");
	free(q);
	q = kube_query_path("/api/v1/pods?watch=true", "resourceVersion", "12~3", NULL, NULL);
	assert_string_equal(q, "/api/v1/pods?watch=true&resourceVersion=12~3");
	free(q);
}

/* What a user reads when the API server cannot be asked. */
static void test_fetch_failures(void **state)
{
	(void)state;
	char *body, *error;
	struct http_request refused = {.url = "http://127.0.0.1:1/api", .timeout_ms = 2000};
	assert_true(http_fetch(&refused, &body, &error) < 0);
	assert_null(body);
	assert_non_null(strstr(error, "http://127.0.0.1:1/api: Connection refused"));
	free(error);
	struct http_request ftp = {.url = "ftp://127.0.0.1/"};
	assert_int_equal(http_fetch(&ftp, &body, &error), -EINVAL);
	assert_non_null(strstr(error, "not an http:// or https:// URL"));
	free(error);
	struct http_request no_ca = {.url = "https://127.0.0.1:1/", .ca_file = "/nonexistent/ca.crt"};
	assert_int_equal(http_fetch(&no_ca, &body, &error), -EINVAL);
	assert_non_null(strstr(error, "/nonexistent/ca.crt: cannot read the CA certificates"));
	free(error);
}

static void test_status_answer(void **state)
{
	(void)state;
	size_t at = 0;
	const char ok[] = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}";
	assert_int_equal(http_parse_answer(ok, strlen(ok), &at), 200);
	assert_string_equal(ok + at, "{}");
	const char not_found[] = "HTTP/1.1 404 Not Found\r\n\r\n";
	assert_int_equal(http_parse_answer(not_found, strlen(not_found), &at), 404);
	assert_int_equal(at, strlen(not_found));
	const char *bad[] = {"HTTP/1.0 200 OK\r\n" /* headers not ended */, "HTTP/1.0 2x0 OK\r\n\r\n",
			     "SSH-2.0-OpenSSH\r\n\r\n", "HTTP/1.0 099 Odd\r\n\r\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(http_parse_answer(bad[i], strlen(bad[i]), &at), -EPROTO);
	char *body, *error;
	assert_true(http_get_unix("/nonexistent/status.sock", "/status", &body, &error) < 0);
	assert_non_null(strstr(error, "/nonexistent/status.sock: No such file or directory"));
	free(error);
}

static void test_hook_vmi(void **state)
{
	(void)state;
	struct kubevirt_vmi v;
	char *error;
	const char migrating[] =
		"{\"metadata\": {\"namespace\": \"prod\", \"name\": \"db\", \"uid\": \"vmi-uid-1\"}, \"spec\": {\"domain\": "
		"{\"devices\": {\"hostDevices\": [{\"name\": \"gpu0\", \"deviceName\": \"intel.com/xe_vf\"}, {\"name\": "
		"\"x\", \"deviceName\": \"intel.com/xe_vf\"}, {\"name\": \"odd\", \"deviceName\": \"no-slash\"}], \"gpus\": "
		"[{\"name\": \"g\", \"deviceName\": \"intel.com/arc_pro_b50\"}]}}}, \"status\": {\"nodeName\": \"node-a\", "
		"\"migrationState\": {\"migrationUid\": \"7f3c\", \"sourceNode\": \"node-a\", \"targetNode\": \"node-b\", "
		"\"sourcePod\": \"virt-launcher-db-src12\", \"targetPod\": \"virt-launcher-db-tgt34\"}}}";

	assert_int_equal(kubevirt_parse_hook_vmi(migrating, strlen(migrating), &v, &error), 0);
	assert_string_equal(v.namespace_, "prod");
	assert_string_equal(v.name, "db");
	assert_string_equal(v.uid, "vmi-uid-1");
	assert_string_equal(v.node, "node-a");
	assert_string_equal(v.migration, "7f3c");
	assert_string_equal(v.source_node, "node-a");
	assert_string_equal(v.target_node, "node-b");
	assert_string_equal(v.source_pod, "virt-launcher-db-src12");
	assert_string_equal(v.target_pod, "virt-launcher-db-tgt34");
	/* each resource once, host devices and GPUs, names without a domain left out */
	assert_int_equal(v.nresources, 2);
	assert_string_equal(v.resources[0], "intel.com/xe_vf");
	assert_string_equal(v.resources[1], "intel.com/arc_pro_b50");
	kubevirt_vmi_clear(&v);

	const char not_migrating[] = "{\"metadata\": {\"namespace\": \"prod\", \"name\": \"db\", \"uid\": \"u\"}}";
	assert_int_equal(kubevirt_parse_hook_vmi(not_migrating, strlen(not_migrating), &v, &error), 0);
	assert_null(v.migration);
	assert_null(v.source_pod);
	assert_int_equal(v.nresources, 0);
	kubevirt_vmi_clear(&v);

	const char *bad[] = {
		"[1, 2]", "{\"metadata\": {\"name\": \"db\", \"uid\": \"u\"}}",
		"{\"metadata\": {\"namespace\": \"prod\", \"name\": \"db\", \"uid\": \"u\"}, \"status\": "
		"{\"migrationState\": {\"sourcePod\": \"../etc\"}}}",
		"{\"metadata\": {\"namespace\": \"prod\", \"name\": \"db\", \"uid\": \"u\"}, \"status\": "
		"{\"migrationState\": {\"migrationUid\": \"a b\"}}}",
	};
	const char *why[] = {"the VMI is not a JSON object", "the VMI has no well-formed metadata.namespace, name and uid",
			     "the VMI's sourcePod is not a Kubernetes name or uid",
			     "the VMI's migrationUid is not a Kubernetes name or uid"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(kubevirt_parse_hook_vmi(bad[i], strlen(bad[i]), &v, &error), -EINVAL);
		assert_string_equal(error, why[i]);
		assert_null(v.namespace_);
		free(error);
	}
}

static void test_vmim_event(void **state)
{
	(void)state;
	struct kubevirt_vmim_event e;
	char *error;
	const char *lines[] = {
		"{\"type\": \"MODIFIED\", \"object\": {\"metadata\": {\"namespace\": \"prod\", \"name\": \"m1\", "
		"\"uid\": \"u1\"}, \"status\": {\"phase\": \"Succeeded\"}}}",
		"{\"type\": \"ADDED\", \"object\": {\"metadata\": {\"namespace\": \"prod\", \"name\": \"m1\", "
		"\"uid\": \"u1\"}, \"status\": {\"phase\": \"Failed\"}}}",
		"{\"type\": \"MODIFIED\", \"object\": {\"metadata\": {\"namespace\": \"prod\", \"name\": \"m1\", "
		"\"uid\": \"u1\"}, \"status\": {\"phase\": \"Running\"}}}",
		/* cancelled: deleted before it succeeded */
		"{\"type\": \"DELETED\", \"object\": {\"metadata\": {\"namespace\": \"prod\", \"name\": \"m1\", "
		"\"uid\": \"u1\"}, \"status\": {\"phase\": \"Scheduling\"}}}",
		/* deleted after it succeeded: still a success */
		"{\"type\": \"DELETED\", \"object\": {\"metadata\": {\"namespace\": \"prod\", \"name\": \"m1\", "
		"\"uid\": \"u1\"}, \"status\": {\"phase\": \"Succeeded\"}}}",
	};
	const enum kubevirt_vmim_outcome want[] = {VMIM_SUCCEEDED, VMIM_FAILED, VMIM_IN_PROGRESS, VMIM_FAILED,
						   VMIM_SUCCEEDED};

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		assert_int_equal(kubevirt_parse_vmim_event(lines[i], strlen(lines[i]), &e, &error), 1);
		assert_int_equal(e.outcome, want[i]);
		assert_string_equal(e.uid, "u1");
		assert_string_equal(e.namespace_, "prod");
		assert_string_equal(e.name, "m1");
		kubevirt_vmim_event_clear(&e);
	}
	assert_string_equal(kubevirt_vmim_outcome_name(VMIM_FAILED), "failed");
	const char bookmark[] = "{\"type\": \"BOOKMARK\", \"object\": {\"metadata\": {\"resourceVersion\": \"9\"}}}";
	assert_int_equal(kubevirt_parse_vmim_event(bookmark, strlen(bookmark), &e, &error), 0);
	const char no_uid[] = "{\"type\": \"ADDED\", \"object\": {\"metadata\": {\"namespace\": \"prod\", "
			      "\"name\": \"m1\"}}}";
	assert_int_equal(kubevirt_parse_vmim_event(no_uid, strlen(no_uid), &e, &error), 0);
	assert_int_equal(kubevirt_parse_vmim_event("{\"type\": 1}", 11, &e, &error), -EINVAL);
	assert_string_equal(error, "the watch event has no type or object");
	free(error);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pending_pods),
		cmocka_unit_test(test_launcher_pod_names),
		cmocka_unit_test(test_open),
		cmocka_unit_test(test_query_path),
		cmocka_unit_test(test_fetch_failures),
		cmocka_unit_test(test_status_answer),
		cmocka_unit_test(test_hook_vmi),
		cmocka_unit_test(test_vmim_event),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
