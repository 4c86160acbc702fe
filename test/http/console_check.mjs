// Drives the console (/console/, docs/console.md) in Debian's headless
// Chromium through playwright-core, against a running nginx + PostgREST
// stack, for test/t/090_console.pl and test/demo.sh.
//
//   node console_check.mjs full  < input.json > result.json
//   node console_check.mjs demo  < input.json > result.json
//
// input.json, one line on standard input (so no secret is in argv or the
// environment):
//   { "url": "https://127.0.0.1:PORT/console/", "cacert": "cert.pem",
//     "shots": "DIR" (screenshots; optional),
//     "jwt": "...", "key": "hk_...", (sign-in credentials of one user)
//     "limited_key": "hk_..." (3 requests an hour), "ip_key": "hk_..."
//     (allowed_ips elsewhere), "unknown_key": "hk_...", (full only)
//     "usage_key_id": "uuid" (a key with usage rows; full only),
//     "scoped_key": "hk_..." (scopes keys:read and keys:write; full only),
//     "sync": true (optional: stop at checkpoints, below) }
// With sync, a line {"checkpoint": "created", "key": ...} (and "rotated",
// with "key" and "old_key") is written when the key was shown and its
// dialog closed, and the script goes on when standard input has another
// line; so are "edited" and "refill_stopped" (the key was changed in the
// edit dialog), for the caller to read the key's row by SQL, and
// "revoke_scoped" (signed in with scoped_key, its edit form open), for the
// caller to revoke that key.
//
// It checks nothing itself: it does what a user does and writes what it saw
// as one JSON object on standard output (the keys it was shown included:
// the caller validates them by SQL and keeps them out of its logs); the
// TAP test asserts.  Progress lines go to standard error, without secrets.
// The browser: HK_CHROMIUM, else /usr/bin/chromium (Debian's package
// `chromium`); playwright-core from HK_NODE_MODULES (default: node_modules
// at the top of this tree).  No browser is downloaded.
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const top = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const modules = process.env.HK_NODE_MODULES || path.join(top, 'node_modules');
const require = createRequire(path.join(modules, 'noop.js'));
const { chromium } = require('playwright-core');

const mode = process.argv[2];
if (mode !== 'full' && mode !== 'demo') {
	process.stderr.write('usage: node console_check.mjs full|demo < input.json\n');
	process.exit(2);
}
// The input is the first line of standard input; with "sync": true, the
// script stops at each checkpoint (a key was shown) until the caller, who
// checks the key by SQL meanwhile, writes another line.
const stdinLines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const input = JSON.parse((await stdinLines.next()).value);
async function checkpoint(name, data) {
	if (!input.sync) return;
	process.stdout.write(`${JSON.stringify({ checkpoint: name, ...data })}\n`);
	const r = await stdinLines.next();
	if (r.done) throw new Error(`standard input closed at checkpoint ${name}`);
}
const KEY_RE = /hk_(?:live|test)_[0-9A-Za-z]{46}/;
const WIDTHS = [1440, 375];
const out = { mode, steps: [], shots: [], overflow: [], console: [], violations: [], page_errors: [], requests_with_key_in_url: [] };
const log = (s) => process.stderr.write(`console_check: ${s}\n`);

// The stack's self-signed certificate is trusted by its public key hash
// (Chromium's --ignore-certificate-errors-spki-list): the page is a
// secure context as on a real server, and no other certificate error is
// ignored.
const cert = new crypto.X509Certificate(fs.readFileSync(input.cacert));
const spki = crypto.createHash('sha256')
	.update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');

const args = [`--ignore-certificate-errors-spki-list=${spki}`, '--disable-gpu', '--no-first-run',
	'--disable-dev-shm-usage', '--disable-extensions', '--disable-background-networking'];
// Chromium refuses to run as root with its sandbox.
if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
const browser = await chromium.launch({
	executablePath: process.env.HK_CHROMIUM || '/usr/bin/chromium',
	headless: true,
	args,
	timeout: 60000,
});
const origin = new URL(input.url).origin;
const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: 'en-GB', timezoneId: 'UTC' });
await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
// Every Content-Security-Policy violation, reported by the page's
// securitypolicyviolation event (the init script is the test's, not the
// page's: CSP does not apply to it).
await context.addInitScript(() => {
	window.__hkViolations = [];
	// Errors the page's own handler catches (and shows as a notice).
	window.__hkErrors = [];
	window.addEventListener('error', (e) => { window.__hkErrors.push(String(e.message)); });
	window.addEventListener('unhandledrejection', (e) => { window.__hkErrors.push(String(e.reason && e.reason.message ? e.reason.message : e.reason)); });
	document.addEventListener('securitypolicyviolation', (e) => {
		window.__hkViolations.push({ directive: e.violatedDirective, blocked: e.blockedURI, source: e.sourceFile, line: e.lineNumber });
	});
});
const page = await context.newPage();
page.setDefaultTimeout(20000);
page.on('console', (m) => out.console.push({ type: m.type(), text: m.text().replace(KEY_RE, 'hk_<redacted>') }));
page.on('pageerror', (e) => out.page_errors.push(String(e.message).replace(KEY_RE, 'hk_<redacted>')));
page.on('request', (r) => { if (KEY_RE.test(r.url())) out.requests_with_key_in_url.push(r.method()); });

async function collectViolations() {
	const v = await page.evaluate(() => [window.__hkViolations.splice(0), window.__hkErrors.splice(0)]);
	out.violations.push(...v[0]);
	out.page_errors.push(...v[1].map((m) => m.replace(KEY_RE, 'hk_<redacted>')));
}

async function frames() {
	await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
}

// Screenshots of the current screen at each width, and whether the page is
// wider than the window there (horizontal scrolling).
async function shot(name, element) {
	for (const w of WIDTHS) {
		await page.setViewportSize({ width: w, height: w < 500 ? 812 : 900 });
		await frames();
		const o = await page.evaluate(() => ({
			scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
		}));
		out.overflow.push({ screen: name, width: w, scroll_width: o.scroll, inner_width: o.inner });
		if (input.shots) {
			const file = path.join(input.shots, `${name}-${w}.png`);
			if (element) {
				// A long page (the usage panel under a column of key cards
				// at 375 px): that part only.
				await page.locator(element).screenshot({ path: file });
			} else {
				await page.screenshot({ path: file, fullPage: true, mask: [page.locator('#secret-value')], maskColor: '#30363d' });
			}
			out.shots.push(file);
		}
	}
	await page.setViewportSize({ width: 1440, height: 900 });
	await frames();
}

async function step(name, fn) {
	log(name);
	const s = { name };
	out.steps.push(s);
	try {
		Object.assign(s, await fn());
		s.ok = true;
	} catch (e) {
		s.ok = false;
		s.error = String(e && e.message ? e.message : e).split('\n')[0].replace(KEY_RE, 'hk_<redacted>');
		log(`  failed: ${s.error}`);
	}
	await collectViolations().catch(() => {});
	return s;
}

const notice = async () => {
	const n = page.locator('#notice');
	return (await n.isVisible()) ? (await n.textContent()).trim() : '';
};
const rows = async () => page.$$eval('#keys-body tr', (trs) => trs.map((tr) => ({
	id: tr.dataset.keyId, status: tr.dataset.status,
	prefix: tr.querySelector('code') ? tr.querySelector('code').textContent : null,
	cells: [...tr.querySelectorAll('td')].map((td) => td.dataset.label),
	text: Object.fromEntries([...tr.querySelectorAll('td')].map((td) => [td.dataset.label, td.textContent.trim()])),
	scopes: [...tr.querySelectorAll('td[data-label="Scopes"] .scope')].map((e) => e.textContent),
	actions: [...tr.querySelectorAll('button[data-action]')].map((b) => b.dataset.action),
})));

// Where a key could be left behind: the page's markup, its text, the
// values of its fields, and both storages.
async function secretsInPage(secrets) {
	return page.evaluate((secrets) => {
		const fields = [...document.querySelectorAll('input, textarea, select')].map((e) => e.value).join('\n');
		const all = [document.documentElement.outerHTML, document.body.innerText, fields].join('\n');
		return {
			in_dom: secrets.filter((s) => all.includes(s)).length,
			key_shaped_in_dom: /hk_(?:live|test)_[0-9A-Za-z]{46}/.test(all),
			local_storage_items: localStorage.length,
			session_storage_items: sessionStorage.length,
			in_session_storage: secrets.filter((s) => Object.values({ ...sessionStorage }).some((v) => v.includes(s))).length,
		};
	}, secrets);
}

// A message from an earlier step must not be taken for this one's.
async function clearNotice() {
	await page.evaluate(() => { const n = document.querySelector('#notice'); n.hidden = true; n.textContent = ''; });
}

async function signIn(credential, remember = false) {
	await clearNotice();
	await page.locator('#credential').fill(credential);
	if (remember) await page.locator('#remember').check();
	await page.locator('#signin-submit').click();
	await page.waitForFunction(() => document.body.dataset.view === 'keys' || !document.querySelector('#notice').hidden);
	return { view: await page.evaluate(() => document.body.dataset.view), notice: await notice() };
}

async function signOut() {
	await page.locator('#sign-out').click();
	await page.waitForFunction(() => document.body.dataset.view === 'signin');
}

async function rowOf(prefix) {
	return page.locator('#keys-body tr', { has: page.locator('code', { hasText: prefix }) });
}

// Reads the key of the open "store it now" dialog, copies it with the Copy
// button, closes the dialog; returns the key and what was left.
async function takeSecret() {
	const d = page.locator('#secret-dialog');
	await d.waitFor({ state: 'visible' });
	const key = (await page.locator('#secret-value').textContent()).trim();
	const warning = (await page.locator('#secret-warning').textContent()).replace(/\s+/g, ' ').trim();
	await page.locator('#secret-copy').click();
	await page.waitForFunction(() => document.querySelector('#secret-copied').textContent !== '');
	const copied = (await page.locator('#secret-copied').textContent()).trim();
	let clipboard = null;
	try { clipboard = await page.evaluate(() => navigator.clipboard.readText()); } catch (e) { clipboard = null; }
	return { key, warning, copied, clipboard_matches: clipboard === key, d };
}

// Opens the edit dialog of a key from the keyboard: the focus on its Edit
// button, Enter.  Returns the focused element's id once it is open.
async function openEdit(prefix) {
	const row = await rowOf(prefix);
	await row.locator('button[data-action="edit"]').focus();
	await page.keyboard.press('Enter');
	await page.locator('#edit-dialog').waitFor({ state: 'visible' });
	return page.evaluate(() => document.activeElement.id);
}
const dialogError = async (sel) => {
	const e = page.locator(`${sel} .dialog-error`);
	return (await e.isVisible()) ? (await e.textContent()).trim() : '';
};
// Types into the focused field after selecting what it holds.
async function retype(text) {
	await page.keyboard.press('Control+A');
	if (text === '') await page.keyboard.press('Delete');
	else await page.keyboard.type(text);
}

async function openUsage(id, r) {
	const tr = page.locator(`#keys-body tr[data-key-id="${id}"]`);
	await tr.locator('button[data-action="usage"]').click();
	if (r !== '24h') {
		await page.waitForFunction(() => document.querySelector('#chart').dataset.state === 'ready');
		await page.locator(`#usage [data-range="${r}"]`).click();
	}
	await page.waitForFunction((r) => {
		const c = document.querySelector('#chart');
		return (c.dataset.state === 'ready' && c.dataset.range === r) || c.dataset.state === 'error';
	}, r);
	return page.evaluate(() => {
		const c = document.querySelector('#chart');
		const canvas = c.querySelector('canvas');
		return {
			state: c.dataset.state,
			points: Number(c.dataset.points),
			chart: c.dataset.chart || null,
			chart_points: Number(c.dataset.chartPoints || -1),
			canvas: canvas ? { width: canvas.width, height: canvas.height } : null,
			label: c.getAttribute('aria-label'),
			series: [...document.querySelectorAll('#series-table tbody tr')].map((tr) => ({
				t: Number(tr.dataset.t), requests: Number(tr.dataset.requests), errors: Number(tr.dataset.errors),
				p95: tr.dataset.p95 === '' ? null : Number(tr.dataset.p95),
			})),
			by_status: [...document.querySelectorAll('#status-table tbody tr[data-status-code]')].map((tr) => ({
				status_code: tr.dataset.statusCode, requests: Number(tr.dataset.requests),
			})),
			totals: [...document.querySelectorAll('#usage-totals div')].map((d) => [d.querySelector('dt').textContent, d.querySelector('dd').textContent]),
		};
	});
}

async function load() {
	const res = await page.goto(input.url, { waitUntil: 'load' });
	await page.waitForFunction(() => document.body.dataset.ready === '1');
	return res;
}

try {
	await step('load', async () => {
		const res = await load();
		const labels = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
			.filter((e) => e.type !== 'hidden')
			.filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
			.map((e) => e.id || e.name));
		return {
			status: res.status(), csp: res.headers()['content-security-policy'] || null,
			title: await page.title(), view: await page.evaluate(() => document.body.dataset.view),
			unlabelled: labels, focused: await page.evaluate(() => document.activeElement && document.activeElement.id),
		};
	});
	await shot('01-sign-in');

	if (mode === 'full') {
		await step('sign in with a bad JWT', async () => {
			const r = await signIn('eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.AAAA');
			return r;
		});
		await shot('02-sign-in-refused');
	}

	// Keyboard only: the credential field has the focus; Enter signs in.
	await step('sign in with a JWT, by keyboard', async () => {
		await clearNotice();
		await page.locator('#credential').focus();
		await page.keyboard.type(input.jwt, { delay: 0 });
		await page.keyboard.press('Enter');
		await page.waitForFunction(() => document.body.dataset.view === 'keys' || !document.querySelector('#notice').hidden);
		return {
			view: await page.evaluate(() => document.body.dataset.view), notice: await notice(),
			whoami: (await page.locator('#whoami-text').textContent()).trim(), rows: await rows(),
			storage: await secretsInPage([input.jwt]),
		};
	});
	await shot('03-keys');

	let created = null;
	await step('create a key', async () => {
		// Keyboard: Tab to "Create key", Enter opens the form with the
		// focus on Name; Escape closes it and gives the focus back.
		await page.locator('#refresh').focus();
		await page.keyboard.press('Tab');
		const onCreate = await page.evaluate(() => document.activeElement.id);
		await page.keyboard.press('Enter');
		await page.locator('#create-dialog').waitFor({ state: 'visible' });
		const focusInDialog = await page.evaluate(() => document.activeElement.id);
		await page.keyboard.press('Escape');
		await page.locator('#create-dialog').waitFor({ state: 'hidden' });
		const focusBack = await page.evaluate(() => document.activeElement.id);

		await page.keyboard.press('Enter');
		await page.locator('#create-dialog').waitFor({ state: 'visible' });
		await page.keyboard.type(mode === 'demo' ? 'demo from the console' : 'made in the console');
		await page.locator('#c-env').selectOption('test');
		await page.locator('#c-hourly').fill('500');
		await shot('04-create');
		await page.locator('#create-form button[type="submit"]').click();
		const t = await takeSecret();
		await shot('05-key-shown-once');
		const before = await secretsInPage([t.key]);
		await page.locator('#secret-done').click();
		await t.d.waitFor({ state: 'hidden' });
		const after = await secretsInPage([t.key]);
		const focusAfter = await page.evaluate(() => document.activeElement.id);
		created = t.key;
		const prefix = t.key.slice(0, 16);
		await (await rowOf(prefix)).waitFor();
		await checkpoint('created', { key: t.key });
		return {
			on_create: onCreate, focus_in_dialog: focusInDialog, focus_back: focusBack, focus_after: focusAfter,
			key: t.key, key_shape: KEY_RE.test(t.key), warning: t.warning, copied: t.copied,
			clipboard_matches: t.clipboard_matches, while_open: before, after_close: after,
			row: (await rows()).find((r) => r.prefix === prefix) || null, notice: await notice(),
		};
	});

	if (mode === 'full' && created) {
		let rotated = null;
		await step('rotate with grace', async () => {
			const row = await rowOf(created.slice(0, 16));
			await row.locator('button[data-action="rotate"]').click();
			await page.locator('#rotate-dialog').waitFor({ state: 'visible' });
			await page.locator('#r-grace').selectOption('3600');
			await shot('06-rotate');
			await page.locator('#rotate-form button[type="submit"]').click();
			const t = await takeSecret();
			await page.locator('#secret-done').click();
			await t.d.waitFor({ state: 'hidden' });
			rotated = t.key;
			await (await rowOf(t.key.slice(0, 16))).waitFor();
			await checkpoint('rotated', { key: t.key, old_key: created });
			return {
				key: t.key, notice: await notice(), after_close: await secretsInPage([created, t.key]),
				rows: await rows(),
			};
		});

		// The disable/enable routes come with issue 18 (api.setDisabled in
		// console/app.js); until then the console says the server lacks them.
		await step('disable', async () => {
			const row = await rowOf(rotated.slice(0, 16));
			await clearNotice();
			await row.locator('button[data-action="disable"]').click();
			await page.waitForFunction(() => !document.querySelector('#notice').hidden);
			// The notice comes before the keys are read again: wait for the
			// row to be redrawn (or for an error, which leaves it as it was).
			await page.waitForFunction((p) => {
				const tr = [...document.querySelectorAll('#keys-body tr')].find((r) => r.querySelector('code').textContent === p);
				return (tr && tr.dataset.status === 'disabled') || document.querySelector('#notice').dataset.kind === 'error';
			}, rotated.slice(0, 16));
			await shot('07-disabled');
			return { notice: await notice(), row: (await rows()).find((r) => r.prefix === rotated.slice(0, 16)) };
		});
		await step('enable', async () => {
			const row = await rowOf(rotated.slice(0, 16));
			const b = row.locator('button[data-action="enable"]');
			if (!(await b.count())) return { row: (await rows()).find((r) => r.prefix === rotated.slice(0, 16)), enable_button: false };
			await clearNotice();
			await b.click();
			await page.waitForFunction(() => !document.querySelector('#notice').hidden);
			// The notice comes before the keys are read again: wait for the
			// row to be redrawn (or for an error, which leaves it as it was).
			await page.waitForFunction((p) => {
				const tr = [...document.querySelectorAll('#keys-body tr')].find((r) => r.querySelector('code').textContent === p);
				return (tr && tr.dataset.status !== 'disabled') || document.querySelector('#notice').dataset.kind === 'error';
			}, rotated.slice(0, 16));
			return { notice: await notice(), row: (await rows()).find((r) => r.prefix === rotated.slice(0, 16)), enable_button: true };
		});

		// The old key, still working in its grace period, is revoked.
		await step('revoke, cancelled then confirmed', async () => {
			const prefix = created.slice(0, 16);
			const row = await rowOf(prefix);
			await row.locator('button[data-action="revoke"]').click();
			await page.locator('#revoke-dialog').waitFor({ state: 'visible' });
			const focus = await page.evaluate(() => document.activeElement.textContent.trim());
			await page.keyboard.press('Enter');	// the focus is on Cancel
			await page.locator('#revoke-dialog').waitFor({ state: 'hidden' });
			const afterCancel = (await rows()).find((r) => r.prefix === prefix);
			await row.locator('button[data-action="revoke"]').click();
			await page.locator('#revoke-dialog').waitFor({ state: 'visible' });
			await page.locator('#v-reason').fill('console test');
			await shot('08-revoke-confirm');
			await page.locator('#revoke-form button[type="submit"]').click();
			await page.locator('#revoke-dialog').waitFor({ state: 'hidden' });
			await page.waitForFunction((p) => {
				const tr = [...document.querySelectorAll('#keys-body tr')].find((r) => r.querySelector('code').textContent === p);
				return tr && tr.dataset.status === 'revoked';
			}, prefix);
			return { focus, after_cancel: afterCancel, after: (await rows()).find((r) => r.prefix === prefix), notice: await notice() };
		});

		// Edit every field of the rotated key from the keyboard: Enter on
		// its Edit button, Tab from field to field, Enter submits.
		await step('edit', async () => {
			const prefix = rotated.slice(0, 16);
			await clearNotice();
			const focus = await openEdit(prefix);
			const before = await page.evaluate(() => ({
				name: document.querySelector('#e-name').value, scopes: document.querySelector('#e-scopes').value,
				hourly: document.querySelector('#e-hourly').value, burst: document.querySelector('#e-burst').value,
				refill_interval: document.querySelector('#e-refill-interval').value,
				refill_amount: document.querySelector('#e-refill-amount').value,
			}));
			const order = [await page.evaluate(() => document.activeElement.id)];
			await retype('edited in the console');
			await page.keyboard.press('Tab');
			order.push(await page.evaluate(() => document.activeElement.id));
			await retype('keys:read, keys:write usage:read');
			await page.keyboard.press('Tab');
			order.push(await page.evaluate(() => document.activeElement.id));
			await retype('1200');
			await page.keyboard.press('Tab');
			order.push(await page.evaluate(() => document.activeElement.id));
			await retype('7');
			await page.keyboard.press('Tab');
			order.push(await page.evaluate(() => document.activeElement.id));
			await page.locator('#e-refill-interval').selectOption('week');
			await page.keyboard.press('Tab');
			order.push(await page.evaluate(() => document.activeElement.id));
			await retype('250');
			await shot('14-edit');
			await page.keyboard.press('Enter');
			await page.locator('#edit-dialog').waitFor({ state: 'hidden' });
			await page.waitForFunction(() => !document.querySelector('#notice').hidden);
			const focusAfter = await page.evaluate(() => document.activeElement.dataset.action || document.activeElement.id);
			await page.waitForFunction((p) => {
				const tr = [...document.querySelectorAll('#keys-body tr')].find((r) => r.querySelector('code').textContent === p);
				return tr && tr.textContent.includes('edited in the console');
			}, prefix);
			await checkpoint('edited', {});
			return {
				focus, before, order, focus_after: focusAfter, notice: await notice(),
				row: (await rows()).find((r) => r.prefix === prefix),
			};
		});

		// Bad input: refused in the page (no request), then by the server
		// (a 400 the page cannot foresee: 65 scopes); Escape cancels.
		await step('edit: bad input', async () => {
			const prefix = rotated.slice(0, 16);
			await openEdit(prefix);
			const requests = [];
			const seen = (r) => { if (r.method() === 'PATCH') requests.push(r.url()); };
			page.on('request', seen);
			await page.locator('#e-scopes').fill('keys:read Bad Scope!');
			await page.locator('#edit-form button[type="submit"]').click();
			const local = await dialogError('#edit-form');
			await page.locator('#e-scopes').fill('keys:read');
			await page.locator('#e-hourly').fill('');
			await page.locator('#edit-form button[type="submit"]').click();
			const emptyHourly = await dialogError('#edit-form');
			const localRequests = requests.length;
			await page.locator('#e-hourly').fill('1200');
			await page.locator('#e-scopes').fill(Array.from({ length: 65 }, (_, i) => `s${i}`).join(' '));
			await page.locator('#edit-form button[type="submit"]').click();
			await page.waitForFunction(() => !document.querySelector('#edit-form .dialog-error').hidden
				&& /^Error 400/.test(document.querySelector('#edit-form .dialog-error').textContent));
			const server = await dialogError('#edit-form');
			await shot('15-edit-refused-400');
			page.off('request', seen);
			await page.keyboard.press('Escape');
			await page.locator('#edit-dialog').waitFor({ state: 'hidden' });
			const focusBack = await page.evaluate(() => document.activeElement.dataset.action || document.activeElement.id);
			return { local, empty_hourly: emptyHourly, local_requests: localRequests, server, server_requests: requests.length, focus_back: focusBack };
		});

		await step('edit: stop the refill', async () => {
			const prefix = rotated.slice(0, 16);
			await clearNotice();
			await openEdit(prefix);
			await page.locator('#e-refill-interval').selectOption('');
			await page.locator('#edit-form button[type="submit"]').click();
			await page.locator('#edit-dialog').waitFor({ state: 'hidden' });
			await page.waitForFunction(() => !document.querySelector('#notice').hidden);
			await page.waitForFunction((p) => {
				const tr = [...document.querySelectorAll('#keys-body tr')].find((r) => r.querySelector('code').textContent === p);
				return tr && !tr.textContent.includes('refills');
			}, prefix);
			await checkpoint('refill_stopped', {});
			return { notice: await notice(), row: (await rows()).find((r) => r.prefix === prefix) };
		});

		for (const r of ['24h', '7d', '30d']) {
			await step(`usage ${r}`, async () => {
				const u = await openUsage(input.usage_key_id, r);
				if (r === '24h') await shot('09-usage-24h', '#usage');
				if (r === '30d') await shot('10-usage-30d', '#usage');
				await page.locator('#usage-close').click();
				return u;
			});
		}
	}

	// Sign out, then in with an API key, kept in this tab's sessionStorage.
	await step('sign in with an API key', async () => {
		await signOut();
		const gone = await secretsInPage([input.jwt]);
		const r = await signIn(input.key, true);
		const stored = await secretsInPage([input.key]);
		const whoami = (await page.locator('#whoami-text').textContent()).trim();
		const list = await rows();
		// sessionStorage keeps the session across a reload of the tab.
		await load();
		const afterReload = await page.evaluate(() => document.body.dataset.view);
		await shot('11-keys-by-api-key');
		await signOut();
		const afterSignOut = await secretsInPage([input.key]);
		return { after_jwt_sign_out: gone, ...r, whoami, rows: list, stored, after_reload: afterReload, after_sign_out: afterSignOut };
	});

	if (mode === 'full') {
		await step('401: a key nobody issued', async () => signIn(input.unknown_key));
		await step('403: a key used from outside its allowed_ips', async () => {
			const r = await signIn(input.ip_key);
			await shot('12-refused-403');
			return r;
		});
		await step('429: a key over its hourly limit', async () => {
			const r = await signIn(input.limited_key);	// request 1
			const seen = [];
			for (let i = 2; i <= 4 && r.view === 'keys'; i += 1) {
				await clearNotice();
				await page.locator('#refresh').click();
				await page.waitForFunction(() => !document.querySelector('#notice').hidden);
				seen.push(await notice());
			}
			await shot('13-rate-limited-429');
			// The edit dialog says it too.
			let edit = null;
			const first = (await rows())[0];
			if (first && first.actions.includes('edit')) {
				await openEdit(first.prefix);
				await page.locator('#e-name').fill('over the limit');
				await page.locator('#edit-form button[type="submit"]').click();
				await page.waitForFunction(() => !document.querySelector('#edit-form .dialog-error').hidden);
				edit = await dialogError('#edit-form');
				await page.keyboard.press('Escape');
			}
			if (await page.locator('#sign-out').isVisible()) await signOut();
			return { first: r, refreshes: seen, edit };
		});
	}
	if (mode === 'full') {
		// A key with scopes may give only scopes it has: 403 in the dialog.
		await step('403: giving scopes the signed-in key lacks', async () => {
			const r = await signIn(input.scoped_key);
			const prefix = input.scoped_key.slice(0, 16);
			await openEdit(prefix);
			await page.locator('#e-scopes').fill('keys:read keys:write admin:everything');
			await page.locator('#edit-form button[type="submit"]').click();
			await page.waitForFunction(() => !document.querySelector('#edit-form .dialog-error').hidden);
			const edit = await dialogError('#edit-form');
			await page.keyboard.press('Escape');
			await page.locator('#edit-dialog').waitFor({ state: 'hidden' });
			return { first: r, edit };
		});
		// The key signed in with is revoked (by the caller, at the
		// checkpoint) while its edit form is open: saving is a 401, which
		// signs out with a message.
		await step('401: the signed-in key revoked while editing', async () => {
			const prefix = input.scoped_key.slice(0, 16);
			await clearNotice();
			await openEdit(prefix);
			await page.locator('#e-name').fill('scoped, renamed');
			await checkpoint('revoke_scoped', {});
			await page.locator('#edit-form button[type="submit"]').click();
			await page.waitForFunction(() => document.body.dataset.view === 'signin');
			return {
				view: await page.evaluate(() => document.body.dataset.view), notice: await notice(),
				dialog_open: await page.locator('#edit-dialog').isVisible(),
				storage: await secretsInPage([input.scoped_key]),
			};
		});
	}
	// Nothing left anywhere at the end.
	await step('end', async () => ({ storage: await secretsInPage([input.key, input.jwt, input.scoped_key, created].filter(Boolean)) }));
} finally {
	await collectViolations().catch(() => {});
	await browser.close();
}
// Exit once the result is written: it is larger than a pipe's buffer
// (the 30 d chart has 720 points), and an exit at once would cut it short.
process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
