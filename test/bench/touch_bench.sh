#!/usr/bin/env bash
# Benchmark: what the worker's last_used_at step costs per key it writes.
# Not part of the test suite.
#
#   bash test/bench/touch_bench.sh [keys, default 20000]
#
# The worker (worker/housekeeping.c) writes last_used_at with one call of
# hokusai_auth._usage_touch(ids, times), an UPDATE that waits at most 20 ms
# for a row another transaction holds ("update").  Before 1.6's fifth
# round it always took the way it now takes only after meeting a held row
# ("lock"): the touched keys' rows read, then locked FOR NO KEY UPDATE SKIP
# LOCKED, then the same _usage_touch() call.  All ways write the same rows
# to the same values, with jit off as the worker now pins it
# (worker/trust.c); "lock+jit" is the lock way with the server's default
# jit settings, as the worker ran it before the fifth round.
#
# A throwaway cluster gets KEYS rows in api_keys (inserted directly, with
# hashes of the right shape: nothing here validates a key), then, in
# HK_BENCH_ROUNDS (default 5) rounds alternating the order of the two ways,
# each way touches every key in one transaction, two minutes later than the
# previous touch, so that every row is written each time.  Each transaction
# prints its time (the statements, not the commit), its WAL bytes and how
# many of its updates were HOT (in place, no new index entries).  All of it
# three times, the table rewritten (VACUUM FULL) for each: api_keys as
# installed ("fillfactor 70", since the fifth round), with fillfactor 100,
# and as it was before the fifth round ("before": fillfactor 100 and the
# key_prefix and key_hash checks with bounded repetitions, {8} and {53},
# which every UPDATE of a row evaluates).  The worker's step before the
# fifth round is "lock+jit" on "before"; now it is "update" on
# "fillfactor 70".
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KEYS=${1:-20000}
hk_bench_setup
DIR=$(mktemp -d /tmp/hokusai-touchbench.XXXXXX)
trap 'hk_cluster_stop "$DIR"' EXIT
hk_cluster_start "$DIR" "${HK_BENCH_PORT:-55446}"
# The worker serves another database: it writes nothing here meanwhile.
echo "hokusai_auth.database = 'template1'" >> "$DIR/data/postgresql.conf"
hk_as_user "$HK_PGBIN/pg_ctl" -D "$DIR/data" -w restart >/dev/null
q -c "CREATE EXTENSION hokusai_auth CASCADE" >/dev/null
q <<SQL >/dev/null
INSERT INTO hokusai_auth.users (username) VALUES ('touch');
INSERT INTO hokusai_auth.api_keys (key_hash, key_prefix, user_id, name, rate_limit_per_hour)
SELECT '\$2a\$04\$' || left(md5(i::text) || md5(i::text), 53),
	   'hk_live_' || lpad(to_hex(i), 8, '0'),
	   (SELECT id FROM hokusai_auth.users), 'touch ' || i, 1000
  FROM generate_series(1, $KEYS) i;
SQL
[ "$(q -c "SELECT count(*) FROM hokusai_auth.api_keys")" = "$KEYS" ] || exit 1

# touch WAY MINUTES: one transaction touching every key at now() + MINUTES;
# prints "ms wal_bytes hot_updates".
touch_all()
{
	local lock=false jit=off
	[ "$1" != update ] && lock=true
	[ "$1" = lock+jit ] && jit=on
	q 2>&1 <<SQL | sed -n 's/^NOTICE:  //p'
SET jit = $jit;
DO \$\$
DECLARE
	ids uuid[] := ARRAY(SELECT id FROM hokusai_auth.api_keys);
	ats timestamptz[] := array_fill(now() + interval '$2 minutes', ARRAY[cardinality(ids)]);
	t0 timestamptz;
	l0 pg_lsn;
	n integer;
BEGIN
	l0 := pg_current_wal_insert_lsn();
	t0 := clock_timestamp();
	IF $lock THEN
		PERFORM count(*) FROM (SELECT a.id FROM hokusai_auth.api_keys a WHERE a.id = ANY (ids)) x;
		PERFORM count(*) FROM (SELECT a.id FROM hokusai_auth.api_keys a WHERE a.id = ANY (ids)
								  FOR NO KEY UPDATE OF a SKIP LOCKED) x;
	END IF;
	n := hokusai_auth._usage_touch(ids, ats);
	IF n <> cardinality(ids) THEN
		RAISE EXCEPTION 'BENCHMARK INVALID: % rows written of %', n, cardinality(ids);
	END IF;
	RAISE NOTICE '% % %', extract(epoch FROM clock_timestamp() - t0) * 1000,
		pg_current_wal_insert_lsn() - l0,
		pg_stat_get_xact_tuples_hot_updated('hokusai_auth.api_keys'::regclass);
END
\$\$;
SQL
}

echo "touch_bench: $KEYS keys, every one written by each transaction, $HK_BENCH_ROUNDS rounds (order alternating)"
minutes=0
for layout in 70 100 before; do
	ff=${layout/before/100}
	q -c "ALTER TABLE hokusai_auth.api_keys SET (fillfactor = $ff)" -c "VACUUM FULL hokusai_auth.api_keys" >/dev/null
	if [ "$layout" = before ]; then
		q >/dev/null <<'SQL'
ALTER TABLE hokusai_auth.api_keys
	DROP CONSTRAINT api_keys_key_prefix_check,
	ADD CONSTRAINT api_keys_key_prefix_check
		CHECK (key_prefix ~ '^hk_(live|test)_[0-9A-Za-z]{8}$' AND substr(key_prefix, 4, 4) = environment),
	DROP CONSTRAINT api_keys_key_hash_check,
	ADD CONSTRAINT api_keys_key_hash_check CHECK (key_hash ~ '^\$2a\$[0-9]{2}\$.{53}$');
SQL
		layout="before (fillfactor 100, old checks)"
	else
		layout="fillfactor $ff"
	fi
	# A first pass of each way, not counted: both start from a table that
	# has been written once since its rewrite.
	for w in update lock lock+jit; do minutes=$((minutes + 2)); touch_all $w $minutes >/dev/null; done
	declare -A ms=() wal=() hot=()
	for ((r = 1; r <= HK_BENCH_ROUNDS; r++)); do
		line="round $r ($layout):"
		for w in $(bench_order "$r" update lock lock+jit); do
			minutes=$((minutes + 2))
			read -r t b h < <(touch_all $w $minutes)
			[ -n "$h" ] || { echo "BENCHMARK INVALID: no figures" >&2; exit 1; }
			ms[$w]+="$t "
			wal[$w]+="$(echo "$b / $KEYS" | bc -l) "
			hot[$w]+="$(echo "$h / $KEYS" | bc -l) "
			line+=" $w $(printf '%.0f' "$t") ms"
		done
		echo "$line"
	done
	for w in update lock lock+jit; do
		printf '  %-36s %-8s  us per key %s   WAL bytes per key %s   HOT share %s\n' "$layout" "$w" \
			"$(bench_fmt %.2f $(for t in ${ms[$w]}; do echo "1000 * $t / $KEYS" | bc -l; done))" \
			"$(bench_fmt %.0f ${wal[$w]})" "$(bench_fmt %.2f ${hot[$w]})"
	done
	unset ms wal hot
done
