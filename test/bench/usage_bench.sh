#!/usr/bin/env bash
# Benchmark of usage recording (issue 5).  Not part of the test suite: it
# prints figures, with baselines measured in the same run.
#
#   bash test/bench/usage_bench.sh [seconds per pgbench run, default 60]
#        [usage rows, default 10000000; 0: skip part 2] [rounds, default 5]
#
# HK_USAGE_RAW_SAMPLE sets hokusai_auth.usage_raw_sample (default 1: every
# event also a raw row; 0.01, 0: usage_volume_bench.sh alternates them).
#
# 1. validate_key at full speed (pgbench -M prepared -c 2 -j 2, 8 keys picked
#    at random per transaction as in cache_bench.sh) without an endpoint (no
#    usage event; last_used_at touch only), then with one (one usage event
#    per call), in rounds of alternating order (plain, usage, usage, plain,
#    ...), each run checked (test/bench/lib.sh: every call ok, one event
#    queued per call with an endpoint, none dropped): the TPS cost of recording,
#    events dropped with the default queue size, and flush lag (age of the
#    oldest event of a batch when the batch commits; target <= 2 x
#    hokusai_auth.flush_interval).
# 2. usage_summary() over the aggregates of many usage rows (one key, 30
#    days; made from the raw rows as the worker makes them, checked to count
#    what the raw log does), against counting the raw rows themselves.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
hk_bench_setup
SECS=${1:-60}
ROWS=${2:-10000000}
PAIRS=${3:-$HK_BENCH_ROUNDS}
if [ "$PAIRS" -lt 5 ] && [ "${HK_BENCH_QUICK:-0}" != 1 ]; then
	echo "at least 5 rounds (HK_BENCH_QUICK=1 to try fewer)" >&2
	exit 2
fi
DIR=$(mktemp -d /tmp/hokusai-usage-bench.XXXXXX)
hk_bench_cluster_start "$DIR" "${HK_USAGE_BENCH_PORT:-55462}"
trap 'hk_cluster_stop "$DIR"' EXIT
cat >> "$DIR/data/postgresql.conf" <<CONF
shared_buffers = 512MB
max_wal_size = 4GB
hokusai_auth.usage_raw_sample = ${HK_USAGE_RAW_SAMPLE:-1}
CONF
hk_as_user "$HK_PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w restart >/dev/null
PGBIN=$(pg_config --bindir)

q -c "CREATE EXTENSION hokusai_auth CASCADE"
q -c "CREATE TABLE bench_keys AS SELECT i, k.id, k.key FROM generate_series(1, 8) i,
	LATERAL hokusai_auth.create_key(hokusai_auth.create_user('bench' || i), 'bench',
	rate_limit_per_hour => 2000000000, burst_limit => 60000) k"
read -r KID KEY < <(q -F ' ' -c "SELECT id, key FROM bench_keys WHERE i = 1")
FLUSH_MS=$(q -c "SELECT setting FROM pg_settings WHERE name = 'hokusai_auth.flush_interval'")
QSIZE=$(q -c "SHOW hokusai_auth.usage_queue_size")

scripts=$(mktemp -d); chmod 755 "$scripts"
defs=()
files_plain=()
files_usage=()
while read -r i key; do
	defs+=(-D "k$i=$key")
	echo "SELECT valid FROM hokusai_auth.validate_key(:k$i);" > "$scripts/plain.$i.sql"
	echo "SELECT valid FROM hokusai_auth.validate_key(:k$i, endpoint => '/api/v1/things');" > "$scripts/usage.$i.sql"
	files_plain+=(-f "$scripts/plain.$i.sql")
	files_usage+=(-f "$scripts/usage.$i.sql")
done < <(q -F ' ' -c "SELECT i, key FROM bench_keys ORDER BY i")
chmod 644 "$scripts"/*.sql

# CPU time, in clock ticks, used so far by the server: the postmaster, its
# live children (the worker, walwriter, ...) and its children that have
# exited (backends of earlier pgbench runs).
PM_PID=$(head -1 "$DIR/data/postmaster.pid")
server_ticks()
{
	local t c
	t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$PM_PID/stat")
	for c in $(pgrep -P "$PM_PID"); do
		c=$(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null) && t=$((t + c))
	done
	echo "$t"
}

# run NAME: pgbench; prints "tps transactions cpu_seconds" where cpu_seconds
# is what the server and pgbench used.  Other load on the machine does not
# count there, so the ratio of transactions per CPU second is a second,
# steadier measure of the cost than the ratio of TPS.
run()
{
	local s0 s1 out tps txns pg_cpu before after files
	if [ "$1" = plain ]; then files=("${files_plain[@]}"); else files=("${files_usage[@]}"); fi
	before=$(bench_counters)
	s0=$(server_ticks)
	out=$( { TIMEFORMAT='%U %S'; time hk_as_user "$PGBIN/pgbench" -n -M prepared -c 2 -j 2 \
		-T "$SECS" "${defs[@]}" "${files[@]}" 2>&1; } 2>&1 )
	bench_wait_backends
	s1=$(server_ticks)
	after=$(bench_counters)
	tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
	txns=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
	pg_cpu=$(echo "$out" | tail -1 | awk '{print $1 + $2}')
	if [ "$1" = plain ]; then
		bench_check hit "$txns" "$before" "$after" || return 1
	else
		bench_check usage "$txns" "$before" "$after" || return 1
	fi
	echo "$tps $txns $(echo "($s1 - $s0) / $(getconf CLK_TCK) + $pg_cpu" | bc -l)"
}

echo "== 1. validate_key with and without usage recording"
echo "pgbench -M prepared -c 2 -j 2 -T $SECS; flush_interval = ${FLUSH_MS} ms, usage_queue_size = $QSIZE, usage_raw_sample = $(q -c "SHOW hokusai_auth.usage_raw_sample"); $PAIRS rounds; $(nproc) CPUs; load average before: $(bench_load)"
q -c "SELECT count(*) FROM bench_keys, LATERAL hokusai_auth.validate_key(key) v WHERE v.valid" >/dev/null
# Alternate the two workloads in pairs (plain, usage): this machine is
# shared and noisy, and the worker's CPU is part of the cost measured.  Each
# pair gives one cost; the median of the pairs is reported.
q -c "SELECT hokusai_auth.usage_queue_stats_reset()" >/dev/null
WORKER_PID=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'hokusai_auth usage worker'")
worker_ticks() { awk '{print $14 + $15}' "/proc/$WORKER_PID/stat"; }
w0=$(worker_ticks)
rows0=$(q -c "SELECT count(*) FROM hokusai_auth.api_key_usage")
costs=()
cpu_costs=()
tps_plain=()
tps_usage=()
for pair in $(seq 1 "$PAIRS"); do
	if ((pair % 2)); then
		read -r t_plain n_plain c_plain < <(run plain)
		read -r t_usage n_usage c_usage < <(run usage)
	else
		read -r t_usage n_usage c_usage < <(run usage)
		read -r t_plain n_plain c_plain < <(run plain)
	fi
	[ -n "$t_plain" ] && [ -n "$t_usage" ] || exit 1
	tps_plain+=("$t_plain")
	tps_usage+=("$t_usage")
	cost=$(echo "100 * (1 - $t_usage / $t_plain)" | bc -l)
	cpu_cost=$(echo "100 * (1 - ($n_usage / $c_usage) / ($n_plain / $c_plain))" | bc -l)
	costs+=("$cost")
	cpu_costs+=("$cpu_cost")
	printf 'round %d: TPS no endpoint %8.0f, with endpoint %8.0f, cost %5.1f%%;' \
		"$pair" "$t_plain" "$t_usage" "$cost"
	printf ' CPU per call %5.1f vs %5.1f us, cost %5.1f%%\n' \
		"$(echo "1000000 * $c_plain / $n_plain" | bc -l)" \
		"$(echo "1000000 * $c_usage / $n_usage" | bc -l)" "$cpu_cost"
done
# Let the worker catch up: at most two intervals.
sleep $(( (2 * FLUSH_MS + 999) / 1000 ))
q -F ' ' -c "SELECT enqueued, dropped, queued, flushed, flushes, max_flush_lag_ms,
	round((max_flush_lag_ms / $FLUSH_MS)::numeric, 2)
	FROM hokusai_auth.usage_queue_stats" > "$scripts/stats"
read -r enq dropped queued flushed flushes maxlag lagratio < "$scripts/stats"
rows1=$(q -c "SELECT count(*) FROM hokusai_auth.api_key_usage")
w1=$(worker_ticks)

# The floor for writing a row: COPY FROM into a table with the same columns
# and indexes, in one transaction (timed by the server).
q -c "CREATE TABLE bench_copy (LIKE hokusai_auth.api_key_usage INCLUDING ALL)"
q -c "COPY (SELECT hokusai_auth._uuid_v7(now() + i * interval '20 microseconds'), '$KID',
		'/api/v1/things', now() + i * interval '20 microseconds', NULL, NULL
		FROM generate_series(1, 300000) i) TO '$DIR/copy.tsv'"
copy_ms=$(q -c "DO \$\$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
	COPY bench_copy FROM '$DIR/copy.tsv';
	RAISE NOTICE '%', 1000 * extract(epoch FROM clock_timestamp() - t0);
END \$\$" 2>&1 | sed -n 's/.*NOTICE: *//p')
q -c "DROP TABLE bench_copy"
printf '%-44s %s\n' "TPS without endpoint, median [min-max]" "$(bench_fmt %.0f "${tps_plain[@]}")"
printf '%-44s %s\n' "TPS with endpoint, median [min-max]" "$(bench_fmt %.0f "${tps_usage[@]}")"
printf '%-44s %s %%  (target <= 7%%)\n' "TPS cost of recording, median [min-max]" \
	"$(bench_fmt %.1f "${costs[@]}")"
printf '%-44s %s %%  (server + pgbench CPU per call)\n' "CPU cost of recording, median [min-max]" \
	"$(bench_fmt %.1f "${cpu_costs[@]}")"
echo "load average after: $(bench_load)"
printf '%-44s %12s\n' "events queued" "$enq"
printf '%-44s %12s  (target 0)\n' "events dropped" "$dropped"
[ "$dropped" = 0 ] || { echo "BENCHMARK INVALID: $dropped usage events dropped" >&2; exit 1; }
printf '%-44s %12s\n' "rows written (after the run)" "$((rows1 - rows0))"
printf '%-44s %12s\n' "still queued" "$queued"
printf '%-44s %12s\n' "batches" "$flushes"
printf '%-44s %12s  (%s x flush_interval; target <= 2)\n' "max flush lag, ms" "$maxlag" "$lagratio"
# Per event the worker took in (aggregated, and a raw row when sampled):
# with raw rows off it writes no row at all.
printf '%-44s %12.2f  (CPU time of the worker / events queued)\n' "worker, us per event" \
	"$(echo "1000000 * ($w1 - $w0) / $(getconf CLK_TCK) / ($enq + ($enq == 0))" | bc -l)"
printf '%-44s %12.2f  (wall time of COPY FROM of 300000 rows, same indexes)\n' \
	"COPY FROM, us per row" "$(echo "1000 * $copy_ms / 300000" | bc -l)"

[ "$ROWS" -gt 0 ] || exit 0
echo
echo "== 2. usage_summary over $ROWS usage rows (one key, 30 days)"
# Since 1.6 the worker counts every event in minute, hour and day aggregates
# as it writes it, and the summaries read only those (rollup_usage() does
# nothing).  Rows inserted by hand are not counted, so the aggregates are
# made here from the raw rows the way the worker would have made them
# (sum per UTC minute, endpoint and status; hours from minutes, days from
# hours), in the partitions the worker would have made.
START=$(date +%s)
q <<SQL >/dev/null
SELECT hokusai_auth._usage_make_partition(p, now() - d * interval '1 day')
  FROM unnest('{hokusai_auth.api_key_usage, hokusai_auth.api_key_usage_minutely,
				 hokusai_auth.api_key_usage_hourly, hokusai_auth.api_key_usage_daily}'::regclass[]) p,
	   generate_series(0, 31) d;
TRUNCATE hokusai_auth.api_key_usage, hokusai_auth.api_key_usage_minutely,
		 hokusai_auth.api_key_usage_hourly, hokusai_auth.api_key_usage_daily;
INSERT INTO hokusai_auth.api_key_usage (id, api_key_id, endpoint, "timestamp", response_time_ms, status_code)
SELECT hokusai_auth._uuid_v7(t), '$KID', '/api/v1/e' || (i % 20), t,
	   (i::bigint * 7919) % 400 + (i % 1000 = 0)::int * 5000,
	   CASE WHEN i % 97 = 0 THEN 500 WHEN i % 13 = 0 THEN 404 ELSE 200 END
  FROM generate_series(1, $ROWS) i,
	   LATERAL (SELECT now() - interval '30 days' * (1 - i::float8 / $ROWS) AS t) x;
INSERT INTO hokusai_auth.api_key_usage_minutely
SELECT u.api_key_id, date_trunc('minute', u."timestamp", 'UTC'), u.endpoint, u.status_code,
	   count(*), count(u.response_time_ms), coalesce(sum(u.response_time_ms), 0),
	   max(u.response_time_ms), hokusai_auth._hist_of(u.response_time_ms)
  FROM hokusai_auth.api_key_usage u GROUP BY 1, 2, 3, 4;
INSERT INTO hokusai_auth.api_key_usage_hourly
SELECT api_key_id, date_trunc('hour', minute, 'UTC'), endpoint, status_code, sum(requests), sum(timed_requests),
	   sum(response_ms_sum), max(max_response_ms), hokusai_auth._hist_sum(latency_hist)
  FROM hokusai_auth.api_key_usage_minutely GROUP BY 1, 2, 3, 4;
INSERT INTO hokusai_auth.api_key_usage_daily
SELECT api_key_id, date_trunc('day', hour, 'UTC'), endpoint, status_code, sum(requests), sum(timed_requests),
	   sum(response_ms_sum), max(max_response_ms), hokusai_auth._hist_sum(latency_hist)
  FROM hokusai_auth.api_key_usage_hourly GROUP BY 1, 2, 3, 4;
VACUUM ANALYZE hokusai_auth.api_key_usage, hokusai_auth.api_key_usage_minutely,
			   hokusai_auth.api_key_usage_hourly, hokusai_auth.api_key_usage_daily;
SQL
echo "loaded in $(( $(date +%s) - START )) s"

# The aggregates must answer what the raw log does (minutes that start in
# the range; the raw rows' edges are cut to the same minutes).
read -r agg_n raw_n < <(q -F ' ' -c "SELECT s.requests, (SELECT count(*) FROM hokusai_auth.api_key_usage u
		WHERE u.api_key_id = '$KID' AND u.\"timestamp\" >= date_trunc('minute', now() - interval '30 days') + interval '1 minute')
	FROM hokusai_auth.usage_summary('$KID', now() - interval '30 days', now()) s")
[ "$agg_n" = "$raw_n" ] || { echo "BENCHMARK INVALID: usage_summary counts $agg_n requests, the raw log $raw_n" >&2; exit 1; }

time_sql()
{
	# median [min-max] of 5 runs in one session (after a first call that
	# is not counted: it plans and fills the session's caches), in ms
	local v
	# shellcheck disable=SC2046
	v=$(q -c "DO \$\$
DECLARE t0 timestamptz; ms float8[] := '{}'; r record; c bigint;
BEGIN
	FOR i IN 0..5 LOOP
		t0 := clock_timestamp();
		$1
		IF i > 0 THEN
			ms := ms || 1000 * extract(epoch FROM clock_timestamp() - t0);
		END IF;
	END LOOP;
	RAISE NOTICE '%', array_to_string(ms, ' ');
END \$\$" 2>&1 | sed -n 's/.*NOTICE: *//p')
	# shellcheck disable=SC2086
	bench_fmt %.1f $v
}

raw_30d=$(time_sql "SELECT count(*), count(*) FILTER (WHERE u.status_code >= 400),
			percentile_disc(0.99) WITHIN GROUP (ORDER BY u.response_time_ms) INTO r
		  FROM hokusai_auth.api_key_usage u WHERE u.api_key_id = '$KID' AND u.\"timestamp\" >= now() - interval '30 days';")
s_30d=$(time_sql "SELECT * INTO r FROM hokusai_auth.usage_summary('$KID', now() - interval '30 days', now());")
s_all=$(time_sql "SELECT * INTO r FROM hokusai_auth.usage_summary('$KID');")
s_1d=$(time_sql "SELECT * INTO r FROM hokusai_auth.usage_summary('$KID', now() - interval '1 day', now());")
s_1h=$(time_sql "SELECT * INTO r FROM hokusai_auth.usage_summary('$KID', now() - interval '1 hour', now());")
s_ts=$(time_sql "PERFORM * FROM hokusai_auth.usage_timeseries('$KID', 'day', now() - interval '30 days', now());")
printf '%-52s %12s = %s\n' "requests: usage_summary = raw log" "$agg_n" "$raw_n"
printf '%-52s %22s ms\n' "count, errors, p99 from the raw log, 30 days" "$raw_30d"
printf '%-52s %22s ms  (target < 20; usage_volume_bench.sh: 100M requests)\n' "usage_summary, 30 days" "$s_30d"
printf '%-52s %22s ms\n' "usage_summary, all time (since NULL)" "$s_all"
printf '%-52s %22s ms\n' "usage_summary, last day" "$s_1d"
printf '%-52s %22s ms\n' "usage_summary, last hour" "$s_1h"
printf '%-52s %22s ms\n' "usage_timeseries, per day, 30 days" "$s_ts"
