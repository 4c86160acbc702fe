#!/usr/bin/env bash
# Replicas: validations per second on a primary and two streaming hot
# standbys, in one run, and the revocation lag on a standby.
# Not part of the test suite: it prints figures.
#
#   bash test/bench/replica_bench.sh [seconds per run, default 5] [rounds, default 5] [lag samples, default 40]
#
# Throughput: pgbench -M prepared -c 2 -j 2 of one cached key's validation
# (SELECT 1 / valid::int: a call that is not "ok" aborts the run), on each
# server in turn, in alternating order (P S1 S2, S2 S1 P, ...); for each
# server the median of the rounds, with min and max.  The three servers
# share the machine's cores and run one at a time.
#
# Revocation lag: a standby session validates a cached key in a loop (a
# transaction per call, as a server's requests are); the
# primary revokes the key; the lag is from the primary's clock just after
# COMMIT returned to the standby's clock at the first refusal (one machine,
# one clock).  The refusal includes the refill of the cleared entry: one
# bcrypt at HK_BENCH_COST (default 10, the default cost of new keys).
#
# HK_BENCH_SKIP_SETUP=1: use the pg_config on PATH and an extension already
# installed there (no apt, no make install).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/setup.sh"
SECS=${1:-5}
ROUNDS=${2:-5}
SAMPLES=${3:-40}
COST=${HK_BENCH_COST:-10}
if [ "${HK_BENCH_SKIP_SETUP:-}" = 1 ]; then
	hk_pick_user
else
	hk_setup
fi
PGBIN=$(pg_config --bindir)
BASE=${HK_BENCH_PORT:-55461}
DIR=$(mktemp -d /tmp/hokusai-replica-bench.XXXXXX)
[ "$(id -u)" -eq 0 ] && chown "$HK_RUN_AS" "$DIR"
PORTS=("$BASE" "$((BASE + 1))" "$((BASE + 2))")
NAMES=(primary standby1 standby2)

cleanup()
{
	for n in standby2 standby1 primary; do
		[ -f "$DIR/$n/postmaster.pid" ] &&
			hk_as_user "$PGBIN/pg_ctl" -D "$DIR/$n" -m immediate stop >/dev/null 2>&1 || true
	done
	rm -rf "$DIR"
}
trap cleanup EXIT

q() { local port=$1; shift; hk_as_user "$PGBIN/psql" -h "$DIR" -p "$port" -U postgres -d postgres -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

hk_as_user "$PGBIN/initdb" -D "$DIR/primary" -A trust -U postgres --no-instructions >/dev/null
cat >> "$DIR/primary/postgresql.conf" <<CONF
port = ${PORTS[0]}
listen_addresses = ''
unix_socket_directories = '$DIR'
shared_preload_libraries = 'hokusai_auth'
hokusai_auth.database = 'postgres'
hokusai_auth.cache_ttl = 3600
hokusai_auth.bcrypt_cost = $COST
max_connections = 50
CONF
hk_as_user "$PGBIN/pg_ctl" -D "$DIR/primary" -l "$DIR/primary.log" -w start >/dev/null
q "${PORTS[0]}" -c "CREATE EXTENSION hokusai_auth CASCADE"
for i in 1 2; do
	hk_as_user "$PGBIN/pg_basebackup" -h "$DIR" -p "${PORTS[0]}" -U postgres -D "$DIR/${NAMES[$i]}" -R -X stream
	echo "port = ${PORTS[$i]}" >> "$DIR/${NAMES[$i]}/postgresql.conf"
	hk_as_user "$PGBIN/pg_ctl" -D "$DIR/${NAMES[$i]}" -l "$DIR/${NAMES[$i]}.log" -w start >/dev/null
done

KEY=$(q "${PORTS[0]}" -c "SELECT key FROM hokusai_auth.create_key(hokusai_auth.create_user('bench'), 'bench',
	rate_limit_per_hour => 1000000000, burst_limit => 60000)")
catch_up()
{
	local lsn
	lsn=$(q "${PORTS[0]}" -c "SELECT pg_current_wal_lsn()")
	for i in 1 2; do
		until [ "$(q "${PORTS[$i]}" -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ]; do sleep 0.05; done
	done
}
catch_up
for p in "${PORTS[@]}"; do q "$p" -c "SELECT status FROM hokusai_auth.validate_key('$KEY')" >/dev/null; done

script=$(mktemp); chmod 644 "$script"
echo "SELECT 1 / valid::int FROM hokusai_auth.validate_key('$KEY');" > "$script"
sel1=$(mktemp); chmod 644 "$sel1"
echo "SELECT 1;" > "$sel1"
tps()
{
	hk_as_user "$PGBIN/pgbench" -h "$DIR" -p "$1" -U postgres -n -M prepared -c 2 -j 2 -T "$SECS" \
		-f "${2:-$script}" postgres 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1
}
declare -A RES
for r in $(seq 1 "$ROUNDS"); do
	if [ $((r % 2)) -eq 1 ]; then order="0 1 2"; else order="2 1 0"; fi
	for i in $order; do
		t=$(tps "${PORTS[$i]}")
		[ -n "$t" ] || { echo "pgbench failed on ${NAMES[$i]}" >&2; exit 1; }
		RES[$i]="${RES[$i]:-} $t"
	done
	SEL="${SEL:-} $(tps "${PORTS[0]}" "$sel1")"
done
stats() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {printf "%.0f [%.0f-%.0f]", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2), a[1], a[NR]}'; }
echo "validations per second, pgbench -M prepared -c 2 -j 2 -T $SECS, $ROUNDS alternating rounds: median [min-max]"
for i in 0 1 2; do
	printf '  %-9s %s\n' "${NAMES[$i]}" "$(echo "${RES[$i]}" | stats)"
done
printf '  %-9s %s   (SELECT 1 on the primary, once per round: the machine'"'"'s floor)\n' "SELECT 1" "$(echo "$SEL" | stats)"

# Revocation lag on standby1.
LAGS=""
for s in $(seq 1 "$SAMPLES"); do
	row=$(q "${PORTS[0]}" -c "SELECT id || ' ' || key FROM hokusai_auth.create_key(hokusai_auth.create_user('lag$s'), 'lag',
		rate_limit_per_hour => 1000000000, burst_limit => 60000)")
	kid=${row% *}; k=${row#* }
	catch_up
	q "${PORTS[1]}" -c "SELECT status FROM hokusai_auth.validate_key('$k')" >/dev/null
	out=$(mktemp); chmod 666 "$out"
	q "${PORTS[1]}" -c "DO \$\$
		DECLARE deadline timestamptz := clock_timestamp() + interval '10 s';
		BEGIN
			LOOP
				EXIT WHEN (SELECT status FROM hokusai_auth.validate_key('$k')) = 'revoked'
					OR clock_timestamp() > deadline;
				-- A transaction per call: a snapshot held for the whole loop
				-- would hold replay up (a recovery conflict with the pruning
				-- of the rows the revocation replaced).
				COMMIT;
			END LOOP;
			RAISE NOTICE 'seen % replayed %', extract(epoch FROM clock_timestamp()), pg_last_wal_replay_lsn();
		END \$\$" > "$out" 2>&1 &
	bg=$!
	sleep 0.3
	row=$(q "${PORTS[0]}" -c "SELECT hokusai_auth.revoke_key('$kid')" \
		-c "SELECT extract(epoch FROM clock_timestamp()) || ' ' || pg_current_wal_lsn()" | tail -1)
	t0=${row% *}; lsn=${row#* }
	wait "$bg"
	seen=$(sed -n 's/.*seen \([0-9.]*\) .*/\1/p' "$out")
	replayed=$(sed -n 's/.*replayed \([0-9A-F/]*\).*/\1/p' "$out")
	rm -f "$out"
	lag=$(echo "($seen - $t0) * 1000" | bc -l)
	LAGS="$LAGS $lag"
	if [ "$(echo "$lag > 5000" | bc)" = 1 ]; then
		echo "sample $s: no refusal within 10 s; the standby had replayed to $replayed, the commit ended before $lsn" >&2
	fi
done
lagstats() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {printf "%.2f ms [%.2f-%.2f], %d samples", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2), a[1], a[NR], NR}'; }
echo "revocation lag on standby1 (COMMIT returned on the primary -> first refusal, bcrypt cost $COST): $(echo "$LAGS" | lagstats)"
q "${PORTS[1]}" -c "SELECT 'standby1 replica_stats: reads ' || invalidation_reads || ', applied ' || invalidations_applied || ', clear-all ' || invalidation_clear_all FROM hokusai_auth.replica_stats"
