#!/usr/bin/env python3
"""A receiver for hokusai_auth's signed webhooks, Python 3 standard library only.

Listens on 127.0.0.1 (put it behind your HTTPS server or proxy), checks the
Hokusai-Signature of every POST against the shared secret, refuses a bad or
stale one with 400, and takes each event once: a delivery repeated by the
relay (at least once) is answered 200 again but not handled twice.  See
docs/events.md, "Verifying a delivery".

    HOKUSAI_WEBHOOK_SECRET_FILE=/path/to/secret HOKUSAI_WEBHOOK_PORT=8000 \\
        python3 docs/examples/webhook_receiver.py

Prints one line per request: "event <id> <kind>", "duplicate <id>" or
"rejected: <why>".
"""
import http.server
import json
import os
import sys

# BEGIN verify
import hashlib
import hmac
import time


def verify_signature(secret: bytes, header: str, body: bytes, tolerance: int = 300) -> bool:
    """Does header (Hokusai-Signature) sign body, the raw request bytes, with
    secret, and was it made within tolerance seconds of now?"""
    try:
        fields = dict(item.split("=", 1) for item in header.split(","))
        t = int(fields["t"])
        given = fields["v1"]
    except (AttributeError, KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance:
        return False
    expected = hmac.new(secret, b"%d." % t + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)
# END verify


def read_secret(path):
    with open(path, "rb") as f:
        secret = f.read()
    # as hokusai auth webhook reads it: a trailing newline is not part of it
    if secret.endswith(b"\n"):
        secret = secret[:-1]
    if secret.endswith(b"\r"):
        secret = secret[:-1]
    return secret


SECRET = read_secret(os.environ["HOKUSAI_WEBHOOK_SECRET_FILE"])
PORT = int(os.environ.get("HOKUSAI_WEBHOOK_PORT", "8000"))
seen = set()  # a real receiver keeps the ids it handled in its database


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not verify_signature(SECRET, self.headers.get("Hokusai-Signature", ""), body):
            return self.answer(400, "rejected: bad or stale signature")
        event = json.loads(body)
        if event["id"] in seen:
            return self.answer(200, "duplicate %d" % event["id"])
        seen.add(event["id"])
        # ... act on event["kind"], event["api_key_id"], event["data"] ...
        self.answer(200, "event %d %s" % (event["id"], event["kind"]))

    def answer(self, status, line):
        print(line, flush=True)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = http.server.HTTPServer(("127.0.0.1", PORT), Receiver)
    print("listening on 127.0.0.1:%d" % server.server_port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
