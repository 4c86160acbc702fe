#!/usr/bin/env bash
# The hokusai_auth walkthrough: installs what is missing, builds and installs
# the extension, starts a throwaway PostgreSQL with it preloaded, and shows a
# key's life: issue -> validate -> reject bad keys -> revoke, by SQL and with
# the hokusai CLI.
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

\echo '-- rotate with a one-hour grace period: both keys work meanwhile'
SELECT id AS new_id, key AS new_key FROM hokusai_auth.rotate_key(:'id', grace => '1 hour') \gset
SELECT (SELECT status FROM hokusai_auth.validate_key(:'key', '127.0.0.1')) AS old_key,
       (SELECT status FROM hokusai_auth.validate_key(:'new_key', '127.0.0.1')) AS new_key;

\echo '-- revoke the new key: it stops at once'
SELECT hokusai_auth.revoke_key(:'new_id', 'demo over') AS revoked;
SELECT status FROM hokusai_auth.validate_key(:'new_key', '127.0.0.1');

\echo '-- every operation is in the hash-chained audit log:'
SELECT id, action, actor_role, details->>'key_prefix' AS key_prefix FROM hokusai_auth.audit_log ORDER BY id;
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

say "Not in this demo yet: rate limiting (429s) and the HTTP API; see README.md"
if [ "$KEEP" -eq 1 ]; then
	say "cluster left running: PGHOST=$PGHOST PGPORT=$PGPORT psql -U postgres"
	echo "stop it with: pg_ctl -D $DIR/data stop (as $HK_RUN_AS)"
fi
