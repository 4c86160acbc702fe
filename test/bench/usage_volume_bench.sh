#!/usr/bin/env bash
# Benchmark of usage at volume (issue 17).  Not part of the test suite: it
# prints figures, each the median of alternating rounds with the minimum
# and maximum, against baselines measured in the same rounds.
#
#   bash test/bench/usage_volume_bench.sh [seconds per pgbench run, default 10]
#        [rounds, default 5] [requests in the summary's aggregates, default 100000000]
#
# HK_BENCH_NO_SETUP=1 skips installing packages and building: the
# extension must then be installed in the PostgreSQL that pg_config names.
#
# 1. For hokusai_auth.usage_raw_sample = 1, 0.01 and 0, in rounds that
#    alternate the settings, each a pair of pgbench runs (-M prepared -c 2
#    -j 2, full speed): validate_key(key) (no usage event: the baseline,
#    which pays every cost but recording) and validate_key(key, endpoint =>
#    ...) (one event per call).  Per recorded request, after the worker has
#    written everything: bytes stored (every relation of schema
#    hokusai_auth, partitions and indexes included), WAL bytes
#    (pg_current_wal_lsn() difference, less the baseline's per call), worker
#    CPU (less the baseline's per call); the TPS cost of recording
#    (1 - TPS with / TPS without); events dropped.
# 2. usage_summary() over 30 days for one key with 100 million requests:
#    generated aggregates (4 endpoints x 3 status codes, minute rows for
#    30 days, hour and day rows), each call timed in the server.
# 3. Dropping a day: a day partition of raw rows and one of minute rows
#    (1,000,000 raw rows), then prune_usage() drops them; timed per round.
#
# Targets (issue 17): raw rows off: <= 2 bytes stored and <= 4 bytes of WAL
# per request, recording cost <= 5% of TPS, 0 dropped; raw rows on: <= 100
# bytes stored per request; summary < 20 ms; a day dropped in < 1 s.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/setup.sh"
if [ -n "${HK_BENCH_NO_SETUP:-}" ]; then
	hk_pick_user
else
	hk_setup
fi
source "$HK_TOP/test/lib/cluster.sh"
SECS=${1:-10}
ROUNDS=${2:-5}
SUMMARY_REQUESTS=${3:-100000000}
SETTINGS="1 0.01 0"
DIR=$(mktemp -d /tmp/hokusai-usage-volume.XXXXXX)
hk_cluster_start "$DIR" "${HK_USAGE_VOLUME_BENCH_PORT:-55467}"
trap 'hk_cluster_stop "$DIR"' EXIT
cat >> "$DIR/data/postgresql.conf" <<CONF
shared_buffers = 512MB
max_wal_size = 8GB
checkpoint_timeout = 30min
CONF
hk_as_user "$HK_PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w restart >/dev/null
q() { hk_as_user psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
median() { sort -g | awk '{v[NR] = $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
	printf "%s [%s-%s]", m, v[1], v[NR]}'; }

q -c "CREATE EXTENSION hokusai_auth CASCADE"
read -r KID KEY < <(q -F ' ' -c "SELECT id, key FROM hokusai_auth.create_key(
	hokusai_auth.create_user('bench'), 'bench',
	rate_limit_per_hour => 1000000000, burst_limit => 1000000)")
q -c "SELECT hokusai_auth.create_usage_partitions()" >/dev/null
scripts=$(mktemp -d); chmod 755 "$scripts"
echo "SELECT * FROM hokusai_auth.validate_key('$KEY');" > "$scripts/base.sql"
echo "SELECT * FROM hokusai_auth.validate_key('$KEY', endpoint => '/api/v1/things');" > "$scripts/rec.sql"
chmod 644 "$scripts"/*.sql

worker_ticks()
{
	local pid
	pid=$(q -c "SELECT worker_pid FROM hokusai_auth.usage_queue_stats")
	awk '{print $14 + $15}' "/proc/$pid/stat"
}
usage_bytes()
{
	# tables (partitions too) with their indexes and TOAST
	q -c "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c
		   WHERE c.relnamespace = 'hokusai_auth'::regnamespace AND c.relkind = 'r'"
}
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
settle()
{
	# everything queued written, then one more worker cycle for last_used_at
	while [ "$(q -c 'SELECT queued FROM hokusai_auth.usage_queue_stats')" != 0 ]; do sleep 0.2; done
	sleep 1.5
}
# run SCRIPT: prints "tps transactions wal_bytes worker_ticks bytes dropped
# cpu_seconds", cpu_seconds being what the server (the worker included) and
# pgbench used until everything was written: other load on the machine does
# not count there, so CPU per call is a steadier measure of the cost than
# TPS on a shared machine.
run()
{
	local lsn0 w0 b0 d0 s0 out tps txns pg_cpu
	settle
	lsn0=$(q -c "SELECT pg_current_wal_lsn()")
	w0=$(worker_ticks); b0=$(usage_bytes); s0=$(server_ticks)
	d0=$(q -c "SELECT dropped FROM hokusai_auth.usage_queue_stats")
	out=$( { TIMEFORMAT='%U %S'; time hk_as_user "$HK_PGBIN/pgbench" -n -M prepared -c 2 -j 2 \
		-T "$SECS" -f "$scripts/$1.sql" 2>&1; } 2>&1 )
	while [ "$(q -c 'SELECT queued FROM hokusai_auth.usage_queue_stats')" != 0 ]; do sleep 0.2; done
	pg_cpu=$(echo "$out" | tail -1 | awk '{print $1 + $2}')
	pg_cpu=$(echo "($(server_ticks) - $s0) / $(getconf CLK_TCK) + $pg_cpu" | bc -l)
	settle
	tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
	txns=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
	echo "$tps $txns $(q -c "SELECT pg_current_wal_lsn() - '$lsn0'::pg_lsn") $(( $(worker_ticks) - w0 ))" \
		"$(( $(usage_bytes) - b0 ))" "$(( $(q -c "SELECT dropped FROM hokusai_auth.usage_queue_stats") - d0 ))" "$pg_cpu"
}

echo "== 1. recording at full speed: pgbench -M prepared -c 2 -j 2 -T $SECS, $ROUNDS rounds of ($SETTINGS)"
echo "load at start: $(uptime)"
q -c "SELECT status FROM hokusai_auth.validate_key('$KEY')" >/dev/null
hk_as_user "$HK_PGBIN/pgbench" -n -M prepared -c 2 -j 2 -T 3 -f "$scripts/rec.sql" >/dev/null 2>&1	# warm-up
TICK=$(getconf CLK_TCK)
res="$DIR/results"; : > "$res"
for r in $(seq 1 "$ROUNDS"); do
	for s in $SETTINGS; do
		q -c "ALTER SYSTEM SET hokusai_auth.usage_raw_sample = $s" -c "SELECT pg_reload_conf()" >/dev/null
		sleep 0.5
		# alternate which run goes first
		if [ $((r % 2)) -eq 1 ]; then
			b=$(run base); w=$(run rec)
		else
			w=$(run rec); b=$(run base)
		fi
		read -r btps btx bwal bcpu _ _ bsec <<<"$b"
		read -r wtps wtx wwal wcpu wbytes wdrop wsec <<<"$w"
		echo "$s $r $(awk -v bt="$btps" -v bx="$btx" -v bw="$bwal" -v bc="$bcpu" -v wt="$wtps" -v wx="$wtx" \
			-v ww="$wwal" -v wc="$wcpu" -v wb="$wbytes" -v wd="$wdrop" -v tk="$TICK" \
			-v bs="$bsec" -v ws="$wsec" 'BEGIN {
			printf "%.2f %.2f %.3f %.2f %d %.0f %.0f %.2f %.2f %.2f", wb / wx, ww / wx - bw / bx,
				(wc / wx - bc / bx) / tk * 1e6, 100 * (1 - wt / bt), wd, bt, wt,
				100 * (1 - (bs / bx) / (ws / wx)), bs / bx * 1e6, ws / wx * 1e6 }')" >> "$res"
		echo "  round $r, raw sample $s: $(tail -1 "$res" | cut -d' ' -f3-)" >&2
	done
done
q -c "ALTER SYSTEM RESET hokusai_auth.usage_raw_sample" -c "SELECT pg_reload_conf()" >/dev/null
echo "load at end: $(uptime)"
printf '\n| raw sample | bytes stored / request | WAL bytes / request (less baseline) | worker CPU µs / request (less baseline) | TPS cost of recording | the same, from CPU per call | CPU µs per call without / with | events dropped | TPS without / with |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
for s in $SETTINGS; do
	col() { awk -v s="$s" -v c="$1" '$1 == s {print $c}' "$res" | median; }
	printf '| %s | %s | %s | %s | %s %% | %s %% | %s / %s | %s | %s / %s |\n' "$s" "$(col 3)" "$(col 4)" "$(col 5)" \
		"$(col 6)" "$(col 10)" "$(col 11)" "$(col 12)" \
		"$(awk -v s="$s" '$1 == s {d += $7} END {print d}' "$res")" "$(col 8)" "$(col 9)"
done

echo
echo "== 2. usage_summary() over 30 days, one key, $SUMMARY_REQUESTS requests (generated aggregates)"
KID=$(q -c "SELECT id FROM hokusai_auth.create_key((SELECT id FROM hokusai_auth.users), 'summary')")
q <<SQL >/dev/null
SELECT hokusai_auth._usage_make_partition(p, now() - d * interval '1 day')
  FROM unnest('{hokusai_auth.api_key_usage_minutely, hokusai_auth.api_key_usage_hourly,
				 hokusai_auth.api_key_usage_daily}'::regclass[]) p,
	   generate_series(0, 31) d;
CREATE TEMP TABLE g AS
SELECT e, s FROM unnest('{/v1/a,/v1/b,/v1/c,/v1/d}'::text[]) e, unnest('{200,404,500}'::int[]) s;
-- per minute and group: requests so that the 30 days hold the total
INSERT INTO hokusai_auth.api_key_usage_minutely
SELECT '$KID', m, g.e, g.s, n, n, n * 40, 900, ARRAY[30, n / 4, 40, n / 2, 52, n - n / 4 - n / 2]
  FROM generate_series(date_trunc('minute', now()) - interval '30 days' - interval '1 hour',
					   date_trunc('minute', now()), interval '1 minute') m,
	   g, LATERAL (SELECT ($SUMMARY_REQUESTS / (30 * 24 * 60 * 12))::bigint AS n) x;
INSERT INTO hokusai_auth.api_key_usage_hourly
SELECT api_key_id, date_trunc('hour', minute, 'UTC'), endpoint, status_code, sum(requests), sum(timed_requests),
	   sum(response_ms_sum), max(max_response_ms), hokusai_auth._hist_sum(latency_hist)
  FROM hokusai_auth.api_key_usage_minutely WHERE api_key_id = '$KID' GROUP BY 1, 2, 3, 4;
INSERT INTO hokusai_auth.api_key_usage_daily
SELECT api_key_id, date_trunc('day', hour, 'UTC'), endpoint, status_code, sum(requests), sum(timed_requests),
	   sum(response_ms_sum), max(max_response_ms), hokusai_auth._hist_sum(latency_hist)
  FROM hokusai_auth.api_key_usage_hourly WHERE api_key_id = '$KID' GROUP BY 1, 2, 3, 4;
ANALYZE hokusai_auth.api_key_usage_minutely, hokusai_auth.api_key_usage_hourly, hokusai_auth.api_key_usage_daily;
SQL
echo "requests in the 30 days: $(q -c "SELECT requests FROM hokusai_auth.usage_summary('$KID', now() - interval '30 days', now())")"
# In one session, as a pooled connection (PostgREST's) calls it: the first
# call also plans and fills the session's caches (relations and partitions,
# catalog entries, the PL/pgSQL function compiled, plpgsql.so loaded).
# Each call is timed twice: wall time (on a loaded machine mostly waiting
# for a CPU) and the CPU time of the backend (/proc/PID/schedstat, which
# other load on the machine barely changes; it includes the ~0.1 ms of the
# statement that reads it).
call()
{
	echo "SELECT split_part(pg_read_file(:'f'), ' ', 1)::bigint AS c0, clock_timestamp() AS t0 \gset"
	echo "SELECT requests FROM hokusai_auth.usage_summary('$KID', now() - interval '30 days', now()) \g /dev/null"
	echo "SELECT '$1 ' || round(extract(epoch FROM clock_timestamp() - :'t0') * 1000, 2) || ' '
		|| round((split_part(pg_read_file(:'f'), ' ', 1)::bigint - :c0) / 1e6, 2);"
}
for r in $(seq 1 "$ROUNDS"); do
	q <<SQL
SELECT '/proc/' || pg_backend_pid() || '/schedstat' AS f \gset
$(call first)
$(for i in $(seq 1 4); do call next; done)
SQL
done > "$DIR/summary"
echo "usage_summary(key, now() - 30 days, now()), medians [min-max]; target < 20 ms"
echo "  a session's later calls ($((ROUNDS * 4)) calls): $(awk '$1 == "next" {print $2}' "$DIR/summary" | median) ms," \
	"backend CPU $(awk '$1 == "next" {print $3}' "$DIR/summary" | median) ms"
echo "  the first call of a new session ($ROUNDS sessions): $(awk '$1 == "first" {print $2}' "$DIR/summary" | median) ms," \
	"backend CPU $(awk '$1 == "first" {print $3}' "$DIR/summary" | median) ms"

echo
echo "== 3. dropping a day (1,000,000 raw rows and their minute aggregates)"
for r in $(seq 1 "$ROUNDS"); do
	q <<SQL
SELECT now() - interval '40 days' AS day \gset
SELECT hokusai_auth._usage_make_partition(p, :'day')
  FROM unnest('{hokusai_auth.api_key_usage, hokusai_auth.api_key_usage_minutely}'::regclass[]) p \g /dev/null
INSERT INTO hokusai_auth.api_key_usage (id, api_key_id, endpoint, "timestamp", response_time_ms, status_code)
SELECT gen_random_uuid(), '$KID', '/api/v1/things', date_trunc('day', :'day'::timestamptz, 'UTC') + i * interval '86 ms', i % 100, 200
  FROM generate_series(1, 1000000) i;
INSERT INTO hokusai_auth.api_key_usage_minutely
SELECT '$KID', m, '/api/v1/things', 200, 694, 694, 694 * 50, 99, '{40,694}'
  FROM generate_series(date_trunc('day', :'day'::timestamptz, 'UTC'),
					   date_trunc('day', :'day'::timestamptz, 'UTC') + interval '1439 minutes', interval '1 minute') m;
-- A day old enough to be pruned has long been vacuumed and analyzed:
-- autovacuum, woken by the rows just written, would otherwise hold the
-- partitions, and prune_usage() would give way to it (NOWAIT) rather
-- than drop them.
SELECT format('VACUUM (ANALYZE) %s, %s', hokusai_auth._usage_partition('hokusai_auth.api_key_usage', :'day'),
			  hokusai_auth._usage_partition('hokusai_auth.api_key_usage_minutely', :'day')) \gexec
CHECKPOINT;
SELECT pg_size_pretty(sum(total_bytes)) AS size FROM hokusai_auth.usage_partitions
 WHERE from_time <= :'day' AND until_time > :'day' AND table_name::text NOT LIKE '%hourly' \gset
SELECT clock_timestamp() AS t0 \gset
SELECT hokusai_auth.prune_usage('35 days', '35 days') \g /dev/null
SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000, 1) || ' ' || :'size'
	   || CASE WHEN hokusai_auth._usage_partition('hokusai_auth.api_key_usage', :'day') IS NULL THEN ''
			   ELSE ' NOT-DROPPED' END;
SQL
done > "$DIR/drop"
echo "prune_usage() dropping a day ($(head -1 "$DIR/drop" | cut -d' ' -f2-3) of partitions): $(cut -d' ' -f1 "$DIR/drop" | median) ms ($ROUNDS rounds; target < 1000 ms)"
echo "rounds where the day's raw partition was not dropped (prune_usage() gave way to a lock): $(grep -c NOT-DROPPED "$DIR/drop" || true)"
echo "load at end: $(uptime)"
