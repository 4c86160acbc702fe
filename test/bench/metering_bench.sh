#!/usr/bin/env bash
# The cost of metering on the hot path (issues 15 and 16, docs/metering.md):
# validate_key() cache hits of a key with credits (and a monthly refill)
# whose user has limits shared by its keys, against the same hits of a key
# with neither.  Target: at most 5% below.  Not part of the test suite: it
# prints figures.
#
#   bash test/bench/metering_bench.sh [seconds per pgbench run, default 10]
#   HK_BENCH_ROUNDS=7 bash test/bench/metering_bench.sh 10
#
# Workloads (pgbench -M prepared -c 2 -j 2, the setting of cache_bench.sh),
# one statement each, in alternating order round after round (test/bench/lib.sh):
#   plain     SELECT valid FROM hokusai_auth.validate_key(key) for a key
#             without credits whose user has no shared limits
#   metered   the same for a key with credits (and a refill) whose user has
#             set_user_limits(): every call spends one credit and one unit
#             of the key's and the user's hourly and burst limits
# Both keys have the same hourly limit (2e9) and no burst limit of their own;
# the metered key's user limits are as high (2e9 an hour, 2e9 a second) and
# its balance is 1e15, so nothing runs out during a run.  Each run is
# checked afterwards (bench_check, plus the metering counters): every
# counted transaction was a cache hit admitted by the limiter, the metered
# run charged credits for each of them and refused none, the plain run
# charged none, and no limit refused a call.
#
# Prints, per workload, the median TPS and CPU time per transaction (server
# and pgbench, microseconds) with min and max, and the median of the
# per-round ratios metered/plain of each; then the CPU time per call of
# each in one backend (no second client).  Instruction counts, which other
# work on the machine cannot move, are in callgrind_bench.sh (metered vs
# hit).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SECS=${1:-10}
hk_bench_setup
DIR=$(mktemp -d /tmp/hokusai-meterbench.XXXXXX)
trap 'hk_cluster_stop "$DIR"' EXIT
hk_bench_cluster_start "$DIR" "${HK_BENCH_PORT:-55446}"
q -c "CREATE EXTENSION hokusai_auth CASCADE" >/dev/null
q -c "SET hokusai_auth.bcrypt_cost = 4;
	CREATE TABLE mb_keys AS
	SELECT 'plain' AS w, key FROM hokusai_auth.create_key(hokusai_auth.create_user('mb_plain'), 'plain',
		rate_limit_per_hour => 2000000000, burst_limit => 0)
	UNION ALL
	SELECT 'metered', key FROM hokusai_auth.create_key(hokusai_auth.create_user('mb_metered'), 'metered',
		rate_limit_per_hour => 2000000000, burst_limit => 0, credits => 1000000000000000,
		refill_amount => 1000000000000000, refill_interval => 'month');
	SELECT hokusai_auth.set_user_limits((SELECT id FROM hokusai_auth.users WHERE username = 'mb_metered'),
		2000000000, 2000000000)" >/dev/null
PLAIN=$(q -c "SELECT key FROM mb_keys WHERE w = 'plain'")
METERED=$(q -c "SELECT key FROM mb_keys WHERE w = 'metered'")
# Fill the cache (a bcrypt each) and check what each key is.
[ "$(q -c "SELECT status || ' ' || (credits_remaining IS NULL) FROM hokusai_auth.validate_key('$PLAIN')")" = "ok true" ] ||
	{ echo "BENCHMARK INVALID: the plain key is not admitted unmetered" >&2; exit 1; }
[ "$(q -c "SELECT status || ' ' || credits_remaining FROM hokusai_auth.validate_key('$METERED')")" = "ok 999999999999999" ] ||
	{ echo "BENCHMARK INVALID: the metered key is not admitted with its credits" >&2; exit 1; }
[ "$(q -c "SELECT user_rate_limit_per_hour FROM hokusai_auth.rate_limit_status((SELECT a.id FROM hokusai_auth.api_keys a WHERE a.name = 'metered'))")" = 2000000000 ] ||
	{ echo "BENCHMARK INVALID: the metered key's user has no shared limit" >&2; exit 1; }

scripts=$(mktemp -d); chmod 755 "$scripts"
trap 'hk_cluster_stop "$DIR"; rm -rf "$scripts"' EXIT
echo "SELECT valid FROM hokusai_auth.validate_key('$PLAIN');" > "$scripts/plain.sql"
echo "SELECT valid FROM hokusai_auth.validate_key('$METERED');" > "$scripts/metered.sql"
chmod 644 "$scripts"/*.sql

# Metering counters: calls charged, credits refused, user limits' refusals.
meter_counters()
{
	q -c "SELECT format('charged=%s refused=%s ruh=%s rub=%s', credits_charged, credits_refused,
		rejected_user_hourly, rejected_user_burst) FROM hokusai_auth.metering_stats()"
}
# meter_check WORKLOAD N BEFORE AFTER
meter_check()
{
	local w=$1 n=$2 k v bad= slack=${HK_BENCH_CLIENTS:-2}
	declare -A d
	for kv in $4; do k=${kv%%=*}; v=${kv#*=}; d[$k]=$v; done
	for kv in $3; do k=${kv%%=*}; v=${kv#*=}; d[$k]=$((d[$k] - v)); done
	if [ "$w" = metered ]; then
		{ [ "${d[charged]}" -ge "$n" ] && [ "${d[charged]}" -le $((n + slack)) ]; } ||
			bad+=" calls charged ${d[charged]} (want $n)"
	else
		[ "${d[charged]}" -eq 0 ] || bad+=" calls charged ${d[charged]} (want 0)"
	fi
	[ "${d[refused]}" -eq 0 ] || bad+=" credits_exhausted ${d[refused]}"
	[ "${d[ruh]}" -eq 0 ] || bad+=" refused by the user's hourly limit ${d[ruh]}"
	[ "${d[rub]}" -eq 0 ] || bad+=" refused by the user's burst limit ${d[rub]}"
	if [ -n "$bad" ]; then
		echo "BENCHMARK INVALID: the $w run of $n transactions counted:$bad" >&2
		return 1
	fi
}

WL=(plain metered)
declare -A tps cpu
tps_ratios=(); cpu_ratios=()
echo "metering_bench: pgbench -n -M prepared -c 2 -j 2 -T $SECS, $HK_BENCH_ROUNDS rounds (order alternating),"
echo "  statement: SELECT valid FROM hokusai_auth.validate_key(\$key), a cache hit; load average $(bench_load)"
for r in $(seq 1 "$HK_BENCH_ROUNDS"); do
	declare -A this_tps this_cpu
	for w in $(bench_order "$r" "${WL[@]}"); do
		m0=$(meter_counters)
		read -r t n _p99 c < <(bench_pgbench hit -f "$scripts/$w.sql") ||
			{ echo "BENCHMARK INVALID: the $w run failed its check" >&2; exit 1; }
		[ -n "${t:-}" ] || { echo "BENCHMARK INVALID: the $w run failed its check" >&2; exit 1; }
		m1=$(meter_counters)
		meter_check "$w" "$n" "$m0" "$m1"
		this_tps[$w]=$t; this_cpu[$w]=$c
		tps[$w]+="$t "; cpu[$w]+="$c "
	done
	tr=$(echo "${this_tps[metered]} / ${this_tps[plain]}" | bc -l)
	cr=$(echo "${this_cpu[metered]} / ${this_cpu[plain]}" | bc -l)
	tps_ratios+=("$tr"); cpu_ratios+=("$cr")
	printf 'round %d: plain %8.0f TPS %6.1f us/txn, metered %8.0f TPS %6.1f us/txn; metered/plain TPS %.3f, CPU %.3f\n' \
		"$r" "${this_tps[plain]}" "${this_cpu[plain]}" "${this_tps[metered]}" "${this_cpu[metered]}" "$tr" "$cr"
done
echo
printf '%-10s %-28s %-28s\n' workload "TPS median [min-max]" "CPU us/txn median [min-max]"
for w in "${WL[@]}"; do
	# shellcheck disable=SC2086
	printf '%-10s %-28s %-28s\n' "$w" "$(bench_fmt %.0f ${tps[$w]})" "$(bench_fmt %.1f ${cpu[$w]})"
done
printf 'metered/plain, median of the per-round ratios [min-max]: TPS %s, CPU per transaction %s\n' \
	"$(bench_fmt %.3f "${tps_ratios[@]}")" "$(bench_fmt %.3f "${cpu_ratios[@]}")"
tm=$(bench_median "${tps_ratios[@]}")
if [ "$(echo "$tm >= 0.95" | bc -l)" = 1 ]; then
	printf 'target (metered TPS at most 5%% below plain): met (%+.1f%%)\n' "$(echo "($tm - 1) * 100" | bc -l)"
else
	printf 'target (metered TPS at most 5%% below plain): MISSED (%+.1f%%)\n' "$(echo "($tm - 1) * 100" | bc -l)"
fi

# In one backend, by CPU time (utime + stime of the backend from
# /proc/PID/stat: other processes move it much less than wall time): N
# calls of each key in one statement, minus the same statement without the
# call, the two keys in alternating order, every round; median of the
# per-round figures.  No second client: this is the cost of the code, not
# of two backends contending for the same entries.
N=${HK_BENCH_CALLS:-500000}
HZ=$(getconf CLK_TCK)
cpu_round()
{
	q -v first="$1" -v second="$2" <<SQL
SELECT pg_backend_pid() AS pid \\gset
\\setenv HKPID :pid
\\! awk '{print "t0", \$14 + \$15}' /proc/\$HKPID/stat
SELECT count(*) FROM generate_series(1, $N) i, LATERAL (SELECT left(:'first' || i, 54) AS k) x;
\\! awk '{print "t1", \$14 + \$15}' /proc/\$HKPID/stat
SELECT count(*) FROM generate_series(1, $N) i, LATERAL hokusai_auth.validate_key(left(:'first' || i, 54)) v WHERE v.valid;
\\! awk '{print "t2", \$14 + \$15}' /proc/\$HKPID/stat
SELECT count(*) FROM generate_series(1, $N) i, LATERAL hokusai_auth.validate_key(left(:'second' || i, 54)) v WHERE v.valid;
\\! awk '{print "t3", \$14 + \$15}' /proc/\$HKPID/stat
SQL
}
pu=(); mu=(); ur=()
for r in $(seq 1 "$HK_BENCH_ROUNDS"); do
	if ((r % 2)); then out=$(cpu_round "$PLAIN" "$METERED"); a=plain; else out=$(cpu_round "$METERED" "$PLAIN"); a=metered; fi
	[ "$(echo "$out" | grep -cx "$N")" = 3 ] ||
		{ echo "BENCHMARK INVALID: an in-process statement did not admit all $N calls" >&2; exit 1; }
	read -r t0 t1 t2 t3 < <(echo "$out" | awk '/^t[0-3] /{printf "%s ", $2} END {print ""}')
	base=$((t1 - t0)); x=$((t2 - t1 - base)); y=$((t3 - t2 - base))
	if [ "$a" = plain ]; then p=$x; m=$y; else m=$x; p=$y; fi
	pu+=("$(echo "$p * 1000000 / $HZ / $N" | bc -l)"); mu+=("$(echo "$m * 1000000 / $HZ / $N" | bc -l)")
	ur+=("$(echo "$m / $p" | bc -l)")
done
printf 'in one backend, %d calls a statement, CPU us per call, median [min-max] of %d rounds: plain %s, metered %s; metered/plain %s\n' \
	"$N" "$HK_BENCH_ROUNDS" "$(bench_fmt %.3f "${pu[@]}")" "$(bench_fmt %.3f "${mu[@]}")" "$(bench_fmt %.3f "${ur[@]}")"
q -c "SELECT 'credits charged: ' || credits_charged || ', refused: ' || credits_refused
	|| ', balances in memory: ' || credit_entries || ', users tracked: ' || user_entries
	FROM hokusai_auth.metering_stats()"
