#!/usr/bin/env bash
# Benchmark of usage recording (issue 5).  Not part of the test suite: it
# prints figures, with baselines measured in the same run.
#
#   bash test/bench/usage_bench.sh [seconds per pgbench run, default 60] [usage rows, default 10000000]
#
# 1. validate_key at full speed (pgbench -M prepared -c 2 -j 2) without an
#    endpoint (no usage event; last_used_at touch only), then with one (one
#    usage event per call), then without again: the TPS cost of recording,
#    events dropped with the default queue size, and flush lag (age of the
#    oldest event of a batch when the batch commits; target <= 2 x
#    hokusai_auth.flush_interval).
# 2. usage_summary() over a table of many usage rows (one key, 30 days),
#    after rollup_usage() as the pg_cron job would run it, against the same
#    summary computed from raw rows only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/setup.sh"
source "$HK_TOP/test/lib/cluster.sh"
hk_setup
SECS=${1:-60}
ROWS=${2:-10000000}
DIR=$(mktemp -d /tmp/hokusai-usage-bench.XXXXXX)
hk_cluster_start "$DIR" "${HK_USAGE_BENCH_PORT:-55462}"
trap 'hk_cluster_stop "$DIR"' EXIT
cat >> "$DIR/data/postgresql.conf" <<CONF
shared_buffers = 512MB
max_wal_size = 4GB
CONF
hk_as_user "$HK_PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w restart >/dev/null
PGBIN=$(pg_config --bindir)
q() { hk_as_user psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

q -c "CREATE EXTENSION hokusai_auth CASCADE"
read -r KID KEY < <(q -F ' ' -c "SELECT id, key FROM hokusai_auth.create_key(
	hokusai_auth.create_user('bench'), 'bench',
	rate_limit_per_hour => 1000000000, burst_limit => 1000000)")
FLUSH_MS=$(q -c "SELECT setting FROM pg_settings WHERE name = 'hokusai_auth.flush_interval'")
QSIZE=$(q -c "SHOW hokusai_auth.usage_queue_size")

scripts=$(mktemp -d); chmod 755 "$scripts"
echo "SELECT * FROM hokusai_auth.validate_key('$KEY');" > "$scripts/plain.sql"
echo "SELECT * FROM hokusai_auth.validate_key('$KEY', endpoint => '/api/v1/things');" > "$scripts/usage.sql"
chmod 644 "$scripts"/*.sql

run()
{
	hk_as_user "$PGBIN/pgbench" -n -M prepared -c 2 -j 2 -T "$SECS" -f "$scripts/$1.sql" 2>&1 |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1
}

echo "== 1. validate_key with and without usage recording"
echo "pgbench -M prepared -c 2 -j 2 -T $SECS; flush_interval = ${FLUSH_MS} ms, usage_queue_size = $QSIZE"
q -c "SELECT status FROM hokusai_auth.validate_key('$KEY')" >/dev/null
# Alternate the two workloads (plain, usage, plain, usage): this machine is
# shared and noisy, and the worker's CPU is part of the cost measured.
q -c "SELECT hokusai_auth.usage_queue_stats_reset()" >/dev/null
rows0=$(q -c "SELECT count(*) FROM hokusai_auth.api_key_usage")
t_plain1=$(run plain)
t_usage1=$(run usage)
t_plain2=$(run plain)
t_usage2=$(run usage)
# Let the worker catch up: at most two intervals.
sleep $(( (2 * FLUSH_MS + 999) / 1000 ))
q -F ' ' -c "SELECT enqueued, dropped, queued, flushed, flushes, max_flush_lag_ms,
	round((max_flush_lag_ms / $FLUSH_MS)::numeric, 2)
	FROM hokusai_auth.usage_queue_stats" > "$scripts/stats"
read -r enq dropped queued flushed flushes maxlag lagratio < "$scripts/stats"
rows1=$(q -c "SELECT count(*) FROM hokusai_auth.api_key_usage")
t_base=$(echo "($t_plain1 + $t_plain2) / 2" | bc -l)
t_usage=$(echo "($t_usage1 + $t_usage2) / 2" | bc -l)
printf '%-44s %12.0f\n' "TPS, no endpoint (run 1)" "$t_plain1"
printf '%-44s %12.0f\n' "TPS, with endpoint (run 2)" "$t_usage1"
printf '%-44s %12.0f\n' "TPS, no endpoint (run 3)" "$t_plain2"
printf '%-44s %12.0f\n' "TPS, with endpoint (run 4)" "$t_usage2"
printf '%-44s %11.1f%%  (target <= 10%%)\n' "TPS cost of recording (mean 2,4 vs mean 1,3)" \
	"$(echo "100 * (1 - $t_usage / $t_base)" | bc -l)"
printf '%-44s %12s\n' "events queued" "$enq"
printf '%-44s %12s  (target 0)\n' "events dropped" "$dropped"
printf '%-44s %12s\n' "rows written (after the run)" "$((rows1 - rows0))"
printf '%-44s %12s\n' "still queued" "$queued"
printf '%-44s %12s\n' "batches" "$flushes"
printf '%-44s %12s  (%s x flush_interval; target <= 2)\n' "max flush lag, ms" "$maxlag" "$lagratio"

echo
echo "== 2. usage_summary over $ROWS usage rows (one key, 30 days)"
START=$(date +%s)
q <<SQL
TRUNCATE hokusai_auth.api_key_usage, hokusai_auth.api_key_usage_hourly, hokusai_auth.api_key_latency_hourly;
UPDATE hokusai_auth.usage_rollup_state SET rolled_until = '-infinity';
INSERT INTO hokusai_auth.api_key_usage (api_key_id, endpoint, "timestamp", response_time_ms, status_code)
SELECT '$KID', '/api/v1/e' || (i % 20),
	   now() - interval '30 days' * (1 - i::float8 / $ROWS),
	   (i::bigint * 7919) % 400 + (i % 1000 = 0)::int * 5000,
	   CASE WHEN i % 97 = 0 THEN 500 WHEN i % 13 = 0 THEN 404 ELSE 200 END
  FROM generate_series(1, $ROWS) i;
VACUUM ANALYZE hokusai_auth.api_key_usage;
SQL
echo "loaded in $(( $(date +%s) - START )) s"

time_sql()
{
	# best of 5, in ms
	q -c "DO \$\$
DECLARE t0 timestamptz; best float8 := 1e9; r record;
BEGIN
	FOR i IN 1..5 LOOP
		t0 := clock_timestamp();
		$1
		best := least(best, 1000 * extract(epoch FROM clock_timestamp() - t0));
	END LOOP;
	RAISE NOTICE '%', round(best::numeric, 1);
END \$\$" 2>&1 | sed -n 's/.*NOTICE: *//p'
}

raw_30d=$(time_sql "SELECT * INTO r FROM hokusai_auth.usage_summary('$KID', now() - interval '30 days', now());")
START=$(date +%s.%N)
hours=$(q -c "SELECT hokusai_auth.rollup_usage()")
roll_s=$(echo "$(date +%s.%N) - $START" | bc -l)
rollup_rows=$(q -c "SELECT count(*) FROM hokusai_auth.api_key_usage_hourly")
q -c "ANALYZE hokusai_auth.api_key_usage_hourly; ANALYZE hokusai_auth.api_key_latency_hourly"
s_30d=$(time_sql "SELECT * INTO r FROM hokusai_auth.usage_summary('$KID', now() - interval '30 days', now());")
s_all=$(time_sql "SELECT * INTO r FROM hokusai_auth.usage_summary('$KID');")
s_1d=$(time_sql "SELECT * INTO r FROM hokusai_auth.usage_summary('$KID', now() - interval '1 day', now());")
s_1h=$(time_sql "SELECT * INTO r FROM hokusai_auth.usage_summary('$KID', now() - interval '1 hour', now());")
s_ts=$(time_sql "PERFORM * FROM hokusai_auth.usage_timeseries('$KID', 'day', now() - interval '30 days', now());")
printf '%-52s %10s\n' "rollup_usage(): hours rolled up / rollup rows" "$hours / $rollup_rows"
printf '%-52s %10.1f\n' "rollup_usage() time, s" "$roll_s"
printf '%-52s %10s ms\n' "usage_summary, 30 days, raw rows only (no rollup)" "$raw_30d"
printf '%-52s %10s ms  (target < 50)\n' "usage_summary, 30 days, with rollups" "$s_30d"
printf '%-52s %10s ms\n' "usage_summary, all time (since NULL)" "$s_all"
printf '%-52s %10s ms\n' "usage_summary, last day" "$s_1d"
printf '%-52s %10s ms\n' "usage_summary, last hour (raw only)" "$s_1h"
printf '%-52s %10s ms\n' "usage_timeseries, per day, 30 days" "$s_ts"
