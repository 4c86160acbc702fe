#!/usr/bin/env bash
# A throwaway PostgreSQL cluster with hokusai_auth preloaded, owned by
# HK_RUN_AS.  Source after test/lib/setup.sh.
#
#   hk_cluster_start DIR PORT   initdb + start; sets PGHOST PGPORT PGUSER PGDATABASE
#   hk_cluster_stop DIR         stop and remove

HK_PGBIN=$(pg_config --bindir)

hk_cluster_start()
{
	local dir=$1 port=$2
	mkdir -p "$dir"
	[ "$(id -u)" -eq 0 ] && chown "$HK_RUN_AS" "$dir"
	hk_as_user "$HK_PGBIN/initdb" -D "$dir/data" -A trust -U postgres \
		--no-instructions >/dev/null
	cat >> "$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
shared_preload_libraries = 'hokusai_auth'
hokusai_auth.database = 'postgres'
CONF
	hk_as_user "$HK_PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
	export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
}

hk_cluster_stop()
{
	local dir=$1
	if [ -f "$dir/data/postmaster.pid" ]; then
		hk_as_user "$HK_PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
	fi
	rm -rf "$dir"
}
