#!/bin/bash
# Checks the Containerfile's runtime stage installs exactly the Debian packages
# that hold the agent's direct shared-library dependencies (libc6 comes with the
# base image; ca-certificates is allowed for TLS peers). The runtime stage
# installs packages.list's third column, so that is what is compared.
#   check_containerfile.sh AGENT CONTAINERFILE
set -euo pipefail
agent=$1
file=$2
list=$(dirname "$file")/packages.list
grep -q "awk '!/^#/ && NF {print \$3}' /tmp/packages.list" "$file" ||
	{ echo "the runtime stage does not install packages.list's runtime column"; exit 1; }
runtime=$( (awk '/^FROM /{stage++} stage==2' "$file" | tr '\\\n' '  ' |
	grep -o 'apt-get install[^&]*' | tr ' ' '\n' | grep -E '^[a-z0-9][a-z0-9.+-]*$' | grep -Ev '^(apt-get|install|NF)$'
	awk '!/^#/ && NF {print $3}' "$list") | sort -u)
needed=$(readelf -d "$agent" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | while read -r lib; do
	path=$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')
	[ -n "$path" ] || { echo "MISSING:$lib"; continue; }
	pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "$path" 2>/dev/null || dpkg -S "/usr$path" 2>/dev/null || true)
	echo "${pkg%%:*}"
done | grep -v '^libc6$' | sort -u)
missing=$(comm -23 <(echo "$needed") <(echo "$runtime"))
extra=$(comm -13 <(echo "$needed") <(echo "$runtime") | grep -v '^ca-certificates$' || true)
[ -z "$missing" ] || { echo "the runtime stage lacks $(echo $missing) (needed by $agent)"; exit 1; }
[ -z "$extra" ] || { echo "the runtime stage installs $(echo $extra), which the agent does not link"; exit 1; }
grep -q '^COPY --from=build .*/xevf-agent /usr/bin/xevf-agent' "$file" || { echo "the agent is not copied from the build stage"; exit 1; }
echo "installs $(echo "$needed" | wc -l) library packages, all linked by the agent: $(echo $needed)"
