#!/usr/bin/env bash
# Benchmark: does a cache hit cost the same with 100,000 active keys as with
# 1,000?  Not part of the test suite: it prints figures, and ratios against
# baselines measured in the same run (the machines are shared and noisy).
#
#   bash test/bench/cache_scale_bench.sh [seconds per pgbench run, default 10]
#
# Environment:
#   HK_BENCH_PORT        port of the throwaway cluster (default 55442)
#   HK_BENCH_CACHE_SIZE  hokusai_auth.cache_size (default 262144: 100,000 keys do
#                        not fit in 131072, whose 8192 sets of 16 get 12.2 keys on
#                        average; many sets overflow)
#   HK_BENCH_KEYS        size of the large key set (default 100000)
#   HK_BENCH_SMALL       size of the small key set (default 1000)
#   HK_BENCH_ROUNDS      rounds of (small, large) runs, order alternating (default 2)
#   HK_BENCH_USAGE       on (default): the usage worker serves the benchmark
#                        database, as deployed, so every ok validation also
#                        queues a last_used_at touch that the worker writes;
#                        off: the worker is pointed at template1 (where the
#                        extension is not installed), which leaves only the
#                        cache's own cost.  The "worker s" column is the CPU
#                        time the usage worker used during each run.
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
#   4. pgbench -M prepared -c 2 -j 2: SELECT 1, the key lookup alone, then
#      validate_key of a random key among the first HK_BENCH_SMALL keys and
#      among all HK_BENCH_KEYS keys.  Both validate runs use the same script,
#      the same table and index (only the range of the random number differs),
#      and the same cache contents; the cache counters of each run show
#      whether it was served from the cache.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/setup.sh"
source "$HK_TOP/test/lib/cluster.sh"
hk_setup
SECS=${1:-10}
CACHE_SIZE=${HK_BENCH_CACHE_SIZE:-262144}
NKEYS=${HK_BENCH_KEYS:-100000}
NSMALL=${HK_BENCH_SMALL:-1000}
ROUNDS=${HK_BENCH_ROUNDS:-2}
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
hk_as_user "$HK_PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w restart >/dev/null
q() { hk_as_user psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

q -c "CREATE EXTENSION hokusai_auth CASCADE"
echo "cluster: $(q -c "SELECT 'cache_size = ' || current_setting('hokusai_auth.cache_size') || ', capacity = ' || capacity || ', cache_ttl = ' || current_setting('hokusai_auth.cache_ttl') || ', usage worker database = ' || current_setting('hokusai_auth.database') FROM hokusai_auth.cache_stats"), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

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
q -c "ANALYZE bench_keys; ANALYZE hokusai_auth.api_keys"
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
# The same two lines for every key-set size: -D n=... sets the range.
cat > "$DIR/lookup.sql" <<'SQL'
\set r random(1, :n)
SELECT b.key FROM bench_keys b WHERE b.i = :r;
SQL
cat > "$DIR/validate.sql" <<'SQL'
\set r random(1, :n)
SELECT v.status FROM bench_keys b, LATERAL hokusai_auth.validate_key(b.key) v WHERE b.i = :r;
SQL
chmod 644 "$DIR"/*.sql

# CPU seconds (user + system) the usage worker has used so far.
worker_cpu()
{
	local pid
	pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'hokusai_auth usage worker'")
	if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
		# Fields 14 and 15 (utime, stime) after the ")" that ends the command name.
		sed 's/.*) //' "/proc/$pid/stat" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($12 + $13) / hz}'
	else
		echo 0
	fi
}

# run SCRIPT N: TPS of one pgbench run, the cache counters it moved, and the
# usage worker's CPU seconds during it.
run()
{
	local out tps stats w0 w1
	q -c "SELECT hokusai_auth.cache_stats_reset()" >/dev/null
	w0=$(worker_cpu)
	out=$(hk_as_user "$HK_PGBIN/pgbench" -n -M prepared -c 2 -j 2 -T "$SECS" \
		-D n="$2" -f "$DIR/$1.sql" 2>&1) || { echo "$out" >&2; return 1; }
	tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
	stats=$(q -F ' ' -c "SELECT hits, misses, negative_hits, bcrypt_verifications, evictions FROM hokusai_auth.cache_stats")
	w1=$(worker_cpu)
	echo "$tps $stats $(echo "$w1 - $w0" | bc -l)"
}
row()	# label tps hits misses neg bcrypt evictions worker-cpu [ratio]
{
	printf '%-42s %10.0f %10s %8s %8s %8s %9.2f %10s\n' "$1" "$2" "$3" "$4" "$6" "$7" "$8" "${9:-}"
}

echo
echo "pgbench -n -M prepared -c 2 -j 2 -T $SECS per run"
printf '%-42s %10s %10s %8s %8s %8s %9s %10s\n' workload TPS hits misses bcrypt evict "worker s" "vs SELECT 1"
read -r t_sel _ _ _ _ _ w < <(run select1 1)
row "SELECT 1 (floor)" "$t_sel" - - - - - "$w" "1.00x"
read -r t_lk _ _ _ _ _ w < <(run lookup "$NKEYS")
row "key lookup only, $NKEYS rows" "$t_lk" - - - - - "$w" "$(printf '%.2fx' "$(echo "$t_lk / $t_sel" | bc -l)")"

sum_small=0 sum_large=0
for ((round = 1; round <= ROUNDS; round++)); do
	if ((round % 2)); then order="$NSMALL $NKEYS"; else order="$NKEYS $NSMALL"; fi
	for n in $order; do
		read -r tps h m ng b e w < <(run validate "$n")
		row "validate_key hit, $n keys (round $round)" "$tps" "$h" "$m" "$ng" "$b" "$e" "$w" \
			"$(printf '%.2fx' "$(echo "$tps / $t_sel" | bc -l)")"
		if [ "$n" = "$NSMALL" ]; then
			sum_small=$(echo "$sum_small + $tps" | bc -l)
		else
			sum_large=$(echo "$sum_large + $tps" | bc -l)
		fi
	done
done
echo
printf 'mean TPS: %d keys %.0f, %d keys %.0f\n' "$NSMALL" "$(echo "$sum_small / $ROUNDS" | bc -l)" \
	"$NKEYS" "$(echo "$sum_large / $ROUNDS" | bc -l)"
printf '%d keys vs %d keys: %.3fx (target: within 10%%, i.e. >= 0.90x)\n' "$NKEYS" "$NSMALL" \
	"$(echo "$sum_large / $sum_small" | bc -l)"

# The same comparison in one backend, without pgbench and the round trips:
# batches of validate_key calls on random keys of each set (same statement,
# same table), alternating, and batches of the key lookup alone for scale.  The fastest batch of each kind
# is the one least disturbed by other work on the machine.
q <<SQL
DO \$\$
DECLARE n int := 50000; t0 timestamptz; c bigint;
	small float8 := 'Infinity'; large float8 := 'Infinity'; lk float8 := 'Infinity';
	bad bigint := 0;
BEGIN
	FOR round IN 1..5 LOOP
		t0 := clock_timestamp();
		SELECT count(*) INTO c FROM (SELECT 1 + floor(random() * $NKEYS)::int AS r
			FROM generate_series(1, n)) x JOIN bench_keys b ON b.i = x.r;
		lk := least(lk, extract(epoch FROM clock_timestamp() - t0) * 1e6 / n);
		t0 := clock_timestamp();
		SELECT count(*) INTO c FROM (SELECT 1 + floor(random() * $NSMALL)::int AS r
			FROM generate_series(1, n)) x JOIN bench_keys b ON b.i = x.r,
			LATERAL hokusai_auth.validate_key(b.key) v WHERE v.valid;
		small := least(small, extract(epoch FROM clock_timestamp() - t0) * 1e6 / n);
		bad := bad + n - c;
		t0 := clock_timestamp();
		SELECT count(*) INTO c FROM (SELECT 1 + floor(random() * $NKEYS)::int AS r
			FROM generate_series(1, n)) x JOIN bench_keys b ON b.i = x.r,
			LATERAL hokusai_auth.validate_key(b.key) v WHERE v.valid;
		large := least(large, extract(epoch FROM clock_timestamp() - t0) * 1e6 / n);
		bad := bad + n - c;
	END LOOP;
	RAISE NOTICE 'in one backend, best of 5 batches of % rows: lookup alone % us/row; lookup + validate_key hit % us/row with $NSMALL keys, % us/row with $NKEYS keys; speed $NKEYS vs $NSMALL keys: %x (% calls not ok)',
		n, round(lk::numeric, 3), round(small::numeric, 3), round(large::numeric, 3),
		round((small / large)::numeric, 3), bad;
END \$\$;
SQL
