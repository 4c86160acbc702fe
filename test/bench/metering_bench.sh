#!/usr/bin/env bash
# Cost of metering on the hot path: validate_key() cache hits of a key with
# credits whose user has shared limits, against the same run for a key with
# neither (docs/metering.md).  Not part of the test suite: it prints figures.
#
#   bash test/bench/metering_bench.sh [seconds per run, default 10] [rounds, default 5]
#
# Runs pgbench -M prepared -c 2 -j 2 on each in alternating rounds, on a
# throwaway cluster made with the pg_config on PATH (run as a user that may
# run PostgreSQL), and prints the median TPS of each and their ratio.
set -euo pipefail
SECS=${1:-10}
ROUNDS=${2:-5}
PGBIN=$(pg_config --bindir)
DIR=$(mktemp -d /tmp/hokusai-metering-bench.XXXXXX)
PORT=${HK_BENCH_PORT:-55447}
export PGHOST=$DIR PGPORT=$PORT PGDATABASE=postgres
"$PGBIN/initdb" -D "$DIR/data" -A trust >/dev/null
cat >> "$DIR/data/postgresql.conf" <<CONF
shared_preload_libraries = 'hokusai_auth'
listen_addresses = ''
unix_socket_directories = '$DIR'
port = $PORT
hokusai_auth.bcrypt_cost = 4
CONF
"$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w start >/dev/null
trap '"$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null; rm -rf "$DIR"' EXIT
q() { "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

q -c "CREATE EXTENSION hokusai_auth CASCADE"
PLAIN=$(q -c "SELECT key FROM hokusai_auth.create_key(hokusai_auth.create_user('plain'), 'plain',
	rate_limit_per_hour => 2000000000, burst_limit => 0)")
METERED_USER=$(q -c "SELECT hokusai_auth.create_user('metered')")
METERED=$(q -c "SELECT key FROM hokusai_auth.create_key('$METERED_USER', 'metered',
	rate_limit_per_hour => 2000000000, burst_limit => 0, credits => 1000000000000000,
	refill_amount => 1000000000000000, refill_interval => 'month')")
q -c "SELECT hokusai_auth.set_user_limits('$METERED_USER', 2000000000, 1000000)"
q -c "SELECT status FROM hokusai_auth.validate_key('$PLAIN')" >/dev/null
q -c "SELECT status FROM hokusai_auth.validate_key('$METERED')" >/dev/null
echo "SELECT * FROM hokusai_auth.validate_key('$PLAIN');" > "$DIR/plain.sql"
echo "SELECT * FROM hokusai_auth.validate_key('$METERED');" > "$DIR/metered.sql"

tps() { "$PGBIN/pgbench" -n -M prepared -c 2 -j 2 -T "$SECS" -f "$DIR/$1.sql" 2>&1 |
	sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "pgbench -M prepared -c 2 -j 2 -T $SECS, $ROUNDS alternating rounds: validate_key() cache hits"
plain=(); metered=(); ratios=()
for r in $(seq 1 "$ROUNDS"); do
	if (( r % 2 )); then p=$(tps plain); m=$(tps metered); else m=$(tps metered); p=$(tps plain); fi
	plain+=("$p"); metered+=("$m"); ratios+=("$(echo "($m / $p - 1) * 100" | bc -l)")
	printf 'round %d: no metering %10.0f TPS, credits + user limits %10.0f TPS (%+.1f%%)\n' \
		"$r" "$p" "$m" "$(echo "($m / $p - 1) * 100" | bc -l)"
done
mp=$(printf '%s\n' "${plain[@]}" | median)
mm=$(printf '%s\n' "${metered[@]}" | median)
printf 'median: no metering %.0f TPS, credits + user limits %.0f TPS: %+.1f%%; median of the rounds'"'"' differences %+.1f%% (target: no worse than -5%%)\n' \
	"$mp" "$mm" "$(echo "($mm / $mp - 1) * 100" | bc -l)" "$(printf '%s\n' "${ratios[@]}" | median)"
# In one backend, without the client round trip: microseconds per call.
per_call() { q -v key="$1" <<'SQL'
SELECT round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / 200000, 3)
  FROM (SELECT clock_timestamp() AS t0) t,
       LATERAL (SELECT count(*) FROM generate_series(1, 200000) i,
                LATERAL hokusai_auth.validate_key(left(:'key' || i, 54)) v WHERE v.valid) c;
SQL
}
pu=(); mu=()
for r in $(seq 1 "$ROUNDS"); do
	if (( r % 2 )); then p=$(per_call "$PLAIN"); m=$(per_call "$METERED"); else m=$(per_call "$METERED"); p=$(per_call "$PLAIN"); fi
	pu+=("$p"); mu+=("$m")
done
printf 'in-process, 200000 calls in one statement, median of %d: no metering %s us/call, credits + user limits %s us/call\n' \
	"$ROUNDS" "$(printf '%s\n' "${pu[@]}" | median)" "$(printf '%s\n' "${mu[@]}" | median)"
q -c "SELECT 'credits spent: ' || credits_spent || ', balances in memory: ' || credit_entries
	|| ', users tracked: ' || user_entries FROM hokusai_auth.metering_stats()"
