#!/bin/bash
# Renders deploy/xevf.yaml from the chart with its default values.
#   tests/helm/render-deploy.sh HELM > deploy/xevf.yaml
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "# Generated from helm/xevf with its default values by 'make manifests'; do not edit."
echo "# Apply with: kubectl apply -f deploy/xevf.yaml   (namespace kube-system)"
"$1" template xevf helm/xevf --namespace kube-system
