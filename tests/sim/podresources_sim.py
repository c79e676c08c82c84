"""The kubelet's PodResources API (podresources/v1 List, GetAllocatableResources):
an independent implementation in Python grpcio, messages from protoc --python_out
of proto/podresources/v1/api.proto. Tests set which pod's container holds which
devices."""

import threading

from kubelet_sim import generated, serve_unix


def api():
    return generated("podresources/v1/api.proto")


class PodResourcesSim:
    """pods: [(namespace, name, [(container, resource, [device ids])])]; allocatable: [(resource, [ids])]."""

    def __init__(self, socket_path):
        self.socket = socket_path
        self.pods = []
        self.allocatable = []
        self.calls = []
        self.lock = threading.Lock()
        self.server = None

    def _list(self, request, context):
        pb = api()
        with self.lock:
            self.calls.append("List")
            resp = pb.ListPodResourcesResponse()
            for ns, name, containers in self.pods:
                pod = resp.pod_resources.add(name=name, namespace=ns)
                for cname, resource, ids in containers:
                    c = pod.containers.add(name=cname)
                    c.devices.add(resource_name=resource, device_ids=ids)
        return resp

    def _allocatable(self, request, context):
        pb = api()
        with self.lock:
            self.calls.append("GetAllocatableResources")
            resp = pb.AllocatableResourcesResponse()
            for resource, ids in self.allocatable:
                resp.devices.add(resource_name=resource, device_ids=ids)
        return resp

    def start(self):
        pb = api()
        self.server = serve_unix(self.socket, "v1.PodResourcesLister", {
            "List": (self._list, pb.ListPodResourcesRequest, pb.ListPodResourcesResponse),
            "GetAllocatableResources": (self._allocatable, pb.AllocatableResourcesRequest,
                                        pb.AllocatableResourcesResponse)}, workers=2)
        return self

    def stop(self):
        if self.server:
            self.server.stop(0)
            self.server = None
