#!/usr/bin/env node
// A receiver for hokusai_auth's signed webhooks, Node.js 18 or later, no
// packages.
//
// Listens on 127.0.0.1 (put it behind your HTTPS server or proxy), checks
// the Hokusai-Signature of every POST against the shared secret, refuses a
// bad or stale one with 400, and takes each event once: a delivery repeated
// by the relay (at least once) is answered 200 again but not handled twice.
// See docs/events.md, "Verifying a delivery".
//
//   HOKUSAI_WEBHOOK_SECRET_FILE=/path/to/secret HOKUSAI_WEBHOOK_PORT=8000 \
//       node docs/examples/webhook_receiver.mjs
//
// Prints one line per request: "event <id> <kind>", "duplicate <id>" or
// "rejected: <why>".
import { readFileSync } from "node:fs";
import { createServer } from "node:http";

// BEGIN verify
import { createHmac, timingSafeEqual } from "node:crypto";

// Does header (Hokusai-Signature) sign body, the raw request bytes (a
// Buffer), with secret, and was it made within toleranceSeconds of now?
export function verifySignature(secret, header, body, toleranceSeconds = 300) {
  const fields = {};
  for (const item of String(header ?? "").split(",")) {
    const i = item.indexOf("=");
    if (i > 0) fields[item.slice(0, i)] = item.slice(i + 1);
  }
  const t = Number(fields.t);
  if (!Number.isInteger(t) || !/^[0-9a-f]{64}$/.test(fields.v1 ?? "")) return false;
  if (Math.abs(Date.now() / 1000 - t) > toleranceSeconds) return false;
  const expected = createHmac("sha256", secret).update(`${t}.`).update(body).digest();
  return timingSafeEqual(expected, Buffer.from(fields.v1, "hex"));
}
// END verify

// As hokusai auth webhook reads it: a trailing newline is not part of it.
let secret = readFileSync(process.env.HOKUSAI_WEBHOOK_SECRET_FILE);
if (secret.at(-1) === 0x0a) secret = secret.subarray(0, -1);
if (secret.at(-1) === 0x0d) secret = secret.subarray(0, -1);
const port = Number(process.env.HOKUSAI_WEBHOOK_PORT ?? 8000);
const seen = new Set(); // a real receiver keeps the ids it handled in its database

function answer(res, status, line) {
  console.log(line);
  res.writeHead(status, { "Content-Length": "0" }).end();
}

createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    if (req.method !== "POST" || !verifySignature(secret, req.headers["hokusai-signature"], body)) {
      return answer(res, 400, "rejected: bad or stale signature");
    }
    const event = JSON.parse(body);
    if (seen.has(event.id)) return answer(res, 200, `duplicate ${event.id}`);
    seen.add(event.id);
    // ... act on event.kind, event.api_key_id, event.data ...
    answer(res, 200, `event ${event.id} ${event.kind}`);
  });
}).listen(port, "127.0.0.1", function () {
  console.log(`listening on 127.0.0.1:${this.address().port}`);
});
