#!/usr/bin/env python3
"""hokusai_auth over HTTPS from Python 3, standard library only.

Creates an API key with a JWT, calls the API with the key (X-API-Key),
handles 401 and 429 (Retry-After), and rotates the key.  See
docs/examples/README.md.

    HOKUSAI_API_URL=https://127.0.0.1:8443/api/v1/auth \\
    HOKUSAI_CA_CERT=/path/to/cert.pem HOKUSAI_JWT=eyJ... python3 docs/examples/python_example.py

Environment:
    HOKUSAI_API_URL        base URL of the API, up to /api/v1/auth (required)
    HOKUSAI_JWT            a JWT whose "sub" is your hokusai_auth user id (required)
    HOKUSAI_CA_CERT        CA certificate (PEM) to trust; default: the system's CAs
    HOKUSAI_KEY_FILE       file to append "<key id> <plaintext key>" to, mode 0600
    HOKUSAI_RATE_LIMIT     requests per hour for the new key (default 3)
    HOKUSAI_GRACE_SECONDS  how long the old key keeps working after rotation (default 0)

Prints one line per step, never a whole key (only its key_prefix).  Exit
status 0 when every step went as expected.
"""
import json
import os
import ssl
import sys
import urllib.error
import urllib.request


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None or value == "":
        sys.exit(f"set {name} (see docs/examples/README.md)")
    return value


API = env("HOKUSAI_API_URL").rstrip("/")
JWT = env("HOKUSAI_JWT")
LIMIT = int(env("HOKUSAI_RATE_LIMIT", "3"))
GRACE = int(env("HOKUSAI_GRACE_SECONDS", "0"))
if not API.startswith("https://"):
    sys.exit("HOKUSAI_API_URL must be an https:// URL: keys are never sent in clear")
# Verifies the server certificate and host name; HOKUSAI_CA_CERT adds a CA
# (for example a self-signed test certificate).
TLS = ssl.create_default_context(cafile=os.environ.get("HOKUSAI_CA_CERT") or None)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def field(self, name):
        return self.json.get(name) if isinstance(self.json, dict) else None


def request(method, path, headers, body=None):
    """One request; error statuses are returned, not raised."""
    data = None
    headers = dict(headers)
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(API + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, context=TLS, timeout=20) as r:
            return Response(r.status, r.headers, r.read().decode())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read().decode())
    except urllib.error.URLError as e:
        # No answer at all: one line saying why, not a stack trace.
        if isinstance(e.reason, ssl.SSLCertVerificationError):
            sys.exit(f"{API}: the server's certificate is not trusted ({e.reason.verify_message}); "
                     "set HOKUSAI_CA_CERT to the CA certificate (PEM) that signed it")
        sys.exit(f"{API}: cannot connect: {e.reason}")
    except (OSError, ssl.SSLError) as e:
        sys.exit(f"{API}: cannot connect: {e}")


def jwt_auth():
    return {"Authorization": "Bearer " + JWT}


def key_auth(key):
    return {"X-API-Key": key}


def explain_error(what, r):
    """401: the key is no longer valid, get a new one.  429: wait Retry-After seconds."""
    code = r.field("code")
    if r.status == 401:
        print(f"{what}: 401 {code}: the key is refused; stop using it and get a new one")
    elif r.status == 429:
        wait = int(r.headers.get("Retry-After", "1"))
        # A real client sleeps here (time.sleep(wait)) and retries.
        print(f"{what}: 429 {code}: Retry-After {wait} s; would wait {wait} s before retrying")
    else:
        print(f"{what}: {r.status} {code}: {r.field('message')}")


def keep(key_id, key):
    """Store a new plaintext key: it is shown only once."""
    path = os.environ.get("HOKUSAI_KEY_FILE")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(f"{key_id} {key}\n")


def main():
    # 1. Create a key, authenticated by the JWT.
    r = request("POST", "/keys", jwt_auth(),
                {"name": "example (python)", "rate_limit_per_hour": LIMIT})
    if r.status != 201:
        sys.exit(f"create: HTTP {r.status}: {r.json}")
    key, key_id = r.field("key"), r.field("id")
    print(f"created key {r.field('key_prefix')} (id {key_id}), "
          f"{r.field('rate_limit_per_hour')} requests per hour")
    keep(key_id, key)

    # 2. Call the API with the key until it is rate limited.
    seen_429 = False
    for i in range(1, LIMIT + 2):
        r = request("GET", "/keys?select=id,name,status", key_auth(key))
        if r.status == 200:
            print(f"request {i}: 200, X-RateLimit-Remaining {r.headers.get('X-RateLimit-Remaining')}")
            continue
        explain_error(f"request {i}", r)
        seen_429 = r.status == 429
        break
    if not seen_429:
        sys.exit(f"expected a 429 within {LIMIT + 1} requests")

    # 3. Rotate.  The old key is out of requests, so authenticate with the JWT.
    r = request("POST", f"/keys/{key_id}/rotate", jwt_auth(), {"grace_seconds": GRACE})
    if r.status != 201:
        sys.exit(f"rotate: HTTP {r.status}: {r.json}")
    new_key, new_id = r.field("key"), r.field("id")
    print(f"rotated: new key {r.field('key_prefix')} (id {new_id}), "
          f"old key ends at {r.field('old_key_ends_at')}")
    keep(new_id, new_key)

    # 4. The new key works; the old one is refused (or, within a grace
    # period, still accepted: here 429, because it used up its requests).
    r = request("GET", "/keys?select=id", key_auth(new_key))
    if r.status != 200:
        explain_error("new key", r)
        sys.exit(1)
    print("new key: 200")
    r = request("GET", "/keys?select=id", key_auth(key))
    if r.status == 401:
        explain_error("old key", r)
    elif r.status == 200:
        print("old key: 200: still accepted during the grace period")
    elif r.status == 429:
        print("old key: 429: still valid during the grace period, but out of requests "
              f"(Retry-After {r.headers.get('Retry-After')} s)")
    else:
        explain_error("old key", r)
        sys.exit(1)
    if GRACE == 0 and r.status != 401:
        sys.exit("the old key should have been refused")
    print("done")


if __name__ == "__main__":
    main()
