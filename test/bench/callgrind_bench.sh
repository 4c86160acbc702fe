#!/usr/bin/env bash
# Instructions per call, counted by valgrind (callgrind): what a cache hit
# costs inside the backend, independent of whatever else the machine runs.
# Not part of the test suite.  The pgbench benchmarks measure time, which on
# a shared machine follows the share of the CPUs they get; this counts the
# instructions executed, which does not (it does not see cache misses or
# contention between backends: read it beside the others).
#
#   bash test/bench/callgrind_bench.sh [rows, default 10000]
#
# A single-user backend (postgres --single, the extension preloaded) runs,
# under callgrind, one statement of ROWS and one of 2 x ROWS rows; the
# difference of their instruction totals, divided by ROWS, is the cost of
# one row, start-up and the cache fill cancelling out.  Three statements
# (the in-process loops of cache_bench.sh, one key, its limits high):
#   empty     SELECT count(*) FROM generate_series(1, n) i,
#               LATERAL (SELECT keys[1 + i % 1] AS k) x WHERE x.k IS NOT NULL
#   noop      ... LATERAL hk_bench.noop_validate(keys[1 + i % 1]) v WHERE v.valid
#   validate  ... LATERAL hokusai_auth.validate_key(keys[1 + i % 1]) v WHERE v.valid
#   metered   the validate statement with a key with credits (and a refill)
#             whose user has shared limits (set_user_limits())
# and prints instructions per row, and per call above the do-nothing
# function (validate - noop: what hokusai_auth itself executes for a cache
# hit, limiter included) and above the empty twin, for the key without
# and the key with metering (issue 16: at most 5% more).
#
# Then the statements of cache_bench.sh as pgbench -M prepared runs them,
# one execution of a prepared statement per line (EXECUTE p(key)), ROWS and
# 2 x ROWS of them: what one statement costs inside the backend (executor
# start-up, the function, the row; not the wire protocol or the kernel),
# for SELECT 1, the do-nothing function, a cache hit, the same cache hit
# planned as a Function Scan (hokusai_auth.enable_call_scan off, as before
# the Validation Call scan of docs/cache.md), a cache hit of a key
# with scopes that requires one (required_scopes), a cache hit of a key
# with credits whose user has shared limits (metered: every call spends a
# credit and a unit of the user's limits) and a malformed key.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROWS=${1:-10000}
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 2; }
hk_bench_setup
DIR=$(mktemp -d /tmp/hokusai-cgbench.XXXXXX)
trap 'hk_cluster_stop "$DIR"' EXIT
hk_cluster_start "$DIR" "${HK_BENCH_PORT:-55444}"
q -c "CREATE EXTENSION hokusai_auth CASCADE" >/dev/null
hk_bench_noop_sql | q >/dev/null
q -c "SET hokusai_auth.bcrypt_cost = 4;
	CREATE TABLE cg_keys AS SELECT key FROM hokusai_auth.create_key(hokusai_auth.create_user('cg'), 'cg',
		rate_limit_per_hour => 2000000000, burst_limit => 60000);
	CREATE TABLE cg_scoped_keys AS SELECT key FROM hokusai_auth.create_key(hokusai_auth.create_user('cgs'), 'cgs',
		rate_limit_per_hour => 2000000000, burst_limit => 60000, scopes => '{files:read, models:*}');
	CREATE TABLE cg_metered_keys AS SELECT key FROM hokusai_auth.create_key(hokusai_auth.create_user('cgm'), 'cgm',
		rate_limit_per_hour => 2000000000, burst_limit => 60000, credits => 1000000000000000,
		refill_amount => 1000000000000000, refill_interval => 'month');
	SELECT hokusai_auth.set_user_limits((SELECT id FROM hokusai_auth.users WHERE username = 'cgm'),
		2000000000, 2000000000)" >/dev/null
[ "$(q -c "SELECT status || ' ' || credits_remaining FROM cg_metered_keys, hokusai_auth.validate_key(key)")" = "ok 999999999999999" ] ||
	{ echo "BENCHMARK INVALID: the metered key is not admitted with its credits" >&2; exit 1; }
[ "$(q -c "SELECT status FROM cg_scoped_keys, hokusai_auth.validate_key(key, required_scopes => '{models:predict}')")" = ok ] ||
	{ echo "BENCHMARK INVALID: the scoped key is not admitted" >&2; exit 1; }
hk_as_user "$HK_PGBIN/pg_ctl" -D "$DIR/data" -w stop >/dev/null
# Single-user mode runs no background worker: nothing else to count.
echo "hokusai_auth.database = 'template1'" >> "$DIR/data/postgresql.conf"

# total VARIANT N: callgrind's instruction total for one session.
total()
{
	local body out=$DIR/cg.$1.$2 keys=cg_keys
	case $1 in
	empty) body="SELECT count(*) INTO c FROM generate_series(1, $2) i, LATERAL (SELECT keys[1 + i % 1] AS k) x WHERE x.k IS NOT NULL" ;;
	noop) body="SELECT count(*) INTO c FROM generate_series(1, $2) i, LATERAL hk_bench.noop_validate(keys[1 + i % 1]) v WHERE v.valid" ;;
	validate | metered) body="SELECT count(*) INTO c FROM generate_series(1, $2) i, LATERAL hokusai_auth.validate_key(keys[1 + i % 1]) v WHERE v.valid" ;;
	esac
	if [ "$1" = metered ]; then keys=cg_metered_keys; fi
	# The first validate_key fills the cache (a bcrypt), in every session.
	# One line: in single-user mode a newline ends the statement.
	printf 'DO $$ DECLARE keys text[] := ARRAY(SELECT key FROM %s); c bigint; BEGIN PERFORM * FROM hokusai_auth.validate_key(keys[1]); %s; IF c <> %d THEN RAISE EXCEPTION %s, c; END IF; END $$;\n' \
		"$keys" "$body" "$2" "'BENCHMARK INVALID: % rows'" > "$DIR/s.sql"
	chmod 644 "$DIR/s.sql"
	hk_as_user valgrind --tool=callgrind --callgrind-out-file="$out" \
		"$HK_PGBIN/postgres" --single -D "$DIR/data" postgres < "$DIR/s.sql" > "$DIR/out" 2>&1
	if grep -q 'ERROR' "$DIR/out"; then cat "$DIR/out" >&2; return 1; fi
	callgrind_annotate "$out" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,
}

declare -A per
echo "valgrind --tool=callgrind, postgres --single, $ROWS and $((2 * ROWS)) rows; instructions per row:"
for v in empty noop validate metered; do
	a=$(total $v "$ROWS"); b=$(total $v $((2 * ROWS)))
	[ -n "$a" ] && [ -n "$b" ] || exit 1
	per[$v]=$(( (b - a) / ROWS ))
	printf '  %-10s %8d\n' "$v" "${per[$v]}"
done
printf 'validate_key cache hit, limiter included, above the do-nothing function: %d instructions per call\n' \
	$((per[validate] - per[noop]))
printf 'validate_key call above the empty twin (the in-process figure of cache_bench.sh): %d instructions per call\n' \
	$((per[validate] - per[empty]))
printf 'do-nothing function above the empty twin (its scan and the row): %d instructions per call\n' \
	$((per[noop] - per[empty]))
printf 'metered key (credits and a user limit) above the empty twin: %d instructions per call, %.3f of the unmetered key'"'"'s (docs/metering.md)\n' \
	$((per[metered] - per[empty])) "$(echo "(${per[metered]} - ${per[empty]}) / (${per[validate]} - ${per[empty]})" | bc -l)"

# stmt VARIANT N: instruction total of a session executing a prepared
# statement N times.
stmt()
{
	local prep arg out=$DIR/cgs.$1.$2 key
	key=$(cat "$DIR/key")
	case $1 in
	select1) prep="PREPARE p(text) AS SELECT 1"; arg="'$key'" ;;
	noop) prep="PREPARE p(text) AS SELECT valid FROM hk_bench.noop_validate(\$1)"; arg="'$key'" ;;
	hit) prep="PREPARE p(text) AS SELECT valid FROM hokusai_auth.validate_key(\$1)"; arg="'$key'" ;;
	hitfs)	# the cache hit planned as a Function Scan (docs/cache.md)
		prep="SET hokusai_auth.enable_call_scan = off; PREPARE p(text) AS SELECT valid FROM hokusai_auth.validate_key(\$1)"
		arg="'$key'" ;;
	scoped)	# a key with scopes, one required on every call (docs/authorization.md)
		key=$(cat "$DIR/scoped_key")
		prep="PREPARE p(text) AS SELECT valid FROM hokusai_auth.validate_key(\$1, required_scopes => '{models:predict}')"
		arg="'$key'" ;;
	metered)	# credits (and a refill) and a user limit (docs/metering.md)
		key=$(cat "$DIR/metered_key")
		prep="PREPARE p(text) AS SELECT valid FROM hokusai_auth.validate_key(\$1)"; arg="'$key'" ;;
	malformed)	# the last character changed: a checksum failure
		prep="PREPARE p(text) AS SELECT valid FROM hokusai_auth.validate_key(\$1)"
		if [ "${key: -1}" = A ]; then arg="'${key%?}B'"; else arg="'${key%?}A'"; fi ;;
	esac
	{
		echo "SELECT status FROM hokusai_auth.validate_key('$key');"
		echo "$prep;"
		for ((i = 0; i < $2; i++)); do echo "EXECUTE p($arg);"; done
	} > "$DIR/s.sql"
	chmod 644 "$DIR/s.sql"
	hk_as_user valgrind --tool=callgrind --callgrind-out-file="$out" \
		"$HK_PGBIN/postgres" --single -D "$DIR/data" postgres < "$DIR/s.sql" > "$DIR/out" 2>&1
	if grep -q 'ERROR' "$DIR/out"; then cat "$DIR/out" >&2; return 1; fi
	callgrind_annotate "$out" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,
}
hk_as_user "$HK_PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w start >/dev/null
q -c "SELECT key FROM cg_keys" > "$DIR/key"
q -c "SELECT key FROM cg_scoped_keys" > "$DIR/scoped_key"
q -c "SELECT key FROM cg_metered_keys" > "$DIR/metered_key"
hk_as_user "$HK_PGBIN/pg_ctl" -D "$DIR/data" -w stop >/dev/null
declare -A st
echo
echo "one execution of a prepared statement (postgres --single, EXECUTE p(key) per line), instructions:"
for v in select1 noop hit hitfs scoped metered malformed; do
	a=$(stmt $v "$ROWS"); b=$(stmt $v $((2 * ROWS)))
	[ -n "$a" ] && [ -n "$b" ] || exit 1
	st[$v]=$(( (b - a) / ROWS ))
	printf '  %-10s %8d\n' "$v" "${st[$v]}"
done
printf 'ratios of instructions (baseline / measured): cache hit vs SELECT 1 %.3f, vs do-nothing function %.3f; malformed vs SELECT 1 %.3f\n' \
	"$(echo "${st[select1]} / ${st[hit]}" | bc -l)" "$(echo "${st[noop]} / ${st[hit]}" | bc -l)" \
	"$(echo "${st[select1]} / ${st[malformed]}" | bc -l)"
printf 'cache hit vs the same planned as a Function Scan (hokusai_auth.enable_call_scan off): %.3f of the instructions\n' \
	"$(echo "${st[hit]} / ${st[hitfs]}" | bc -l)"
printf 'cache hit with required_scopes vs without (docs/authorization.md): %.3f of the instructions\n' \
	"$(echo "${st[scoped]} / ${st[hit]}" | bc -l)"
printf 'cache hit of a metered key (credits and a user limit) vs an unmetered one (docs/metering.md): %.3f of the instructions\n' \
	"$(echo "${st[metered]} / ${st[hit]}" | bc -l)"
