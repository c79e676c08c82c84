#!/bin/bash
# Integration tests: the real agent (XEVF_AGENT) against the kubelet simulator.
# Extra arguments go to pytest (e.g. -k full_lifecycle).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export XEVF_AGENT=${XEVF_AGENT:-$here/../build/xevf-agent}
export XEVF_PY_GEN=${XEVF_PY_GEN:-$(mktemp -d /tmp/xevf-pygen-XXXXXX)}
cd "$here/integration"
# Debian's interpreter: python3-grpcio and python3-protobuf live there.
exec /usr/bin/python3 -m pytest -p no:cacheprovider -q -ra "$@"
