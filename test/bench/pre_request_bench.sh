#!/usr/bin/env bash
# In-database cost of hokusai_auth.pre_request(), without nginx and PostgREST.
#
#   bash test/bench/pre_request_bench.sh [seconds per run (default 10)] [clients (default 1)]
#
# pgbench replays, as the authenticator, the transaction PostgREST 12 sends
# for GET /api/v1/auth/keys (BEGIN READ ONLY, its set_config statement,
# SELECT pre_request(), a one-row SELECT, COMMIT) in three variants:
#   none   without the pre_request() statement (the JWT baseline)
#   1.3    with pre_request() of extension version 1.3 (PL/pgSQL)
#   1.4    with pre_request() of the installed default version (C)
#   noop   with a SQL function that does nothing instead of pre_request():
#          the price of the statement itself
# 1.3 and 1.4 live in two databases of one cluster (one library).  Runs
# alternate none, noop, 1.3, 1.4 three times; the median of each is reported, with
# the cost per call of pre_request() against "none".  Then the cost inside
# the backend alone: 20000 calls of pre_request() in one transaction (a
# PL/pgSQL loop, response.headers emptied before each call), against the
# same loop without the call.  Not a test.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/setup.sh"
source "$HK_TOP/test/lib/cluster.sh"
hk_setup

SECS=${1:-10}
CLIENTS=${2:-1}
DIR=$(mktemp -d /tmp/hokusai-prebench.XXXXXX)
[ "$(id -u)" -eq 0 ] && chown "$HK_RUN_AS" "$DIR"
PORT=${HK_BENCH_PORT:-55452}
trap 'hk_cluster_stop "$DIR/pg"; rm -rf "$DIR"' EXIT
hk_cluster_start "$DIR/pg" "$PORT"
sql() { hk_as_user psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

sql -c "CREATE DATABASE v13" -c "CREATE DATABASE v14" >/dev/null
sql -d v13 -c "CREATE EXTENSION pgcrypto" -c "CREATE EXTENSION hokusai_auth VERSION '1.3'" >/dev/null
sql -d v14 -c "CREATE EXTENSION hokusai_auth CASCADE" >/dev/null
for db in v13 v14; do
	sql -d "$db" -c "SELECT hokusai_auth.setup_http_roles()" >/dev/null
done
sql -d v14 -c "CREATE FUNCTION public.hk_bench_noop() RETURNS void LANGUAGE sql AS 'SELECT NULL::void'" >/dev/null
echo "versions: v13 $(sql -d v13 -c "SELECT extversion FROM pg_extension WHERE extname = 'hokusai_auth'")," \
	"v14 $(sql -d v14 -c "SELECT extversion FROM pg_extension WHERE extname = 'hokusai_auth'")"

# script DB: writes $DIR/DB.sql and $DIR/none.sql, one key per database
script()
{
	local db=$1 user key headers
	user=$(sql -d "$db" -c "SELECT hokusai_auth.create_user('bench')")
	key=$(sql -d "$db" -c "SELECT key FROM hokusai_auth.create_key('$user', 'bench',
		rate_limit_per_hour => 1000000000, burst_limit => 1000000)")
	headers="{\"host\":\"127.0.0.1\",\"user-agent\":\"wrk\",\"x-forwarded-for\":\"127.0.0.1\",\"x-forwarded-proto\":\"https\",\"x-forwarded-host\":\"127.0.0.1\",\"x-api-key\":\"$key\",\"accept\":\"*/*\"}"
	cat > "$DIR/$db.sql" <<SQL
BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY;
SELECT set_config('search_path', 'hokusai_api', true), set_config('role', 'hokusai_anon', true), set_config('request.jwt.claims', '{"role":"hokusai_anon"}', true), set_config('request.method', 'GET', true), set_config('request.path', '/keys', true), set_config('request.headers', '$headers', true), set_config('request.cookies', '{}', true);
SELECT hokusai_auth.pre_request();
SELECT 1;
COMMIT;
SQL
	grep -v 'pre_request()' "$DIR/$db.sql" > "$DIR/none.sql"
	sed 's/hokusai_auth.pre_request()/public.hk_bench_noop()/' "$DIR/$db.sql" > "$DIR/noop.sql"
}
script v13
script v14
chmod 644 "$DIR"/*.sql

# run DB SCRIPT: prints transactions per second
run()
{
	hk_as_user pgbench -n -h "$DIR/pg" -p "$PORT" -U hokusai_authenticator \
		-c "$CLIENTS" -j "$CLIENTS" -T "$SECS" -f "$DIR/$2.sql" "$1" 2>&1 |
		awk '/^tps = / {print $3}'
}

echo "pgbench: $CLIENTS client(s), ${SECS}s per run, as the authenticator, PostgREST's statements"
declare -A all
for round in 1 2 3; do
	for v in none noop 1.3 1.4; do
		case $v in
			none) t=$(run v14 none) ;;
			noop) t=$(run v14 noop) ;;
			1.3) t=$(run v13 v13) ;;
			1.4) t=$(run v14 v14) ;;
		esac
		printf '  round %d %-5s %10.1f tps\n' "$round" "$v" "$t"
		all[$v]="${all[$v]:-} $t"
	done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
n=$(echo "${all[none]}" | median)
o=$(echo "${all[noop]}" | median)
a=$(echo "${all[1.3]}" | median)
b=$(echo "${all[1.4]}" | median)
echo
awk -v n="$n" -v o="$o" -v a="$a" -v b="$b" -v c="$CLIENTS" 'BEGIN {
	printf "median of 3        tps   us/transaction   statement us/call\n"
	printf "  none       %9.1f   %9.1f\n", n, 1e6 * c / n
	printf "  no-op function %5.1f   %9.1f   %9.1f\n", o, 1e6 * c / o, 1e6 * c / o - 1e6 * c / n
	printf "  1.3 PL/pgSQL %7.1f   %9.1f   %9.1f\n", a, 1e6 * c / a, 1e6 * c / a - 1e6 * c / n
	printf "  1.4 C      %9.1f   %9.1f   %9.1f\n", b, 1e6 * c / b, 1e6 * c / b - 1e6 * c / n
}'

# inloop DB CALL: milliseconds for 20000 iterations
inloop()
{
	local f=$DIR/loop-$1.sql
	head -2 "$DIR/$1.sql" > "$f"
	cat >> "$f" <<SQL
\timing on
DO \$\$ BEGIN FOR i IN 1..20000 LOOP PERFORM set_config('response.headers', '', true); $2; END LOOP; END \$\$;
COMMIT;
SQL
	chmod 644 "$f"
	hk_as_user psql -X -q -h "$DIR/pg" -p "$PORT" -U hokusai_authenticator -d "$1" -f "$f" 2>&1 |
		awk '/^Time:/ {print $2; exit}'
}
echo
echo "in one backend, 20000 calls in one transaction (best of 3):"
for v in v13 v14; do
	best_call=999999 best_empty=999999
	for i in 1 2 3; do
		t=$(inloop "$v" "PERFORM hokusai_auth.pre_request()")
		e=$(inloop "$v" "PERFORM 1")
		best_call=$(awk -v a="$best_call" -v b="$t" 'BEGIN {print (b < a) ? b : a}')
		best_empty=$(awk -v a="$best_empty" -v b="$e" 'BEGIN {print (b < a) ? b : a}')
	done
	awk -v v="$v" -v t="$best_call" -v e="$best_empty" 'BEGIN {
		printf "  %s  pre_request() %.1f us per call\n", (v == "v13") ? "1.3 PL/pgSQL" : "1.4 C       ", 1000 * (t - e) / 20000
	}'
done
