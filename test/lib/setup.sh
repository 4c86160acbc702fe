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

hk_setup()
{
	hk_install_packages
	hk_pick_user
	hk_build_install
}
