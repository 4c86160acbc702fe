#!/usr/bin/env bash
# The cost of metering on the hot path (issues 15 and 16, docs/metering.md):
# validate_key() cache hits of keys with credits (and a monthly refill)
# whose users have limits shared by their keys, against the same hits of
# keys with neither.  Issue 16's target: the hot-path figures of issue 15
# (cache_bench.sh's "hit" workload) at most 5% below the same run without
# metering.  Not part of the test suite: it prints figures.
#
#   bash test/bench/metering_bench.sh [seconds per pgbench run, default 10]
#   HK_BENCH_ROUNDS=7 bash test/bench/metering_bench.sh 10
#
# Workloads (pgbench -M prepared -c 2 -j 2, the setting of cache_bench.sh),
# one statement a transaction, SELECT valid FROM hokusai_auth.validate_key(key),
# all five in each round, in alternating order round after round
# (test/bench/lib.sh):
#   plain16    cache_bench.sh's hit workload: 16 scripts picked at random
#              per transaction, script i using key i; 16 keys of 16 users,
#              hourly limit 2e9 and burst 60,000 a second each; no credits,
#              no user limits
#   metered16  the same with 16 metered keys (credits, a monthly refill) of
#              16 users that each have set_user_limits(): every call spends
#              one credit and one unit of its key's and its user's hourly
#              and burst limits
#   shared16   the same with 16 metered keys of ONE user with limits: every
#              call of both clients also takes that user's limiter entry
#   plain1     both clients on one key without credits whose user has no
#              limits (hourly 2e9, no burst limit)
#   metered1   both clients on one metered key whose user has limits: the
#              worst case, every call of both clients contends for the same
#              three entries (the user's limiter, the key's, the balance)
# Limits are high (2e9 an hour, 2e9 a second for users) and balances 1e15,
# so nothing runs out during a run.  Each run is checked afterwards
# (bench_check, plus the metering counters): every counted transaction was
# a cache hit admitted by the limiter, a metered run charged credits for
# each of them and refused none, a plain run charged none, and no limit
# refused a call.
#
# Prints, per workload, the median TPS and CPU time per transaction (server
# and pgbench, microseconds) with min and max, and the median of the
# per-round ratios metered16/plain16, shared16/plain16 and metered1/plain1;
# then the CPU time per call of the one-key pair in one backend (no second
# client).  Instruction counts, which other work on the machine cannot
# move, are in callgrind_bench.sh (metered vs hit).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SECS=${1:-10}
NK=16
hk_bench_setup
DIR=$(mktemp -d /tmp/hokusai-meterbench.XXXXXX)
trap 'hk_cluster_stop "$DIR"' EXIT
hk_bench_cluster_start "$DIR" "${HK_BENCH_PORT:-55446}"
q -c "CREATE EXTENSION hokusai_auth CASCADE" >/dev/null
q <<SQL >/dev/null
SET hokusai_auth.bcrypt_cost = 4;
CREATE TABLE mb_keys AS
SELECT 'plain1' AS w, 1 AS i, key FROM hokusai_auth.create_key(hokusai_auth.create_user('mb_plain'), 'plain',
	rate_limit_per_hour => 2000000000, burst_limit => 0)
UNION ALL
SELECT 'metered1', 1, key FROM hokusai_auth.create_key(hokusai_auth.create_user('mb_metered'), 'metered',
	rate_limit_per_hour => 2000000000, burst_limit => 0, credits => 1000000000000000,
	refill_amount => 1000000000000000, refill_interval => 'month')
UNION ALL
SELECT 'plain16', i, k.key FROM generate_series(1, $NK) i,
	LATERAL hokusai_auth.create_key(hokusai_auth.create_user('mb_p' || i), 'p' || i,
		rate_limit_per_hour => 2000000000, burst_limit => 60000) k
UNION ALL
SELECT 'metered16', i, k.key FROM generate_series(1, $NK) i,
	LATERAL hokusai_auth.create_key(hokusai_auth.create_user('mb_m' || i), 'm' || i,
		rate_limit_per_hour => 2000000000, burst_limit => 60000, credits => 1000000000000000,
		refill_amount => 1000000000000000, refill_interval => 'month') k
UNION ALL
SELECT 'shared16', i, k.key FROM (SELECT hokusai_auth.create_user('mb_shared') AS u) x,
	generate_series(1, $NK) i,
	LATERAL hokusai_auth.create_key(x.u, 's' || i,
		rate_limit_per_hour => 2000000000, burst_limit => 60000, credits => 1000000000000000,
		refill_amount => 1000000000000000, refill_interval => 'month') k;
SELECT hokusai_auth.set_user_limits(id, 2000000000, 2000000000) FROM hokusai_auth.users
	WHERE username = 'mb_metered' OR username = 'mb_shared' OR username ~ '^mb_m[0-9]+\$';
SQL
PLAIN=$(q -c "SELECT key FROM mb_keys WHERE w = 'plain1'")
METERED=$(q -c "SELECT key FROM mb_keys WHERE w = 'metered1'")
# Fill the cache (a bcrypt each) and check what each key is.
[ "$(q -c "SELECT count(*) FROM mb_keys, LATERAL hokusai_auth.validate_key(key) v
	WHERE v.status = 'ok' AND (v.credits_remaining IS NULL) = (w LIKE 'plain%')")" = $((3 * NK + 2)) ] ||
	{ echo "BENCHMARK INVALID: a key is not admitted as its workload says (metered or not)" >&2; exit 1; }
[ "$(q -c "SELECT count(*) FROM mb_keys k, hokusai_auth.api_keys a, LATERAL hokusai_auth.rate_limit_status(a.id) s
	WHERE a.name = CASE k.w WHEN 'plain1' THEN 'plain' WHEN 'metered1' THEN 'metered' ELSE left(k.w, 1) || k.i END
	AND (coalesce(s.user_rate_limit_per_hour, 0) = 2000000000) = (k.w NOT LIKE 'plain%')")" = $((3 * NK + 2)) ] ||
	{ echo "BENCHMARK INVALID: a metered key's user has no shared limit, or a plain key's user has one" >&2; exit 1; }

scripts=$(mktemp -d); chmod 755 "$scripts"
trap 'hk_cluster_stop "$DIR"; rm -rf "$scripts"' EXIT
declare -A files
for w in plain16 metered16 shared16; do
	files[$w]=
	while read -r i key; do
		echo "SELECT valid FROM hokusai_auth.validate_key('$key');" > "$scripts/$w.$i.sql"
		files[$w]+=" -f $scripts/$w.$i.sql"
	done < <(q -F ' ' -c "SELECT i, key FROM mb_keys WHERE w = '$w' ORDER BY i")
done
echo "SELECT valid FROM hokusai_auth.validate_key('$PLAIN');" > "$scripts/plain1.sql"
echo "SELECT valid FROM hokusai_auth.validate_key('$METERED');" > "$scripts/metered1.sql"
files[plain1]=" -f $scripts/plain1.sql"
files[metered1]=" -f $scripts/metered1.sql"
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
	if [[ $w != plain* ]]; then
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

WL=(plain16 metered16 shared16 plain1 metered1)
PAIRS=("metered16 plain16" "shared16 plain16" "metered1 plain1")
declare -A tps cpu ratio_tps ratio_cpu
echo "metering_bench: pgbench -n -M prepared -c 2 -j 2 -T $SECS, $HK_BENCH_ROUNDS rounds (order alternating),"
echo "  statement: SELECT valid FROM hokusai_auth.validate_key(\$key), a cache hit; load average $(bench_load)"
for r in $(seq 1 "$HK_BENCH_ROUNDS"); do
	declare -A this_tps this_cpu
	for w in $(bench_order "$r" "${WL[@]}"); do
		m0=$(meter_counters)
		# shellcheck disable=SC2086
		read -r t n _p99 c < <(bench_pgbench hit ${files[$w]}) ||
			{ echo "BENCHMARK INVALID: the $w run failed its check" >&2; exit 1; }
		[ -n "${t:-}" ] || { echo "BENCHMARK INVALID: the $w run failed its check" >&2; exit 1; }
		m1=$(meter_counters)
		meter_check "$w" "$n" "$m0" "$m1"
		this_tps[$w]=$t; this_cpu[$w]=$c
		tps[$w]+="$t "; cpu[$w]+="$c "
	done
	line="round $r:"
	for w in "${WL[@]}"; do line+=$(printf ' %s %.0f' "$w" "${this_tps[$w]}"); done
	for p in "${PAIRS[@]}"; do
		read -r a b <<<"$p"
		tr=$(echo "${this_tps[$a]} / ${this_tps[$b]}" | bc -l)
		cr=$(echo "${this_cpu[$a]} / ${this_cpu[$b]}" | bc -l)
		ratio_tps[$p]+="$tr "; ratio_cpu[$p]+="$cr "
		line+=$(printf '; %s/%s %.3f' "$a" "$b" "$tr")
	done
	echo "$line"
done
echo
printf '%-10s %-28s %-28s\n' workload "TPS median [min-max]" "CPU us/txn median [min-max]"
for w in "${WL[@]}"; do
	# shellcheck disable=SC2086
	printf '%-10s %-28s %-28s\n' "$w" "$(bench_fmt %.0f ${tps[$w]})" "$(bench_fmt %.1f ${cpu[$w]})"
done
echo "median of the per-round ratios [min-max]:"
for p in "${PAIRS[@]}"; do
	read -r a b <<<"$p"
	# shellcheck disable=SC2086
	tm=$(bench_median ${ratio_tps[$p]})
	if [ "$(echo "$tm >= 0.95" | bc -l)" = 1 ]; then verdict=met; else verdict=MISSED; fi
	# shellcheck disable=SC2086
	printf '  %-20s TPS %s, CPU per transaction %s: 5%% target %s (%+.1f%%)\n' "$a/$b" \
		"$(bench_fmt %.3f ${ratio_tps[$p]})" "$(bench_fmt %.3f ${ratio_cpu[$p]})" "$verdict" \
		"$(echo "($tm - 1) * 100" | bc -l)"
done
echo "(issue 16's target is judged on metered16 and shared16, issue 15's hit workload;"
echo " metered1 is two clients on one metered key, the contended worst case)"

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
