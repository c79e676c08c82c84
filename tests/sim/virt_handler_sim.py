"""virt-handler's side of KubeVirt's node hooks (VEP-190 Plugins): an independent
client in Python grpcio, messages from protoc --python_out of
proto/kubevirt/hooks/plugins/v1alpha1/api.proto (KubeVirt's package, service and
field numbers). It calls ExecuteNodeHook with a VMI's JSON as virt-handler does."""
import json

import grpc

from kubelet_sim import generated

METHOD = "/kubevirt.hooks.plugins.v1alpha1.NodeHookService/ExecuteNodeHook"


def api():
    return generated("kubevirt/hooks/plugins/v1alpha1/api.proto")


class VirtHandler:
    """virt-handler on node: it dials the socket a Plugin object names."""

    def __init__(self, socket_path, node):
        pb = api()
        self.node = node
        self.channel = grpc.insecure_channel("unix:" + socket_path)
        self._execute = self.channel.unary_unary(METHOD, request_serializer=pb.ExecuteNodeHookRequest.SerializeToString,
                                                 response_deserializer=pb.ExecuteNodeHookResponse.FromString)

    def hook(self, point, vmi, node=None, timeout=30):
        pb = api()
        req = pb.ExecuteNodeHookRequest(hookPoint=point, vmi=json.dumps(vmi).encode(),
                                        node=pb.NodeContext(node_name=node or self.node))
        return self._execute(req, timeout=timeout)

    def close(self):
        self.channel.close()


def migrating_vmi(migration_uid, source_node, target_node, source_pod, target_pod, device_name,
                  namespace="prod", name="db", uid="vmi-uid-1"):
    """A VMI in migration, as virt-handler sees it (the fields xevf reads, and a few it does not)."""
    return {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"namespace": namespace, "name": name, "uid": uid, "labels": {"app": name}},
        "spec": {"domain": {"cpu": {"cores": 2},
                            "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}],
                                        "hostDevices": [{"name": "gpu0", "deviceName": device_name}]}}},
        "status": {"nodeName": source_node, "phase": "Running",
                   "migrationState": {"migrationUid": migration_uid, "sourceNode": source_node,
                                      "targetNode": target_node, "sourcePod": source_pod,
                                      "targetPod": target_pod, "mode": "PreCopy"}},
    }
