#!/usr/bin/env bash
# The cost of scopes on the hot path (docs/authorization.md#performance):
# validate_key() cache hits with required_scopes on every call against the
# same hits without, in alternating rounds, medians.  Not a test: it prints
# figures.
#
#   bash test/bench/scope_bench.sh [seconds per pgbench run, default 10] [rounds, default 5]
#
# Workloads (pgbench -M prepared -c 2 -j 2, the setting of cache_bench.sh):
#   select1    SELECT 1, the floor of one round trip
#   hit        validate_key(key), a key with three scopes, cached
#   scoped     validate_key(key, required_scopes => '{models:predict}'), the
#              same key: the scopes kept inline in the cache entry, a
#              trailing-* match
#   overflow   the same on a key whose scopes do not fit in the cache entry
#              (read again by id on each call), for comparison
# and, in one backend, the cost per call of each (100000 calls in one
# statement, minus the statement without the call).
#
# HK_BENCH_INSTALLED=1 uses the hokusai_auth already installed for the
# pg_config on PATH instead of building and installing it (hk_setup).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/setup.sh"
if [ "${HK_BENCH_INSTALLED:-0}" = 1 ]; then
	hk_pick_user
else
	hk_setup
fi
source "$HK_TOP/test/lib/cluster.sh"
SECS=${1:-10}
ROUNDS=${2:-5}
DIR=$(mktemp -d /tmp/hokusai-bench.XXXXXX)
hk_cluster_start "$DIR" "${HK_BENCH_PORT:-55443}"
trap 'hk_cluster_stop "$DIR"' EXIT
PGBIN=$(pg_config --bindir)
q() { hk_as_user psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

q -c "CREATE EXTENSION hokusai_auth CASCADE"
q -c "SELECT hokusai_auth.create_user('bench')" >/dev/null
KEY=$(q -c "SELECT key FROM hokusai_auth.create_key((SELECT id FROM hokusai_auth.users), 'bench',
	rate_limit_per_hour => 2000000000, burst_limit => 2000000000,
	scopes => '{models:*, files:read, keys:read}')")
BIG=$(q -c "SELECT key FROM hokusai_auth.create_key((SELECT id FROM hokusai_auth.users), 'big',
	rate_limit_per_hour => 2000000000, burst_limit => 2000000000,
	scopes => '{alpha:read, beta:read, gamma:read, delta:read, epsilon:read, models:*}')")
q -c "SELECT a.status, b.status FROM hokusai_auth.validate_key('$KEY') a, hokusai_auth.validate_key('$BIG') b" >/dev/null

scripts=$(mktemp -d); chmod 755 "$scripts"
echo "SELECT 1;" > "$scripts/select1.sql"
echo "SELECT * FROM hokusai_auth.validate_key('$KEY');" > "$scripts/hit.sql"
# (\072 is ":": pgbench would take ":predict" for one of its variables.)
echo "SELECT * FROM hokusai_auth.validate_key('$KEY', required_scopes => E'{models\\072predict}');" > "$scripts/scoped.sql"
echo "SELECT * FROM hokusai_auth.validate_key('$BIG', required_scopes => E'{models\\072predict}');" > "$scripts/overflow.sql"
chmod 644 "$scripts"/*.sql
echo "statuses: hit $(q -c "SELECT status FROM hokusai_auth.validate_key('$KEY')"), scoped $(q -c \
	"SELECT status FROM hokusai_auth.validate_key('$KEY', required_scopes => E'{models\\072predict}')"), overflow $(q -c \
	"SELECT status FROM hokusai_auth.validate_key('$BIG', required_scopes => E'{models\\072predict}')")"
trap 'hk_cluster_stop "$DIR"; rm -rf "$scripts"' EXIT

# tps NAME: the TPS of one pgbench run.
tps()
{
	hk_as_user "$PGBIN/pgbench" -n -M prepared -c 2 -j 2 -T "$SECS" -f "$scripts/$1.sql" 2>&1 |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# Each round runs every workload once, hit and scoped back to back (their
# order alternating from round to round), so that both see the same load;
# the ratio of each round is kept, and the median of those is the figure.
declare -A all
ratios=""
echo "pgbench -M prepared -c 2 -j 2 -T $SECS, $ROUNDS rounds"
for r in $(seq 1 "$ROUNDS"); do
	line="round $r:"
	if [ $((r % 2)) = 1 ]; then order="select1 hit scoped overflow"; else order="overflow scoped hit select1"; fi
	declare -A this
	for w in $order; do
		t=$(tps "$w")
		all[$w]+="$t "
		this[$w]=$t
	done
	for w in select1 hit scoped overflow; do line+=" $w ${this[$w]}"; done
	ratio=$(echo "${this[scoped]} / ${this[hit]}" | bc -l)
	ratios+="$ratio "
	printf '%s  scoped/hit %.3f\n' "$line" "$ratio"
done
declare -A med
for w in select1 hit scoped overflow; do
	med[$w]=$(echo "${all[$w]}" | tr ' ' '\n' | grep . | median)
done
printf '%-44s %12s %10s\n' "workload (median TPS)" TPS "vs hit"
for w in select1 hit scoped overflow; do
	printf '%-44s %12.0f %9.3fx\n' "$w" "${med[$w]}" "$(echo "${med[$w]} / ${med[hit]}" | bc -l)"
done
printf 'required_scopes on every call: %+.1f%% TPS (median of the %s per-round ratios; ratio of the medians %+.1f%%)\n' \
	"$(echo "($(echo "$ratios" | tr ' ' '\n' | grep . | median) - 1) * 100" | bc -l)" "$ROUNDS" \
	"$(echo "(${med[scoped]} / ${med[hit]} - 1) * 100" | bc -l)"

# In one backend, by CPU time (utime + stime of the backend, from
# /proc/PID/stat, in clock ticks: less disturbed by other processes than
# wall time): N calls in one statement, minus the same statement without
# the call, for hit and scoped in alternating order, ROUNDS rounds; the
# median of the per-round figures.
N=${HK_BENCH_CALLS:-1000000}
HZ=$(getconf CLK_TCK)
cpu_round()
{
	local first=$1 second=$2
	q <<SQL
SELECT pg_backend_pid() AS pid \\gset
\\setenv HKPID :pid
\\! awk '{print "t0", \$14 + \$15}' /proc/\$HKPID/stat
SELECT count(*) FROM generate_series(1, $N) i, LATERAL (SELECT left('$KEY' || i, 54) AS k) x;
\\! awk '{print "t1", \$14 + \$15}' /proc/\$HKPID/stat
SELECT count(*) FROM generate_series(1, $N) i, LATERAL hokusai_auth.validate_key(left('$KEY' || i, 54)$first) v WHERE v.valid;
\\! awk '{print "t2", \$14 + \$15}' /proc/\$HKPID/stat
SELECT count(*) FROM generate_series(1, $N) i, LATERAL hokusai_auth.validate_key(left('$KEY' || i, 54)$second) v WHERE v.valid;
\\! awk '{print "t3", \$14 + \$15}' /proc/\$HKPID/stat
SQL
}
SCOPED=", required_scopes => '{models:predict}'"
hit_us=""; scoped_us=""; cpu_ratios=""
for r in $(seq 1 "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then out=$(cpu_round "" "$SCOPED"); a=hit; else out=$(cpu_round "$SCOPED" ""); a=scoped; fi
	read -r t0 t1 t2 t3 < <(echo "$out" | awk '/^t[0-3] /{printf "%s ", $2} END {print ""}')
	base=$((t1 - t0)); x=$((t2 - t1 - base)); y=$((t3 - t2 - base))
	if [ "$a" = hit ]; then h=$x; sc=$y; else sc=$x; h=$y; fi
	hu=$(echo "$h * 1000000 / $HZ / $N" | bc -l); su=$(echo "$sc * 1000000 / $HZ / $N" | bc -l)
	hit_us+="$hu "; scoped_us+="$su "; cpu_ratios+="$(echo "$su / $hu" | bc -l) "
	printf 'cpu round %d: hit %.3f us, scoped %.3f us per call (%d calls each; base %d ticks)\n' "$r" "$hu" "$su" "$N" "$base"
done
printf 'CPU per call, median of %s rounds: hit %.3f us, scoped %.3f us; scoped/hit %.3f (median of the per-round ratios)\n' \
	"$ROUNDS" "$(echo "$hit_us" | tr ' ' '\n' | grep . | median)" "$(echo "$scoped_us" | tr ' ' '\n' | grep . | median)" \
	"$(echo "$cpu_ratios" | tr ' ' '\n' | grep . | median)"
