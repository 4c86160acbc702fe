#!/usr/bin/env python3
"""A webhook receiver for the TAP tests (test/t/080_webhook.pl): HTTPS on
127.0.0.1 with a given certificate, logging every request as one JSON line
{"status", "id", "signature", "body"} to a file, flushed at once.

    webhook_receiver.py PORT CERT KEY LOG [--fail-first N] [--refuse-id ID]
                        [--slow-kind KIND]

--fail-first N answers 500 to the first N requests of this process;
--refuse-id ID answers 400 to the event with that id; --slow-kind KIND
logs an event of that kind as taken (200) and then waits 3 seconds before
answering, so that the relay can be killed in between.  Everything else is
200.  Prints "listening" once it accepts connections.
"""
import argparse
import http.server
import json
import ssl
import time

p = argparse.ArgumentParser()
p.add_argument("port", type=int)
p.add_argument("cert")
p.add_argument("key")
p.add_argument("log")
p.add_argument("--fail-first", type=int, default=0)
p.add_argument("--refuse-id", default=None)
p.add_argument("--slow-kind", default=None)
args = p.parse_args()
log = open(args.log, "a", encoding="utf-8")
seen = 0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global seen
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        seen += 1
        event_id = self.headers.get("Hokusai-Event-Id")
        if seen <= args.fail_first:
            status = 500
        elif args.refuse_id is not None and event_id == args.refuse_id:
            status = 400
        else:
            status = 200
        log.write(json.dumps({"status": status, "id": event_id,
                              "signature": self.headers.get("Hokusai-Signature"),
                              "content_type": self.headers.get("Content-Type"),
                              "body": body.decode("utf-8")}) + "\n")
        log.flush()
        if status == 200 and args.slow_kind is not None \
                and json.loads(body).get("kind") == args.slow_kind:
            time.sleep(3)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


server = http.server.HTTPServer(("127.0.0.1", args.port), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(args.cert, args.key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("listening", flush=True)
server.serve_forever()
