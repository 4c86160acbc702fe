// hokusai console: manage your API keys through the HTTP API (docs/console.md).
//
// Rules kept here:
// - it talks only to /api/v1/auth (the `api` object below is the only code
//   that calls fetch);
// - the credential (a JWT or an API key) lives in this module's memory, and
//   in this tab's sessionStorage only when the user asks; never in
//   localStorage, a cookie, a URL or the page;
// - a new key is put in the page only inside the "store it now" dialog and
//   removed from it when that dialog closes;
// - nothing is written to the browser's console; errors are shown to the
//   user;
// - no HTML is built from strings: text goes in with textContent.
'use strict';

const API = '/api/v1/auth';
const STORE = 'hokusai-console-credential';
const KEY_RE = /^hk_(live|test)_[0-9A-Za-z]{46}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// ---------------------------------------------------------------------------
// The session: one credential, in memory.
// ---------------------------------------------------------------------------

const session = {
	credential: null,		// the JWT or API key
	kind: null,				// 'jwt' or 'key'
	remember: false,
};

function credentialKind(text) {
	if (/^hk_(live|test)_/i.test(text)) return 'key';
	if (/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(text)) return 'jwt';
	return null;
}

function storeSession() {
	try {
		if (session.remember && session.credential) {
			sessionStorage.setItem(STORE, session.credential);
		} else {
			sessionStorage.removeItem(STORE);
		}
	} catch (e) {
		// Storage refused (private mode): memory only.
	}
}

function clearSession() {
	session.credential = null;
	session.kind = null;
	session.remember = false;
	try { sessionStorage.removeItem(STORE); } catch (e) { /* nothing stored */ }
}

// ---------------------------------------------------------------------------
// The HTTP API.  Everything the console does goes through `api`.
// ---------------------------------------------------------------------------

class ApiError extends Error {
	constructor(status, body, headers) {
		super((body && body.message) || `HTTP ${status}`);
		this.status = status;
		this.body = body || {};
		this.retryAfter = headers ? Number(headers.get('Retry-After')) || null : null;
		this.resource = headers ? headers.get('X-RateLimit-Resource') : null;
	}
}

async function call(method, path, body) {
	const headers = { Accept: 'application/json' };
	if (session.kind === 'key') {
		headers['X-API-Key'] = session.credential;
	} else if (session.kind === 'jwt') {
		headers.Authorization = `Bearer ${session.credential}`;
	}
	const init = {
		method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error',
		referrerPolicy: 'no-referrer',
	};
	if (body !== undefined) {
		headers['Content-Type'] = 'application/json';
		init.body = JSON.stringify(body);
	}
	let res;
	try {
		res = await fetch(API + path, init);
	} catch (e) {
		throw new ApiError(0, { code: 'network', message: 'The server could not be reached.' });
	}
	const text = await res.text();
	let json = null;
	if (text) {
		try { json = JSON.parse(text); } catch (e) { json = null; }
	}
	if (!res.ok) throw new ApiError(res.status, json, res.headers);
	return json;
}

function keyPath(id) {
	if (!UUID_RE.test(id)) throw new ApiError(400, { code: 'invalid_field', message: 'not a key id' });
	return `/keys/${id}`;
}

function isoSeconds(ms) {
	return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export const api = {
	listKeys: () => call('GET', '/keys?order=created_at.desc'),
	createKey: (fields) => call('POST', '/keys', fields),
	rotateKey: (id, graceSeconds) => call('POST', `${keyPath(id)}/rotate`, { grace_seconds: graceSeconds }),
	revokeKey: (id, reason) => call('DELETE', keyPath(id), reason ? { reason } : undefined),
	// Disable or enable a key (docs/authorization.md).
	setDisabled: (id, disabled) => call('PATCH', keyPath(id), { disabled }),
	// Change name, scopes, limits or refill: only the members given.
	updateKey: (id, changes) => call('PATCH', keyPath(id), changes),
	// The summary of [since, until) and its hours (series=hour: at most 31
	// days; docs/http.md).
	usage: (id, since, until) =>
		call('GET', `${keyPath(id)}/usage?since=${encodeURIComponent(isoSeconds(since))}`
			+ `&until=${encodeURIComponent(isoSeconds(until))}&series=hour`),
};

// ---------------------------------------------------------------------------
// Small DOM helpers (text only, never HTML).
// ---------------------------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, props = {}, ...children) {
	const e = document.createElement(tag);
	for (const [k, v] of Object.entries(props)) {
		if (v === undefined || v === null || v === false) continue;
		if (k === 'class') e.className = v;
		else if (k === 'text') e.textContent = v;
		else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'type' || k === 'scope') e.setAttribute(k, v);
		else e[k] = v;
	}
	for (const c of children) {
		if (c === null || c === undefined) continue;
		e.append(c instanceof Node ? c : document.createTextNode(String(c)));
	}
	return e;
}

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const hourFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
const numFmt = new Intl.NumberFormat();

function when(ts) {
	if (!ts) return '—';
	const d = new Date(ts);
	return Number.isNaN(d.getTime()) ? String(ts) : dateFmt.format(d);
}

// ---------------------------------------------------------------------------
// Messages: what went wrong, in words, for the statuses users meet.
// ---------------------------------------------------------------------------

function describe(err) {
	if (!(err instanceof ApiError)) return 'Something went wrong in the console. Reload the page and try again.';
	const b = err.body || {};
	const detail = [b.message, b.details, b.hint].filter(Boolean).join(' ');
	switch (err.status) {
	case 0:
		return 'The server could not be reached. Check your connection and try again.';
	case 401:
		return `Not signed in: the server refused your credentials (${b.code || '401'}${b.message ? `: ${b.message}` : ''}). `
			+ 'Sign in again with a valid JWT or API key.';
	case 403:
		if (b.code === 'ip_denied') {
			return `Refused (403): this key may not be used from your network address. ${b.details || ''}`.trim();
		}
		return `Not allowed (403${b.code ? `, ${b.code}` : ''}): ${detail || 'the server refused this request.'}`;
	case 404:
		return `Not found: ${detail || 'the server has no such key or route.'}`;
	case 429: {
		const s = err.retryAfter;
		let wait = ' Try again later.';
		if (s && s < 120) wait = ` Try again in ${s} second${s === 1 ? '' : 's'}.`;
		else if (s) wait = ` Try again in about ${Math.ceil(s / 60)} minutes.`;
		return `Too many requests (429): ${b.message || 'the rate limit of the key you signed in with is used up'}.${wait}`;
	}
	case 503:
		return `The service is temporarily unavailable.${err.retryAfter ? ` Try again in ${err.retryAfter} seconds.` : ''}`;
	default:
		return `${err.status ? `Error ${err.status}` : 'Error'}${b.code ? ` (${b.code})` : ''}: ${detail || 'the request failed.'}`;
	}
}

function notice(text, kind = 'error') {
	const n = $('#notice');
	if (!text) {
		n.hidden = true;
		n.textContent = '';
		return;
	}
	n.className = kind === 'info' ? 'notice info' : 'notice';
	n.dataset.kind = kind;
	n.textContent = text;
	n.hidden = false;
}

// An error of a call: a 401 ends the session; anything else is shown.
// Returns true when it was handled by signing out.
function handle(err, where) {
	if (err instanceof ApiError && err.status === 401) {
		signOut(describe(err));
		return true;
	}
	const text = describe(err);
	if (where) {
		where.textContent = text;
		where.hidden = false;
	} else {
		notice(text);
	}
	if (err instanceof ApiError) document.body.dataset.lastStatus = String(err.status);
	return false;
}

// ---------------------------------------------------------------------------
// Sign in and out
// ---------------------------------------------------------------------------

function whoami() {
	if (session.kind === 'key') {
		return `Signed in with key ${session.credential.slice(0, 16)}`;
	}
	try {
		const payload = session.credential.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
		const claims = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, '=')));
		if (claims && typeof claims.sub === 'string') return `Signed in as user ${claims.sub.slice(0, 36)}`;
	} catch (e) {
		// Not decodable: say nothing about it.
	}
	return 'Signed in with a JWT';
}

function showSignIn() {
	$('#signin').hidden = false;
	$('#keys').hidden = true;
	$('#usage').hidden = true;
	$('#whoami').hidden = true;
	document.body.dataset.view = 'signin';
	$('#credential').focus();
}

function showSignedIn() {
	$('#signin').hidden = true;
	$('#keys').hidden = false;
	$('#whoami').hidden = false;
	$('#whoami-text').textContent = whoami();
	document.body.dataset.view = 'keys';
}

function signOut(message) {
	clearSession();
	closeUsage();
	$('#keys-body').replaceChildren();
	for (const d of document.querySelectorAll('dialog[open]')) d.close();
	showSignIn();
	notice(message || '', message ? 'error' : 'info');
}

async function signIn(event) {
	event.preventDefault();
	const input = $('#credential');
	const text = input.value.trim();
	// The field is emptied at once: the credential is kept in memory only.
	input.value = '';
	notice('');
	const kind = credentialKind(text);
	if (!kind) {
		notice('That is neither a JWT (three dot-separated parts) nor an API key (hk_live_… or hk_test_…).');
		input.focus();
		return;
	}
	if (kind === 'key' && !KEY_RE.test(text)) {
		notice('That API key is incomplete: a key is hk_live_ or hk_test_ followed by 46 letters and digits.');
		input.focus();
		return;
	}
	session.credential = text;
	session.kind = kind;
	session.remember = $('#remember').checked;
	$('#remember').checked = false;
	const button = $('#signin-submit');
	button.disabled = true;
	try {
		const keys = await api.listKeys();
		storeSession();
		showSignedIn();
		renderKeys(keys);
		$('#keys-title').focus();
	} catch (err) {
		clearSession();
		handle(err);
		input.focus();
	} finally {
		button.disabled = false;
	}
}

// ---------------------------------------------------------------------------
// The keys table
// ---------------------------------------------------------------------------

let keysById = new Map();
let replacedBy = new Map();
let selectedId = null;

function limitsText(k) {
	const parts = [];
	if (k.rate_limit_per_hour != null) parts.push(`${numFmt.format(k.rate_limit_per_hour)}/h`);
	if (k.burst_limit != null) parts.push(`${numFmt.format(k.burst_limit)}/s`);
	if (Array.isArray(k.allowed_ips) && k.allowed_ips.length) parts.push(`from ${k.allowed_ips.join(', ')}`);
	return parts.length ? parts.join(' · ') : 'server defaults';
}

function creditsText(k) {
	if (!('credits_remaining' in k)) return null;
	if (k.credits_remaining == null) return 'unlimited';
	// A refill sets the balance (docs/metering.md): "refills to N".
	let t = `${numFmt.format(k.credits_remaining)} left`;
	if (k.refill_amount != null && k.refill_interval) t += ` · refills to ${numFmt.format(k.refill_amount)} every ${k.refill_interval}`;
	return t;
}

function statusOf(k) {
	if (k.status) return k.status;
	if (k.revoked_at || k.is_active === false) return 'revoked';
	if (k.expires_at && new Date(k.expires_at) <= new Date()) return 'expired';
	if (k.disabled_at) return 'disabled';
	return 'active';
}

function renderKeys(keys) {
	const rows = Array.isArray(keys) ? keys : [];
	keysById = new Map(rows.map((k) => [k.id, k]));
	const hasScopes = rows.some((k) => 'scopes' in k);
	const hasCredits = rows.some((k) => 'credits_remaining' in k);
	// Keys already replaced by a rotation (rotating one again is a 409).
	replacedBy = new Map(rows.filter((k) => k.rotated_from).map((k) => [k.rotated_from, k]));
	$('#keys-table').dataset.scopes = hasScopes ? 'shown' : 'absent';
	for (const th of document.querySelectorAll('#keys-table th[data-col="scopes"]')) th.hidden = !hasScopes;
	for (const th of document.querySelectorAll('#keys-table th[data-col="credits"]')) th.hidden = !hasCredits;
	const body = $('#keys-body');
	// A row's button that has the focus (a dialog it opened just closed)
	// keeps it in the new table: keyboard users stay where they were.
	const keep = rowButtonOf(document.activeElement);
	body.replaceChildren(...rows.map((k) => keyRow(k, hasScopes, hasCredits)));
	const again = rowButton(keep);
	if (again) again.focus();
	$('#keys-empty').hidden = rows.length > 0;
	$('#keys-table').hidden = rows.length === 0;
	if (selectedId && !keysById.has(selectedId)) closeUsage();
}

function keyRow(k, hasScopes, hasCredits) {
	const status = statusOf(k);
	const live = status === 'active' || status === 'disabled';
	const label = `${k.key_prefix} (${k.name})`;
	const successor = replacedBy.get(k.id);
	const cell = (name, content, cls) => el('td', { 'data-label': name, class: cls }, content);
	const actions = el('td', { class: 'row-actions', 'data-label': 'Actions' },
		el('button', { type: 'button', class: 'secondary small', 'data-action': 'usage', 'aria-label': `Usage of ${label}`, text: 'Usage' }),
		live && !successor ? el('button', { type: 'button', class: 'secondary small', 'data-action': 'edit', 'aria-label': `Edit ${label}`, text: 'Edit' }) : null,
		live && status === 'active' && !successor ? el('button', { type: 'button', class: 'secondary small', 'data-action': 'rotate', 'aria-label': `Rotate ${label}`, text: 'Rotate' }) : null,
		live ? el('button', {
			type: 'button', class: 'secondary small', 'data-action': status === 'disabled' ? 'enable' : 'disable',
			'aria-label': `${status === 'disabled' ? 'Enable' : 'Disable'} ${label}`, text: status === 'disabled' ? 'Enable' : 'Disable',
		}) : null,
		live ? el('button', { type: 'button', class: 'secondary small', 'data-action': 'revoke', 'aria-label': `Revoke ${label}`, text: 'Revoke' }) : null);
	let scopes = null;
	if (hasScopes) {
		const list = Array.isArray(k.scopes) ? k.scopes : [];
		scopes = cell('Scopes', list.length ? el('span', {}, ...list.map((s) => el('span', { class: 'scope', text: s }))) : 'all');
	}
	const tr = el('tr', { 'data-key-id': k.id, 'data-status': status, class: k.id === selectedId ? 'selected' : '' },
		cell('Prefix', el('code', { text: k.key_prefix })),
		cell('Name', k.name),
		cell('Environment', k.environment),
		cell('Status', el('span', {}, el('span', { class: `status status-${status}`, text: status }),
			successor && live ? el('span', { class: 'note', text: ` replaced by ${successor.key_prefix}` }) : null)),
		scopes,
		cell('Limits', limitsText(k)),
		hasCredits ? cell('Credits', creditsText(k) || '—') : null,
		cell('Created', when(k.created_at)),
		cell('Expires', k.expires_at ? when(k.expires_at) : 'never'),
		cell('Last used', k.last_used_at ? when(k.last_used_at) : 'never'),
		actions);
	return tr;
}

async function refreshKeys() {
	try {
		renderKeys(await api.listKeys());
		return true;
	} catch (err) {
		handle(err);
		return false;
	}
}

// ---------------------------------------------------------------------------
// Dialogs
// ---------------------------------------------------------------------------

// Which key's which button el is ({id, action}); null when el is not a
// button of the keys table.
function rowButtonOf(el) {
	const tr = el && el.dataset && el.dataset.action ? el.closest('#keys-body tr') : null;
	return tr ? { id: tr.dataset.keyId, action: el.dataset.action } : null;
}

// That button in the keys table as it is now (it may have been redrawn).
function rowButton(which) {
	return which ? $('#keys-body').querySelector(
		`tr[data-key-id="${CSS.escape(which.id)}"] button[data-action="${CSS.escape(which.action)}"]`) : null;
}

let returnFocus = null;
let returnRow = null;

function openDialog(d, focus) {
	returnFocus = document.activeElement;
	// A row's button may be redrawn while the dialog is open (the table
	// reloads): remember which key's which button it was.
	returnRow = rowButtonOf(returnFocus);
	for (const e of d.querySelectorAll('.dialog-error')) { e.hidden = true; e.textContent = ''; }
	d.showModal();
	if (focus) focus.focus();
}

function restoreFocus() {
	const target = (returnFocus && returnFocus.isConnected ? returnFocus : rowButton(returnRow)) || $('#new-key');
	returnFocus = null;
	returnRow = null;
	if (target && !target.closest('[hidden]')) target.focus();
}

for (const d of document.querySelectorAll('dialog')) {
	d.addEventListener('close', () => {
		if (d.id !== 'secret-dialog') restoreFocus();
	});
	for (const b of d.querySelectorAll('[data-close]')) b.addEventListener('click', () => d.close());
}

// The key shown once.  It is only in this closure and in #secret-value while
// the dialog is open; closing it removes both, before the dialog is hidden
// (Done, Escape): the dialog's close event comes a task later.
let secret = null;

function forgetSecret() {
	secret = null;
	$('#secret-value').textContent = '';
	$('#secret-copied').textContent = '';
	try { getSelection().removeAllRanges(); } catch (e) { /* nothing selected */ }
}

function showSecret(key, about) {
	secret = key;
	const d = $('#secret-dialog');
	$('#secret-value').textContent = key;
	$('#secret-about').textContent = about;
	$('#secret-copied').textContent = '';
	d.showModal();
	$('#secret-copy').focus();
}

$('#secret-dialog').addEventListener('cancel', forgetSecret);
$('#secret-dialog').addEventListener('close', () => {
	forgetSecret();
	restoreFocus();
});
$('#secret-done').addEventListener('click', () => {
	forgetSecret();
	$('#secret-dialog').close();
});
$('#secret-copy').addEventListener('click', async () => {
	const out = $('#secret-copied');
	if (!secret) return;
	try {
		await navigator.clipboard.writeText(secret);
		out.textContent = 'Copied to the clipboard.';
	} catch (e) {
		getSelection().selectAllChildren($('#secret-value'));
		out.textContent = 'The browser did not allow copying: the key is selected, press Ctrl+C (⌘C) to copy it.';
	}
});

// Create
$('#new-key').addEventListener('click', () => {
	$('#create-form').reset();
	openDialog($('#create-dialog'), $('#c-name'));
});

$('#create-form').addEventListener('submit', async (event) => {
	event.preventDefault();
	const f = event.target;
	const err = $('.dialog-error', f);
	err.hidden = true;
	const name = $('#c-name').value.trim();
	if (!name) {
		err.textContent = 'Give the key a name, for example "ci deploys".';
		err.hidden = false;
		$('#c-name').focus();
		return;
	}
	const body = { name, environment: $('#c-env').value };
	if ($('#c-expires').value) {
		const t = new Date($('#c-expires').value);
		if (Number.isNaN(t.getTime())) {
			err.textContent = 'The expiry date is not a date.';
			err.hidden = false;
			return;
		}
		body.expires_at = isoSeconds(t.getTime());
	}
	for (const [field, input] of [['rate_limit_per_hour', '#c-hourly'], ['burst_limit', '#c-burst']]) {
		if ($(input).value !== '') body[field] = Number($(input).value);
	}
	const ips = $('#c-ips').value.split(/[\s,]+/).filter(Boolean);
	if (ips.length) body.allowed_ips = ips;
	const submit = $('button[type="submit"]', f);
	submit.disabled = true;
	try {
		const created = await api.createKey(body);
		$('#create-dialog').close();
		f.reset();
		notice(`Key ${created.key_prefix} (${created.name}) created.`, 'info');
		showSecret(created.key, `Key ${created.key_prefix} · ${created.name} · ${created.environment}`);
		await refreshKeys();
	} catch (e) {
		handle(e, err);
	} finally {
		submit.disabled = false;
	}
});

// Rotate
let actionId = null;

$('#rotate-form').addEventListener('submit', async (event) => {
	event.preventDefault();
	const f = event.target;
	const err = $('.dialog-error', f);
	const submit = $('button[type="submit"]', f);
	submit.disabled = true;
	try {
		const old = keysById.get(actionId);
		const r = await api.rotateKey(actionId, Number($('#r-grace').value));
		$('#rotate-dialog').close();
		const ends = r.old_key_ends_at ? ` The old key ${old ? old.key_prefix : ''} works until ${when(r.old_key_ends_at)}.` : '';
		notice(`Key rotated: ${r.key_prefix} replaces ${old ? old.key_prefix : 'the old key'}.${ends}`, 'info');
		showSecret(r.key, `Key ${r.key_prefix} · ${r.name} · replaces ${old ? old.key_prefix : 'the old key'}`);
		await refreshKeys();
	} catch (e) {
		handle(e, err);
	} finally {
		submit.disabled = false;
	}
});

// Revoke, after confirmation
$('#revoke-form').addEventListener('submit', async (event) => {
	event.preventDefault();
	const f = event.target;
	const err = $('.dialog-error', f);
	const submit = $('button[type="submit"]', f);
	submit.disabled = true;
	try {
		const r = await api.revokeKey(actionId, $('#v-reason').value.trim() || null);
		$('#revoke-dialog').close();
		notice(`Key ${r.key_prefix} revoked.`, 'info');
		await refreshKeys();
	} catch (e) {
		handle(e, err);
	} finally {
		submit.disabled = false;
	}
});

// Edit: name, scopes, limits, refill.  Only what changed is sent.
const SCOPE_RE = /^[a-z0-9_.:-]{1,64}\*?$/;

function scopesOf(text) {
	return text.split(/[\s,]+/).filter(Boolean);
}

function sameList(a, b) {
	const x = [...a].sort();
	const y = [...b].sort();
	return x.length === y.length && x.every((v, i) => v === y[i]);
}

function openEdit(k) {
	const f = $('#edit-form');
	f.reset();
	$('#edit-prefix').textContent = `${k.key_prefix} (${k.name})`;
	$('#e-name').value = k.name || '';
	$('#e-scopes').value = Array.isArray(k.scopes) ? k.scopes.join(' ') : '';
	$('#e-hourly').value = k.rate_limit_per_hour != null ? String(k.rate_limit_per_hour) : '';
	$('#e-burst').value = k.burst_limit != null ? String(k.burst_limit) : '';
	$('#e-refill-interval').value = k.refill_interval || '';
	$('#e-refill-amount').value = k.refill_amount != null ? String(k.refill_amount) : '';
	openDialog($('#edit-dialog'), $('#e-name'));
}

// A whole number in [min, max] from a field, null when empty; throws a
// sentence for the user otherwise.
function wholeNumber(input, what, min, max) {
	const text = $(input).value.trim();
	if (text === '') return null;
	if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
		throw new Error(`${what} must be a whole number from ${numFmt.format(min)} to ${numFmt.format(max)}.`);
	}
	return Number(text);
}

// The PATCH body for the form: the members that differ from the key.
function editChanges(k) {
	const body = {};
	const name = $('#e-name').value.trim();
	if (!name) throw new Error('The name cannot be empty.');
	if (name !== k.name) body.name = name;
	const scopes = scopesOf($('#e-scopes').value);
	const bad = scopes.find((s) => !SCOPE_RE.test(s));
	if (bad !== undefined) {
		throw new Error(`"${bad.slice(0, 70)}" is not a scope name: 1 to 64 of a-z, 0-9, _ . : - (and * at the end).`);
	}
	if (!sameList(scopes, Array.isArray(k.scopes) ? k.scopes : [])) body.scopes = scopes;
	const hourly = wholeNumber('#e-hourly', 'Requests per hour', 1, 1000000000);
	if (hourly === null) throw new Error('Requests per hour cannot be empty.');
	if (hourly !== k.rate_limit_per_hour) body.rate_limit_per_hour = hourly;
	const burst = wholeNumber('#e-burst', 'Requests per second', 1, 1000000);
	if (burst !== (k.burst_limit ?? null)) body.burst_limit = burst;
	const every = $('#e-refill-interval').value || null;
	const amount = wholeNumber('#e-refill-amount', 'The refill amount', 1, Number.MAX_SAFE_INTEGER);
	if (every === null) {
		if (k.refill_interval) {
			body.refill_amount = null;
			body.refill_interval = null;
		}
	} else {
		if (amount === null) throw new Error('Give the refill amount, or choose "no refill".');
		if (every !== k.refill_interval || amount !== k.refill_amount) {
			body.refill_amount = amount;
			body.refill_interval = every;
		}
	}
	return body;
}

$('#edit-form').addEventListener('submit', async (event) => {
	event.preventDefault();
	const f = event.target;
	const err = $('.dialog-error', f);
	err.hidden = true;
	const k = keysById.get(actionId);
	if (!k) return;
	let changes;
	try {
		changes = editChanges(k);
	} catch (e) {
		err.textContent = e.message;
		err.hidden = false;
		return;
	}
	if (!Object.keys(changes).length) {
		err.textContent = 'Nothing changed: edit a field first, or Cancel.';
		err.hidden = false;
		return;
	}
	const submit = $('button[type="submit"]', f);
	submit.disabled = true;
	try {
		const r = await api.updateKey(actionId, changes);
		$('#edit-dialog').close();
		const what = Object.keys(changes).filter((m) => m !== 'refill_interval')
			.map((m) => ({ name: 'name', scopes: 'scopes', rate_limit_per_hour: 'requests per hour', burst_limit: 'requests per second', refill_amount: 'refill' }[m]));
		notice(`Key ${r.key_prefix} updated: ${what.join(', ')}.`, 'info');
		await refreshKeys();
	} catch (e) {
		handle(e, err);
	} finally {
		submit.disabled = false;
	}
});

async function setDisabled(id, disabled) {
	const k = keysById.get(id);
	try {
		await api.setDisabled(id, disabled);
		notice(`Key ${k ? k.key_prefix : ''} ${disabled ? 'disabled: it is refused until you enable it again' : 'enabled'}.`, 'info');
		await refreshKeys();
	} catch (e) {
		handle(e);
	}
}

$('#keys-body').addEventListener('click', (event) => {
	const b = event.target.closest('button[data-action]');
	if (!b) return;
	const id = b.closest('tr').dataset.keyId;
	const k = keysById.get(id);
	if (!k) return;
	actionId = id;
	notice('');
	switch (b.dataset.action) {
	case 'usage':
		openUsage(id);
		break;
	case 'edit':
		openEdit(k);
		break;
	case 'rotate':
		$('#rotate-prefix').textContent = `${k.key_prefix} (${k.name})`;
		$('#rotate-form').reset();
		openDialog($('#rotate-dialog'), $('#r-grace'));
		break;
	case 'revoke':
		$('#revoke-prefix').textContent = k.key_prefix;
		$('#revoke-name').textContent = k.name;
		$('#revoke-self').hidden = !(session.kind === 'key' && session.credential.slice(0, 16) === k.key_prefix);
		$('#revoke-form').reset();
		// Focus on Cancel: Enter alone does not revoke.
		openDialog($('#revoke-dialog'), $('#revoke-dialog [data-close]'));
		break;
	case 'disable':
	case 'enable':
		setDisabled(id, b.dataset.action === 'disable');
		break;
	default:
		break;
	}
});

$('#refresh').addEventListener('click', async () => {
	notice('');
	if (await refreshKeys()) notice('Keys refreshed.', 'info');
	if (selectedId) loadUsage();
});
$('#sign-out').addEventListener('click', () => signOut());
$('#signin-form').addEventListener('submit', signIn);

// ---------------------------------------------------------------------------
// Usage: requests and p95 latency per period, and the status codes
// ---------------------------------------------------------------------------

// Every range is drawn per hour: 24, 168 or 720 points, from the series
// the usage route returns with series=hour (one request per range).
const RANGES = {
	'24h': { buckets: 24, step: 3600e3, unit: 'hour', title: 'Last 24 hours' },
	'7d': { buckets: 7 * 24, step: 3600e3, unit: 'hour', title: 'Last 7 days' },
	'30d': { buckets: 30 * 24, step: 3600e3, unit: 'hour', title: 'Last 30 days' },
};
let range = '24h';
let chart = null;
let usageSeq = 0;

// Periods end with the current hour: [end - n * step, end), end = the next
// full hour.
function periods(r) {
	const end = (Math.floor(Date.now() / 3600e3) + 1) * 3600e3;
	const out = [];
	for (let i = r.buckets; i > 0; i -= 1) out.push([end - i * r.step, end - (i - 1) * r.step]);
	return out;
}

// The points of a range from the summary's series (hours without requests
// are not in it: they are zero).
function usageSeries(r, summary) {
	if (!Array.isArray(summary.series)) {
		throw new ApiError(0, { code: 'no_series', message: 'The server\'s usage route did not return an hourly series; it may be older than this console.' });
	}
	const byStart = new Map();
	for (const s of summary.series) {
		const t = Date.parse(s.period_start);
		if (!Number.isNaN(t)) byStart.set(t, s);
	}
	return periods(r).map(([t]) => {
		const s = byStart.get(t);
		return {
			t,
			requests: s ? Number(s.requests) || 0 : 0,
			errors: s ? Number(s.errors) || 0 : 0,
			p95: s && s.p95_response_ms != null ? Number(s.p95_response_ms) : null,
		};
	});
}

function openUsage(id) {
	selectedId = id;
	for (const tr of document.querySelectorAll('#keys-body tr')) tr.classList.toggle('selected', tr.dataset.keyId === id);
	const k = keysById.get(id);
	$('#usage').hidden = false;
	$('#usage-title').textContent = `Usage of ${k.key_prefix} (${k.name})`;
	document.body.dataset.view = 'usage';
	loadUsage().then(() => $('#usage-title').focus());
}

function closeUsage() {
	selectedId = null;
	usageSeq += 1;
	if (chart) { chart.destroy(); chart = null; }
	$('#usage').hidden = true;
	for (const tr of document.querySelectorAll('#keys-body tr.selected')) tr.classList.remove('selected');
	if (document.body.dataset.view === 'usage') document.body.dataset.view = 'keys';
}

$('#usage-close').addEventListener('click', () => {
	const id = selectedId;
	closeUsage();
	const b = id && document.querySelector(`#keys-body tr[data-key-id="${id}"] button[data-action="usage"]`);
	if (b) b.focus();
});

for (const b of document.querySelectorAll('#usage [data-range]')) {
	b.addEventListener('click', () => {
		range = b.dataset.range;
		for (const o of document.querySelectorAll('#usage [data-range]')) o.setAttribute('aria-pressed', String(o === b));
		loadUsage();
	});
}

function fmtMs(v) {
	return v == null ? '—' : `${numFmt.format(Math.round(v * 10) / 10)} ms`;
}

async function loadUsage() {
	const id = selectedId;
	if (!id) return;
	const seq = ++usageSeq;
	const r = RANGES[range];
	const status = $('#usage-status');
	const chartBox = $('#chart');
	chartBox.dataset.state = 'loading';
	status.textContent = 'Loading…';
	const ps = periods(r);
	try {
		const summary = await api.usage(id, ps[0][0], ps[ps.length - 1][1]);
		const series = usageSeries(r, summary);
		if (seq !== usageSeq) return;
		renderTotals(summary);
		renderChart(series, r);
		renderSeriesTable(series);
		renderStatus(summary);
		status.textContent = `${r.title}, per ${r.unit}, up to ${dateFmt.format(new Date(ps[ps.length - 1][1]))}.`;
		chartBox.dataset.state = 'ready';
		chartBox.dataset.range = range;
	} catch (err) {
		if (seq !== usageSeq) return;
		chartBox.dataset.state = 'error';
		status.textContent = '';
		handle(err);
	}
}

function renderTotals(s) {
	const items = [
		['Requests', numFmt.format(Number(s.requests) || 0)],
		['Errors (4xx and 5xx)', numFmt.format(Number(s.errors) || 0)],
		['p50 latency', fmtMs(s.p50_response_ms)],
		['p95 latency', fmtMs(s.p95_response_ms)],
		['p99 latency', fmtMs(s.p99_response_ms)],
	];
	// The live balance (the keys table shows the one last written back).
	if (s.credits && s.credits.remaining != null) {
		let c = numFmt.format(Number(s.credits.remaining));
		if (s.credits.refill_amount != null && s.credits.refill_interval) {
			c += ` (refills to ${numFmt.format(Number(s.credits.refill_amount))} every ${s.credits.refill_interval})`;
		}
		items.push(['Credits left', c]);
	}
	$('#usage-totals').replaceChildren(...items.map(([k, v]) => el('div', {}, el('dt', { text: k }), el('dd', { text: v }))));
}

function renderSeriesTable(series) {
	$('#series-period').textContent = 'Hour starting';
	$('#series-table tbody').replaceChildren(...series.map((p) => el('tr', {
		'data-t': String(p.t), 'data-requests': String(p.requests), 'data-errors': String(p.errors), 'data-p95': p.p95 == null ? '' : String(p.p95),
	},
	el('td', { text: hourFmt.format(new Date(p.t)) }),
	el('td', { class: 'num', text: numFmt.format(p.requests) }),
	el('td', { class: 'num', text: numFmt.format(p.errors) }),
	el('td', { class: 'num', text: p.p95 == null ? '—' : String(p.p95) }))));
}

const STATUS_WORDS = {
	200: 'OK', 201: 'Created', 400: 'Bad request', 401: 'Unauthorized', 403: 'Forbidden',
	404: 'Not found', 409: 'Conflict', 429: 'Too many requests', 500: 'Server error', 503: 'Unavailable',
};

function renderStatus(s) {
	const rows = Array.isArray(s.by_status) ? s.by_status : [];
	const total = rows.reduce((a, x) => a + (Number(x.requests) || 0), 0);
	const body = $('#status-table tbody');
	if (!rows.length) {
		body.replaceChildren(el('tr', {}, el('td', { colSpan: 3, text: 'No requests in this period.' })));
		return;
	}
	body.replaceChildren(...rows.map((x) => {
		const n = Number(x.requests) || 0;
		const code = x.status_code == null ? 'unknown' : String(x.status_code);
		const share = total ? Math.round((n / total) * 1000) / 10 : 0;
		return el('tr', { 'data-status-code': code, 'data-requests': String(n) },
			el('th', { scope: 'row', text: `${code} ${STATUS_WORDS[x.status_code] || ''}`.trim() }),
			el('td', { class: 'num', text: numFmt.format(n) }),
			el('td', {}, el('meter', { min: 0, max: 100, value: share, 'aria-label': `${share}% of requests` }), ` ${share}%`));
	}));
}

function renderChart(series, r) {
	const box = $('#chart');
	if (chart) { chart.destroy(); chart = null; }
	box.replaceChildren();
	box.dataset.points = String(series.length);
	const total = series.reduce((a, p) => a + p.requests, 0);
	const p95s = series.map((p) => p.p95).filter((v) => v != null);
	box.setAttribute('aria-label', `Requests per ${r.unit} (bars) and p95 latency in ms (line), ${series.length} ${r.unit}s (${r.title.toLowerCase()}), `
		+ `${numFmt.format(total)} requests in all${p95s.length ? `, highest p95 ${Math.max(...p95s)} ms` : ''}. `
		+ 'The same figures are in the table below.');
	$('#chart-caption').textContent = `Bars: requests per ${r.unit} (left axis). Line: p95 latency per ${r.unit} in ms (right axis).`;
	if (typeof window.uPlot !== 'function') {
		box.append(el('p', { class: 'help', text: 'The chart library did not load; the figures are in the table below.' }));
		box.dataset.chart = 'missing';
		return;
	}
	const data = [
		series.map((p) => p.t / 1000),
		series.map((p) => p.requests),
		series.map((p) => p.p95),
	];
	const width = Math.max(280, box.clientWidth || 600);
	const height = width < 500 ? 220 : 280;
	const bars = window.uPlot.paths && window.uPlot.paths.bars ? window.uPlot.paths.bars({ size: [0.7, 60] }) : undefined;
	chart = new window.uPlot({
		width,
		height,
		legend: { show: true },
		cursor: { drag: { x: false, y: false } },
		// Some room above the highest bar and point.
		scales: { x: { time: true }, req: { range: (u, min, max) => [0, Math.max(1, Math.ceil(max * 1.1))] }, ms: { range: (u, min, max) => [0, Math.max(1, Math.ceil((max || 1) * 1.1))] } },
		axes: [
			{ stroke: '#57606a', grid: { stroke: '#eaeef2' } },
			{ scale: 'req', label: `requests / ${r.unit}`, stroke: '#57606a', grid: { stroke: '#eaeef2' }, size: 60 },
			{ scale: 'ms', side: 1, label: 'p95 ms', stroke: '#9a3412', grid: { show: false }, size: 60 },
		],
		series: [
			{ label: 'Hour' },
			{ label: 'Requests', scale: 'req', stroke: '#1f4e79', fill: 'rgba(31, 78, 121, 0.35)', paths: bars, points: { show: false } },
			// Hours without requests have no p95: a gap, so a lone hour is a dot.
			{ label: 'p95 ms', scale: 'ms', stroke: '#c2410c', width: series.length > 48 ? 1.5 : 2, spanGaps: false, points: { show: true, size: series.length > 48 ? 3 : 5 } },
		],
	}, data, box);
	box.dataset.chart = 'uplot';
	box.dataset.chartPoints = String(chart.data[0].length);
}

// Keep the chart as wide as its box: on a change of the box's width,
// resized in the next frame (not inside the observer's callback, which
// would be a resize loop).
if (typeof ResizeObserver === 'function') {
	let lastWidth = 0;
	let pending = false;
	new ResizeObserver((entries) => {
		const width = Math.round(entries[0].contentRect.width);
		if (!chart || width === lastWidth || pending) return;
		pending = true;
		requestAnimationFrame(() => {
			pending = false;
			const w = Math.max(280, $('#chart').clientWidth);
			lastWidth = Math.round($('#chart').clientWidth);
			if (chart) chart.setSize({ width: w, height: w < 500 ? 220 : 280 });
		});
	}).observe($('#chart'));
}

// ---------------------------------------------------------------------------
// Start: nothing reaches the browser's console, uncaught errors included.
// ---------------------------------------------------------------------------

window.addEventListener('error', (event) => {
	event.preventDefault();
	notice('Something went wrong in the console. Reload the page and try again.');
});
window.addEventListener('unhandledrejection', (event) => {
	event.preventDefault();
	notice(describe(event.reason));
});

(async function start() {
	let stored = null;
	try { stored = sessionStorage.getItem(STORE); } catch (e) { stored = null; }
	const kind = stored && credentialKind(stored);
	if (!kind) {
		showSignIn();
		document.body.dataset.ready = '1';
		return;
	}
	session.credential = stored;
	session.kind = kind;
	session.remember = true;
	try {
		const keys = await api.listKeys();
		showSignedIn();
		renderKeys(keys);
	} catch (err) {
		if (!handle(err)) showSignIn();
	}
	document.body.dataset.ready = '1';
}());
