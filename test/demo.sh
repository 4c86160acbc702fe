#!/usr/bin/env bash
# The hokusai_auth walkthrough: installs what is missing, builds and installs
# the extension, starts a throwaway PostgreSQL with it preloaded, and shows a
# key's life: issue -> validate -> reject bad keys -> revoke, by SQL, with
# the hokusai CLI, over HTTPS through nginx and PostgREST, and in the
# console (/console/) driven by a headless Chromium.
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
HTTP_DIR="$DIR/http"
HTTP_STARTED=0
STEP="starting PostgreSQL on port $PORT"

# Bold headings only on a terminal.
if [ -t 1 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi
say() { STEP=$*; printf '\n%s== %s%s\n' "$BOLD" "$*" "$PLAIN"; }
sql() { hk_as_user psql -X -q -v ON_ERROR_STOP=1 "$@"; }
# fail MESSAGE: stop the demo here (the EXIT trap says where and cleans up).
fail() { echo "demo: $*" >&2; exit 1; }

KEY_RE='^hk_(live|test)_[0-9A-Za-z]{46}$'
UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'

# Every step must succeed: at the first failure (a command's exit status,
# or an explicit check) the demo stops, says which step failed, and removes
# what it started (unless --keep).
on_exit()
{
	local rc=$?
	trap - EXIT
	if [ "$rc" -ne 0 ]; then
		echo >&2
		echo "demo FAILED (exit status $rc) at step: $STEP" >&2
	fi
	if [ "$KEEP" -eq 0 ]; then
		[ "$HTTP_STARTED" -eq 1 ] && stack stop "$HTTP_DIR"
		hk_cluster_stop "$DIR"
	elif [ "$rc" -ne 0 ]; then
		echo "(--keep: left running in $DIR)" >&2
	fi
	exit "$rc"
}
trap on_exit EXIT
hk_cluster_start "$DIR" "$PORT"

say "PostgreSQL on port $PORT with hokusai_auth preloaded; creating the extension"
sql -c "CREATE EXTENSION hokusai_auth CASCADE"

say "SQL: create a user and issue a key (the plaintext key is shown once)"
# pg_temp.expect(CHECK, WHAT), in the WHERE clause of a query the demo shows,
# stops the demo (ON_ERROR_STOP) when CHECK is not true.
sql <<'SQL'
\pset footer off
CREATE FUNCTION pg_temp.expect(ok boolean, what text) RETURNS boolean LANGUAGE plpgsql AS
$$BEGIN IF ok IS NOT TRUE THEN RAISE EXCEPTION 'demo check failed: %', what; END IF; RETURN true; END$$;
SELECT hokusai_auth.create_user('alice', 'alice@example.com') AS user_id \gset
SELECT id, key, key_prefix FROM hokusai_auth.create_key(:'user_id', 'demo key',
	rate_limit_per_hour => 1000, allowed_ips => '{127.0.0.0/8,::1/128}') \gset
SELECT pg_temp.expect(:'key' ~ '^hk_live_[0-9A-Za-z]{46}$', 'create_key returns a key of the documented shape') AS checked \gset
\echo key id: :id
\echo key:    :key
\echo '-- only a bcrypt hash is stored, and plain SQL can verify it:'
SELECT key_prefix, left(key_hash, 7) || '...' AS key_hash,
       crypt(:'key', key_hash) = key_hash AS crypt_verifies
  FROM hokusai_auth.api_keys WHERE id = :'id'
   AND pg_temp.expect(crypt(:'key', key_hash) = key_hash, 'the stored hash verifies the key');

\echo '-- validate it from an allowed address, then from another one:'
SELECT valid, status, rate_limit FROM hokusai_auth.validate_key(:'key', '127.0.0.1', '/v1/demo')
 WHERE pg_temp.expect(valid AND status = 'ok', 'the key validates from 127.0.0.1');
SELECT valid, status FROM hokusai_auth.validate_key(:'key', '203.0.113.9')
 WHERE pg_temp.expect(NOT valid, 'the key is refused from 203.0.113.9');
\echo '-- a malformed key, and a well-formed key nobody issued, are refused:'
SELECT status FROM hokusai_auth.validate_key('hk_live_not-a-key')
 WHERE pg_temp.expect(NOT valid, 'a malformed key is refused');
SELECT status FROM hokusai_auth.validate_key((hokusai_auth._new_key('live')).key)
 WHERE pg_temp.expect(NOT valid, 'a key nobody issued is refused');

\echo '-- rate limits: a key allowed 3 requests an hour; the 4th is refused, with'
\echo '-- the figures an API returns as X-RateLimit-* and Retry-After headers'
SELECT id AS rl_id, key AS rl_key FROM hokusai_auth.create_key(:'user_id', 'three an hour',
	rate_limit_per_hour => 3) \gset
SELECT i AS request, status, remaining, reset_seconds, retry_after
  FROM generate_series(1, 4) i, LATERAL hokusai_auth.validate_key(left(:'rl_key' || i, 54)) v
 WHERE pg_temp.expect(status = CASE WHEN i < 4 THEN 'ok' ELSE 'rate_limited' END,
                      format('request %s of the three-an-hour key is %s', i, CASE WHEN i < 4 THEN 'ok' ELSE 'rate_limited' END));

\echo '-- rotate with a one-hour grace period: both keys work meanwhile'
SELECT id AS new_id, key AS new_key FROM hokusai_auth.rotate_key(:'id', grace => '1 hour') \gset
SELECT pg_temp.expect(:'new_key' ~ '^hk_live_[0-9A-Za-z]{46}$', 'rotate_key returns a key of the documented shape') AS checked \gset
WITH s AS MATERIALIZED (
	SELECT (SELECT status FROM hokusai_auth.validate_key(:'key', '127.0.0.1')) AS old_key,
	       (SELECT status FROM hokusai_auth.validate_key(:'new_key', '127.0.0.1')) AS new_key)
SELECT * FROM s WHERE pg_temp.expect(old_key = 'ok' AND new_key = 'ok', 'both keys work during the grace period');

\echo '-- revoke the new key: it stops at once'
WITH r AS MATERIALIZED (SELECT hokusai_auth.revoke_key(:'new_id', 'demo over') AS revoked)
SELECT revoked FROM r WHERE pg_temp.expect(revoked, 'revoke_key revokes the key');
SELECT status FROM hokusai_auth.validate_key(:'new_key', '127.0.0.1')
 WHERE pg_temp.expect(status = 'revoked', 'the revoked key is refused as revoked');

\echo '-- every operation is in the audit log; committed rows are sealed into its hash chain'
\echo '-- (by the worker every flush_interval, or at once by seal_audit_log()):'
SELECT hokusai_auth.seal_audit_log() AS sealed_now;
SELECT seq, action, actor_role, details->>'key_prefix' AS key_prefix FROM hokusai_auth.audit_log ORDER BY seq;
SELECT hokusai_auth.verify_audit_chain() IS NULL AS audit_chain_intact
 WHERE pg_temp.expect(hokusai_auth.verify_audit_chain() IS NULL, 'the audit chain verifies');
SQL

HOKUSAI=$(pg_config --bindir)/hokusai
if [ -x "$HOKUSAI" ]; then
	say "CLI: the same life cycle with the hokusai command"
	hk_as_user env PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER=postgres PGDATABASE=postgres \
		KEY_RE="$KEY_RE" bash -c '
		set -euo pipefail
		h=$1
		fail() { echo "demo: $*" >&2; exit 1; }
		status() { psql -X -A -t -v ON_ERROR_STOP=1 -c "SELECT status FROM hokusai_auth.validate_key('"'"'$1'"'"')"; }
		echo "\$ hokusai auth create-user bob"; $h auth create-user bob
		echo "\$ hokusai auth create-key --user bob --name cli-demo --env test"
		key=$($h auth create-key --user bob --name cli-demo --env test)
		echo "$key"
		[[ $key =~ $KEY_RE ]] || fail "hokusai auth create-key printed no key of the documented shape"
		echo "\$ hokusai auth list-keys --user bob"; $h auth list-keys --user bob
		echo "-- validate the key the CLI printed, by SQL:"
		s=$(status "$key"); echo "$s"
		[ "$s" = ok ] || fail "the key the CLI created does not validate (status $s)"
		prefix=${key:0:16}
		echo "\$ hokusai auth revoke-key $prefix --yes"; $h auth revoke-key "$prefix" --yes --reason "cli demo"
		s=$(status "$key"); echo "$s"
		[ "$s" = revoked ] || fail "the key the CLI revoked is not refused as revoked (status $s)"
		' _ "$HOKUSAI"
fi

# stack ARGS...: test/http/stack.sh as the unprivileged user (ports set below).
stack() { hk_as_user env HK_TOP="$HK_TOP" HK_POSTGREST="${HK_POSTGREST:-}" \
	HK_DB_URI="host=$PGHOST port=$PGPORT dbname=postgres user=hokusai_authenticator" \
	HK_HTTPS_PORT=$HTTPS_PORT HK_HTTP_PORT=$HTTP_PORT HK_PGRST_PORT=$PGRST_PORT \
	HK_PGRST_ADMIN_PORT=$ADMIN_PORT bash "$HK_TOP/test/http/stack.sh" "$@"; }

if command -v nginx >/dev/null 2>&1 && bash "$HK_TOP/test/http/stack.sh" postgrest >/dev/null 2>&1; then
	say "HTTP: nginx (TLS) -> PostgREST -> hokusai_auth, on 127.0.0.1 (docs/http.md)"
	sql -c "SELECT hokusai_auth.setup_http_roles()" >/dev/null
	read -r HTTPS_PORT HTTP_PORT PGRST_PORT ADMIN_PORT <<<"$(bash "$HK_TOP/test/http/stack.sh" free-ports 4 | tr '\n' ' ')"
	mkdir -p "$HTTP_DIR"
	[ "$(id -u)" -eq 0 ] && chown "$HK_RUN_AS" "$HTTP_DIR"
	stack prepare "$HTTP_DIR"
	HTTP_STARTED=1
	# Returns once PostgREST is ready and nginx answers; fails with the cause.
	stack start "$HTTP_DIR"
	API=https://127.0.0.1:$HTTPS_PORT/api/v1/auth
	show() { echo "\$ curl $*" | sed -E 's/hk_(live|test)_([0-9A-Za-z]{8})[0-9A-Za-z]{38}/hk_\1_\2.../g; s/Bearer [A-Za-z0-9_.-]{40,}/Bearer <jwt>/'; }
	# hcurl EXPECTED_STATUS CURL_ARGS...: the body in $HTTP_DIR/body, the
	# headers in $HTTP_DIR/headers; stops the demo on another status.
	hcurl()
	{
		local want=$1 code
		shift
		code=$(curl -s --show-error --max-time 20 --cacert "$HTTP_DIR/tls/cert.pem" \
			-D "$HTTP_DIR/headers" -o "$HTTP_DIR/body" -w '%{http_code}' "$@") ||
			fail "curl failed (exit status $?)"
		if [ "$code" != "$want" ]; then
			echo "HTTP $code: $(head -c 500 "$HTTP_DIR/body")" >&2
			fail "expected HTTP $want, got $code"
		fi
	}
	carol=$(sql -A -t -c "SELECT hokusai_auth.create_user('carol')")
	[[ $carol =~ $UUID_RE ]] || fail "create_user returned '$carol', not a user id"
	jwt=$(stack jwt "$HTTP_DIR" "$carol")
	[ -n "$jwt" ] || fail "stack.sh jwt printed nothing"

	show "-X POST $API/keys -H 'Authorization: Bearer <carol JWT>' -d '{\"name\": \"http demo\", \"rate_limit_per_hour\": 3}'"
	hcurl 201 -X POST "$API/keys" -H "Authorization: Bearer $jwt" -H 'Content-Type: application/json' \
		-d '{"name": "http demo", "rate_limit_per_hour": 3}'
	created=$(cat "$HTTP_DIR/body")
	echo "$created"
	hkey=$(echo "$created" | sed -nE 's/.*"key": *"([^"]+)".*/\1/p')
	hid=$(echo "$created" | sed -nE 's/.*"id": *"([^"]+)".*/\1/p')
	[[ $hkey =~ $KEY_RE ]] || fail "POST /keys answered no key of the documented shape"
	[[ $hid =~ $UUID_RE ]] || fail "POST /keys answered no key id"
	echo "-- the plaintext key above is shown once; from now on it authenticates requests:"
	for i in 1 2 3 4; do
		show "$API/keys?select=name,status -H 'Authorization: Bearer $hkey'   (request $i)"
		if [ "$i" -le 3 ]; then want=200; else want=429; fi
		hcurl "$want" "$API/keys?select=name,status" -H "Authorization: Bearer $hkey"
		grep -iE '^(HTTP|x-ratelimit|retry-after)' "$HTTP_DIR/headers" | tr -d '\r'
		cat "$HTTP_DIR/body"; echo
	done
	show "-X DELETE $API/keys/$hid -H 'Authorization: Bearer <carol JWT>'"
	hcurl 200 -X DELETE "$API/keys/$hid" -H "Authorization: Bearer $jwt"
	echo "$(head -c 160 "$HTTP_DIR/body")...  -> HTTP 200"
	show "$API/keys -H 'X-API-Key: $hkey'   (after revocation)"
	hcurl 401 "$API/keys" -H "X-API-Key: $hkey"
	echo "$(cat "$HTTP_DIR/body")  -> HTTP 401"
	show "http://127.0.0.1:$HTTP_PORT/api/v1/auth/keys   (plain HTTP)"
	loc=$(curl -s --max-time 20 -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$HTTP_PORT/api/v1/auth/keys") ||
		fail "curl failed on plain HTTP"
	[ "${loc%% *}" = 301 ] && [[ ${loc#* } == https://* ]] || fail "plain HTTP answered '$loc', not a 301 to https://"
	echo "  -> HTTP 301, Location: ${loc#* }"

	say "The console: a key's life in a browser (headless Chromium, docs/console.md)"
	CONSOLE=https://127.0.0.1:$HTTPS_PORT/console/
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 --cacert "$HTTP_DIR/tls/cert.pem" "$CONSOLE") ||
		fail "curl failed on $CONSOLE"
	[ "$code" = 200 ] || fail "$CONSOLE answered HTTP $code"
	echo "console: $CONSOLE  (HTTP 200, served by the same nginx)"
	# carol signs in with her JWT, lists her keys, creates one (the key is
	# shown once, then gone from the page), then signs in with an API key.
	ckey=$(sql -A -t -c "SELECT key FROM hokusai_auth.create_key('$carol', 'console sign-in')")
	[[ $ckey =~ $KEY_RE ]] || fail "create_key returned no key for the console"
	mkdir -p "$HTTP_DIR/console-screens"
	[ "$(id -u)" -eq 0 ] && chown "$HK_RUN_AS" "$HTTP_DIR/console-screens"
	input=$(printf '{"url":"%s","cacert":"%s","shots":"%s","jwt":"%s","key":"%s"}' \
		"$CONSOLE" "$HTTP_DIR/tls/cert.pem" "$HTTP_DIR/console-screens" "$jwt" "$ckey")
	echo "-- Chromium: sign in with carol's JWT, list, create a key, sign in with an API key"
	seen=$(hk_as_user env HK_NODE_MODULES="$HK_TOP/node_modules" \
		node "$HK_TOP/test/http/console_check.mjs" demo <<<"$input" 2>"$HTTP_DIR/console-check.log") ||
		{ tail -n 20 "$HTTP_DIR/console-check.log" >&2; fail "the headless browser run failed (node test/http/console_check.mjs demo)"; }
	# What the browser saw (the key it was shown stays in this shell).
	report=$(node -e '
		const r = JSON.parse(require("fs").readFileSync(0, "utf8"));
		const lines = [];
		let bad = 0;
		for (const s of r.steps) {
			if (!s.ok) { bad++; lines.push(`FAILED  ${s.name}: ${s.error}`); continue; }
			if (s.name === "load") lines.push(`ok  page loaded (HTTP ${s.status}), Content-Security-Policy: ${s.csp}`);
			if (s.name.startsWith("sign in with a JWT")) {
				lines.push(`ok  signed in with the JWT: "${s.whoami}"; the keys table:`);
				for (const k of s.rows) lines.push(`      ${k.prefix}  ${k.status}`);
			}
			if (s.name === "create a key") {
				lines.push(`ok  created ${s.key.slice(0, 16)}...: shown once with "${s.warning.split(".")[0]}", copy button: "${s.copied}"`);
				lines.push(`    after the dialog closed: the key in the page ${s.after_close.in_dom} times`);
				if (s.after_close.in_dom !== 0 || !s.row || s.row.status !== "active") bad++;
			}
			if (s.name === "sign in with an API key") {
				lines.push(`ok  signed in with an API key: "${s.whoami}", ${s.rows.length} keys listed`);
				if (s.view !== "keys") bad++;
			}
		}
		if (r.violations.length) { bad++; lines.push(`FAILED  Content-Security-Policy violations: ${JSON.stringify(r.violations)}`); }
		else lines.push("ok  no Content-Security-Policy violation");
		if (r.page_errors.length) { bad++; lines.push(`FAILED  errors in the page: ${r.page_errors.join("; ")}`); }
		console.log(lines.join("\n"));
		process.exit(bad ? 1 : 0);
	' <<<"$seen") || { echo "$report"; fail "the console did not do what it should"; }
	echo "$report"
	created_key=$(node -e 'const r = JSON.parse(require("fs").readFileSync(0, "utf8")); const s = r.steps.find((x) => x.name === "create a key"); process.stdout.write(s && s.key ? s.key : "")' <<<"$seen")
	[[ $created_key =~ $KEY_RE ]] || fail "the console showed no key of the documented shape"
	s=$(sql -A -t <<<"SELECT status FROM hokusai_auth.validate_key('$created_key')")
	echo "-- the key the console showed, validated by SQL: $s"
	[ "$s" = ok ] || fail "the key created in the console does not validate (status $s)"
	if [ "$KEEP" -eq 1 ]; then
		echo "screenshots of what it saw: $HTTP_DIR/console-screens/"
	fi
else
	say "HTTP section skipped: nginx or PostgREST (npm install --ignore-scripts) not available"
fi

if [ "$KEEP" -eq 1 ]; then
	say "cluster left running: PGHOST=$PGHOST PGPORT=$PGPORT psql -U postgres"
	if [ -s "$HTTP_DIR/nginx.pid" ]; then
		echo "HTTP API: https://127.0.0.1:$HTTPS_PORT/api/v1/auth/ (CA: $HTTP_DIR/tls/cert.pem); stop: test/http/stack.sh stop $HTTP_DIR"
		# A fresh JWT for carol (1 hour), in a file only its owner reads.
		(umask 077; stack jwt "$HTTP_DIR" "$carol" > "$HTTP_DIR/console-jwt")
		echo "console: https://127.0.0.1:$HTTPS_PORT/console/ in a browser on this machine (the certificate is"
		echo "  self-signed: trust $HTTP_DIR/tls/cert.pem or accept the warning); sign in as carol with"
		echo "  the JWT in $HTTP_DIR/console-jwt (valid for an hour; a new one: test/http/stack.sh jwt $HTTP_DIR $carol)"
	fi
	echo "stop it with: pg_ctl -D $DIR/data stop (as $HK_RUN_AS)"
fi
