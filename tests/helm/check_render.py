#!/usr/bin/env python3
"""Checks a rendered xevf chart (YAML on stdin) against the agent itself.

- every --flag in the DaemonSet's args is documented in `xevf-agent --help`;
- the ConfigMap's config.json is accepted by `xevf-agent --check-config`;
- the pod has what the agent needs on a node: privileged, hostNetwork (uevents),
  host mounts of the plugin dir, /sys, /dev, /lib/modules (read-only) and the
  dirs the config points at, and probes on the agent's /healthz and /readyz;
- a KubeVirt Plugin object names the socket the agent serves its node hooks on,
  which is on a host mount at the same path (virt-handler dials it there).
Usage: check_render.py AGENT < rendered.yaml
"""
import json
import re
import subprocess
import sys
import tempfile

import yaml


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def main():
    agent = sys.argv[1]
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    if len(by_kind.get("DaemonSet", [])) != 1 or len(by_kind.get("ConfigMap", [])) != 1:
        fail(f"expected one DaemonSet and one ConfigMap, got {sorted(by_kind)}")
    unexpected = set(by_kind) - {"DaemonSet", "ConfigMap", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                 "Certificate", "Plugin"}
    if unexpected:
        fail(f"unexpected kinds {sorted(unexpected)}")
    ds = by_kind["DaemonSet"][0]
    cm = by_kind["ConfigMap"][0]
    pod = ds["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]

    helptext = subprocess.run([agent, "--help"], capture_output=True, text=True, check=True).stdout
    documented = set(re.findall(r"(--[a-z][a-z0-9-]*)", helptext))
    flags = [a.split("=", 1)[0] for a in ctr.get("args", []) + ctr.get("command", [])[1:] if a.startswith("--")]
    for f in flags:
        if f not in documented:
            fail(f"DaemonSet passes {f}, which `xevf-agent --help` does not document")
    print(f"ok flags {' '.join(flags)} are all in --help")

    cfg = json.loads(cm["data"]["config.json"])
    with tempfile.NamedTemporaryFile("w", suffix=".json") as tmp:
        json.dump(cfg, tmp)
        tmp.flush()
        r = subprocess.run([agent, "--check-config", "--config", tmp.name], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"agent rejects the rendered config.json: {r.stdout}{r.stderr}")
    print(f"ok config.json accepted by --check-config ({len(cfg['pools'])} pool(s))")

    config_mount = [a for a in ctr["args"] if a.startswith("--config=")]
    if not config_mount:
        fail("DaemonSet does not pass --config")
    config_dir = config_mount[0].split("=", 1)[1].rsplit("/", 1)[0]

    if not ctr.get("securityContext", {}).get("privileged"):
        fail("container is not privileged; it writes sysfs and loads modules")
    if not pod.get("hostNetwork"):
        fail("pod is not on the host network; kernel uevents would not reach the agent")
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in ctr["volumeMounts"]}

    def host_mount(container_path, host_path=None, read_only=False):
        m = mounts.get(container_path)
        if not m:
            fail(f"nothing mounted at {container_path}")
        v = vols[m["name"]]
        if host_path is not None and v.get("hostPath", {}).get("path") != host_path:
            fail(f"{container_path} is not the host's {host_path}: {v}")
        if read_only and not m.get("readOnly"):
            fail(f"{container_path} should be mounted read-only")
        return v

    host_mount(cfg["pluginDir"], cfg["pluginDir"])
    host_mount(cfg["sysfsRoot"], "/sys")
    host_mount(cfg["devRoot"], "/dev")
    host_mount(cfg["modulesRoot"], None, read_only=True)
    host_mount(cfg["procRoot"], "/proc", read_only=True)
    host_mount(cfg["bootRoot"], None, read_only=True)  # doctor reads the kernel's config there
    host_mount(cfg["podResourcesSocket"].rsplit("/", 1)[0], None, read_only=True)  # which pod holds which VF
    status_dir = cfg["statusSocket"].rsplit("/", 1)[0]
    host_mount(status_dir, status_dir)
    host_mount(cfg["stateDir"], cfg["stateDir"])  # reservations must outlive the pod
    if cfg.get("migrationSocket"):
        if cfg["migrationSocket"].rsplit("/", 1)[0] != status_dir:
            fail("the migration socket is not in the host-mounted socket dir")
    if cfg.get("migrationAddress"):
        port = int(cfg["migrationAddress"].rsplit(":", 1)[1])
        if port not in [p["containerPort"] for p in ctr.get("ports", [])]:
            fail(f"the migration port {port} is not declared")
        for key in ("tlsCA", "tlsCert", "tlsKey"):
            d = cfg[key].rsplit("/", 1)[0]
            if d not in mounts or "secret" not in vols[mounts[d]["name"]]:
                fail(f"{key} {cfg[key]} is not on a mounted Secret")
        secret = vols[mounts[cfg['tlsCA'].rsplit('/', 1)[0]]['name']]['secret']['secretName']
        for cert in by_kind.get("Certificate", []):
            # the profile of docs/certificates.md, into the Secret the pod mounts, named as the agents expect
            spec = cert["spec"]
            if spec["secretName"] != secret:
                fail(f"the Certificate writes Secret {spec['secretName']}, the pod mounts {secret}")
            if spec.get("isCA") or not {"server auth", "client auth"} <= set(spec.get("usages", [])):
                fail(f"the Certificate is not an end-entity server and client certificate: {spec}")
            if not any(u in cfg["peerIdentities"].split(",") for u in spec.get("uris", [])):
                fail(f"the Certificate's identity {spec.get('uris')} is not in peerIdentities {cfg['peerIdentities']}")
            if cfg.get("tlsServerName") not in spec.get("dnsNames", []):
                fail(f"the Certificate names {spec.get('dnsNames')}, the agents expect {cfg.get('tlsServerName')}")
        print(f"ok migration on port {port}, mutual TLS from Secret {secret}"
              + (" (cert-manager)" if by_kind.get("Certificate") else ""))
    if cfg.get("migrationSocket"):
        # least privilege: list pods, nothing else, bound to the pod's service account
        sa = pod.get("serviceAccountName")
        roles = by_kind.get("ClusterRole", [])
        binds = by_kind.get("ClusterRoleBinding", [])
        if not sa or len(roles) != 1 or len(binds) != 1:
            fail(f"migration needs a service account that may list pods (sa={sa}, roles={len(roles)})")
        # least privilege: list pods; with the migration targets' watch (which
        # needs the TCP port) also watch pods, get VMIs, create Events
        targets = cfg.get("migrationTargets") and cfg.get("migrationAddress")
        want = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"] if targets else ["list"]}]
        if cfg.get("watchMigrations"):
            # the outcome of KubeVirt's migrations
            want.append({"apiGroups": ["kubevirt.io"], "resources": ["virtualmachineinstancemigrations"],
                         "verbs": ["watch"]})
        if targets:
            want += [{"apiGroups": ["kubevirt.io"], "resources": ["virtualmachineinstances"], "verbs": ["get"]},
                     {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
        if roles[0]["rules"] != want:
            fail(f"the ClusterRole grants other than {want}: {roles[0]['rules']}")
        subj = binds[0]["subjects"][0]
        if subj["name"] != sa or binds[0]["roleRef"]["name"] != roles[0]["metadata"]["name"]:
            fail("the ClusterRoleBinding does not bind the DaemonSet's service account to the role")
        print(f"ok RBAC: service account {sa} may {'; '.join(r['resources'][0] + ': ' + ','.join(r['verbs']) for r in want)}"
              ", nothing more")
    elif by_kind.get("ClusterRole") or pod.get("automountServiceAccountToken") is not False:
        fail("without migration the agent needs no API access: no RBAC, no token")
    plugins = by_kind.get("Plugin", [])
    if cfg.get("nodeHookSocket") or plugins:
        sock = cfg.get("nodeHookSocket")
        named = [h["socket"] for p in plugins for h in p["spec"]["nodeHooks"]]
        if len(plugins) != 1 or named != [sock]:
            fail(f"the agent serves the node hooks on {sock}, the Plugin objects name {named}")
        hook_dir = sock.rsplit("/", 1)[0]
        host_mount(hook_dir, hook_dir)
        hooks = plugins[0]["spec"]["nodeHooks"][0]["permittedHooks"]
        if sorted(hooks) != ["PostMigrationTarget", "PreMigrationSource", "PreMigrationTarget"]:
            fail(f"the Plugin permits {hooks}, the agent serves PreMigrationSource, PreMigrationTarget, "
                 "PostMigrationTarget")
        print(f"ok KubeVirt Plugin {plugins[0]['metadata']['name']}: node hooks on {sock}, on the host at that path")
    env = {e["name"] for e in ctr.get("env", [])}
    for a in ctr.get("args", []):
        for var in re.findall(r"\$\((\w+)\)", a):
            if var not in env:
                fail(f"argument {a} uses $({var}), which the container's env does not define")
    if "configMap" not in vols[mounts[config_dir]["name"]]:
        fail(f"{config_dir} is not the ConfigMap")
    if vols[mounts[config_dir]["name"]]["configMap"]["name"] != cm["metadata"]["name"]:
        fail("the DaemonSet mounts another ConfigMap than the chart renders")
    print("ok host mounts: plugin dir, /sys, /dev, modules (ro), /proc (ro), status dir, state dir, config")

    port = cfg["httpPort"]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = ctr.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") != port:
            fail(f"{probe} is {get}, expected GET {path} on the agent's port {port}")
    print(f"ok probes: /healthz and /readyz on port {port}")


main()
