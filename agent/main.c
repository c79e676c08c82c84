/* xevf-agent: Kubernetes device plugin for Intel Xe SR-IOV virtual functions. */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../driver/xevf_discovery.h"
#include "agent.h"
#include "config.h"
#include "../driver/xevf_sriov.h"
#include "http.h"
#include "json_get.h"
#include "log.h"
#include "migrate_cli.h"
#include "prepare.h"

#define EXIT_USAGE 2

static const char usage_text[] =
	"Usage: xevf-agent [OPTIONS]              run the device plugin (default)\n"
	"       xevf-agent discover [--json] [OPTIONS]\n"
	"                                         print Xe PFs and VFs with driver and health, then exit\n"
	"       xevf-agent status [--json] [--status-socket PATH]\n"
	"                                         ask the running agent for its pools, VFs, health, allocations\n"
	"       xevf-agent migrate COMMAND ...    drive a VF migration between two agents (migrate --help)\n"
	"       xevf-agent --version | --help\n"
	"\n"
	"Options (flags win over the config file):\n"
	"  -c, --config FILE            JSON configuration file (pools, selectors, paths); re-read on SIGHUP\n"
	"      --plugin-dir DIR         kubelet device-plugin directory holding kubelet.sock\n"
	"                               (default " XEVF_DEFAULT_PLUGIN_DIR ")\n"
	"      --sysfs-root DIR         where the host's /sys is (default /sys)\n"
	"      --dev-root DIR           where the host's /dev is (default /dev); device paths given to the\n"
	"                               kubelet are always the host's /dev/... paths\n"
	"      --resource-name NAME     resource of the single default pool when the file defines no pools\n"
	"                               (default " XEVF_DEFAULT_RESOURCE ")\n"
	"      --allocation-policy P    pack (fewest PFs, default) or spread (most PFs), for every pool\n"
	"      --rescan-interval MS     how often sysfs is rescanned, 50..600000 ms (default %d)\n"
	"      --log-level LEVEL        debug, info (default), warn or error\n"
	"      --modules-root DIR       where kernel modules are, for finding VFIO drivers (default /lib/modules)\n"
	"      --kernel-release REL     which kernel's modules to use (default: the running kernel's)\n"
	"      --proc-root DIR          the host's /proc, to see which VFIO devices VMs hold (default /proc)\n"
	"      --http-address ADDR      where /metrics, /healthz and /readyz listen (default 0.0.0.0)\n"
	"      --http-port PORT         their port (default 9480; 0 picks a free one; -1 turns HTTP off)\n"
	"      --status-socket PATH     local socket for `xevf-agent status` (default " XEVF_DEFAULT_STATUS_SOCKET ";\n"
	"                               empty turns it off)\n"
	"      --migration-socket PATH  local socket of the Migration service (default " XEVF_DEFAULT_MIGRATION_SOCKET ";\n"
	"                               empty turns it off)\n"
	"      --migration-address HOST:PORT where other agents reach the Migration service, mutual TLS only\n"
	"                               (default: off)\n"
	"      --tls-ca FILE            PEM CA that signs the agents' certificates (for --migration-address)\n"
	"      --tls-cert FILE          PEM certificate of this agent\n"
	"      --tls-key FILE           PEM key of this agent\n"
	"      --state-dir DIR          where reservations and migrations are kept across restarts\n"
	"                               (default " XEVF_DEFAULT_STATE_DIR ")\n"
	"      --node-name NAME         this node's name in migration fingerprints (default: host name)\n"
	"      --vfio-sim DIR           testing only: simulated VFIO migration devices, state files in DIR\n"
	"      --kube-api URL           the API server, to tell which pending pod is a migration's target (default:\n"
	"                               in-cluster when KUBERNETES_SERVICE_HOST is set, else none)\n"
	"      --kube-token-file FILE   bearer token for it (default: the pod's service account token)\n"
	"      --kube-ca-file FILE      CA of its certificate (default: the service account's ca.crt)\n"
	"      --check-config           validate the configuration, print it as the agent reads it, exit\n"
	"      --json                   with discover: machine-readable output\n"
	"  -V, --version                print the version and exit\n"
	"  -h, --help                   print this help and exit\n"
	"\n"
	"Signals: SIGTERM/SIGINT stop cleanly and remove the plugin sockets; SIGHUP reloads the config.\n"
	"Exit status: 0 success, 1 runtime failure, 2 bad usage or configuration.\n";

enum {
	OPT_PLUGIN_DIR = 256,
	OPT_SYSFS_ROOT,
	OPT_DEV_ROOT,
	OPT_RESOURCE_NAME,
	OPT_POLICY,
	OPT_RESCAN,
	OPT_LOG_LEVEL,
	OPT_CHECK_CONFIG,
	OPT_JSON,
	OPT_MODULES_ROOT,
	OPT_KERNEL_RELEASE,
	OPT_PROC_ROOT,
	OPT_HTTP_ADDRESS,
	OPT_HTTP_PORT,
	OPT_STATUS_SOCKET,
	OPT_MIGRATION_SOCKET,
	OPT_MIGRATION_ADDRESS,
	OPT_TLS_CA,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_STATE_DIR,
	OPT_NODE_NAME,
	OPT_VFIO_SIM,
	OPT_KUBE_API,
	OPT_KUBE_TOKEN_FILE,
	OPT_KUBE_CA_FILE,
};

static const struct option long_options[] = {
	{"config", required_argument, NULL, 'c'},
	{"plugin-dir", required_argument, NULL, OPT_PLUGIN_DIR},
	{"sysfs-root", required_argument, NULL, OPT_SYSFS_ROOT},
	{"dev-root", required_argument, NULL, OPT_DEV_ROOT},
	{"resource-name", required_argument, NULL, OPT_RESOURCE_NAME},
	{"allocation-policy", required_argument, NULL, OPT_POLICY},
	{"rescan-interval", required_argument, NULL, OPT_RESCAN},
	{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
	{"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
	{"json", no_argument, NULL, OPT_JSON},
	{"modules-root", required_argument, NULL, OPT_MODULES_ROOT},
	{"kernel-release", required_argument, NULL, OPT_KERNEL_RELEASE},
	{"proc-root", required_argument, NULL, OPT_PROC_ROOT},
	{"http-address", required_argument, NULL, OPT_HTTP_ADDRESS},
	{"http-port", required_argument, NULL, OPT_HTTP_PORT},
	{"status-socket", required_argument, NULL, OPT_STATUS_SOCKET},
	{"migration-socket", required_argument, NULL, OPT_MIGRATION_SOCKET},
	{"migration-address", required_argument, NULL, OPT_MIGRATION_ADDRESS},
	{"tls-ca", required_argument, NULL, OPT_TLS_CA},
	{"tls-cert", required_argument, NULL, OPT_TLS_CERT},
	{"tls-key", required_argument, NULL, OPT_TLS_KEY},
	{"state-dir", required_argument, NULL, OPT_STATE_DIR},
	{"node-name", required_argument, NULL, OPT_NODE_NAME},
	{"vfio-sim", required_argument, NULL, OPT_VFIO_SIM},
	{"kube-api", required_argument, NULL, OPT_KUBE_API},
	{"kube-token-file", required_argument, NULL, OPT_KUBE_TOKEN_FILE},
	{"kube-ca-file", required_argument, NULL, OPT_KUBE_CA_FILE},
	{"version", no_argument, NULL, 'V'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static void print_usage(FILE *out)
{
	fprintf(out, usage_text, XEVF_DEFAULT_RESCAN_MS);
}

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

static void print_discovery_json(const struct xevf_host *host)
{
	json_object *root = json_object_new_object(), *pfs = json_object_new_array(), *notes = json_object_new_array();

	for (size_t i = 0; i < host->npfs; i++) {
		const struct xevf_pf *pf = &host->pfs[i];
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
		for (size_t j = 0; j < pf->nvfs; j++) {
			const struct xevf_vf *vf = &pf->vfs[j];
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
			if (pf->provisioning_exposed) {
				json_object *prov = json_object_new_object();
				for (size_t k = 0; k < vf->nprovisioning; k++)
					json_object_object_add(prov, vf->provisioning[k].key,
							       json_object_new_string(vf->provisioning[k].value));
				json_object_object_add(v, "provisioning", prov);
			} else {
				json_object_object_add(v, "provisioning", NULL);
			}
			json_object_array_add(vfs, v);
		}
		json_object_object_add(o, "vfs", vfs);
		json_object_array_add(pfs, o);
	}
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

static void print_discovery_text(const struct xevf_host *host)
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

static int run_discover(const struct cli_overrides *o, int json)
{
	struct xevf_roots roots = {o->sysfs_root, o->dev_root};
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_host *host = NULL;
	struct xevf_scan_opts opts = {0};
	struct agent_config cfg;
	char *error = NULL;
	int rc;

	/* With --config, PFs that pools name explicitly are listed too. */
	memset(&cfg, 0, sizeof(cfg));
	if (o->config_path && config_load_file(o->config_path, &cfg, &error)) {
		fprintf(stderr, "xevf-agent: configuration error: %s\n", error ? error : "invalid");
		free(error);
		return EXIT_USAGE;
	}
	config_pf_addresses(&cfg, (const char ***)&opts.extra_pfs, &opts.n_extra_pfs);
	rc = xevf_discover(&roots, &opts, &host, &err);
	free((void *)opts.extra_pfs);
	config_free(&cfg);
	if (rc) {
		fprintf(stderr, "xevf-agent: discovery failed: %s\n", xevf_err_msg(&err));
		xevf_err_clear(&err);
		return 1;
	}
	if (json)
		print_discovery_json(host);
	else
		print_discovery_text(host);
	xevf_host_free(host);
	return 0;
}

static int run_status(const char *socket_path, int json)
{
	char *body = NULL, *error = NULL;
	json_object *root, *pools, *v;
	int code = http_get_unix(socket_path, "/status", &body, &error);

	if (code < 0) {
		fprintf(stderr, "xevf-agent: cannot reach the agent at %s: %s (is it running? --status-socket)\n",
			socket_path, error ? error : "?");
		free(error);
		return 1;
	}
	if (code != 200) {
		fprintf(stderr, "xevf-agent: the agent answered HTTP %d\n", code);
		free(body);
		return 1;
	}
	if (json) {
		puts(body);
		free(body);
		return 0;
	}
	root = json_tokener_parse(body);
	free(body);
	if (!root || !json_object_object_get_ex(root, "pools", &pools) || !json_object_is_type(pools, json_type_array)) {
		fprintf(stderr, "xevf-agent: the agent's status is not what this version understands\n");
		json_object_put(root);
		return 1;
	}
	printf("xevf-agent %s, plugin dir %s\n", json_get_string(root, "version") ? json_get_string(root, "version") : "?",
	       json_get_string(root, "pluginDir") ? json_get_string(root, "pluginDir") : "?");
	for (size_t i = 0; i < json_object_array_length(pools); i++) {
		json_object *p = json_object_array_get_idx(pools, i), *devs;
		bool registered = json_object_object_get_ex(p, "registered", &v) && json_object_get_boolean(v);
		long long allocations = json_object_object_get_ex(p, "allocations", &v) ? json_object_get_int64(v) : 0;
		printf("pool %s: %s, %lld container allocation(s), socket %s\n", json_get_string(p, "resource"),
		       registered ? "registered with the kubelet" : "NOT registered with the kubelet", allocations,
		       json_get_string(p, "socket") ? json_get_string(p, "socket") : "?");
		if (!json_object_object_get_ex(p, "devices", &devs))
			continue;
		for (size_t j = 0; j < json_object_array_length(devs); j++) {
			json_object *d = json_object_array_get_idx(devs, j);
			bool migratable = json_object_object_get_ex(d, "migratable", &v) && json_object_get_boolean(v);
			bool allocated = json_object_object_get_ex(d, "allocatedRecently", &v) && json_object_get_boolean(v);
			const char *reason = json_get_string(d, "reason");
			printf("  %s  %-9s  pf %s  driver %s%s%s%s%s\n", json_get_string(d, "id"), json_get_string(d, "health"), json_get_string(d, "pf"),
			       json_get_string(d, "driver") ? json_get_string(d, "driver") : "(none)", migratable ? "  migratable" : "",
			       allocated ? "  allocated" : "", reason ? "  reason: " : "", reason ? reason : "");
		}
	}
	json_object_put(root);
	return 0;
}

static void print_config(const struct agent_config *cfg)
{
	printf("pluginDir=%s sysfsRoot=%s devRoot=%s logLevel=%s rescanIntervalMs=%ld\n", cfg->plugin_dir,
	       cfg->sysfs_root, cfg->dev_root, cfg->log_level, cfg->rescan_interval_ms);
	for (size_t i = 0; i < cfg->npools; i++) {
		const struct pool_config *p = &cfg->pools[i];
		printf("pool %s policy=%s pfAddresses=%zu deviceIds=%zu drivers=%zu\n", p->resource_name,
		       alloc_policy_name(p->policy), p->selector.n_pf_addresses, p->selector.n_device_ids,
		       p->selector.n_drivers);
	}
}

int main(int argc, char **argv)
{
	struct cli_overrides o;
	struct agent_config cfg;
	char *error = NULL;
	int opt, json = 0, check_only = 0, discover = 0;

	memset(&o, 0, sizeof(o));
	if (argc > 1 && strcmp(argv[1], "migrate") == 0)
		return migrate_main(argc - 1, argv + 1);
	if (argc > 1 && (strcmp(argv[1], "discover") == 0 || strcmp(argv[1], "status") == 0)) {
		discover = strcmp(argv[1], "discover") == 0 ? 1 : 2;
		argv[1] = argv[0];
		argv++;
		argc--;
	}
	while ((opt = getopt_long(argc, argv, "c:Vh", long_options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			o.config_path = optarg;
			break;
		case OPT_PLUGIN_DIR:
			o.plugin_dir = optarg;
			break;
		case OPT_SYSFS_ROOT:
			o.sysfs_root = optarg;
			break;
		case OPT_DEV_ROOT:
			o.dev_root = optarg;
			break;
		case OPT_RESOURCE_NAME:
			o.resource_name = optarg;
			break;
		case OPT_POLICY:
			o.allocation_policy = optarg;
			break;
		case OPT_RESCAN: {
			char *end;
			errno = 0;
			o.rescan_interval_ms = strtol(optarg, &end, 10);
			if (errno || *end || o.rescan_interval_ms < 50 || o.rescan_interval_ms > 600000) {
				fprintf(stderr, "xevf-agent: --rescan-interval: '%s' is not a number of ms from 50 to 600000\n",
					optarg);
				return EXIT_USAGE;
			}
			break;
		}
		case OPT_LOG_LEVEL:
			o.log_level = optarg;
			break;
		case OPT_CHECK_CONFIG:
			check_only = 1;
			break;
		case OPT_JSON:
			json = 1;
			break;
		case OPT_MODULES_ROOT:
			o.modules_root = optarg;
			break;
		case OPT_KERNEL_RELEASE:
			o.kernel_release = optarg;
			break;
		case OPT_PROC_ROOT:
			o.proc_root = optarg;
			break;
		case OPT_HTTP_ADDRESS:
			o.http_address = optarg;
			break;
		case OPT_HTTP_PORT: {
			char *end;
			errno = 0;
			o.http_port = strtol(optarg, &end, 10);
			if (errno || *end || o.http_port < -1 || o.http_port > 65535) {
				fprintf(stderr, "xevf-agent: --http-port: '%s' is not a port (-1 turns HTTP off)\n", optarg);
				return EXIT_USAGE;
			}
			o.http_port_set = true;
			break;
		}
		case OPT_STATUS_SOCKET:
			o.status_socket = optarg;
			break;
		case OPT_MIGRATION_SOCKET:
			o.migration_socket = optarg;
			break;
		case OPT_MIGRATION_ADDRESS:
			o.migration_address = optarg;
			break;
		case OPT_TLS_CA:
			o.tls_ca = optarg;
			break;
		case OPT_TLS_CERT:
			o.tls_cert = optarg;
			break;
		case OPT_TLS_KEY:
			o.tls_key = optarg;
			break;
		case OPT_STATE_DIR:
			o.state_dir = optarg;
			break;
		case OPT_NODE_NAME:
			o.node_name = optarg;
			break;
		case OPT_VFIO_SIM:
			o.vfio_sim = optarg;
			break;
		case OPT_KUBE_API:
			o.kube_api = optarg;
			break;
		case OPT_KUBE_TOKEN_FILE:
			o.kube_token_file = optarg;
			break;
		case OPT_KUBE_CA_FILE:
			o.kube_ca_file = optarg;
			break;
		case 'V':
			printf("xevf-agent %s\n", XEVF_VERSION);
			return 0;
		case 'h':
			print_usage(stdout);
			return 0;
		default:
			print_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "xevf-agent: unexpected argument '%s'\n", argv[optind]);
		print_usage(stderr);
		return EXIT_USAGE;
	}
	if (json && !discover) {
		fprintf(stderr, "xevf-agent: --json goes with the discover and status commands\n");
		return EXIT_USAGE;
	}
	if (discover == 1)
		return run_discover(&o, json);
	if (discover == 2)
		return run_status(o.status_socket ? o.status_socket : XEVF_DEFAULT_STATUS_SOCKET, json);
	if (agent_build_config(&o, &cfg, &error)) {
		fprintf(stderr, "xevf-agent: configuration error: %s\n", error ? error : "invalid");
		log_error("config_invalid", "reason=\"%s\"", error ? error : "invalid");
		free(error);
		return EXIT_USAGE;
	}
	if (check_only) {
		print_config(&cfg);
		config_free(&cfg);
		return 0;
	}
	return agent_run(&o, &cfg);
}
