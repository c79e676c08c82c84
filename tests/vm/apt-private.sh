#!/bin/bash
# A private apt configuration that reaches bookworm-backports through the
# machine's own Debian mirror (read from its apt sources, never named here),
# without changing the system's apt state. Source it, then call
#   papt_init DIR            # once: lists under DIR
#   papt download PKG...     # apt-get with the private configuration
#   papt_cache search RE     # apt-cache with it
#   papt_mirror              # the mirror's URI (for debootstrap)
# The machine's Debian mirror (its first non-security source).
papt_mirror() {
	local uri
	uri=$( (cat /etc/apt/sources.list 2>/dev/null; cat /etc/apt/sources.list.d/*.list 2>/dev/null) |
		awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}')
	if [ -z "$uri" ]; then
		uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null)
	fi
	[ -n "$uri" ] || { echo "apt-private: no Debian mirror in the machine's apt sources" >&2; return 1; }
	echo "$uri"
}

papt_init() {
	papt_dir=$1
	mkdir -p "$papt_dir/lists/partial" "$papt_dir/cache/archives/partial"
	local uri
	uri=$(papt_mirror) || return 1
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bookworm-backports main" >"$papt_dir/sources.list"
	papt update -qq >/dev/null
}

papt_opts() {
	printf '%s\n' -o "Dir::Etc::sourcelist=$papt_dir/sources.list" -o Dir::Etc::sourceparts=- \
		-o "Dir::State::Lists=$papt_dir/lists" -o "Dir::Cache=$papt_dir/cache" -o APT::Get::List-Cleanup=0
}

papt() {
	local opts
	mapfile -t opts < <(papt_opts)
	apt-get "${opts[@]}" "$@"
}

papt_cache() {
	local opts
	mapfile -t opts < <(papt_opts)
	apt-cache "${opts[@]}" "$@"
}
