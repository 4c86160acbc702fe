#!/usr/bin/env bash
# What recording a request costs, in instructions counted by valgrind
# (callgrind): independent of whatever else the machine runs, unlike the
# TPS of usage_bench.sh and usage_volume_bench.sh.  Not part of the test
# suite.
#
#   bash test/bench/usage_callgrind_bench.sh [calls, default 10000] [worker, default 1; 0: part 1 only]
#
# 1. The request path.  A single-user backend (postgres --single, the
#    extension preloaded) executes a prepared statement CALLS and 2 x CALLS
#    times (one EXECUTE per line, as pgbench -M prepared does); the
#    difference of the instruction totals divided by CALLS is one execution,
#    start-up and the cache fill cancelling out:
#      plain     validate_key(key)                          (no usage event)
#      endpoint  validate_key(key, endpoint => '/api/v1/things')  (one event)
#    The event is queued only: single-user mode runs no worker, and
#    2 x CALLS stays below the queue's capacity (nothing is dropped; checked).
#    usage_raw_sample changes nothing here: the worker draws the sample.
# 2. The worker.  A cluster whose worker writes N queued events (N = 2 x
#    CALLS record_usage() calls of one key and endpoint, queued in one
#    statement while the worker is held off by a lock on the minute
#    aggregates), for usage_raw_sample 0, 0.01 and 1; the worker's CPU is
#    counted by running the server under callgrind too: the instructions of
#    the worker's flush step (hk_worker_flush_events(), inclusive: reading
#    the queue, the aggregates, the raw rows, the commit) per event, what
#    does not depend on the events cancelled by a run with N and one with
#    2 x N events.  The worker's idle cycles (one per flush_interval, load
#    or not) are not counted.
#
# Printed: instructions per call of each statement, the request path's
# extra instructions for recording and their share of a call; the worker's
# instructions per event for each setting; and the sum, as a share of what
# a plain call costs.  That share is the CPU cost of recording, if an
# instruction costs the same everywhere (it does not see cache misses or
# contention: read it beside the TPS figures).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CALLS=${1:-10000}
WORKER=${2:-1}
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 2; }
if [ -n "${HK_BENCH_NO_SETUP:-}" ]; then
	hk_pick_user
else
	hk_bench_setup
fi
DIR=$(mktemp -d /tmp/hokusai-usage-cg.XXXXXX)
trap 'hk_cluster_stop "$DIR"' EXIT
hk_cluster_start "$DIR" "${HK_BENCH_PORT:-55445}"
q -c "CREATE EXTENSION hokusai_auth CASCADE" >/dev/null
q -c "SET hokusai_auth.bcrypt_cost = 4;
	CREATE TABLE cg_keys AS SELECT id, key FROM hokusai_auth.create_key(hokusai_auth.create_user('cg'), 'cg',
		rate_limit_per_hour => 2000000000, burst_limit => 1000000)" >/dev/null
q -c "SELECT key FROM cg_keys" > "$DIR/key"
q -c "SELECT id FROM cg_keys" > "$DIR/kid"
QSIZE=$(q -c "SHOW hokusai_auth.usage_queue_size")
[ $((2 * CALLS)) -lt "$QSIZE" ] || { echo "calls must be below half of usage_queue_size ($QSIZE)" >&2; exit 2; }

total_of() { callgrind_annotate "$1" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,; }

# stmt VARIANT N: instruction total of a single-user session executing the
# prepared statement N times.
stmt()
{
	local prep key out=$DIR/cgs.$1.$2
	key=$(cat "$DIR/key")
	case $1 in
	plain) prep="PREPARE p(text) AS SELECT valid FROM hokusai_auth.validate_key(\$1)" ;;
	endpoint) prep="PREPARE p(text) AS SELECT valid FROM hokusai_auth.validate_key(\$1, endpoint => '/api/v1/things')" ;;
	esac
	{
		echo "SELECT status FROM hokusai_auth.validate_key('$key');"
		echo "$prep;"
		for ((i = 0; i < $2; i++)); do echo "EXECUTE p('$key');"; done
		echo "SELECT 'queue ' || enqueued || ' ' || dropped FROM hokusai_auth.usage_queue_stats;"
	} > "$DIR/s.sql"
	chmod 644 "$DIR/s.sql"
	hk_as_user valgrind --tool=callgrind --callgrind-out-file="$out" \
		"$HK_PGBIN/postgres" --single -D "$DIR/data" postgres < "$DIR/s.sql" > "$DIR/out" 2>&1
	if grep -q 'ERROR' "$DIR/out"; then cat "$DIR/out" >&2; return 1; fi
	# every call with an endpoint queued one event, none dropped
	local want=0
	[ "$1" = endpoint ] && want=$2
	grep -q "\"queue $want 0\"" "$DIR/out" ||
		{ echo "BENCHMARK INVALID: $1 $2: $(grep -o '"queue [0-9]* [0-9]*"' "$DIR/out")" >&2; return 1; }
	total_of "$out"
}

hk_as_user "$HK_PGBIN/pg_ctl" -D "$DIR/data" -w stop >/dev/null
# Single-user mode runs no background worker.
echo "hokusai_auth.database = 'template1'" >> "$DIR/data/postgresql.conf"
declare -A st
echo "== 1. the request path: one execution of a prepared statement (postgres --single), instructions"
for v in plain endpoint; do
	a=$(stmt $v "$CALLS"); b=$(stmt $v $((2 * CALLS)))
	[ -n "$a" ] && [ -n "$b" ] || exit 1
	st[$v]=$(( (b - a) / CALLS ))
	printf '  %-10s %8d\n' "$v" "${st[$v]}"
done
HOT=$((st[endpoint] - st[plain]))
printf 'recording on the request path: %d instructions per call, %.2f%% of a call without endpoint\n' \
	"$HOT" "$(echo "100 * $HOT / ${st[plain]}" | bc -l)"
sed -i '$d' "$DIR/data/postgresql.conf"
[ "$WORKER" = 0 ] && exit 0

# 2. The worker under callgrind (the postmaster too; its children are
# traced, and the worker's own file is read).
echo
echo "== 2. the worker: instructions per event written (one key and endpoint)"
N=$((2 * CALLS))
worker_total()
{
	local sample=$1 n=$2 f
	rm -f "$DIR"/cgw.*
	echo "hokusai_auth.usage_raw_sample = $sample" >> "$DIR/data/postgresql.conf"
	hk_as_user valgrind --tool=callgrind --callgrind-out-file="$DIR/cgw.%p" \
		"$HK_PGBIN/postgres" -D "$DIR/data" > "$DIR/server-cg.log" 2>&1 &
	for _ in $(seq 1 600); do q -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
	# the worker made its partitions and is idle: hold it off, queue the
	# events, let it write them all, then stop the server
	for _ in $(seq 1 600); do
		[ "$(q -c "SELECT count(*) FROM hokusai_auth.usage_partitions")" -gt 0 ] && break; sleep 0.5
	done
	q -c "BEGIN; LOCK hokusai_auth.api_key_usage_minutely IN SHARE MODE;
		SELECT count(*) FROM generate_series(1, $n) i, LATERAL hokusai_auth.record_usage('$(cat "$DIR/kid")', '/api/v1/things', i % 100, 200) r WHERE r;
		COMMIT" >/dev/null
	for _ in $(seq 1 1200); do
		[ "$(q -c "SELECT queued FROM hokusai_auth.usage_queue_stats")" = 0 ] && break; sleep 0.5
	done
	[ "$(q -c "SELECT queued + dropped FROM hokusai_auth.usage_queue_stats")" = 0 ] ||
		{ echo "BENCHMARK INVALID: events left or dropped" >&2; return 1; }
	q -c "SELECT hokusai_auth.usage_queue_stats_reset()" >/dev/null
	hk_as_user "$HK_PGBIN/pg_ctl" -D "$DIR/data" -m fast -w -t 600 stop >/dev/null
	wait
	sed -i '$d' "$DIR/data/postgresql.conf"
	# the worker's file: the one process that ran hk_worker_flush_events;
	# counted: that step inclusive (the per-event work; idle cycles, which
	# the worker runs every flush_interval whatever the load, are not)
	for f in "$DIR"/cgw.*; do
		callgrind_annotate --inclusive=yes "$f" 2>/dev/null |
			sed -n 's/^ *\([0-9,]*\) .*:hk_worker_flush_events .*/\1/p' | head -1 | tr -d ,
	done | sort -n | tail -1
}
declare -A wk
for s in 0 0.01 1; do
	a=$(worker_total "$s" "$N"); b=$(worker_total "$s" $((2 * N)))
	[ -n "$a" ] && [ -n "$b" ] || exit 1
	wk[$s]=$(( (b - a) / N ))
	printf '  usage_raw_sample = %-5s %8d instructions per event; with the request path: %.2f%% of a call without endpoint\n' \
		"$s" "${wk[$s]}" "$(echo "100 * ($HOT + ${wk[$s]}) / ${st[plain]}" | bc -l)"
done
