#!/usr/bin/python3
"""Kubelet simulator: the kubelet's side of the device-plugin API v1beta1.

An independent implementation (Python grpcio, messages from protoc --python_out)
so that our C server is tested against somebody else's gRPC and protobuf code.

Like the kubelet it serves Registration on <plugin-dir>/kubelet.sock, checks the
request (API version, resource name), then dials the plugin back, asks for its
options and keeps a ListAndWatch stream open, remembering the latest device list.
restart() does what a kubelet restart does: the old socket disappears, every
plugin socket in the directory is removed, and a new kubelet.sock is served.
"""

import importlib
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
_GENERATED = {}


def generated(proto):
    """The messages of proto/<proto> (e.g. "deviceplugin/v1beta1/api.proto"), generated
    with protoc --python_out on first use."""
    if proto not in _GENERATED:
        out = os.environ.get("XEVF_PY_GEN") or tempfile.mkdtemp(prefix="xevf-pygen-")
        module = proto[:-len(".proto")].replace("/", ".") + "_pb2"
        if not os.path.exists(os.path.join(out, module.replace(".", "/") + ".py")):
            subprocess.run(["protoc", "--proto_path=" + os.path.join(REPO, "proto"), "--python_out=" + out,
                            os.path.join(REPO, "proto", proto)], check=True)
        if out not in sys.path:
            sys.path.insert(0, out)
        _GENERATED[proto] = importlib.import_module(module)
    return _GENERATED[proto]


def api():
    """The kubelet's device-plugin v1beta1 messages."""
    return generated("deviceplugin/v1beta1/api.proto")


RESOURCE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/"
                         r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def serve_unix(socket_path, service, methods, workers=4):
    """A started grpc server of service on a unix socket (a stale socket file
    goes first); methods: {name: (handler, request class, response class)}."""
    handler = grpc.method_handlers_generic_handler(service, {
        name: grpc.unary_unary_rpc_method_handler(fn, request_deserializer=req.FromString,
                                                  response_serializer=resp.SerializeToString)
        for name, (fn, req, resp) in methods.items()})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers((handler,))
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    server.add_insecure_port("unix:" + socket_path)
    server.start()
    return server


def _unary(channel, method, req_cls, resp_cls):
    return channel.unary_unary("/v1beta1.DevicePlugin/" + method,
                               request_serializer=req_cls.SerializeToString,
                               response_deserializer=resp_cls.FromString)


class PluginClient:
    """The kubelet's client of one plugin socket."""

    def __init__(self, socket_path):
        pb = api()
        self.path = socket_path
        self.channel = grpc.insecure_channel("unix:" + socket_path)
        self.options = _unary(self.channel, "GetDevicePluginOptions", pb.Empty, pb.DevicePluginOptions)
        self._preferred = _unary(self.channel, "GetPreferredAllocation", pb.PreferredAllocationRequest,
                                 pb.PreferredAllocationResponse)
        self._allocate = _unary(self.channel, "Allocate", pb.AllocateRequest, pb.AllocateResponse)
        self._prestart = _unary(self.channel, "PreStartContainer", pb.PreStartContainerRequest,
                                pb.PreStartContainerResponse)
        self._law = self.channel.unary_stream("/v1beta1.DevicePlugin/ListAndWatch",
                                              request_serializer=pb.Empty.SerializeToString,
                                              response_deserializer=pb.ListAndWatchResponse.FromString)

    def get_options(self, timeout=5):
        return self.options(api().Empty(), timeout=timeout)

    def allocate(self, containers, timeout=5):
        pb = api()
        req = pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=ids)
                                                     for ids in containers])
        return self._allocate(req, timeout=timeout)

    def preferred(self, available, must_include, size, timeout=5):
        pb = api()
        req = pb.PreferredAllocationRequest(container_requests=[pb.ContainerPreferredAllocationRequest(
            available_deviceIDs=available, must_include_deviceIDs=must_include, allocation_size=size)])
        return self._preferred(req, timeout=timeout)

    def prestart(self, ids, timeout=5):
        return self._prestart(api().PreStartContainerRequest(devices_ids=ids), timeout=timeout)

    def watch(self):
        return Watch(self._law(api().Empty()))

    def close(self):
        self.channel.close()


class Watch:
    """An open ListAndWatch stream; lists arrive on a queue, with their arrival time."""

    def __init__(self, stream):
        self.stream = stream
        self.lists = queue.Queue()
        self.ended = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        try:
            for resp in self.stream:
                self.lists.put((time.monotonic(), {d.ID: (d.health, [n.ID for n in d.topology.nodes])
                                                   for d in resp.devices}))
        except grpc.RpcError as e:
            self.error = e
        finally:
            self.ended.set()

    def next(self, timeout=5):
        return self.lists.get(timeout=timeout)

    def wait_for(self, predicate, timeout=5):
        """The first list (time, devices) for which predicate(devices) holds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no ListAndWatch list matched in %.1f s" % timeout)
            try:
                t, devices = self.lists.get(timeout=left)
            except queue.Empty:
                raise TimeoutError("no ListAndWatch list matched in %.1f s" % timeout) from None
            if predicate(devices):
                return t, devices

    def cancel(self):
        self.stream.cancel()
        self.ended.wait(5)


class KubeletSim:
    def __init__(self, plugin_dir, dial_back=True):
        self.plugin_dir = plugin_dir
        self.socket = os.path.join(plugin_dir, "kubelet.sock")
        self.dial_back = dial_back
        self.server = None
        self.registrations = queue.Queue()
        self.unclaimed = []
        self.lock = threading.Lock()
        self.devices = {}        # resource -> latest {id: (health, numa)}
        self.watches = {}        # resource -> Watch
        self.clients = {}
        self.generation = 0

    def _register(self, request, context):
        pb = api()
        if request.version != "v1beta1":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unsupported API version %r" % request.version)
        if not RESOURCE_RE.match(request.resource_name) or request.resource_name.startswith("kubernetes.io/"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid resource name %r" % request.resource_name)
        if "/" in request.endpoint:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "endpoint must be a file name")
        generation = self.generation
        self.registrations.put((time.monotonic(), generation, request))
        if self.dial_back:
            threading.Thread(target=self._connect, args=(request, generation), daemon=True).start()
        return pb.Empty()

    def _connect(self, request, generation):
        client = PluginClient(os.path.join(self.plugin_dir, request.endpoint))
        try:
            client.get_options(timeout=5)
            watch = client.watch()
        except grpc.RpcError:
            client.close()
            return
        with self.lock:
            if generation != self.generation:
                # A kubelet that has restarted since: its work died with it.
                stale = True
            else:
                stale = False
        if stale:
            watch.cancel()
            client.close()
            return
        with self.lock:
            old = self.watches.pop(request.resource_name, None)
            self.watches[request.resource_name] = watch
            oldc = self.clients.pop(request.resource_name, None)
            self.clients[request.resource_name] = client
        if old:
            old.cancel()
        if oldc:
            oldc.close()

    def start(self):
        pb = api()
        with self.lock:
            self.generation += 1
        os.makedirs(self.plugin_dir, exist_ok=True)
        self.server = serve_unix(self.socket, "v1beta1.Registration",
                                 {"Register": (self._register, pb.RegisterRequest, pb.Empty)})
        return self

    def stop(self):
        with self.lock:
            self.generation += 1  # whatever the old kubelet still had in flight is void
            watches, self.watches = self.watches, {}
            clients, self.clients = self.clients, {}
        for w in watches.values():
            w.cancel()
        for c in clients.values():
            c.close()
        if self.server:
            self.server.stop(grace=None).wait(5)
            self.server = None
        if os.path.exists(self.socket):
            os.unlink(self.socket)

    def restart(self):
        """What a kubelet restart looks like to a plugin."""
        self.stop()
        for name in os.listdir(self.plugin_dir):
            path = os.path.join(self.plugin_dir, name)
            if name != "kubelet.sock" and not os.path.isdir(path):
                os.unlink(path)
        return self.start()

    def wait_registration(self, resource=None, timeout=10):
        deadline = time.monotonic() + timeout
        # registrations for other resources wait for their own caller
        for i, (t, generation, req) in enumerate(self.unclaimed):
            if generation == self.generation and (resource is None or req.resource_name == resource):
                del self.unclaimed[i]
                return t, req
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no registration for %s in %.1f s" % (resource or "any resource", timeout))
            try:
                t, generation, req = self.registrations.get(timeout=left)
            except queue.Empty:
                raise TimeoutError("no registration for %s in %.1f s" % (resource or "any resource", timeout)) \
                    from None
            if generation == self.generation and (resource is None or req.resource_name == resource):
                return t, req
            self.unclaimed.append((t, generation, req))

    def watch_of(self, resource, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                w = self.watches.get(resource)
            if w:
                return w
            time.sleep(0.05)
        raise TimeoutError("the simulator has no ListAndWatch stream for %s" % resource)


def main():
    import argparse
    ap = argparse.ArgumentParser(description="Run a kubelet simulator until interrupted")
    ap.add_argument("plugin_dir")
    args = ap.parse_args()
    sim = KubeletSim(args.plugin_dir).start()
    print("kubelet simulator serving", sim.socket, flush=True)
    try:
        while True:
            t, _, req = sim.registrations.get()
            print("registered", req.resource_name, "endpoint", req.endpoint, flush=True)
    except KeyboardInterrupt:
        sim.stop()


if __name__ == "__main__":
    main()
