#!/usr/bin/env bash
# Benchmark of the rate limiter (issues 3 and 15).
# Not a test: prints figures and ratios measured in the same run, by the
# rules of test/bench/lib.sh (medians of alternating rounds with min and max,
# every counted call checked):
#   - validate_key with both limits active on a random key of 1,000
#     (pgbench -M prepared -c 2 -j 2), against a fair baseline that picks its
#     key the same way and does nothing else: SELECT (ARRAY[...])[:r] IS NOT
#     NULL, the same 1,000-element array literal and random index; and
#     against the do-nothing C function with validate_key's signature given
#     the same key;
#   - against the seed's design, a Redis sorted-set sliding log
#     (../shared/peers/redis_sliding_log.lua), with redis-benchmark, same
#     clients, in the same rounds;
#   - bytes of shared memory per active key, next to Redis MEMORY USAGE at
#     100 and 1000 requests per hour per key
#
#   bash test/bench/ratelimit_bench.sh [seconds per run, default 10]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
hk_bench_setup
SECS=${1:-10}
NKEYS=1000
PEER=$HK_TOP/../shared/peers/redis_sliding_log.lua
DIR=$(mktemp -d /tmp/hokusai-rlbench.XXXXXX)
REDIS_PORT=${HK_REDIS_PORT:-56379}
hk_bench_cluster_start "$DIR" "${HK_BENCH_PORT:-55452}"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
	--daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
cleanup() { redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; hk_cluster_stop "$DIR"; }
trap cleanup EXIT
PGBIN=$(pg_config --bindir)

q -c "CREATE EXTENSION hokusai_auth CASCADE"
hk_bench_noop_sql | q >/dev/null
# $NKEYS keys with both limits set high enough never to refuse during the run.
q <<SQL >/dev/null
SET hokusai_auth.bcrypt_cost = 4;
CREATE TABLE bench_keys AS
SELECT i, k.key FROM generate_series(1, $NKEYS) i,
	LATERAL hokusai_auth.create_key(
		(SELECT hokusai_auth.create_user('bench')), 'k' || i,
		rate_limit_per_hour => 1000000000, burst_limit => 60000) k;
SQL
[ "$(q -c "SELECT count(*) FROM bench_keys, LATERAL hokusai_auth.validate_key(key) v WHERE v.valid")" = "$NKEYS" ] ||
	{ echo "the benchmark keys do not validate" >&2; exit 1; }
scripts=$(mktemp -d); chmod 755 "$scripts"
# A random key per transaction from a constant array (prepared once); the
# same selection in all three scripts.
arr="ARRAY[$(q -c "SELECT string_agg(quote_literal(key), ',' ORDER BY i) FROM bench_keys")]"
printf '\\set r random(1, %d)\nSELECT (%s)[:r] IS NOT NULL;\n' "$NKEYS" "$arr" > "$scripts/pick.sql"
printf '\\set r random(1, %d)\nSELECT valid FROM hk_bench.noop_validate((%s)[:r]);\n' "$NKEYS" "$arr" > "$scripts/noop.sql"
printf '\\set r random(1, %d)\nSELECT valid FROM hokusai_auth.validate_key((%s)[:r]);\n' "$NKEYS" "$arr" > "$scripts/limited.sql"
chmod 644 "$scripts"/*.sql

sha=$(redis-cli -p "$REDIS_PORT" SCRIPT LOAD "$(cat "$PEER")")
# redis: requests per second of the sliding log, n requests.
redis_rps()
{
	redis-benchmark -p "$REDIS_PORT" -c 2 -n "$1" -r 10000 -q \
		EVALSHA "$sha" 1 rl:__rand_int__ 1000000000 2>&1 | tr '\r' '\n' |
		grep -E 'requests per second' | tail -1 | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p'
}

echo "pgbench -n -M prepared -c 2 -j 2 -T $SECS; redis-benchmark -c 2; $HK_BENCH_ROUNDS alternating rounds; $(nproc) CPUs; load average before: $(bench_load)"
declare -A tps cpu
r_pick=() r_noop=() r_redis=() c_pick=() c_noop=()
n_redis=100000
for ((round = 1; round <= HK_BENCH_ROUNDS; round++)); do
	declare -A this=() thisc=()
	for w in $(bench_order "$round" pick noop limited redis); do
		c=0
		case $w in
		redis) t=$(redis_rps "$n_redis") ;;
		limited) read -r t _ _ c < <(bench_pgbench hit -f "$scripts/$w.sql") ;;
		*) read -r t _ _ c < <(bench_pgbench none -f "$scripts/$w.sql") ;;
		esac
		[ -n "$t" ] || exit 1
		tps[$w]+=" $t"; cpu[$w]+=" $c"; this[$w]=$t; thisc[$w]=$c
	done
	# About as many Redis requests as validate_key calls in a run.
	n_redis=$(awk "BEGIN { n = int(${this[limited]} * $SECS); print n < 100000 ? 100000 : n }")
	r_pick+=("$(echo "${this[limited]} / ${this[pick]}" | bc -l)")
	r_noop+=("$(echo "${this[limited]} / ${this[noop]}" | bc -l)")
	r_redis+=("$(echo "${this[limited]} / ${this[redis]}" | bc -l)")
	c_pick+=("$(echo "${thisc[pick]} / ${thisc[limited]}" | bc -l)")
	c_noop+=("$(echo "${thisc[noop]} / ${thisc[limited]}" | bc -l)")
	echo "round $round: $(for w in pick noop limited redis; do printf '%s %.0f  ' "$w" "${this[$w]}"; done)load $(bench_load)"
done
echo
# shellcheck disable=SC2086
{
printf '%-58s %-24s %s\n' workload "per second, median [min-max]" "CPU us per transaction"
printf '%-58s %-24s %s\n' "key pick alone: SELECT (ARRAY[$NKEYS keys])[:r] IS NOT NULL" "$(bench_fmt %.0f ${tps[pick]})" "$(bench_fmt %.1f ${cpu[pick]})"
printf '%-58s %-24s %s\n' "do-nothing C function on the same pick" "$(bench_fmt %.0f ${tps[noop]})" "$(bench_fmt %.1f ${cpu[noop]})"
printf '%-58s %-24s %s\n' "validate_key, hourly + burst limits, $NKEYS keys" "$(bench_fmt %.0f ${tps[limited]})" "$(bench_fmt %.1f ${cpu[limited]})"
printf '%-58s %s\n' "Redis sorted-set sliding log (EVALSHA)" "$(bench_fmt %.0f ${tps[redis]})"
}
echo "ratios, median [min-max] of the per-round ratios:"
printf '  %-52s %s   (target >= 0.8)\n' "validate_key / key pick alone (fair SELECT 1)" "$(bench_fmt %.3f "${r_pick[@]}")"
printf '  %-52s %s\n' "validate_key / do-nothing function" "$(bench_fmt %.3f "${r_noop[@]}")"
printf '  %-52s %s\n' "validate_key decisions / Redis decisions" "$(bench_fmt %.3f "${r_redis[@]}")"
echo "the same from CPU time per transaction (server + pgbench), baseline CPU / measured CPU:"
printf '  %-52s %s\n' "validate_key vs key pick alone" "$(bench_fmt %.3f "${c_pick[@]}")"
printf '  %-52s %s\n' "validate_key vs do-nothing function" "$(bench_fmt %.3f "${c_noop[@]}")"
echo "load average after: $(bench_load)"

# Memory per active key.
entry=$(q -c "SELECT entry_bytes FROM hokusai_auth.rate_limit_stats()")
entries=$(q -c "SELECT entries FROM hokusai_auth.rate_limit_stats()")
shm_before=$(du -b --apparent-size -c /dev/shm/PostgreSQL.* 2>/dev/null | tail -1 | cut -f1)
q <<SQL >/dev/null
SET hokusai_auth.bcrypt_cost = 4;
CREATE TABLE more_keys AS
SELECT k.key FROM generate_series(1, 20000) i,
	LATERAL hokusai_auth.create_key((SELECT id FROM hokusai_auth.users LIMIT 1), 'm' || i) k;
SQL
q -c "SELECT count(*) FROM more_keys, LATERAL hokusai_auth.validate_key(key) v WHERE v.valid" >/dev/null
shm_after=$(du -b --apparent-size -c /dev/shm/PostgreSQL.* 2>/dev/null | tail -1 | cut -f1)
entries2=$(q -c "SELECT entries FROM hokusai_auth.rate_limit_stats()")
echo "limiter entry: $entry bytes of state per key (constant, whatever the request rate)"
echo "dynamic shared memory: $(( (shm_after - shm_before) / (entries2 - entries) )) bytes per key, measured over $((entries2 - entries)) more keys (DSA segments grow in steps, so this is coarse)"
for rate in 100 1000; do
	redis-cli -p "$REDIS_PORT" DEL "mem:$rate" >/dev/null
	for _ in $(seq 1 "$rate"); do echo "EVALSHA $sha 1 mem:$rate 1000000"; done |
		redis-cli -p "$REDIS_PORT" >/dev/null
	echo "Redis sorted-set log at $rate requests/hour: $(redis-cli -p "$REDIS_PORT" MEMORY USAGE "mem:$rate") bytes per key"
done
