"""A client of xevf's Migration service (Python grpcio, messages from protoc
--python_out): what the tests use to play KubeVirt's side, an operator, or a
misbehaving peer (truncated or corrupted state streams, wrong certificates)."""
import hashlib
import importlib
import os
import subprocess
import sys
import tempfile

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SERVICE = "/xevf.migration.v1.Migration/"
_PB = None


def mig_api():
    """The xevf.migration.v1 messages, generated from proto/ on first use."""
    global _PB
    if _PB is None:
        out = os.environ.get("XEVF_PY_GEN") or tempfile.mkdtemp(prefix="xevf-pygen-")
        target = os.path.join(out, "xevf", "migration", "v1", "migration_pb2.py")
        if not os.path.exists(target):
            subprocess.run(["protoc", "--proto_path=" + os.path.join(REPO, "proto"), "--python_out=" + out,
                            os.path.join(REPO, "proto", "xevf", "migration", "v1", "migration.proto")], check=True)
        if out not in sys.path:
            sys.path.insert(0, out)
        _PB = importlib.import_module("xevf.migration.v1.migration_pb2")
    return _PB


class MigrationClient:
    def __init__(self, target, tls=None, server_name=None, options=()):
        """target: a unix socket path, or host:port with tls=(ca, cert, key) paths; options: grpc channel arguments."""
        pb = mig_api()
        self.pb = pb
        opts = list(options)
        if target.startswith("/"):
            self.channel = grpc.insecure_channel("unix:" + target, options=opts)
        else:
            ca, cert, key = (open(p, "rb").read() for p in tls)
            creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
            opts += [("grpc.ssl_target_name_override", server_name)] if server_name else []
            self.channel = grpc.secure_channel(target, creds, options=opts)

        def unary(name, req, resp):
            return self.channel.unary_unary(SERVICE + name, request_serializer=req.SerializeToString,
                                            response_deserializer=resp.FromString)

        self._describe = unary("Describe", pb.DescribeRequest, pb.Fingerprint)
        self._check = unary("CheckTarget", pb.CheckTargetRequest, pb.CheckTargetResponse)
        self._reserve = unary("Reserve", pb.ReserveRequest, pb.Reservation)
        self._release = unary("Release", pb.MigrationRef, pb.MigrationStatus)
        self._commit = unary("Commit", pb.MigrationRef, pb.MigrationStatus)
        self._abort = unary("Abort", pb.MigrationRef, pb.MigrationStatus)
        self._list = unary("List", pb.ListRequest, pb.ListResponse)
        self._handover = unary("Handover", pb.HandoverRequest, pb.MigrationStatus)
        self._save = self.channel.unary_stream(SERVICE + "SaveState",
                                               request_serializer=pb.SaveStateRequest.SerializeToString,
                                               response_deserializer=pb.StateChunk.FromString)
        self._restore = self.channel.stream_unary(SERVICE + "RestoreState",
                                                  request_serializer=pb.StateChunk.SerializeToString,
                                                  response_deserializer=pb.RestoreStateResponse.FromString)

    def describe(self, vf, timeout=10):
        return self._describe(self.pb.DescribeRequest(vf=vf), timeout=timeout)

    def check(self, fingerprint, timeout=10):
        return self._check(self.pb.CheckTargetRequest(source=fingerprint), timeout=timeout)

    def reserve(self, mid, fingerprint, vm=("default", "vm1"), ttl=300, timeout=10):
        return self._reserve(self.pb.ReserveRequest(migration_id=mid, vm_namespace=vm[0], vm_name=vm[1],
                                                    source=fingerprint, ttl_seconds=ttl), timeout=timeout)

    def release(self, mid, timeout=10):
        return self._release(self.pb.MigrationRef(migration_id=mid), timeout=timeout)

    def commit(self, mid, timeout=10):
        return self._commit(self.pb.MigrationRef(migration_id=mid), timeout=timeout)

    def abort(self, mid, timeout=10):
        return self._abort(self.pb.MigrationRef(migration_id=mid), timeout=timeout)

    def handover(self, mid, vf, timeout=10):
        return self._handover(self.pb.HandoverRequest(migration_id=mid, vf=vf), timeout=timeout)

    def list(self, timeout=10):
        return self._list(self.pb.ListRequest(), timeout=timeout).migrations

    def save(self, mid, vf, chunk_size=0, timeout=30):
        """The stream call itself (iterate it, or cancel() it)."""
        return self._save(self.pb.SaveStateRequest(migration_id=mid, vf=vf, chunk_size=chunk_size), timeout=timeout)

    def restore(self, chunks, timeout=30):
        return self._restore(iter(chunks), timeout=timeout)

    def close(self):
        self.channel.close()


def stream_digest(chunks):
    return hashlib.sha256(b"".join(c.data for c in chunks)).hexdigest()
