set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
hk_pick_user
DIR=$(mktemp -d /tmp/hokusai-x.XXXXXX)
trap 'hk_cluster_stop "$DIR"' EXIT
hk_cluster_start "$DIR" 55447
echo "hokusai_auth.database = 'template1'" >> "$DIR/data/postgresql.conf"
hk_as_user "$HK_PGBIN/pg_ctl" -D "$DIR/data" -w restart >/dev/null
q -c "CREATE EXTENSION hokusai_auth CASCADE" >/dev/null
q <<SQL
INSERT INTO hokusai_auth.users (username) VALUES ('touch');
INSERT INTO hokusai_auth.api_keys (key_hash, key_prefix, user_id, name, rate_limit_per_hour)
SELECT '\$2a\$04\$' || left(md5(i::text) || md5(i::text), 53), 'hk_live_' || lpad(to_hex(i), 8, '0'),
	   (SELECT id FROM hokusai_auth.users), 'touch ' || i, 1000 FROM generate_series(1, 20000) i;
VACUUM ANALYZE hokusai_auth.api_keys;
SQL
cat > $DIR/w.sql <<'SQL'
SET jit = off;
\o /tmp/perf_pid
SELECT pg_backend_pid();
\o
SELECT pg_sleep(2);
SQL
for r in 1 2 3 4 5 6; do cat >> $DIR/w.sql <<SQL
DO \$\$
DECLARE ids uuid[] := ARRAY(SELECT id FROM hokusai_auth.api_keys); t0 timestamptz; n int;
BEGIN
  t0 := clock_timestamp();
  n := hokusai_auth._usage_touch(ids, array_fill(now() + $r * interval '2 minutes', ARRAY[cardinality(ids)]));
  RAISE NOTICE 'round $r rows % ms %', n, extract(epoch from clock_timestamp() - t0) * 1000;
END \$\$;
SQL
done
chmod 644 $DIR/w.sql
q -f $DIR/w.sql &
sleep 1.5
perf record -g -o /tmp/perf.touch -p $(cat /tmp/perf_pid) -- sleep 6 >/dev/null 2>&1 || true
wait
