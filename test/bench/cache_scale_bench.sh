#!/usr/bin/env bash
# Benchmark: does a cache hit cost the same with 100,000 active keys as with
# 1,000?  Not part of the test suite: it prints figures, and ratios against
# baselines measured in the same run (the machines are shared and noisy).
#
#   bash test/bench/cache_scale_bench.sh [seconds per pgbench run, default 10]
#
# Environment:
#   HK_BENCH_PORT        port of the throwaway cluster (default 55442)
#   HK_BENCH_CACHE_SIZE  hokusai_auth.cache_size (default 524288: 100,000 keys do
#                        not fit in 131072, whose 8192 sets of 16 get 12.2 keys on
#                        average; in 262144, 6.1 per set, a few sets overflow and
#                        pgbench then sees a miss (a bcrypt) or two per second;
#                        in 524288 none do, and every call counted is a hit)
#   HK_BENCH_KEYS        size of the large key set (default 100000)
#   HK_BENCH_SMALL       size of the small key set (default 1000)
#   HK_BENCH_ROUNDS      rounds (default 5), order alternating; each figure is
#                        the median of the rounds with min and max (lib.sh)
#   HK_BENCH_USAGE       on (default): the usage worker serves the benchmark
#                        database, as deployed, so every ok validation also
#                        queues a last_used_at touch that the worker writes;
#                        off: the worker is pointed at template1 (where the
#                        extension is not installed), which leaves only the
#                        cache's own cost.
#   HK_BENCH_HUGE_PAGES  off (default) or on: the server's main shared memory,
#                        the key cache among it (128 MB at cache_size 524288),
#                        in 2 MB huge pages (huge_pages = on), so that a random
#                        key's cache set does not cost a TLB miss; run as
#                        root, the script reserves the pages it needs
#                        (vm.nr_hugepages, from the server's
#                        shared_memory_size_in_huge_pages) and gives them
#                        back at the end.  The rate
#                        limiter's entries (dynamic shared memory) stay in
#                        4 kB pages.
#
# What it does:
#   1. Starts a throwaway cluster with cache_size raised (and cache_ttl = 1 h,
#      so entries filled at the start of the warm-up have not aged out when
#      the last run ends).
#   2. Builds HK_BENCH_KEYS keys in two parallel sessions with
#      hokusai_auth._new_key('live') at bcrypt cost 4 in one INSERT ... SELECT
#      each (superuser; no create_key(), so no audit rows), and prints the time.
#   3. Warms the cache: validates every key once, in two parallel sessions
#      (one bcrypt each), and prints the time and what the cache then holds.
#   4. pgbench -M prepared -c 2 -j 2: SELECT 1, the key lookup alone in each
#      of two tables, then validate_key of the key read from each.  Both
#      tables have HK_BENCH_KEYS rows and the same index, and both runs pick
#      a random row among all of them, so picking the key costs the same on
#      both sides: bench_keys holds the HK_BENCH_KEYS keys, one per row;
#      bench_small holds only the first HK_BENCH_SMALL of them, each in
#      HK_BENCH_KEYS / HK_BENCH_SMALL rows.  (Until the seventh round the
#      small side picked among HK_BENCH_SMALL rows of bench_keys, a lookup
#      that stays in the CPU's caches, and so the ratio also charged
#      validate_key with the bigger table's lookup: 0.94 of the gap's 6%
#      on its own.)  Both validate runs have the same cache contents; each
#      run checks that every call was a cache hit admitted by the limiter
#      (lib.sh's bench_check).  The lookups alone are printed to show that
#      they cost the same, and so is the usage worker's CPU time during each
#      validate run (its last_used_at writes, one per key a minute).  Rounds
#      alternate (lib.sh); then the same comparison in one backend.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
hk_bench_setup
SECS=${1:-10}
CACHE_SIZE=${HK_BENCH_CACHE_SIZE:-524288}
NKEYS=${HK_BENCH_KEYS:-100000}
NSMALL=${HK_BENCH_SMALL:-1000}
DIR=$(mktemp -d /tmp/hokusai-scale-bench.XXXXXX)
trap 'hk_cluster_stop "$DIR"' EXIT
hk_cluster_start "$DIR" "${HK_BENCH_PORT:-55442}"
cat >> "$DIR/data/postgresql.conf" <<CONF
hokusai_auth.cache_size = $CACHE_SIZE
hokusai_auth.cache_ttl = '1h'
CONF
if [ "${HK_BENCH_USAGE:-on}" = off ]; then
	echo "hokusai_auth.database = 'template1'" >> "$DIR/data/postgresql.conf"
fi
hk_as_user "$HK_PGBIN/pg_ctl" -D "$DIR/data" -w stop >/dev/null
if [ "${HK_BENCH_HUGE_PAGES:-off}" = on ]; then
	echo "huge_pages = on" >> "$DIR/data/postgresql.conf"
	need=$(hk_as_user "$HK_PGBIN/postgres" -D "$DIR/data" -C shared_memory_size_in_huge_pages)
	free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
	if [ "$free" -lt "$need" ]; then
		[ "$(id -u)" -eq 0 ] ||
			{ echo "HK_BENCH_HUGE_PAGES=on needs $need free huge pages ($free): run as root, or raise vm.nr_hugepages" >&2; exit 2; }
		pages_before=$(cat /proc/sys/vm/nr_hugepages)
		echo $((pages_before + need - free)) > /proc/sys/vm/nr_hugepages
		# Given back once the cluster has stopped.
		trap 'hk_cluster_stop "$DIR"; echo "$pages_before" > /proc/sys/vm/nr_hugepages' EXIT
	fi
fi
hk_as_user "$HK_PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w start >/dev/null
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

q -c "CREATE EXTENSION hokusai_auth CASCADE"
echo "cluster: $(q -c "SELECT 'cache_size = ' || current_setting('hokusai_auth.cache_size') || ', huge_pages = ' || current_setting('huge_pages') || ', capacity = ' || capacity || ', cache_ttl = ' || current_setting('hokusai_auth.cache_ttl') || ', usage worker database = ' || current_setting('hokusai_auth.database') FROM hokusai_auth.cache_stats"), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# bench_keys holds the plaintext keys.  It exists only in this benchmark's
# throwaway database, so that pgbench can pick a random key of the working set
# by number; hokusai_auth itself never stores a plaintext key.
q <<SQL
SELECT hokusai_auth.create_user('bench') AS uid \gset
CREATE TABLE bench_keys (i integer PRIMARY KEY, key text NOT NULL);
CREATE TABLE bench_owner AS SELECT :'uid'::uuid AS uid;
SQL

# build FIRST LAST: keys number FIRST..LAST, in one statement.  Generous
# limits, so that no run is ever answered rate_limited.
build()
{
	q <<SQL
SET hokusai_auth.bcrypt_cost = 4;
-- _new_key() in the select list runs once per row (as a LATERAL function
-- without a reference to i it would run once and its row be reused).
WITH g AS MATERIALIZED (
	SELECT i, hokusai_auth._new_key('live') AS k FROM generate_series($1, $2) i),
nk AS MATERIALIZED (
	SELECT i, (k).key, (k).key_prefix, (k).key_hash FROM g),
ins AS (
	INSERT INTO hokusai_auth.api_keys
		(key_hash, key_prefix, user_id, name, rate_limit_per_hour, burst_limit)
	SELECT key_hash, key_prefix, (SELECT uid FROM bench_owner), 'bench ' || i,
		   2000000000, 1000000
	  FROM nk)
INSERT INTO bench_keys (i, key) SELECT i, key FROM nk;
SQL
}

t0=$(now_ms)
build 1 $((NKEYS / 2)) & p1=$!
build $((NKEYS / 2 + 1)) "$NKEYS" & p2=$!
wait $p1; wait $p2
t1=$(now_ms)
# The small set: its HK_BENCH_SMALL keys, each in as many rows, so that
# picking a row costs what it costs in bench_keys.
q -c "CREATE TABLE bench_small (i integer PRIMARY KEY, key text NOT NULL)"
q -c "INSERT INTO bench_small SELECT g.i, b.key FROM generate_series(1, $NKEYS) g(i)
	JOIN bench_keys b ON b.i = (g.i - 1) % $NSMALL + 1"
q -c "ANALYZE bench_keys; ANALYZE bench_small; ANALYZE hokusai_auth.api_keys"
printf 'built %d keys (_new_key at bcrypt cost 4, 2 parallel INSERT ... SELECT): %.1f s, %.2f ms per key per session\n' \
	"$(q -c 'SELECT count(*) FROM hokusai_auth.api_keys')" \
	"$(echo "($t1 - $t0) / 1000" | bc -l)" "$(echo "($t1 - $t0) * 2 / $NKEYS" | bc -l)"

# Warm the cache: every key once, in two parallel sessions.
q -c "SELECT hokusai_auth.cache_stats_reset()" >/dev/null
warm()
{
	q -c "SELECT count(*) FILTER (WHERE v.status = 'ok') FROM bench_keys b,
		LATERAL hokusai_auth.validate_key(b.key) v WHERE b.i % 2 = $1"
}
t0=$(now_ms)
warm 0 > "$DIR/warm0" & p1=$!
warm 1 > "$DIR/warm1" & p2=$!
wait $p1; wait $p2
t1=$(now_ms)
printf 'warmed the cache (validate_key of every key once, 2 parallel sessions): %.1f s, %d ok\n' \
	"$(echo "($t1 - $t0) / 1000" | bc -l)" "$(( $(cat "$DIR/warm0") + $(cat "$DIR/warm1") ))"
q -c "SELECT format('after warm-up: entries %s of capacity %s, misses %s, bcrypt %s, evictions %s (keys pushed out of a full 16-way set)',
		entries, capacity, misses, bcrypt_verifications, evictions) FROM hokusai_auth.cache_stats"

echo "SELECT 1;" > "$DIR/select1.sql"
# The same two lines for both key sets, but for the table.
for t in bench_keys bench_small; do
	cat > "$DIR/lookup.$t.sql" <<SQL
\\set r random(1, $NKEYS)
SELECT b.key FROM $t b WHERE b.i = :r;
SQL
	cat > "$DIR/validate.$t.sql" <<SQL
\\set r random(1, $NKEYS)
SELECT v.status FROM $t b, LATERAL hokusai_auth.validate_key(b.key) v WHERE b.i = :r;
SQL
done
chmod 644 "$DIR"/*.sql

echo
echo "pgbench -n -M prepared -c 2 -j 2 -T $SECS per run; $HK_BENCH_ROUNDS alternating rounds; load average before: $(bench_load)"
# The usage worker's CPU time, in ms, so far (0 when it is not running):
# with 100,000 keys it writes last_used_at for each key once a minute.
WORKER_PID=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'hokusai_auth usage worker'")
worker_ms()
{
	if [ -n "$WORKER_PID" ] && [ -r "/proc/$WORKER_PID/stat" ]; then
		awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$WORKER_PID/stat"
	else
		echo 0
	fi
}

declare -A tps cpu wcpu
r_scale=() r_sel=() c_scale=() r_lk=() c_net=()
for ((round = 1; round <= HK_BENCH_ROUNDS; round++)); do
	declare -A this=() thisc=()
	for w in $(bench_order "$round" select1 lookup_small lookup small large); do
		w0=$(worker_ms)
		case $w in
		select1) read -r t _ _ c < <(bench_pgbench none -f "$DIR/select1.sql") ;;
		lookup_small) read -r t _ _ c < <(bench_pgbench none -f "$DIR/lookup.bench_small.sql") ;;
		lookup) read -r t _ _ c < <(bench_pgbench none -f "$DIR/lookup.bench_keys.sql") ;;
		small) read -r t _ _ c < <(bench_pgbench hit -f "$DIR/validate.bench_small.sql") ;;
		large) read -r t _ _ c < <(bench_pgbench hit -f "$DIR/validate.bench_keys.sql") ;;
		esac
		[ -n "$t" ] || exit 1
		tps[$w]+=" $t"; cpu[$w]+=" $c"; this[$w]=$t; thisc[$w]=$c
		wcpu[$w]+=" $(( $(worker_ms) - w0 ))"
	done
	c_scale+=("$(echo "${thisc[small]} / ${thisc[large]}" | bc -l)")
	r_scale+=("$(echo "${this[large]} / ${this[small]}" | bc -l)")
	r_sel+=("$(echo "${this[small]} / ${this[select1]}" | bc -l)")
	r_lk+=("$(echo "${this[lookup]} / ${this[lookup_small]}" | bc -l)")
	# validate_key's own CPU per call: each validate run less its lookup.
	c_net+=("$(echo "(${thisc[small]} - ${thisc[lookup_small]}) / (${thisc[large]} - ${thisc[lookup]})" | bc -l)")
	echo "round $round: $(for w in select1 lookup_small lookup small large; do printf '%s %.0f  ' "$w" "${this[$w]}"; done)load $(bench_load)"
done
echo
# shellcheck disable=SC2086
{
printf '%-48s %-24s %s\n' workload "TPS median [min-max]" "CPU us per transaction"
printf '%-48s %-24s %s\n' "SELECT 1 (floor)" "$(bench_fmt %.0f ${tps[select1]})" "$(bench_fmt %.1f ${cpu[select1]})"
printf '%-48s %-24s %s\n' "key lookup only, bench_small ($NSMALL keys)" "$(bench_fmt %.0f ${tps[lookup_small]})" "$(bench_fmt %.1f ${cpu[lookup_small]})"
printf '%-48s %-24s %s\n' "key lookup only, bench_keys ($NKEYS keys)" "$(bench_fmt %.0f ${tps[lookup]})" "$(bench_fmt %.1f ${cpu[lookup]})"
printf '%-48s %-24s %s\n' "lookup + validate_key hit, $NSMALL keys" "$(bench_fmt %.0f ${tps[small]})" "$(bench_fmt %.1f ${cpu[small]})"
printf '%-48s %-24s %s\n' "lookup + validate_key hit, $NKEYS keys" "$(bench_fmt %.0f ${tps[large]})" "$(bench_fmt %.1f ${cpu[large]})"
}
printf '%d keys vs %d keys, median [min-max] of the per-round ratios: %s (target: within 5%%, >= 0.95)\n' \
	"$NKEYS" "$NSMALL" "$(bench_fmt %.3f "${r_scale[@]}")"
printf '%d keys vs %d keys from CPU time per transaction (CPU small / CPU large): %s\n' \
	"$NKEYS" "$NSMALL" "$(bench_fmt %.3f "${c_scale[@]}")"
printf 'the key lookup alone, bench_keys vs bench_small (%d rows each; the same cost, so about 1): %s\n' \
	"$NKEYS" "$(bench_fmt %.3f "${r_lk[@]}")"
printf 'validate_key alone, %d keys vs %d keys, CPU per transaction less its lookup'"'"'s (small / large): %s\n' \
	"$NKEYS" "$NSMALL" "$(bench_fmt %.3f "${c_net[@]}")"
printf '%d keys vs SELECT 1: %s\n' "$NSMALL" "$(bench_fmt %.3f "${r_sel[@]}")"
# shellcheck disable=SC2086
printf 'usage worker CPU per run, ms (last_used_at writes): %d keys %s, %d keys %s\n' \
	"$NSMALL" "$(bench_fmt %.0f ${wcpu[small]})" "$NKEYS" "$(bench_fmt %.0f ${wcpu[large]})"
echo "load average after: $(bench_load)"

# The same comparison in one backend, without pgbench and the round trips:
# batches of validate_key calls on random keys of each set (same statement,
# same table), alternating, and batches of the key lookup alone for scale;
# medians of the rounds, with min and max.  OFFSET 0 keeps the planner from
# joining the other way round, which would call validate_key once per key
# instead of once per row (as this benchmark did before issue 15: its
# in-process figures were per key, not per call); the check below counts.
before=$(bench_counters)
out=$(q -c "DO \$\$
DECLARE n int := 50000; t0 timestamptz; c bigint;
	small float8[] := '{}'; large float8[] := '{}'; lk float8[] := '{}'; lks float8[] := '{}';
BEGIN
	FOR round IN 1..$HK_BENCH_ROUNDS LOOP
		t0 := clock_timestamp();
		SELECT count(*) INTO c FROM (SELECT 1 + floor(random() * $NKEYS)::int AS r
			FROM generate_series(1, n)) x,
			LATERAL (SELECT key FROM bench_small b WHERE b.i = x.r OFFSET 0) b;
		lks := lks || extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
		t0 := clock_timestamp();
		SELECT count(*) INTO c FROM (SELECT 1 + floor(random() * $NKEYS)::int AS r
			FROM generate_series(1, n)) x,
			LATERAL (SELECT key FROM bench_keys b WHERE b.i = x.r OFFSET 0) b;
		lk := lk || extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
		FOR part IN 1..2 LOOP
			t0 := clock_timestamp();
			IF (part = 1) = (round % 2 = 1) THEN
				SELECT count(*) INTO c FROM (SELECT 1 + floor(random() * $NKEYS)::int AS r
					FROM generate_series(1, n)) x,
					LATERAL (SELECT key FROM bench_small b WHERE b.i = x.r OFFSET 0) b,
					LATERAL hokusai_auth.validate_key(b.key) v WHERE v.valid;
				small := small || extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
			ELSE
				SELECT count(*) INTO c FROM (SELECT 1 + floor(random() * $NKEYS)::int AS r
					FROM generate_series(1, n)) x,
					LATERAL (SELECT key FROM bench_keys b WHERE b.i = x.r OFFSET 0) b,
					LATERAL hokusai_auth.validate_key(b.key) v WHERE v.valid;
				large := large || extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
			END IF;
			IF c <> n THEN
				RAISE EXCEPTION 'BENCHMARK INVALID: % of % calls valid', c, n;
			END IF;
		END LOOP;
	END LOOP;
	RAISE NOTICE 'inproc % | % | % | %', array_to_string(lks, ' '), array_to_string(lk, ' '),
		array_to_string(small, ' '), array_to_string(large, ' ');
END \$\$" 2>&1 | sed -n 's/.*NOTICE: *inproc //p')
after=$(bench_counters)
bench_check hit $((HK_BENCH_ROUNDS * 100000)) "$before" "$after" || exit 1
IFS='|' read -r lks lk small large <<< "$out"
# shellcheck disable=SC2086
{
echo "in one backend, 50,000 calls per batch, us per row, median [min-max]:"
printf '  %-40s %s\n' "key lookup alone, bench_small" "$(bench_fmt %.3f $lks)"
printf '  %-40s %s\n' "key lookup alone, bench_keys" "$(bench_fmt %.3f $lk)"
printf '  %-40s %s\n' "lookup + validate_key hit, $NSMALL keys" "$(bench_fmt %.3f $small)"
printf '  %-40s %s\n' "lookup + validate_key hit, $NKEYS keys" "$(bench_fmt %.3f $large)"
}
