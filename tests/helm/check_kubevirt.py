#!/usr/bin/env python3
"""Checks the KubeVirt examples in deploy/kubevirt/ against the chart's defaults.

No schema package for KubeVirt's CRDs exists offline, so the fields KubeVirt
reads are checked by hand: the CR patch permits the chart's resource names as
externally provided PCI host devices with a vendor:device selector, and the
example VM requests one of those names.
Usage: check_kubevirt.py FILE CHART_VALUES
"""
import os
import re
import sys

import yaml


def fail(msg):
    print(msg)
    sys.exit(1)


path, values_path = sys.argv[1], sys.argv[2]
values = yaml.safe_load(open(values_path))
chart_names = {p["resourceName"] for p in values["pools"]}
patch_path = os.path.join(os.path.dirname(path), "kubevirt-cr-patch.yaml")
patch = yaml.safe_load(open(patch_path))
try:
    permitted = patch["spec"]["configuration"]["permittedHostDevices"]["pciHostDevices"]
except (KeyError, TypeError):
    fail(f"{patch_path} has no spec.configuration.permittedHostDevices.pciHostDevices")
permitted_names = set()
for i, dev in enumerate(permitted):
    if not re.fullmatch(r"[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}", str(dev.get("pciVendorSelector", ""))):
        fail(f"pciHostDevices[{i}].pciVendorSelector is not VENDOR:DEVICE in hex: {dev.get('pciVendorSelector')}")
    if not str(dev["pciVendorSelector"]).lower().startswith("8086:"):
        fail(f"pciHostDevices[{i}] is not an Intel device")
    if dev.get("externalResourceProvider") is not True:
        fail(f"pciHostDevices[{i}] lacks externalResourceProvider: true (xevf-agent is the provider)")
    permitted_names.add(dev.get("resourceName"))

doc = yaml.safe_load(open(path))
if path == patch_path:
    if not permitted_names <= chart_names:
        fail(f"permits {sorted(permitted_names - chart_names)}, which the chart's default pools do not serve")
    print(f"permits {sorted(permitted_names)} from {len(permitted)} selector(s), external provider")
else:
    if doc.get("apiVersion") != "kubevirt.io/v1" or doc.get("kind") != "VirtualMachine":
        fail("not a kubevirt.io/v1 VirtualMachine")
    devices = doc["spec"]["template"]["spec"]["domain"]["devices"].get("hostDevices", [])
    if not devices:
        fail("the example VM requests no hostDevices")
    for d in devices:
        if d.get("deviceName") not in permitted_names:
            fail(f"hostDevices {d.get('name')} asks for {d.get('deviceName')}, which the CR patch does not permit")
    print(f"VM requests {[d['deviceName'] for d in devices]}, permitted by the CR patch")
