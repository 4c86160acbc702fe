#!/usr/bin/env bash
# What the pgbench benchmarks share (cache_bench.sh, cache_scale_bench.sh,
# ratelimit_bench.sh, usage_bench.sh).  Source it; it sources
# test/lib/setup.sh and test/lib/cluster.sh.
#
# Rules every figure follows (issue 15):
#   - it is the median of HK_BENCH_ROUNDS (default 5, at least 5 unless
#     HK_BENCH_QUICK=1) rounds whose order alternates (A B C, C B A, A B C,
#     ...), printed with its min and max; a ratio is the median of the
#     ratios within each round;
#   - each run checks afterwards that every call it counted returned the
#     status it claims to measure (bench_check), and the benchmark stops
#     with an error when one did not;
#   - baselines pay what the measured side pays except the thing measured.
#
# The PostgreSQL used is the one whose pg_config comes first in PATH: to
# measure a private installation, put its bin directory first, e.g.
#   PATH=/opt/hkpg-perf/usr/lib/postgresql/15/bin:$PATH bash test/bench/cache_bench.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/setup.sh"
source "$HK_TOP/test/lib/cluster.sh"

HK_BENCH_ROUNDS=${HK_BENCH_ROUNDS:-5}
if [ "$HK_BENCH_ROUNDS" -lt 5 ] && [ "${HK_BENCH_QUICK:-0}" != 1 ]; then
	echo "HK_BENCH_ROUNDS must be at least 5 (HK_BENCH_QUICK=1 to try fewer)" >&2
	exit 2
fi

# Packages, the cluster's user, the extension built and installed, and the
# benchmarks' do-nothing validate_key (test/bench/noop/), which is built and
# installed into the same PostgreSQL but never into hokusai_auth.so.  No
# PostgREST: these benchmarks do not use it.
hk_bench_setup()
{
	hk_install_packages
	hk_pick_user
	hk_build_install
	hk_log "building and installing the benchmarks' no-op function (test/bench/noop)"
	make -C "$HK_TOP/test/bench/noop" -s >&2
	"${SUDO[@]}" make -C "$HK_TOP/test/bench/noop" -s install >&2
}

q() { hk_as_user psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

# hk_bench_cluster_start DIR PORT: hk_cluster_start, with cache_ttl raised to
# an hour.  A benchmark runs longer than the default 5 minutes, and an entry
# lives cache_ttl from its fill however often it is hit: mid-run it would be
# filled again (a bcrypt) and the run would no longer measure cache hits.
hk_bench_cluster_start()
{
	hk_cluster_start "$1" "$2"
	echo "hokusai_auth.cache_ttl = '1h'" >> "$1/data/postgresql.conf"
	hk_as_user "$HK_PGBIN/pg_ctl" -D "$1/data" -l "$1/server.log" -w restart >/dev/null
}

# SQL: hk_bench.noop_validate(), with validate_key's 1.6 signature, returning
# hokusai_auth.validation, or on a version without that type (1.5) the same
# columns as hk_bench.validation.
hk_bench_noop_sql()
{
	cat <<'SQL'
CREATE SCHEMA IF NOT EXISTS hk_bench;
DO $$
DECLARE rt text := to_regtype('hokusai_auth.validation')::text;
BEGIN
	IF rt IS NULL THEN
		CREATE TYPE hk_bench.validation AS (valid boolean, status text, key_id uuid,
			user_id uuid, rate_limit integer, remaining integer, reset_seconds integer,
			retry_after integer, credits_remaining bigint);
		rt := 'hk_bench.validation';
	END IF;
	EXECUTE format($f$CREATE FUNCTION hk_bench.noop_validate(key text,
		client_ip inet DEFAULT NULL, endpoint text DEFAULT NULL, cost integer DEFAULT 1,
		required_scopes text[] DEFAULT NULL) RETURNS %s
		AS 'hk_bench_noop', 'hk_bench_noop_validate' LANGUAGE C VOLATILE$f$, rt);
END $$;
CREATE FUNCTION hk_bench.cpu_us() RETURNS float8
	AS 'hk_bench_noop', 'hk_bench_cpu_us' LANGUAGE C VOLATILE;
SQL
}

# The load average, for the header of every result.
bench_load() { cut -d' ' -f1-3 /proc/loadavg; }

# Counters that bench_check compares: one line of "name=value" pairs.
# cache hits/misses/negative hits/malformed, limiter decisions, usage queue.
bench_counters()
{
	q -c "SELECT format('hits=%s misses=%s neg=%s malformed=%s admitted=%s rej_h=%s rej_b=%s enq=%s dropped=%s',
		c.hits, c.misses, c.negative_hits, c.malformed, r.admitted, r.rejected_hourly,
		r.rejected_burst, u.enqueued, u.dropped)
		FROM hokusai_auth.cache_stats c, hokusai_auth.rate_limit_stats() r,
			hokusai_auth.usage_queue_stats u"
}

# bench_check EXPECT TXNS BEFORE AFTER: did each of TXNS transactions return
# what EXPECT claims?  EXPECT is one of
#   hit        a cache hit admitted by the limiter (status ok)
#   usage      the same, and one usage event queued, none dropped
#   malformed  status malformed
#   none       nothing of hokusai_auth was called (baselines)
# pgbench may finish a transaction after counting stops (-T), so a counter may
# exceed TXNS by at most the number of clients.
bench_check()
{
	local expect=$1 n=$2 before=$3 after=$4 k v
	declare -A d
	for kv in $after; do k=${kv%%=*}; v=${kv#*=}; d[$k]=$v; done
	for kv in $before; do k=${kv%%=*}; v=${kv#*=}; d[$k]=$((d[$k] - v)); done
	local want_hits=0 want_adm=0 want_mal=0 want_enq=0 slack=${HK_BENCH_CLIENTS:-2} bad=
	case $expect in
	hit) want_hits=$n; want_adm=$n ;;
	usage) want_hits=$n; want_adm=$n; want_enq=$n ;;
	malformed) want_mal=$n ;;
	none) ;;
	*) echo "bench_check: unknown expectation $expect" >&2; return 2 ;;
	esac
	within() { [ "$1" -ge "$2" ] && [ "$1" -le $(($2 + slack)) ]; }
	within "${d[hits]}" "$want_hits" || bad+=" cache hits ${d[hits]} (want $want_hits)"
	within "${d[admitted]}" "$want_adm" || bad+=" admitted ${d[admitted]} (want $want_adm)"
	within "${d[malformed]}" "$want_mal" || bad+=" malformed ${d[malformed]} (want $want_mal)"
	within "${d[enq]}" "$want_enq" || bad+=" usage events ${d[enq]} (want $want_enq)"
	[ "${d[misses]}" -eq 0 ] || bad+=" misses ${d[misses]}"
	[ "${d[neg]}" -eq 0 ] || bad+=" negative hits ${d[neg]}"
	[ "${d[rej_h]}" -eq 0 ] || bad+=" rejected by the hourly limit ${d[rej_h]}"
	[ "${d[rej_b]}" -eq 0 ] || bad+=" rejected by the burst limit ${d[rej_b]}"
	[ "${d[dropped]}" -eq 0 ] || bad+=" usage events dropped ${d[dropped]}"
	if [ -n "$bad" ]; then
		echo "BENCHMARK INVALID: a run of $n transactions claimed to measure '$expect' but counted:$bad" >&2
		return 1
	fi
}

# CPU time, in clock ticks, used so far by the benchmark's server: the
# postmaster, its live children (backends, the usage worker, the WAL
# writer, ...) and its children that have exited (backends of earlier
# pgbench runs, once reaped).
bench_server_ticks()
{
	local pm t c
	pm=$(head -1 "$(q -c "SHOW data_directory")/postmaster.pid")
	t=$(sed 's/.*) //' "/proc/$pm/stat" | awk '{print $12 + $13 + $14 + $15}')
	for c in $(pgrep -P "$pm"); do
		c=$(sed 's/.*) //' "/proc/$c/stat" 2>/dev/null | awk '{print $12 + $13}') && t=$((t + ${c:-0}))
	done
	echo "$t"
}

# Wait (at most 2 s) until the backends of a finished pgbench run have exited
# and been reaped: only then is their CPU time in the postmaster's.
bench_wait_backends()
{
	local pm i
	pm=$(head -1 "$(q -c "SHOW data_directory")/postmaster.pid")
	for i in $(seq 1 40); do
		pgrep -P "$pm" -f 'postgres: .*(\[local\]|127\.0\.0\.1)' >/dev/null || return 0
		sleep 0.05
	done
}

# bench_pgbench EXPECT PGBENCH-ARGS...: one pgbench -n -M prepared -c 2 -j 2
# run (-T "$SECS"), checked with bench_check EXPECT.  Prints
# "tps txns p99_ms cpu_us": p99 from a 5% sample of the transactions'
# latencies (pgbench -l); cpu_us the CPU time that the server and pgbench
# used per transaction.  On a machine shared with other work, TPS follows
# the share of the CPUs the benchmark gets; CPU time per transaction does
# not, or much less: the benchmarks print both.
bench_pgbench()
{
	local expect=$1 logdir out before after tps n p99 s0 s1 pgb_cpu
	shift
	logdir=$(mktemp -d /tmp/hokusai-bench-log.XXXXXX); chmod 777 "$logdir"
	before=$(bench_counters)
	s0=$(bench_server_ticks)
	out=$( { TIMEFORMAT='%U %S'; time (cd "$logdir" && hk_as_user "$HK_PGBIN/pgbench" -n -M prepared \
		-c "${HK_BENCH_CLIENTS:-2}" -j "${HK_BENCH_CLIENTS:-2}" -T "$SECS" -l --sampling-rate=0.05 \
		--log-prefix="$logdir/log" "$@" 2>&1); } 2>&1 ) || { echo "$out" >&2; rm -rf "$logdir"; return 1; }
	bench_wait_backends
	s1=$(bench_server_ticks)
	after=$(bench_counters)
	pgb_cpu=$(echo "$out" | tail -1 | awk '{print $1 + $2}')
	tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
	n=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
	p99=$(cat "$logdir"/log* | awk '{print $3}' | sort -n |
		awk '{a[NR]=$1} END {i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f", a[i] / 1000}')
	rm -rf "$logdir"
	bench_check "$expect" "$n" "$before" "$after" || return 1
	echo "$tps $n $p99 $(echo "1000000 * (($s1 - $s0) / $(getconf CLK_TCK) + $pgb_cpu) / $n" | bc -l)"
}

# median / min / max of numbers given as arguments.
bench_median()
{
	printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
bench_min() { printf '%s\n' "$@" | sort -g | head -1; }
bench_max() { printf '%s\n' "$@" | sort -g | tail -1; }

# bench_order ROUND W1 W2 ...: the workloads of round ROUND (from 1), forward
# in odd rounds, backward in even ones (A B, B A, A B, ...).
bench_order()
{
	local round=$1 i
	shift
	local w=("$@")
	if ((round % 2)); then
		echo "${w[@]}"
	else
		for ((i = ${#w[@]} - 1; i >= 0; i--)); do printf '%s ' "${w[i]}"; done
		echo
	fi
}

# bench_fmt FORMAT VALUES...: "median [min-max]" of VALUES with printf FORMAT.
bench_fmt()
{
	local f=$1
	shift
	printf "$f [$f-$f]" "$(bench_median "$@")" "$(bench_min "$@")" "$(bench_max "$@")"
}
