// hokusai_auth over HTTPS from Node.js (18 or later): built-in fetch, no packages.
//
// Creates an API key with a JWT, calls the API with the key (X-API-Key),
// handles 401 and 429 (Retry-After), and rotates the key.  See
// docs/examples/README.md.
//
//   HOKUSAI_API_URL=https://127.0.0.1:8443/api/v1/auth \
//   HOKUSAI_CA_CERT=/path/to/cert.pem HOKUSAI_JWT=eyJ... node docs/examples/node_example.mjs
//
// Environment:
//   HOKUSAI_API_URL        base URL of the API, up to /api/v1/auth (required)
//   HOKUSAI_JWT            a JWT whose "sub" is your hokusai_auth user id (required)
//   HOKUSAI_CA_CERT        CA certificate (PEM) to trust; default: the system's CAs.
//                          Node reads extra CAs only at start-up, from
//                          NODE_EXTRA_CA_CERTS, so this script re-runs itself
//                          with NODE_EXTRA_CA_CERTS set to it (or set
//                          NODE_EXTRA_CA_CERTS yourself).
//   HOKUSAI_KEY_FILE       file to append "<key id> <plaintext key>" to, mode 0600
//   HOKUSAI_RATE_LIMIT     requests per hour for the new key (default 3)
//   HOKUSAI_GRACE_SECONDS  how long the old key keeps working after rotation (default 0)
//
// Prints one line per step, never a whole key (only its key_prefix).  Exit
// status 0 when every step went as expected.
import { spawnSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

function env(name, dflt) {
  const v = process.env[name] ?? dflt;
  if (v === undefined || v === '') fail(`set ${name} (see docs/examples/README.md)`);
  return v;
}

function fail(message) {
  console.error(message);
  process.exit(1);
}

const ca = process.env.HOKUSAI_CA_CERT;
if (ca && process.env.NODE_EXTRA_CA_CERTS !== ca) {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url)], {
    stdio: 'inherit',
    env: { ...process.env, NODE_EXTRA_CA_CERTS: ca },
  });
  process.exit(r.status ?? 1);
}

const API = env('HOKUSAI_API_URL').replace(/\/+$/, '');
const JWT = env('HOKUSAI_JWT');
const LIMIT = Number.parseInt(env('HOKUSAI_RATE_LIMIT', '3'), 10);
const GRACE = Number.parseInt(env('HOKUSAI_GRACE_SECONDS', '0'), 10);
if (!API.startsWith('https://')) fail('HOKUSAI_API_URL must be an https:// URL: keys are never sent in clear');

// Node's codes for a certificate it cannot verify.
const CERT_ERRORS = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);

// One request; returns { status, headers, json }.  fetch does not throw on
// error statuses, only on network and TLS errors.
async function request(method, path, headers, body) {
  const init = { method, headers: { ...headers }, signal: AbortSignal.timeout(20000) };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(API + path, init);
  } catch (err) {
    // No answer at all (TLS, connection, timeout): one line saying why, not a stack trace.
    const code = err.cause?.code ?? err.name;
    if (CERT_ERRORS.has(code)) {
      fail(`${API}: the server's certificate is not trusted (${code}); set HOKUSAI_CA_CERT to the CA certificate (PEM) that signed it`);
    }
    fail(`${API}: cannot connect: ${err.cause?.message ?? err.message}`);
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  return { status: res.status, headers: res.headers, json };
}

const jwtAuth = () => ({ Authorization: `Bearer ${JWT}` });
const keyAuth = (key) => ({ 'X-API-Key': key });
const field = (r, name) => (r.json && typeof r.json === 'object' ? r.json[name] : undefined);

// 401: the key is no longer valid, get a new one.  429: wait Retry-After seconds.
function explainError(what, r) {
  const code = field(r, 'code');
  if (r.status === 401) {
    console.log(`${what}: 401 ${code}: the key is refused; stop using it and get a new one`);
  } else if (r.status === 429) {
    const wait = Number.parseInt(r.headers.get('Retry-After') ?? '1', 10);
    // A real client waits here (await new Promise((ok) => setTimeout(ok, wait * 1000))) and retries.
    console.log(`${what}: 429 ${code}: Retry-After ${wait} s; would wait ${wait} s before retrying`);
  } else {
    console.log(`${what}: ${r.status} ${code}: ${field(r, 'message')}`);
  }
}

// Store a new plaintext key: it is shown only once.
function keep(id, key) {
  const path = process.env.HOKUSAI_KEY_FILE;
  if (path) appendFileSync(path, `${id} ${key}\n`, { mode: 0o600 });
}

// 1. Create a key, authenticated by the JWT.
let r = await request('POST', '/keys', jwtAuth(), { name: 'example (node)', rate_limit_per_hour: LIMIT });
if (r.status !== 201) fail(`create: HTTP ${r.status}: ${JSON.stringify(r.json)}`);
const key = field(r, 'key');
const keyId = field(r, 'id');
console.log(`created key ${field(r, 'key_prefix')} (id ${keyId}), ${field(r, 'rate_limit_per_hour')} requests per hour`);
keep(keyId, key);

// 2. Call the API with the key until it is rate limited.
let seen429 = false;
for (let i = 1; i <= LIMIT + 1; i++) {
  r = await request('GET', '/keys?select=id,name,status', keyAuth(key));
  if (r.status === 200) {
    console.log(`request ${i}: 200, X-RateLimit-Remaining ${r.headers.get('X-RateLimit-Remaining')}`);
    continue;
  }
  explainError(`request ${i}`, r);
  seen429 = r.status === 429;
  break;
}
if (!seen429) fail(`expected a 429 within ${LIMIT + 1} requests`);

// 3. Rotate.  The old key is out of requests, so authenticate with the JWT.
r = await request('POST', `/keys/${keyId}/rotate`, jwtAuth(), { grace_seconds: GRACE });
if (r.status !== 201) fail(`rotate: HTTP ${r.status}: ${JSON.stringify(r.json)}`);
const newKey = field(r, 'key');
const newId = field(r, 'id');
console.log(`rotated: new key ${field(r, 'key_prefix')} (id ${newId}), old key ends at ${field(r, 'old_key_ends_at')}`);
keep(newId, newKey);

// 4. The new key works; the old one is refused (or, within a grace period,
// still accepted: here 429, because it used up its requests).
r = await request('GET', '/keys?select=id', keyAuth(newKey));
if (r.status !== 200) {
  explainError('new key', r);
  process.exit(1);
}
console.log('new key: 200');
r = await request('GET', '/keys?select=id', keyAuth(key));
if (r.status === 401) {
  explainError('old key', r);
} else if (r.status === 200) {
  console.log('old key: 200: still accepted during the grace period');
} else if (r.status === 429) {
  console.log(`old key: 429: still valid during the grace period, but out of requests (Retry-After ${r.headers.get('Retry-After')} s)`);
} else {
  explainError('old key', r);
  process.exit(1);
}
if (GRACE === 0 && r.status !== 401) fail('the old key should have been refused');
console.log('done');
