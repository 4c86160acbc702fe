#!/usr/bin/env bash
# Benchmark of validate_key and its cache (issues 2 and 15).  Not part of the
# test suite: it prints figures and ratios against baselines measured in the
# same run, by the rules of test/bench/lib.sh (medians of alternating rounds
# with min and max, every counted call checked).
#
#   bash test/bench/cache_bench.sh [seconds per pgbench run, default 10]
#
# Environment: HK_BENCH_ROUNDS (default 5), HK_BENCH_PORT (default 55441).
#
# pgbench -n -M prepared -c 2 -j 2, 16 scripts picked at random per
# transaction, script i using key i as a bind parameter ($ki), the same 16
# scripts for every workload:
#   select1    SELECT 1 (the round-trip floor)
#   noop       SELECT valid FROM hk_bench.noop_validate(:ki): a C function
#              with validate_key's signature and result type that does
#              nothing (test/bench/noop/; the floor for our interface)
#   hit        SELECT valid FROM hokusai_auth.validate_key(:ki): a cache hit,
#              both rate limits active (16 keys, so that no key comes near
#              its burst limit: each run checks that every call was ok)
#   hitfs      the same with hokusai_auth.enable_call_scan off (PGOPTIONS):
#              the call planned as a Function Scan, as before the
#              Validation Call scan (docs/cache.md); the do-nothing
#              function runs as a Validation Call like validate_key
#   sha        SELECT id FROM sha_keys WHERE h = digest(:ki, 'sha256'): what
#              a user would write by hand, 10,016 rows, unique index
#   malformed  validate_key of key i with its last character changed (a
#              checksum failure)
# Then, in one backend: the in-process cost of a cache hit including the
# limiter (a generate_series loop of validate_key calls on 64 keys minus its
# empty twin, and minus the same loop of the do-nothing function), by wall
# clock and by CPU time; cold validation against crypt(); bytes per cache
# entry.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
hk_bench_setup
SECS=${1:-10}
NK=16
DIR=$(mktemp -d /tmp/hokusai-bench.XXXXXX)
hk_bench_cluster_start "$DIR" "${HK_BENCH_PORT:-55441}"
trap 'hk_cluster_stop "$DIR"' EXIT

q -c "CREATE EXTENSION hokusai_auth CASCADE"
hk_bench_noop_sql | q >/dev/null
# 64 keys: limits high, burst at 60,000 per second (its counters' range is
# 65,535), the first NK for pgbench, all of them in process.
q <<SQL >/dev/null
SET hokusai_auth.bcrypt_cost = 4;
CREATE TABLE bench_keys AS
SELECT i, k.key FROM generate_series(1, 64) i,
	LATERAL hokusai_auth.create_key(hokusai_auth.create_user('bench' || i), 'bench',
		rate_limit_per_hour => 2000000000, burst_limit => 60000) k;
-- The hand-written alternative: a SHA-256 of the key in a unique index.
CREATE TABLE sha_keys (id bigserial PRIMARY KEY, h bytea UNIQUE NOT NULL);
INSERT INTO sha_keys (h) SELECT digest('other' || i, 'sha256') FROM generate_series(1, 10000) i;
INSERT INTO sha_keys (h) SELECT digest(key, 'sha256') FROM bench_keys WHERE i <= $NK;
ANALYZE sha_keys;
SELECT count(*) FROM bench_keys, LATERAL hokusai_auth.validate_key(key) v WHERE v.valid;
SQL
[ "$(q -c "SELECT count(*) FROM bench_keys, LATERAL hokusai_auth.validate_key(key) v WHERE v.valid")" = 64 ] ||
	{ echo "the benchmark keys do not validate" >&2; exit 1; }

# -D k1=... -D m1=...: the keys and their malformed twins.
defs=()
while read -r i key; do
	last=${key: -1}
	if [ "$last" = A ]; then bad=B; else bad=A; fi
	defs+=(-D "k$i=$key" -D "m$i=${key%?}$bad")
done < <(q -F ' ' -c "SELECT i, key FROM bench_keys WHERE i <= $NK ORDER BY i")
[ "$(q -c "SELECT status FROM hokusai_auth.validate_key('$(echo "${defs[3]}" | cut -d= -f2)')")" = malformed ] ||
	{ echo "the malformed twin is not malformed" >&2; exit 1; }
q -c "SELECT hokusai_auth.cache_stats_reset()" >/dev/null

scripts=$DIR/scripts; mkdir -p "$scripts"
for i in $(seq 1 $NK); do
	echo "SELECT 1;" > "$scripts/select1.$i.sql"
	echo "SELECT valid FROM hk_bench.noop_validate(:k$i);" > "$scripts/noop.$i.sql"
	echo "SELECT valid FROM hokusai_auth.validate_key(:k$i);" > "$scripts/hit.$i.sql"
	echo "SELECT id FROM sha_keys WHERE h = digest(:k$i, 'sha256');" > "$scripts/sha.$i.sql"
	echo "SELECT valid FROM hokusai_auth.validate_key(:m$i);" > "$scripts/malformed.$i.sql"
done
chmod -R a+rX "$DIR"

declare -A expect=([select1]=none [noop]=none [hit]=hit [hitfs]=hit [sha]=none [malformed]=malformed)
declare -A label=([select1]="SELECT 1 (floor)" [noop]="do-nothing C function, same signature"
	[hit]="validate_key, cache hit" [hitfs]="the same as a Function Scan"
	[sha]="SHA-256 unique-index lookup" [malformed]="validate_key, malformed key")
declare -A tps p99 cpu
WORKLOADS=(select1 noop hit hitfs sha malformed)
r_sel=() r_noop=() r_sha=() r_bad=() r_fs=() r_fssel=()
c_sel=() c_noop=() c_sha=() c_bad=() c_fs=()

echo "pgbench -n -M prepared -c 2 -j 2 -T $SECS, $NK keys; $HK_BENCH_ROUNDS alternating rounds; $(nproc) CPUs; load average before: $(bench_load)"
for ((round = 1; round <= HK_BENCH_ROUNDS; round++)); do
	declare -A this=() thisc=()
	for w in $(bench_order "$round" "${WORKLOADS[@]}"); do
		files=() opts=
		for i in $(seq 1 $NK); do files+=(-f "$scripts/${w%fs}.$i.sql"); done
		[ "$w" = hitfs ] && opts='-c hokusai_auth.enable_call_scan=off'
		read -r t _ p c < <(PGOPTIONS=$opts bench_pgbench "${expect[$w]}" "${defs[@]}" "${files[@]}") ||
			exit 1
		[ -n "$t" ] || exit 1
		tps[$w]+=" $t"; p99[$w]+=" $p"; cpu[$w]+=" $c"; this[$w]=$t; thisc[$w]=$c
	done
	r_sel+=("$(echo "${this[hit]} / ${this[select1]}" | bc -l)")
	r_noop+=("$(echo "${this[hit]} / ${this[noop]}" | bc -l)")
	r_sha+=("$(echo "${this[hit]} / ${this[sha]}" | bc -l)")
	r_bad+=("$(echo "${this[malformed]} / ${this[select1]}" | bc -l)")
	r_fs+=("$(echo "${this[hit]} / ${this[hitfs]}" | bc -l)")
	r_fssel+=("$(echo "${this[hitfs]} / ${this[select1]}" | bc -l)")
	c_sel+=("$(echo "${thisc[select1]} / ${thisc[hit]}" | bc -l)")
	c_noop+=("$(echo "${thisc[noop]} / ${thisc[hit]}" | bc -l)")
	c_sha+=("$(echo "${thisc[sha]} / ${thisc[hit]}" | bc -l)")
	c_bad+=("$(echo "${thisc[select1]} / ${thisc[malformed]}" | bc -l)")
	c_fs+=("$(echo "${thisc[hitfs]} / ${thisc[hit]}" | bc -l)")
	echo "round $round: $(for w in "${WORKLOADS[@]}"; do printf '%s %.0f  ' "$w" "${this[$w]}"; done)load $(bench_load)"
done

echo
printf '%-40s %-24s %-22s %s\n' workload "TPS median [min-max]" "p99 ms" "CPU us per transaction"
for w in "${WORKLOADS[@]}"; do
	# shellcheck disable=SC2086
	printf '%-40s %-24s %-22s %s\n' "${label[$w]}" "$(bench_fmt %.0f ${tps[$w]})" \
		"$(bench_fmt %.3f ${p99[$w]})" "$(bench_fmt %.1f ${cpu[$w]})"
done
echo
echo "ratios, median [min-max] of the per-round ratios:"
printf '  %-46s %s   (target >= 0.85)\n' "cache hit / SELECT 1" "$(bench_fmt %.3f "${r_sel[@]}")"
printf '  %-46s %s   (target >= 0.93)\n' "cache hit / do-nothing function" "$(bench_fmt %.3f "${r_noop[@]}")"
printf '  %-46s %s   (target >= 1.05)\n' "cache hit / SHA-256 lookup" "$(bench_fmt %.3f "${r_sha[@]}")"
printf '  %-46s %s   (target >= 0.9)\n' "malformed / SELECT 1" "$(bench_fmt %.3f "${r_bad[@]}")"
printf '  %-46s %s\n' "cache hit / the same as a Function Scan" "$(bench_fmt %.3f "${r_fs[@]}")"
printf '  %-46s %s\n' "cache hit as a Function Scan / SELECT 1" "$(bench_fmt %.3f "${r_fssel[@]}")"
echo "the same ratios from CPU time per transaction (server + pgbench; what TPS would be"
echo "with the two CPUs to ourselves), baseline CPU / measured CPU:"
printf '  %-46s %s\n' "cache hit vs SELECT 1" "$(bench_fmt %.3f "${c_sel[@]}")"
printf '  %-46s %s\n' "cache hit vs do-nothing function" "$(bench_fmt %.3f "${c_noop[@]}")"
printf '  %-46s %s\n' "cache hit vs SHA-256 lookup" "$(bench_fmt %.3f "${c_sha[@]}")"
printf '  %-46s %s\n' "malformed vs SELECT 1" "$(bench_fmt %.3f "${c_bad[@]}")"
printf '  %-46s %s\n' "cache hit vs the same as a Function Scan" "$(bench_fmt %.3f "${c_fs[@]}")"
echo "load average after: $(bench_load)"

# In-process cost of a cache hit, limiter included: n calls in one statement
# minus the same statement without the call (its empty twin), the
# do-nothing function in the same loop, and validate_key planned as a
# Function Scan (hokusai_auth.enable_call_scan off for that statement); the
# four in alternating order.  Each is timed by the wall clock and by the
# backend's CPU time (hk_bench.cpu_us(), getrusage): under load, wall time
# also counts the time the backend waited for a CPU.  Every counted call
# must be valid (valid is true exactly when status is 'ok'), and
# bench_check then checks that each was a cache hit admitted by the limiter.
before=$(bench_counters)
out=$(q -c "DO \$\$
DECLARE keys text[] := ARRAY(SELECT key FROM bench_keys ORDER BY i);
	n int := 100000; t0 timestamptz; c0 float8; c bigint;
	w float8[]; u float8[]; v text; vs text[] := '{empty,noop,validate,validatefs}';
	hw float8[] := '{}'; hc float8[] := '{}'; nw float8[] := '{}'; nc float8[] := '{}';
	aw float8[] := '{}'; ac float8[] := '{}'; fw float8[] := '{}'; fc float8[] := '{}';
BEGIN
	FOR round IN 1..$HK_BENCH_ROUNDS LOOP
		w := '{0,0,0,0}'; u := '{0,0,0,0}';
		FOR j IN 1..4 LOOP
			v := vs[CASE WHEN round % 2 = 1 THEN j ELSE 5 - j END];
			IF v = 'validatefs' THEN
				PERFORM set_config('hokusai_auth.enable_call_scan', 'off', false);
			END IF;
			t0 := clock_timestamp(); c0 := hk_bench.cpu_us();
			IF v = 'empty' THEN
				SELECT count(*) INTO c FROM generate_series(1, n) i,
					LATERAL (SELECT keys[1 + i % 64] AS k) x WHERE x.k IS NOT NULL;
			ELSIF v = 'noop' THEN
				SELECT count(*) INTO c FROM generate_series(1, n) i,
					LATERAL hk_bench.noop_validate(keys[1 + i % 64]) x WHERE x.valid;
			ELSIF v = 'validate' THEN
				SELECT count(*) INTO c FROM generate_series(1, n) i,
					LATERAL hokusai_auth.validate_key(keys[1 + i % 64]) x WHERE x.valid;
			ELSE
				-- The same text, a statement of its own: PL/pgSQL keeps each
				-- statement's plan, and this one is planned with the scan off.
				SELECT count(*) INTO c FROM generate_series(1, n) i,
					LATERAL hokusai_auth.validate_key(keys[1 + i % 64]) x WHERE x.valid;
			END IF;
			u[array_position(vs, v)] := hk_bench.cpu_us() - c0;
			w[array_position(vs, v)] := extract(epoch FROM clock_timestamp() - t0) * 1e6;
			PERFORM set_config('hokusai_auth.enable_call_scan', 'on', false);
			IF c <> n THEN
				RAISE EXCEPTION 'BENCHMARK INVALID: % of % calls valid (%)', c, n, v;
			END IF;
		END LOOP;
		hw := hw || ((w[3] - w[1]) / n); hc := hc || ((u[3] - u[1]) / n);
		nw := nw || ((w[2] - w[1]) / n); nc := nc || ((u[2] - u[1]) / n);
		aw := aw || ((w[3] - w[2]) / n); ac := ac || ((u[3] - u[2]) / n);
		fw := fw || ((w[4] - w[1]) / n); fc := fc || ((u[4] - u[1]) / n);
	END LOOP;
	RAISE NOTICE 'inproc %|%|%|%|%|%|%|%', array_to_string(hw, ' '), array_to_string(hc, ' '),
		array_to_string(nw, ' '), array_to_string(nc, ' '), array_to_string(aw, ' '),
		array_to_string(ac, ' '), array_to_string(fw, ' '), array_to_string(fc, ' ');
END \$\$" 2>&1)
after=$(bench_counters)
bench_check hit $((HK_BENCH_ROUNDS * 200000)) "$before" "$after" || exit 1
IFS='|' read -r hw hc nw nc aw ac fw fc <<< "$(echo "$out" | sed -n 's/.*NOTICE: *inproc //p')"
[ -n "$fc" ] || { echo "$out" >&2; exit 1; }
echo "in one backend, 100,000 calls per statement on 64 keys, us per call, median [min-max] of $HK_BENCH_ROUNDS rounds:"
printf '  %-62s %s\n' "" "wall clock                CPU time (getrusage)"
# shellcheck disable=SC2086
{
printf '  %-62s %-25s %s   (target <= 0.5)\n' "validate_key cache hit incl. limiter, minus the empty twin" \
	"$(bench_fmt %.3f $hw)" "$(bench_fmt %.3f $hc)"
printf '  %-62s %-25s %s\n' "do-nothing function, minus the empty twin (scan, row)" \
	"$(bench_fmt %.3f $nw)" "$(bench_fmt %.3f $nc)"
printf '  %-62s %-25s %s\n' "validate_key above the do-nothing function" \
	"$(bench_fmt %.3f $aw)" "$(bench_fmt %.3f $ac)"
printf '  %-62s %-25s %s\n' "validate_key as a Function Scan, minus the empty twin" \
	"$(bench_fmt %.3f $fw)" "$(bench_fmt %.3f $fc)"
}

# Cold validation (cache miss: row lookup + bcrypt) against one crypt() at the
# same cost, alternating, 10 fresh keys per round and side.
q <<SQL >/dev/null
SET hokusai_auth.bcrypt_cost = 10;
CREATE TABLE cold AS
SELECT i, k.id, k.key, NULL::text AS key_hash FROM generate_series(1, 10 * $HK_BENCH_ROUNDS) i,
	LATERAL hokusai_auth.create_key((SELECT id FROM hokusai_auth.users LIMIT 1), 'cold ' || i) k;
UPDATE cold SET key_hash = a.key_hash FROM hokusai_auth.api_keys a WHERE a.id = cold.id;
SQL
out=$(q -c "DO \$\$
DECLARE t0 timestamptz; tc float8; tv float8; r record; ok bool; s text; ratios float8[] := '{}';
	cv float8[] := '{}';
BEGIN
	FOR round IN 1..$HK_BENCH_ROUNDS LOOP
		t0 := clock_timestamp();
		FOR r IN SELECT * FROM cold WHERE (i - 1) / 10 + 1 = round LOOP
			ok := crypt(r.key, r.key_hash) = r.key_hash;
		END LOOP;
		tc := extract(epoch FROM clock_timestamp() - t0);
		t0 := clock_timestamp();
		FOR r IN SELECT * FROM cold WHERE (i - 1) / 10 + 1 = round LOOP
			SELECT status INTO s FROM hokusai_auth.validate_key(r.key);
			IF s <> 'ok' THEN RAISE EXCEPTION 'BENCHMARK INVALID: cold key %', s; END IF;
		END LOOP;
		tv := extract(epoch FROM clock_timestamp() - t0);
		cv := cv || (tv * 1000 / 10);
		ratios := ratios || (tv / tc);
	END LOOP;
	RAISE NOTICE 'cold % | %', array_to_string(cv, ' '), array_to_string(ratios, ' ');
END \$\$" 2>&1 | sed -n 's/.*NOTICE: *cold //p')
# shellcheck disable=SC2046
printf 'cold validate_key (bcrypt cost 10): %s ms, vs crypt() alone %sx\n' \
	"$(bench_fmt %.2f ${out%%|*})" "$(bench_fmt %.3f ${out#*|})"

# Shared memory per cache entry.
q -c "SELECT 'shared memory per cache entry: ' || round(a.size::numeric / s.capacity, 1) || ' bytes (' || a.size || ' bytes for ' || s.capacity || ' entries, with the fixed header)'
        FROM pg_shmem_allocations a, hokusai_auth.cache_stats s WHERE a.name = 'hokusai_auth key cache'"
