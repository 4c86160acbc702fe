#!/usr/bin/env bash
# hokusai_auth over HTTPS with curl: create an API key with a JWT, call the
# API with the key (X-API-Key), handle 401 and 429 (Retry-After), rotate.
# Needs bash, curl, sed; no JSON tool.  See docs/examples/README.md.
#
#   HOKUSAI_API_URL=https://127.0.0.1:8443/api/v1/auth \
#   HOKUSAI_CA_CERT=/path/to/cert.pem HOKUSAI_JWT=eyJ... bash docs/examples/curl.sh
#
# Environment:
#   HOKUSAI_API_URL        base URL of the API, up to /api/v1/auth (required)
#   HOKUSAI_JWT            a JWT whose "sub" is your hokusai_auth user id (required)
#   HOKUSAI_CA_CERT        CA certificate (PEM) to trust; default: the system's CAs
#   HOKUSAI_KEY_FILE       file to append "<key id> <plaintext key>" to, mode 0600;
#                          default: the plaintext keys are not kept anywhere
#   HOKUSAI_RATE_LIMIT     requests per hour for the new key (default 3)
#   HOKUSAI_GRACE_SECONDS  how long the old key keeps working after rotation (default 0)
#
# Prints what happens, one line per step, never a whole key (only its
# 16-character key_prefix).  Exit status 0 when every step went as expected.
set -euo pipefail

api=${HOKUSAI_API_URL:?set HOKUSAI_API_URL, e.g. https://127.0.0.1:8443/api/v1/auth}
jwt=${HOKUSAI_JWT:?set HOKUSAI_JWT to a JWT for your user}
limit=${HOKUSAI_RATE_LIMIT:-3}
grace=${HOKUSAI_GRACE_SECONDS:-0}
case "$api" in
	https://*) ;;
	*) echo "HOKUSAI_API_URL must be an https:// URL: keys are never sent in clear" >&2; exit 1 ;;
esac
curl_opts=(--silent --show-error --max-time 20 --proto =https)
if [ -n "${HOKUSAI_CA_CERT:-}" ]; then
	curl_opts+=(--cacert "$HOKUSAI_CA_CERT")
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The key travels in a header read from a file (-H @file), not on curl's
# command line, where other users could see it in the process list.
umask 077

# request METHOD PATH AUTH_HEADER [JSON_BODY]: sets $status, $body and the
# response headers in $tmp/headers.
request()
{
	local method=$1 path=$2 auth=$3 data=${4:-}
	local args=("${curl_opts[@]}" -X "$method" -H @"$tmp/auth" -D "$tmp/headers" -o "$tmp/body"
		-w '%{http_code}')
	printf '%s\n' "$auth" > "$tmp/auth"
	if [ -n "$data" ]; then
		args+=(-H 'Content-Type: application/json' --data-binary "$data")
	fi
	local rc=0
	status=$(curl "${args[@]}" "$api$path" 2>"$tmp/err") || rc=$?
	# No answer at all: one line saying why.
	case "$rc" in
		0) ;;
		60) echo "$api: the server's certificate is not trusted ($(sed -n '1s/^curl: ([0-9]*) //p' "$tmp/err")); set HOKUSAI_CA_CERT to the CA certificate (PEM) that signed it" >&2
			exit 1 ;;
		*) echo "$api: cannot connect: $(sed -n '1s/^curl: //p' "$tmp/err")" >&2
			exit 1 ;;
	esac
	body=$(cat "$tmp/body")
}

# header NAME: the value of a response header of the last request.
header()
{
	sed -n "s/^$1: *\([^[:space:]]*\).*/\1/Ip" "$tmp/headers" | tail -n 1
}

# field NAME: a string or number member of the JSON body (enough for these
# responses: ids, keys, prefixes and codes contain no quotes).
field()
{
	printf '%s' "$body" | sed -n "s/.*\"$1\": *\"\{0,1\}\([^\",}]*\).*/\1/p" | head -n 1
}

# Handle an error response: 401 means the key is no longer valid (get a new
# one), 429 means wait Retry-After seconds.  Prints what a client would do.
explain_error()
{
	local what=$1 code
	code=$(field code)
	case "$status" in
		401) echo "$what: 401 $code: the key is refused; stop using it and get a new one" ;;
		429) echo "$what: 429 $code: Retry-After $(header Retry-After) s; would wait $(header Retry-After) s before retrying" ;;
		*) echo "$what: $status $code: $(field message)" ;;
	esac
}

# 1. Create a key, authenticated by the JWT.
request POST /keys "Authorization: Bearer $jwt" \
	"{\"name\": \"example (curl)\", \"rate_limit_per_hour\": $limit}"
if [ "$status" != 201 ]; then
	echo "create: HTTP $status: $body" >&2
	exit 1
fi
key=$(field key)
key_id=$(field id)
echo "created key $(field key_prefix) (id $key_id), $(field rate_limit_per_hour) requests per hour"
if [ -n "${HOKUSAI_KEY_FILE:-}" ]; then
	printf '%s %s\n' "$key_id" "$key" >> "$HOKUSAI_KEY_FILE"
fi

# 2. Call the API with the key until it is rate limited.
seen_429=0
for i in $(seq 1 $((limit + 1))); do
	request GET '/keys?select=id,name,status' "X-API-Key: $key"
	if [ "$status" = 200 ]; then
		echo "request $i: 200, X-RateLimit-Remaining $(header X-RateLimit-Remaining)"
	else
		explain_error "request $i"
		[ "$status" = 429 ] && seen_429=1
		break
	fi
done
[ "$seen_429" = 1 ] || { echo "expected a 429 within $((limit + 1)) requests" >&2; exit 1; }

# 3. Rotate.  The old key is out of requests, so authenticate with the JWT.
request POST "/keys/$key_id/rotate" "Authorization: Bearer $jwt" "{\"grace_seconds\": $grace}"
if [ "$status" != 201 ]; then
	echo "rotate: HTTP $status: $body" >&2
	exit 1
fi
new_key=$(field key)
new_id=$(field id)
echo "rotated: new key $(field key_prefix) (id $new_id), old key ends at $(field old_key_ends_at)"
if [ -n "${HOKUSAI_KEY_FILE:-}" ]; then
	printf '%s %s\n' "$new_id" "$new_key" >> "$HOKUSAI_KEY_FILE"
fi

# 4. The new key works; the old one is refused (or, within a grace period,
# still accepted: here 429, because it used up its requests above).
request GET '/keys?select=id' "X-API-Key: $new_key"
if [ "$status" != 200 ]; then
	explain_error "new key"
	exit 1
fi
echo "new key: 200"
request GET '/keys?select=id' "X-API-Key: $key"
case "$status" in
	401) explain_error "old key" ;;
	200) echo "old key: 200: still accepted during the grace period" ;;
	429) echo "old key: 429: still valid during the grace period, but out of requests (Retry-After $(header Retry-After) s)" ;;
	*) explain_error "old key"; exit 1 ;;
esac
if [ "$grace" = 0 ] && [ "$status" != 401 ]; then
	echo "the old key should have been refused" >&2
	exit 1
fi
echo "done"
