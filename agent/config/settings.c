/* The settings table: one row per scalar setting. Everything that knows a
 * setting by name (the file's keys, the flags, --help, --check-config,
 * defaults, ranges, freeing) reads it from here. */
#include "settings.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "json_read.h"
#include "log.h"

enum setting_type { SETTING_STRING, SETTING_LONG, SETTING_BOOL };

struct setting {
	const char *key;          /* JSON key */
	const char *flag;         /* command-line flag, without "--" */
	const char *arg;          /* its value's name in --help */
	enum setting_type type;
	size_t offset;            /* the field in struct agent_config */
	const char *def;          /* default of a string (NULL: none) */
	long def_long, min, max;  /* default and range of an integer */
	int (*check)(const char *key, const char *value, char **error);
	const char *help;
};

static int check_absolute(const char *key, const char *value, char **error)
{
	return value[0] == '/' ? 0 : agent_fail(error, EINVAL, "%s: '%s' must be an absolute path", key, value);
}

static int check_log_level(const char *key, const char *value, char **error)
{
	enum log_level level;
	return log_level_parse(value, &level) ? 0
		: agent_fail(error, EINVAL, "%s: '%s' is not one of debug, info, warn, error", key, value);
}

#define STR(k, f, a, field, d, chk, h) {k, f, a, SETTING_STRING, offsetof(struct agent_config, field), d, 0, 0, 0, chk, h}
#define LONG(k, f, a, field, d, lo, hi, h) {k, f, a, SETTING_LONG, offsetof(struct agent_config, field), NULL, d, lo, hi, NULL, h}
/* a boolean is kept as a long, 0 or 1; its flag takes true or false */
#define BOOL(k, f, field, d, h) {k, f, "true|false", SETTING_BOOL, offsetof(struct agent_config, field), NULL, d, 0, 1, NULL, h}

static const struct setting settings[] = {
	STR("pluginDir", "plugin-dir", "DIR", plugin_dir, XEVF_DEFAULT_PLUGIN_DIR, check_absolute,
	    "kubelet device-plugin directory holding kubelet.sock"),
	STR("sysfsRoot", "sysfs-root", "DIR", sysfs_root, "/sys", NULL, "where the host's /sys is"),
	STR("devRoot", "dev-root", "DIR", dev_root, "/dev", NULL,
	    "where the host's /dev is; device paths given to the kubelet are always the host's /dev/... paths"),
	STR("logLevel", "log-level", "LEVEL", log_level, "info", check_log_level, "debug, info, warn or error"),
	LONG("rescanIntervalMs", "rescan-interval", "MS", rescan_interval_ms, XEVF_DEFAULT_RESCAN_MS, 50, 600000,
	     "the full rescan of sysfs that runs even without events (a safety net), in ms"),
	STR("modulesRoot", "modules-root", "DIR", modules_root, "/lib/modules", NULL,
	    "where kernel modules are, for finding VFIO drivers"),
	STR("kernelRelease", "kernel-release", "REL", kernel_release, NULL, NULL,
	    "which kernel's modules to use (default: the running kernel's)"),
	STR("procRoot", "proc-root", "DIR", proc_root, "/proc", NULL, "the host's /proc, to see which VFIO devices VMs hold"),
	STR("podResourcesSocket", "pod-resources-socket", "PATH", pod_resources_socket,
	    XEVF_DEFAULT_POD_RESOURCES_SOCKET, NULL,
	    "the kubelet's PodResources API: which pod holds which VF (\"\" off; taken at start, not on SIGHUP)"),
	STR("bootRoot", "boot-root", "DIR", boot_root, "/boot", NULL,
	    "the host's /boot, where `doctor` reads the kernel's build configuration (config-<release>)"),
	STR("httpAddress", "http-address", "ADDR", http_address, "0.0.0.0", NULL, "where /metrics, /healthz and /readyz listen"),
	LONG("httpPort", "http-port", "PORT", http_port, XEVF_DEFAULT_HTTP_PORT, -1, 65535,
	     "their port (0 picks a free one; -1 turns HTTP off)"),
	STR("statusSocket", "status-socket", "PATH", status_socket, XEVF_DEFAULT_STATUS_SOCKET, NULL,
	    "local socket for `xevf-agent status` (empty turns it off)"),
	STR("migrationSocket", "migration-socket", "PATH", migration_socket, XEVF_DEFAULT_MIGRATION_SOCKET, NULL,
	    "local socket of the Migration service (empty turns it off)"),
	STR("migrationAddress", "migration-address", "HOST:PORT", migration_address, "", NULL,
	    "where other agents reach the Migration service, mutual TLS only (default: off)"),
	STR("tlsCA", "tls-ca", "FILE", tls_ca, NULL, NULL, "PEM CA that signs the agents' certificates (for --migration-address)"),
	STR("tlsCert", "tls-cert", "FILE", tls_cert, NULL, NULL, "PEM certificate of this agent"),
	STR("tlsKey", "tls-key", "FILE", tls_key, NULL, NULL, "PEM key of this agent"),
	STR("tlsServerName", "tls-server-name", "NAME", tls_server_name, NULL, NULL,
	    "the name (DNS SAN) the other agents' certificates carry when it is not their host's, e.g. one "
	    "certificate all agents share (default: the host of the target's HOST:PORT)"),
	STR("peerIdentities", "peer-identities", "URI,...", peer_identities, XEVF_DEFAULT_PEER_IDENTITIES,
	    NULL, "who may call over TCP: URI subject alternative names of the callers' certificates (a '*' at the "
	    "end matches any rest); see docs/certificates.md"),
	STR("stateDir", "state-dir", "DIR", state_dir, XEVF_DEFAULT_STATE_DIR, NULL,
	    "where reservations and migrations are kept across restarts"),
	LONG("maxStateBytes", "max-state-bytes", "BYTES", max_state_bytes, 64L << 30, 1L << 20, 1L << 40,
	     "the largest device state a RestoreState takes, in bytes (less when the target device reports its state size)"),
	LONG("streamIdleTimeoutMs", "stream-idle-timeout", "MS", stream_idle_timeout_ms, 30000, 100, 3600000,
	     "a device-state stream that moves no byte this long fails (its source VF runs again)"),
	STR("nodeName", "node-name", "NAME", node_name, NULL, NULL, "this node's name in migration fingerprints (default: host name)"),
	STR("kubeAPI", "kube-api", "URL", kube_api, NULL, NULL,
	    "the API server, to tell which pending pod is a migration's target (default: in-cluster when "
	    "KUBERNETES_SERVICE_HOST is set, else none)"),
	STR("kubeTokenFile", "kube-token-file", "FILE", kube_token_file, NULL, NULL,
	    "bearer token for it (default: the pod's service account token)"),
	STR("kubeCAFile", "kube-ca-file", "FILE", kube_ca_file, NULL, NULL,
	    "CA of its certificate (default: the service account's ca.crt)"),
	BOOL("kubeAPIAllowHTTP", "kube-api-allow-http", kube_api_allow_http, 0,
	     "send the token to an http:// API server in clear (testing only)"),
	BOOL("migrationTargets", "migration-targets", migration_targets, 1,
	     "watch the KubeVirt migration target pods coming to this node and reserve a compatible VF for each "
	     "by itself, asking the source node's agent (needs the API server and --migration-address)"),
	BOOL("watchMigrations", "watch-migrations", watch_migrations, 1,
	     "watch KubeVirt's VirtualMachineInstanceMigrations: one that failed or was cancelled aborts this node's "
	     "side of it, one that succeeded commits it (needs the API server)"),
	STR("nodeHookSocket", "node-hook-socket", "PATH", node_hook_socket, "", NULL,
	    "unix socket where KubeVirt's virt-handler calls the agent's node hooks (PreMigrationSource, "
	    "PreMigrationTarget, PostMigrationTarget; a Plugin object names it; empty turns it off)"),
	STR("peerNamespace", "peer-namespace", "NS", peer_namespace, NULL, NULL,
	    "the namespace of the other agents' pods (default: this pod's service account's)"),
	STR("peerSelector", "peer-selector", "SELECTOR", peer_selector, "app.kubernetes.io/name=xevf-agent", NULL,
	    "label selector of the agents' pods; an agent is reached at its pod's IP and container port \"migration\""),
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static char **string_field(struct agent_config *cfg, const struct setting *s)
{
	return (char **)((char *)cfg + s->offset);
}

static long *long_field(struct agent_config *cfg, const struct setting *s)
{
	return (long *)((char *)cfg + s->offset);
}

size_t settings_count(void) { return NSETTINGS; }

const char *settings_flag(size_t i) { return i < NSETTINGS ? settings[i].flag : NULL; }

int settings_find_flag(const char *flag)
{
	for (size_t i = 0; i < NSETTINGS; i++)
		if (strcmp(settings[i].flag, flag) == 0)
			return (int)i;
	return -1;
}

static int find_key(const char *key)
{
	for (size_t i = 0; i < NSETTINGS; i++)
		if (strcmp(settings[i].key, key) == 0)
			return (int)i;
	return -1;
}

void config_init(struct agent_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < NSETTINGS; i++)
		if (settings[i].type != SETTING_STRING)
			*long_field(cfg, &settings[i]) = CONFIG_UNSET_LONG;
}

int settings_unknown_key(const char *key, char **error)
{
	char *known = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&known, &len);

	if (!f)
		return agent_fail(error, ENOMEM, "%s: unknown key", key);
	for (size_t i = 0; i < NSETTINGS; i++)
		fprintf(f, "%s, ", settings[i].key);
	fputs("pools", f);
	fclose(f);
	agent_fail(error, EINVAL, "%s: unknown key (known: %s)", key, known ? known : "?");
	free(known);
	return -EINVAL;
}

int settings_parse_json(struct agent_config *cfg, const char *key, json_object *v, char **error)
{
	int i = find_key(key);

	if (i < 0)
		return 1;
	if (settings[i].type == SETTING_BOOL) {
		if (!json_object_is_type(v, json_type_boolean))
			return agent_fail(error, EINVAL, "%s: expected true or false, found %s", key, json_read_type(v));
		*long_field(cfg, &settings[i]) = json_object_get_boolean(v) ? 1 : 0;
		return 0;
	}
	if (settings[i].type == SETTING_LONG)
		return json_read_long(v, key, settings[i].min, settings[i].max, long_field(cfg, &settings[i]), error);
	return json_read_string(v, key, string_field(cfg, &settings[i]), error);
}

/* A boolean flag's value: 0, 1, or -1 when it is neither true nor false. */
static int flag_bool(const char *value)
{
	return strcmp(value, "true") == 0 ? 1 : strcmp(value, "false") == 0 ? 0 : -1;
}

int settings_check_flag(size_t i, const char *value, char **error)
{
	char *end;
	long v;

	if (i < NSETTINGS && settings[i].type == SETTING_BOOL && flag_bool(value) < 0)
		return agent_fail(error, EINVAL, "--%s: '%s' is not true or false", settings[i].flag, value);
	if (i >= NSETTINGS || settings[i].type != SETTING_LONG)
		return 0;
	errno = 0;
	v = strtol(value, &end, 10);
	if (errno || end == value || *end || v < settings[i].min || v > settings[i].max)
		return agent_fail(error, EINVAL, "--%s: '%s' is out of range (%ld to %ld)", settings[i].flag, value,
			    settings[i].min, settings[i].max);
	return 0;
}

int settings_apply_overrides(struct agent_config *cfg, const char *const *values, char **error)
{
	for (size_t i = 0; values && i < NSETTINGS; i++) {
		const struct setting *s = &settings[i];
		int rc;
		if (!values[i])
			continue;
		if ((rc = settings_check_flag(i, values[i], error)))
			return rc;
		if (s->type == SETTING_BOOL) {
			*long_field(cfg, s) = flag_bool(values[i]);
		} else if (s->type == SETTING_LONG) {
			*long_field(cfg, s) = strtol(values[i], NULL, 10);
		} else {
			char **field = string_field(cfg, s);
			free(*field);
			if (!(*field = strdup(values[i])))
				return agent_fail(error, ENOMEM, "out of memory");
		}
	}
	return 0;
}

int settings_finish(struct agent_config *cfg, char **error)
{
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting *s = &settings[i];
		if (s->type != SETTING_STRING) {
			long *field = long_field(cfg, s);
			if (*field == CONFIG_UNSET_LONG)
				*field = s->def_long;
			continue;
		}
		char **field = string_field(cfg, s);
		if (!*field && s->def && !(*field = strdup(s->def)))
			return agent_fail(error, ENOMEM, "out of memory");
		if (*field && s->check) {
			int rc = s->check(s->key, *field, error);
			if (rc)
				return rc;
		}
	}
	return 0;
}

void settings_free(struct agent_config *cfg)
{
	for (size_t i = 0; i < NSETTINGS; i++)
		if (settings[i].type == SETTING_STRING) {
			char **field = string_field(cfg, &settings[i]);
			free(*field);
			*field = NULL;
		}
}

void settings_print_help(FILE *out)
{
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting *s = &settings[i];
		int width = fprintf(out, "      --%s %s", s->flag, s->arg);
		fprintf(out, "%*s%s", width < 31 ? 31 - width : 1, "", s->help);
		if (s->type == SETTING_BOOL)
			fprintf(out, " (default %s)\n", s->def_long ? "true" : "false");
		else if (s->type == SETTING_LONG)
			fprintf(out, ", %ld..%ld (default %ld)\n", s->min, s->max, s->def_long);
		else if (s->def && *s->def)
			fprintf(out, " (default %s)\n", s->def);
		else
			fputc('\n', out);
	}
}

void settings_print(const struct agent_config *cfg, FILE *out)
{
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting *s = &settings[i];
		if (s->type == SETTING_BOOL)
			fprintf(out, "%s=%s\n", s->key, *long_field((struct agent_config *)cfg, s) ? "true" : "false");
		else if (s->type == SETTING_LONG)
			fprintf(out, "%s=%ld\n", s->key, *long_field((struct agent_config *)cfg, s));
		else
			fprintf(out, "%s=%s\n", s->key, *string_field((struct agent_config *)cfg, s) ?
				*string_field((struct agent_config *)cfg, s) : "");
	}
}
