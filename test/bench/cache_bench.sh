#!/usr/bin/env bash
# Benchmark of validate_key and its cache (issue: microsecond validation).
# Not part of the test suite: it prints figures and ratios against
# baselines measured in the same run.
#
#   bash test/bench/cache_bench.sh [seconds per pgbench run, default 10]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/setup.sh"
source "$HK_TOP/test/lib/cluster.sh"
hk_setup
SECS=${1:-10}
DIR=$(mktemp -d /tmp/hokusai-bench.XXXXXX)
hk_cluster_start "$DIR" "${HK_BENCH_PORT:-55441}"
trap 'hk_cluster_stop "$DIR"' EXIT
PGBIN=$(pg_config --bindir)
q() { hk_as_user psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

q -c "CREATE EXTENSION hokusai_auth CASCADE"
KEY=$(q -c "SELECT key FROM hokusai_auth.create_key(hokusai_auth.create_user('bench'), 'bench', rate_limit_per_hour => 1000000000, burst_limit => 60000)")
# The hand-written alternative: a SHA-256 of the key in a unique index.
q <<SQL
CREATE TABLE sha_keys (id bigserial PRIMARY KEY, h bytea UNIQUE NOT NULL);
INSERT INTO sha_keys (h) SELECT digest('other' || i, 'sha256') FROM generate_series(1, 10000) i;
INSERT INTO sha_keys (h) VALUES (digest('$KEY', 'sha256'));
ANALYZE sha_keys;
SELECT status FROM hokusai_auth.validate_key('$KEY');
SQL

scripts=$(mktemp -d); chmod 755 "$scripts"
echo "SELECT 1;" > "$scripts/select1.sql"
echo "SELECT * FROM hokusai_auth.validate_key('$KEY');" > "$scripts/hit.sql"
echo "SELECT id FROM sha_keys WHERE h = digest('$KEY', 'sha256');" > "$scripts/sha.sql"
echo "SELECT * FROM hokusai_auth.validate_key('hk_live_malformed');" > "$scripts/malformed.sql"
chmod 644 "$scripts"/*.sql

# run NAME: TPS and p99 latency (ms) of one pgbench run.
run()
{
	local name=$1 logdir
	logdir=$(mktemp -d); chmod 777 "$logdir"
	local out
	out=$(cd "$logdir" && hk_as_user "$PGBIN/pgbench" -n -M prepared -c 2 -j 2 -T "$SECS" \
		-l --log-prefix="$logdir/log" -f "$scripts/$name.sql" 2>&1)
	local tps p99
	tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
	p99=$(cat "$logdir"/log* | awk '{print $3}' | sort -n |
		awk '{a[NR]=$1} END {print a[int(NR*0.99)]/1000}')
	rm -rf "$logdir"
	echo "$tps $p99"
}

echo "pgbench -M prepared -c 2 -j 2 -T $SECS, one run each"
read -r t_sel p_sel < <(run select1)
read -r t_hit p_hit < <(run hit)
read -r t_sha p_sha < <(run sha)
read -r t_bad p_bad < <(run malformed)
printf '%-34s %12s %10s %14s\n' workload TPS "p99 ms" "ratio"
printf '%-34s %12.0f %10.3f %14s\n' "SELECT 1 (floor)" "$t_sel" "$p_sel" "1.00x"
printf '%-34s %12.0f %10.3f %13.2fx\n' "validate_key, cache hit" "$t_hit" "$p_hit" "$(echo "$t_hit / $t_sel" | bc -l)"
printf '%-34s %12.0f %10.3f %13.2fx\n' "SHA-256 unique-index lookup" "$t_sha" "$p_sha" "$(echo "$t_sha / $t_sel" | bc -l)"
printf '%-34s %12.0f %10.3f %13.2fx\n' "validate_key, malformed key" "$t_bad" "$p_bad" "$(echo "$t_bad / $t_sel" | bc -l)"
printf 'cache hit vs SHA-256 lookup: %.2fx\n' "$(echo "$t_hit / $t_sha" | bc -l)"

# In-process cost of a cache hit: 100000 calls in one statement, minus the
# same statement without the call.
q <<SQL
\pset format aligned
\pset tuples_only off
SELECT hokusai_auth.cache_stats_reset();
CREATE TEMP TABLE t AS SELECT 1;
DO \$\$
DECLARE t0 timestamptz; t1 timestamptz; t2 timestamptz; n int := 100000; c bigint;
BEGIN
	t0 := clock_timestamp();
	SELECT count(*) INTO c FROM generate_series(1, n) i, LATERAL (SELECT left('$KEY' || i, 54) AS k) x;
	t1 := clock_timestamp();
	SELECT count(*) INTO c FROM generate_series(1, n) i,
		LATERAL hokusai_auth.validate_key(left('$KEY' || i, 54)) v WHERE v.valid;
	t2 := clock_timestamp();
	RAISE NOTICE 'in-process cache hit: % us per call (% valid of %)',
		round((extract(epoch FROM (t2 - t1)) - extract(epoch FROM (t1 - t0))) * 1e6 / n, 3), c, n;
END \$\$;
SELECT hits, misses FROM hokusai_auth.cache_stats;
SQL

# Cold validation (cache miss) against one crypt() at the same cost.
q <<SQL
SET hokusai_auth.bcrypt_cost = 10;
CREATE TEMP TABLE cold AS
SELECT k.id, k.key, NULL::text AS key_hash FROM generate_series(1, 20) i,
	LATERAL hokusai_auth.create_key((SELECT id FROM hokusai_auth.users LIMIT 1), 'cold ' || i) k;
-- A separate statement: the one above cannot see the rows it inserted.
UPDATE cold SET key_hash = a.key_hash FROM hokusai_auth.api_keys a WHERE a.id = cold.id;
DO \$\$
DECLARE t0 timestamptz; t1 timestamptz; t2 timestamptz; r record; ok bool; s text;
BEGIN
	t0 := clock_timestamp();
	FOR r IN SELECT * FROM cold LOOP
		ok := crypt(r.key, r.key_hash) = r.key_hash;
	END LOOP;
	t1 := clock_timestamp();
	FOR r IN SELECT * FROM cold LOOP
		SELECT status INTO s FROM hokusai_auth.validate_key(r.key);
	END LOOP;
	t2 := clock_timestamp();
	RAISE NOTICE 'cold validate_key: % ms, crypt(): % ms, ratio %x',
		round(extract(epoch FROM (t2 - t1)) * 1000 / 20, 2),
		round(extract(epoch FROM (t1 - t0)) * 1000 / 20, 2),
		round(extract(epoch FROM (t2 - t1)) / extract(epoch FROM (t1 - t0)), 3);
END \$\$;
SQL

# Shared memory per cache entry.
q -c "SELECT 'shared memory per cache entry: ' || round(a.size::numeric / s.capacity, 1) || ' bytes (' || a.size || ' bytes for ' || s.capacity || ' entries, incl. fixed header and throttle table)'
        FROM pg_shmem_allocations a, hokusai_auth.cache_stats s WHERE a.name = 'hokusai_auth key cache'"
