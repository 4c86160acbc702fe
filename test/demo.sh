#!/usr/bin/env bash
# The hokusai_auth walkthrough: installs what is missing, builds and installs
# the extension, starts a throwaway PostgreSQL with it preloaded, and shows a
# key's life: issue -> validate -> reject bad keys -> revoke, by SQL, with
# the hokusai CLI, and over HTTPS through nginx and PostgREST.
#
#   bash test/demo.sh          run the walkthrough, then remove the cluster
#   bash test/demo.sh --keep   leave the cluster running to play with
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"
source "$HK_TOP/test/lib/cluster.sh"
hk_setup

KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1
DIR=$(mktemp -d /tmp/hokusai-demo.XXXXXX)
PORT=${HK_DEMO_PORT:-55439}
hk_cluster_start "$DIR" "$PORT"
if [ "$KEEP" -eq 0 ]; then
	trap 'hk_cluster_stop "$DIR"' EXIT
fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
sql() { hk_as_user psql -X -q -v ON_ERROR_STOP=1 "$@"; }

say "PostgreSQL on port $PORT with hokusai_auth preloaded; creating the extension"
sql -c "CREATE EXTENSION hokusai_auth CASCADE"

say "SQL: create a user and issue a key (the plaintext key is shown once)"
sql <<'SQL'
\pset footer off
SELECT hokusai_auth.create_user('alice', 'alice@example.com') AS user_id \gset
SELECT id, key, key_prefix FROM hokusai_auth.create_key(:'user_id', 'demo key',
	rate_limit_per_hour => 1000, allowed_ips => '{127.0.0.0/8,::1/128}') \gset
\echo key id: :id
\echo key:    :key
\echo '-- only a bcrypt hash is stored, and plain SQL can verify it:'
SELECT key_prefix, left(key_hash, 7) || '...' AS key_hash,
       crypt(:'key', key_hash) = key_hash AS crypt_verifies
  FROM hokusai_auth.api_keys WHERE id = :'id';

\echo '-- validate it from an allowed address, then from another one:'
SELECT valid, status, rate_limit FROM hokusai_auth.validate_key(:'key', '127.0.0.1', '/v1/demo');
SELECT valid, status FROM hokusai_auth.validate_key(:'key', '203.0.113.9');
\echo '-- a malformed key, and a well-formed key nobody issued, are refused:'
SELECT status FROM hokusai_auth.validate_key('hk_live_not-a-key');
SELECT status FROM hokusai_auth.validate_key((hokusai_auth._new_key('live')).key);

\echo '-- rate limits: a key allowed 3 requests an hour; the 4th is refused, with'
\echo '-- the figures an API returns as X-RateLimit-* and Retry-After headers'
SELECT id AS rl_id, key AS rl_key FROM hokusai_auth.create_key(:'user_id', 'three an hour',
	rate_limit_per_hour => 3) \gset
SELECT i AS request, status, remaining, reset_seconds, retry_after
  FROM generate_series(1, 4) i, LATERAL hokusai_auth.validate_key(left(:'rl_key' || i, 54)) v;

\echo '-- rotate with a one-hour grace period: both keys work meanwhile'
SELECT id AS new_id, key AS new_key FROM hokusai_auth.rotate_key(:'id', grace => '1 hour') \gset
SELECT (SELECT status FROM hokusai_auth.validate_key(:'key', '127.0.0.1')) AS old_key,
       (SELECT status FROM hokusai_auth.validate_key(:'new_key', '127.0.0.1')) AS new_key;

\echo '-- revoke the new key: it stops at once'
SELECT hokusai_auth.revoke_key(:'new_id', 'demo over') AS revoked;
SELECT status FROM hokusai_auth.validate_key(:'new_key', '127.0.0.1');

\echo '-- every operation is in the audit log; committed rows are sealed into its hash chain'
\echo '-- (by the worker every flush_interval, or at once by seal_audit_log()):'
SELECT hokusai_auth.seal_audit_log() AS sealed_now;
SELECT seq, action, actor_role, details->>'key_prefix' AS key_prefix FROM hokusai_auth.audit_log ORDER BY seq;
SELECT hokusai_auth.verify_audit_chain() IS NULL AS audit_chain_intact;
SQL

HOKUSAI=$(pg_config --bindir)/hokusai
if [ -x "$HOKUSAI" ]; then
	say "CLI: the same life cycle with the hokusai command"
	hk_as_user env PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER=postgres PGDATABASE=postgres \
		bash -c '
		set -e
		h=$1
		echo "\$ hokusai auth create-user bob"; $h auth create-user bob
		echo "\$ hokusai auth create-key --user bob --name cli-demo --env test"
		key=$($h auth create-key --user bob --name cli-demo --env test)
		echo "$key"
		echo "\$ hokusai auth list-keys --user bob"; $h auth list-keys --user bob
		echo "-- validate the key the CLI printed, by SQL:"
		psql -X -A -t -c "SELECT status FROM hokusai_auth.validate_key('"'"'$key'"'"')"
		prefix=${key:0:16}
		echo "\$ hokusai auth revoke-key $prefix --yes"; $h auth revoke-key "$prefix" --yes --reason "cli demo"
		psql -X -A -t -c "SELECT status FROM hokusai_auth.validate_key('"'"'$key'"'"')"
		' _ "$HOKUSAI"
fi

HTTP_DIR="$DIR/http"
if command -v nginx >/dev/null 2>&1 && bash "$HK_TOP/test/http/stack.sh" postgrest >/dev/null 2>&1; then
	say "HTTP: nginx (TLS) -> PostgREST -> hokusai_auth, on 127.0.0.1 (docs/http.md)"
	sql -c "SELECT hokusai_auth.setup_http_roles()" >/dev/null
	read -r HTTPS_PORT HTTP_PORT PGRST_PORT <<<"$(bash "$HK_TOP/test/http/stack.sh" free-ports 3 | tr '\n' ' ')"
	mkdir -p "$HTTP_DIR"
	[ "$(id -u)" -eq 0 ] && chown "$HK_RUN_AS" "$HTTP_DIR"
	stack() { hk_as_user env HK_TOP="$HK_TOP" HK_POSTGREST="${HK_POSTGREST:-}" \
		HK_DB_URI="host=$PGHOST port=$PGPORT dbname=postgres user=hokusai_authenticator" \
		HK_HTTPS_PORT=$HTTPS_PORT HK_HTTP_PORT=$HTTP_PORT HK_PGRST_PORT=$PGRST_PORT \
		bash "$HK_TOP/test/http/stack.sh" "$@"; }
	stack prepare "$HTTP_DIR"
	stack start "$HTTP_DIR"
	if [ "$KEEP" -eq 0 ]; then
		trap 'stack stop "$HTTP_DIR"; hk_cluster_stop "$DIR"' EXIT
	fi
	API=https://127.0.0.1:$HTTPS_PORT/api/v1/auth
	show() { echo "\$ curl $*" | sed -E 's/hk_(live|test)_([0-9A-Za-z]{8})[0-9A-Za-z]{38}/hk_\1_\2.../g; s/Bearer [A-Za-z0-9_.-]{40,}/Bearer <jwt>/'; }
	hcurl() { curl -s --cacert "$HTTP_DIR/tls/cert.pem" "$@"; }
	carol=$(sql -A -t -c "SELECT hokusai_auth.create_user('carol')")
	jwt=$(stack jwt "$HTTP_DIR" "$carol")

	show "-X POST $API/keys -H 'Authorization: Bearer <carol JWT>' -d '{\"name\": \"http demo\", \"rate_limit_per_hour\": 3}'"
	created=$(hcurl -X POST "$API/keys" -H "Authorization: Bearer $jwt" -H 'Content-Type: application/json' \
		-d '{"name": "http demo", "rate_limit_per_hour": 3}')
	echo "$created"
	hkey=$(echo "$created" | sed -E 's/.*"key": "([^"]+)".*/\1/')
	hid=$(echo "$created" | sed -E 's/.*"id": "([^"]+)".*/\1/')
	echo "-- the plaintext key above is shown once; from now on it authenticates requests:"
	for i in 1 2 3 4; do
		show "$API/keys?select=name,status -H 'Authorization: Bearer $hkey'   (request $i)"
		hcurl -D - -o "$HTTP_DIR/body" "$API/keys?select=name,status" -H "Authorization: Bearer $hkey" |
			grep -iE '^(HTTP|x-ratelimit|retry-after)' | tr -d '\r'
		cat "$HTTP_DIR/body"; echo
	done
	show "-X DELETE $API/keys/$hid -H 'Authorization: Bearer <carol JWT>'"
	hcurl -X DELETE "$API/keys/$hid" -H "Authorization: Bearer $jwt" -w '  -> HTTP %{http_code}\n' | sed -E 's/^(.{160}).*(  -> .*)$/\1...\2/'
	show "$API/keys -H 'X-API-Key: $hkey'   (after revocation)"
	hcurl "$API/keys" -H "X-API-Key: $hkey" -w '  -> HTTP %{http_code}\n'
	show "http://127.0.0.1:$HTTP_PORT/api/v1/auth/keys   (plain HTTP)"
	curl -s -o /dev/null -w '  -> HTTP %{http_code}, Location: %{redirect_url}\n' "http://127.0.0.1:$HTTP_PORT/api/v1/auth/keys"
else
	say "HTTP section skipped: nginx or PostgREST (npm install --ignore-scripts) not available"
fi

if [ "$KEEP" -eq 1 ]; then
	say "cluster left running: PGHOST=$PGHOST PGPORT=$PGPORT psql -U postgres"
	[ -s "$HTTP_DIR/nginx.pid" ] && echo "HTTP API: https://127.0.0.1:$HTTPS_PORT/api/v1/auth/ (CA: $HTTP_DIR/tls/cert.pem); stop: test/http/stack.sh stop $HTTP_DIR"
	echo "stop it with: pg_ctl -D $DIR/data stop (as $HK_RUN_AS)"
fi
