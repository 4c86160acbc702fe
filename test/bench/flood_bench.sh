#!/usr/bin/env bash
# Benchmark: a flood of wrong secrets on one key_prefix.  Not part of the test
# suite: it prints figures, and ratios against a baseline measured in the same
# run (the machines are shared and noisy).
#
#   bash test/bench/flood_bench.sh [seconds per pgbench run, default 10]
#
# Environment:
#   HK_BENCH_PORT    port of the throwaway cluster (default 55443)
#   HK_BENCH_FORGED  number of distinct forged keys (default 5000)
#   HK_BENCH_COST    bcrypt cost of the attacked key (default 10, the default
#                    of hokusai_auth.bcrypt_cost).  At cost 10 one attacking
#                    client spends ~70 ms per wrong secret and so cannot reach
#                    the throttle's budget of 10 per second; at cost 4 it can,
#                    and "throttled/s" shows the throttle at work.
#
# One pgbench client (the attacker) validates keys that carry the prefix of a
# real key and a valid checksum but a wrong secret, as fast as it can, while
# another pgbench client (the good client) validates random keys among 100
# good, cached keys (the attacked key is one of them).  Runs, SECS seconds
# each, all with the default settings (max_failures_per_prefix = 10):
#
#   baseline   the good client alone
#   distinct   attacker with a random pick among HK_BENCH_FORGED different
#              wrong secrets: misses, bounded by the per-prefix throttle
#   repeated   attacker with ONE wrong secret over and over: the negative cache
#   baseline   the good client alone again (to bracket drift)
#
# The attacked key is hashed at the default bcrypt cost (10), as a real key
# would be, since a wrong secret costs one bcrypt at the cost of the key it
# names; the other good keys at cost 4 to build quickly (they are only ever
# cache hits).  bcrypt_verifications, throttled and negative_hits are deltas
# of hokusai_auth.cache_stats over each run; the good client's keys are all
# cached, so every bcrypt in a run is the attacker's.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/setup.sh"
source "$HK_TOP/test/lib/cluster.sh"
hk_setup
SECS=${1:-10}
NFORGED=${HK_BENCH_FORGED:-5000}
NGOOD=100
DIR=$(mktemp -d /tmp/hokusai-flood-bench.XXXXXX)
trap 'hk_cluster_stop "$DIR"' EXIT
hk_cluster_start "$DIR" "${HK_BENCH_PORT:-55443}"
q() { hk_as_user psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

q -c "CREATE EXTENSION hokusai_auth CASCADE"

# good_keys and forged_keys hold plaintext keys.  They exist only in this
# benchmark's throwaway database, so that pgbench can pick a key by number;
# hokusai_auth itself never stores a plaintext key.
q <<SQL
SELECT hokusai_auth.create_user('bench') AS uid \gset
CREATE TABLE good_keys (i integer PRIMARY KEY, key text NOT NULL);
CREATE TABLE forged_keys (i integer PRIMARY KEY, key text NOT NULL);

-- Generous limits, so that no run is ever answered rate_limited.
-- Key 1, the attacked one, at HK_BENCH_COST.
SET hokusai_auth.bcrypt_cost = ${HK_BENCH_COST:-10};
INSERT INTO good_keys
SELECT 1, key FROM hokusai_auth.create_key(:'uid', 'attacked',
	rate_limit_per_hour => 2000000000, burst_limit => 1000000);
SET hokusai_auth.bcrypt_cost = 4;
INSERT INTO good_keys
SELECT i, k.key FROM generate_series(2, $NGOOD) i,
	LATERAL hokusai_auth.create_key(:'uid', 'good ' || i,
		rate_limit_per_hour => 2000000000, burst_limit => 1000000) k;

-- The key format's checksum, the same SQL the regression suites use.
\i $HK_TOP/test/lib/key_checksum.sql

-- The attacked prefix with random wrong secrets (32 hex digits are base62).
INSERT INTO forged_keys
SELECT i, hk_with_checksum(hokusai_auth.key_prefix((SELECT key FROM good_keys WHERE i = 1))
		|| md5(random()::text || i))
  FROM generate_series(1, $NFORGED) i;
ANALYZE good_keys;
ANALYZE forged_keys;
SQL

PREFIX=$(q -c "SELECT hokusai_auth.key_prefix(key) FROM good_keys WHERE i = 1")
q -c "CREATE TABLE forged_one AS SELECT 1 AS i, hk_with_checksum('$PREFIX' || repeat('w', 32)) AS key;
	ALTER TABLE forged_one ADD PRIMARY KEY (i); ANALYZE forged_one"
ONE=$(q -c "SELECT key FROM forged_one")
q -c "SELECT format('%s forged keys for prefix %s, %s well-formed, %s distinct; repeated one: %s',
		count(*), '$PREFIX', count(*) FILTER (WHERE hokusai_auth.key_is_well_formed(key)),
		count(DISTINCT key), hokusai_auth.key_is_well_formed('$ONE'))
	FROM forged_keys"
# The price of one wrong guess against the attacked key: one crypt() at its cost.
q <<SQL
DO \$\$
DECLARE h text; t0 timestamptz; n int := 10;
BEGIN
	SELECT key_hash INTO h FROM hokusai_auth.api_keys WHERE key_prefix = '$PREFIX';
	t0 := clock_timestamp();
	FOR i IN 1..n LOOP PERFORM crypt('wrong' || i, h); END LOOP;
	RAISE NOTICE 'one bcrypt verification of the attacked key (cost %): % ms',
		substr(h, 5, 2)::int, round(extract(epoch FROM clock_timestamp() - t0) * 1000 / n, 1);
END \$\$;
SQL

# Warm: every good key once, so the good client only hits the cache.
q -c "SELECT format('warmed %s good keys: %s ok', count(*), count(*) FILTER (WHERE v.status = 'ok'))
	FROM good_keys g, LATERAL hokusai_auth.validate_key(g.key) v"

cat > "$DIR/good.sql" <<SQL
\set r random(1, $NGOOD)
SELECT v.status FROM good_keys g, LATERAL hokusai_auth.validate_key(g.key) v WHERE g.i = :r;
SQL
cat > "$DIR/distinct.sql" <<SQL
\set r random(1, $NFORGED)
SELECT v.status FROM forged_keys f, LATERAL hokusai_auth.validate_key(f.key) v WHERE f.i = :r;
SQL
# The same statement as above, on a table of one key.
cat > "$DIR/repeated.sql" <<SQL
\set r random(1, 1)
SELECT v.status FROM forged_one f, LATERAL hokusai_auth.validate_key(f.key) v WHERE f.i = :r;
SQL
chmod 644 "$DIR"/*.sql

bench() { hk_as_user "$HK_PGBIN/pgbench" -n -M prepared -c 1 -j 1 -T "$SECS" -f "$DIR/$1.sql"; }
tps_of() { sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$1" | head -1; }

# run ATTACK: the good client, alone (ATTACK = none) or next to the attacker;
# prints good TPS, attacker TPS, then the cache counters moved.
run()
{
	local attack=$1 pa=
	q -c "SELECT hokusai_auth.cache_stats_reset()" >/dev/null
	if [ "$attack" != none ]; then
		bench "$attack" > "$DIR/attack.out" 2>&1 & pa=$!
	fi
	bench good > "$DIR/good.out" 2>&1 || { cat "$DIR/good.out" >&2; return 1; }
	if [ -n "$pa" ]; then
		wait "$pa" || { cat "$DIR/attack.out" >&2; return 1; }
		echo -n "$(tps_of "$DIR/attack.out") "
	else
		echo -n "0 "
	fi
	echo -n "$(tps_of "$DIR/good.out") "
	q -F ' ' -c "SELECT hits, misses, negative_hits, bcrypt_verifications, throttled FROM hokusai_auth.cache_stats"
}

echo "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
echo "each run: pgbench -n -M prepared -c 1 -j 1 -T $SECS per client; attacker and good client side by side"
printf '%-22s %10s %10s %8s %10s %10s %10s %10s\n' run "good TPS" "vs base" "attack/s" \
	"bcrypt/s" "throttled/s" "neg_hits/s" "misses/s"
per() { printf '%.1f' "$(echo "$1 / $SECS" | bc -l)"; }
base_sum=0 tps_distinct=0 tps_repeated=0
for attack in none distinct repeated none; do
	read -r ta tg h m ng b th < <(run "$attack")
	case $attack in
	none) label=baseline; base_sum=$(echo "$base_sum + $tg" | bc -l); ratio= ;;
	*) label="attack: $attack" ;;
	esac
	if [ "$attack" = none ]; then
		printf '%-22s %10.0f %10s %8s %10s %10s %10s %10s\n' "$label" "$tg" "" "-" \
			"$(per "$b")" "$(per "$th")" "$(per "$ng")" "$(per "$m")"
	else
		# Relative to the first baseline here; to the mean of both at the end.
		printf '%-22s %10.0f %10s %8.0f %10s %10s %10s %10s\n' "$label" "$tg" \
			"$(printf '%.2fx' "$(echo "$tg / $base_sum" | bc -l)")" "$ta" \
			"$(per "$b")" "$(per "$th")" "$(per "$ng")" "$(per "$m")"
		if [ "$attack" = distinct ]; then tps_distinct=$tg; else tps_repeated=$tg; fi
	fi
done
base=$(echo "$base_sum / 2" | bc -l)
echo
printf 'good client TPS under attack vs mean baseline (%.0f TPS), target >= 0.5x:\n' "$base"
printf '  distinct wrong secrets: %.2fx\n' "$(echo "$tps_distinct / $base" | bc -l)"
printf '  one repeated wrong secret: %.2fx\n' "$(echo "$tps_repeated / $base" | bc -l)"
q -c "SELECT 'attacked key after the floods: ' || status FROM good_keys g,
	LATERAL hokusai_auth.validate_key(g.key) v WHERE g.i = 1"
