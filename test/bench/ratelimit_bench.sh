#!/usr/bin/env bash
# Benchmark of the rate limiter (issue: sliding-window limits in DSM).
# Not a test: prints figures and ratios measured in the same run.
#   - validate_key with both limits active vs SELECT 1 (pgbench -M prepared -c 2 -j 2)
#   - against the seed's design, a Redis sorted-set sliding log
#     (../shared/peers/redis_sliding_log.lua), with redis-benchmark, same clients
#   - bytes of shared memory per active key, next to Redis MEMORY USAGE at
#     100 and 1000 requests per hour per key
#
#   bash test/bench/ratelimit_bench.sh [seconds per run, default 10]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/setup.sh"
source "$HK_TOP/test/lib/cluster.sh"
hk_setup
SECS=${1:-10}
NKEYS=1000
PEER=$HK_TOP/../shared/peers/redis_sliding_log.lua
DIR=$(mktemp -d /tmp/hokusai-rlbench.XXXXXX)
REDIS_PORT=${HK_REDIS_PORT:-56379}
hk_cluster_start "$DIR" "${HK_BENCH_PORT:-55452}"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
	--daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
cleanup() { redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; hk_cluster_stop "$DIR"; }
trap cleanup EXIT
PGBIN=$(pg_config --bindir)
q() { hk_as_user psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

q -c "CREATE EXTENSION hokusai_auth CASCADE"
# $NKEYS keys with both limits set high enough never to refuse during the run.
q <<SQL >/dev/null
SET hokusai_auth.bcrypt_cost = 4;
CREATE TABLE bench_keys AS
SELECT i, k.key FROM generate_series(1, $NKEYS) i,
	LATERAL hokusai_auth.create_key(
		(SELECT hokusai_auth.create_user('bench')), 'k' || i,
		rate_limit_per_hour => 1000000000, burst_limit => 60000) k;
SELECT count(*) FROM bench_keys, LATERAL hokusai_auth.validate_key(key) v WHERE v.valid;
SQL
scripts=$(mktemp -d); chmod 755 "$scripts"
echo "SELECT 1;" > "$scripts/select1.sql"
# A random key per transaction from a constant array (prepared once).
{
	echo "\\set r random(1, $NKEYS)"
	printf "SELECT (v).valid FROM (SELECT hokusai_auth.validate_key((ARRAY[%s])[:r]) v) s;\n" \
		"$(q -c "SELECT string_agg(quote_literal(key), ',' ORDER BY i) FROM bench_keys")"
} > "$scripts/limited.sql"
chmod 644 "$scripts"/*.sql

tps()
{
	(cd "$scripts" && hk_as_user "$PGBIN/pgbench" -n -M prepared -c 2 -j 2 -T "$SECS" -f "$1" 2>&1) |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1
}
echo "pgbench -M prepared -c 2 -j 2 -T $SECS; redis-benchmark -c 2"
t_sel=$(tps select1.sql)
q -c "SELECT 1 FROM hokusai_auth.rate_limit_stats()" >/dev/null
before=$(q -c "SELECT admitted + rejected_hourly + rejected_burst FROM hokusai_auth.rate_limit_stats()")
t_lim=$(tps limited.sql)
after=$(q -c "SELECT admitted + rejected_hourly + rejected_burst FROM hokusai_auth.rate_limit_stats()")

sha=$(redis-cli -p "$REDIS_PORT" SCRIPT LOAD "$(cat "$PEER")")
n_redis=$(awk "BEGIN { printf \"%d\", $t_lim * $SECS }")
[ "$n_redis" -lt 100000 ] && n_redis=100000
r_out=$(redis-benchmark -p "$REDIS_PORT" -c 2 -n "$n_redis" -r 10000 -q \
	EVALSHA "$sha" 1 rl:__rand_int__ 1000000000 2>&1 | tr '\r' '\n' | grep -E 'requests per second' | tail -1)
t_redis=$(echo "$r_out" | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p')

printf '%-44s %12s %10s\n' workload "per second" ratio
printf '%-44s %12.0f %10s\n' "SELECT 1 (floor)" "$t_sel" "1.00x"
printf '%-44s %12.0f %9.2fx\n' "validate_key, hourly + burst limits, $NKEYS keys" "$t_lim" "$(echo "$t_lim / $t_sel" | bc -l)"
printf '%-44s %12.0f %9.2fx\n' "Redis sorted-set sliding log (EVALSHA)" "$t_redis" "$(echo "$t_redis / $t_sel" | bc -l)"
printf 'hokusai_auth decisions vs Redis decisions: %.2fx\n' "$(echo "$t_lim / $t_redis" | bc -l)"
echo "limiter decisions counted during the validate_key run: $((after - before))"

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
