// A client generated from the OpenAPI description, run against the live
// stack by test/t/024_openapi.pl: openapi-typescript turns the document
// nginx serves into api.d.ts (next to this file once copied), tsc
// type-checks this program against it (strict) and compiles it, and node
// runs it.  Each call's status must be one the document lists for that
// operation.  Prints one JSON object per check: {"name", "ok", "diag"}.
//
// Environment: HK_BASE (https://127.0.0.1:PORT/api/v1/auth), HK_JWT (a
// user's JWT), NODE_EXTRA_CA_CERTS (the stack's certificate).
import createClient from "openapi-fetch";
import type { paths, components } from "./api";

// Node's process, declared here: no @types/node needed.
declare const process: { env: Record<string, string | undefined>; exitCode?: number };

type Key = components["schemas"]["Key"];

const base = process.env.HK_BASE!;
const jwt = process.env.HK_JWT!;
// The document as nginx serves it: the statuses each operation lists.
let doc: { paths?: Record<string, Record<string, { responses?: Record<string, unknown> }>> } = {};

function report(name: string, ok: boolean, diag?: unknown): void {
	console.log(JSON.stringify({ name, ok, diag: diag === undefined ? null : diag }));
}

// The status is one the document lists for this operation.
function listed(path: string, method: string, res: Response, name: string): void {
	const responses = doc.paths?.[path]?.[method]?.responses ?? {};
	report(`${name}: status ${res.status} is listed for ${method.toUpperCase()} ${path}`,
		String(res.status) in responses, Object.keys(responses));
}

const asJwt = createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${jwt}` } });
const anon = createClient<paths>({ baseUrl: base });

async function main(): Promise<void> {
	// The document itself, without credentials.
	{
		const { data, response } = await anon.GET("/", { parseAs: "text" });
		doc = JSON.parse(data as unknown as string);
		listed("/", "get", response, "GET /");
		report("GET /: application/openapi+json",
			(response.headers.get("content-type") ?? "").startsWith("application/openapi+json"),
			response.headers.get("content-type"));
	}

	// Create a key with the JWT: 201, the typed body has the one-time key.
	const created = await asJwt.POST("/keys", {
		body: { name: "openapi client", environment: "test", rate_limit_per_hour: 100, metadata: { via: "openapi-fetch" } },
	});
	listed("/keys", "post", created.response, "POST /keys");
	report("POST /keys: 201 with a key", created.response.status === 201 && !!created.data
		&& /^hk_test_[0-9A-Za-z]{46}$/.test(created.data.key), created.error);
	if (!created.data) return;
	const key = created.data.key;
	const keyId = created.data.id;
	const asKey = createClient<paths>({ baseUrl: base, headers: { "X-API-Key": key } });

	// List with the new key (X-API-Key): the key is there, typed.
	{
		const { data, response } = await asKey.GET("/keys", { params: { query: { select: "id,name,status", order: "name" } } });
		listed("/keys", "get", response, "GET /keys");
		report("GET /keys: lists the new key", response.status === 200
			&& !!data?.some((k) => k.id === keyId && k.status === "active"), data);
		report("GET /keys: X-RateLimit-Limit is the key's limit",
			response.headers.get("x-ratelimit-limit") === "100", response.headers.get("x-ratelimit-limit"));
	}

	// One key (GET /keys/{key_id}).
	{
		const { data, response } = await asKey.GET("/keys/{key_id}", { params: { path: { key_id: keyId } } });
		report("GET /keys/{key_id}: 200", response.status === 200, response.status);
		const k: Key | undefined = data;
		report("GET /keys/{key_id}: the key", k?.id === keyId && k?.name === "openapi client", k ?? null);
	}

	// Usage, with since and until.
	{
		const { data, error, response } = await asKey.GET("/keys/{key_id}/usage", {
			params: { path: { key_id: keyId }, query: { since: "2000-01-01T00:00:00Z", until: "2100-01-01T00:00:00Z" } },
		});
		listed("/keys/{key_id}/usage", "get", response, "GET /keys/{key_id}/usage");
		report("usage: a summary of the key", response.status === 200 && data?.key_id === keyId
			&& typeof data?.requests === "number" && Array.isArray(data?.by_status), data ?? error);
		const bad = await asKey.GET("/keys/{key_id}/usage", {
			params: { path: { key_id: keyId }, query: { since: "2100-01-01T00:00:00Z", until: "2000-01-01T00:00:00Z" } },
		});
		listed("/keys/{key_id}/usage", "get", bad.response, "usage: since after until");
		report("usage: since after until is a 400 invalid_field",
			bad.response.status === 400 && bad.error?.code === "invalid_field", bad.error);
		// The hourly series (at most 31 days).
		const now = Date.now();
		const hours = await asKey.GET("/keys/{key_id}/usage", {
			params: { path: { key_id: keyId }, query: { since: new Date(now - 86400e3).toISOString(), until: new Date(now).toISOString(), series: "hour" } },
		});
		listed("/keys/{key_id}/usage", "get", hours.response, "usage: series=hour");
		report("usage: series=hour, a series", hours.response.status === 200 && hours.data?.series_period === "hour"
			&& Array.isArray(hours.data?.series), hours.data ?? hours.error);
		const long = await asKey.GET("/keys/{key_id}/usage", {
			params: { path: { key_id: keyId }, query: { since: "2000-01-01T00:00:00Z", until: "2100-01-01T00:00:00Z", series: "hour" } },
		});
		listed("/keys/{key_id}/usage", "get", long.response, "usage: a series of more than 31 days");
		report("usage: a series of more than 31 days is a 400 invalid_field",
			long.response.status === 400 && long.error?.code === "invalid_field", long.error);
	}

	// Errors, each with the error object of the document.
	{
		const r = await anon.GET("/keys", {});
		listed("/keys", "get", r.response, "GET /keys without credentials");
		report("no credentials: 401 missing_credentials", r.response.status === 401
			&& r.error?.code === "missing_credentials" && "hint" in (r.error ?? {}), r.error);
		const u = await asJwt.POST("/keys", { body: { name: "x", key_hash: "y" } as never });
		listed("/keys", "post", u.response, "POST /keys with key_hash");
		report("key_hash: 400 unknown_field", u.response.status === 400 && u.error?.code === "unknown_field", u.error);
		const n = await asJwt.DELETE("/keys/{key_id}", {
			params: { path: { key_id: "00000000-0000-4000-8000-000000000000" } }, body: {},
		});
		listed("/keys/{key_id}", "delete", n.response, "DELETE an unknown key");
		report("unknown key: 404 not_found", n.response.status === 404 && n.error?.code === "not_found", n.error);
	}

	// Change the key (PATCH): name and scopes; a read-only key then gets a
	// 403 insufficient_scope for a write; disable and enable it.
	{
		const { data, error, response } = await asJwt.PATCH("/keys/{key_id}", {
			params: { path: { key_id: keyId } },
			body: { name: "openapi client, read-only", scopes: ["keys:read", "usage:read"] },
		});
		listed("/keys/{key_id}", "patch", response, "PATCH /keys/{key_id}");
		report("PATCH: 200, renamed, scopes set", response.status === 200
			&& data?.name === "openapi client, read-only" && data?.scopes?.join() === "keys:read,usage:read",
			data ?? error);
		const w = await asKey.POST("/keys", { body: { name: "not allowed", environment: "live" } });
		listed("/keys", "post", w.response, "POST /keys with a read-only key");
		report("read-only key: POST /keys is a 403 insufficient_scope", w.response.status === 403
			&& w.error?.code === "insufficient_scope"
			&& (w.response.headers.get("www-authenticate") ?? "").includes('scope="keys:write"'), w.error);
		const off = await asJwt.PATCH("/keys/{key_id}", {
			params: { path: { key_id: keyId } }, body: { disabled: true, reason: "openapi client" },
		});
		report("PATCH disabled: status disabled", off.response.status === 200 && off.data?.status === "disabled",
			off.data ?? off.error);
		const refused = await asKey.GET("/keys", {});
		listed("/keys", "get", refused.response, "GET /keys with a disabled key");
		report("disabled key: 403 disabled", refused.response.status === 403 && refused.error?.code === "disabled",
			refused.error);
		const on = await asJwt.PATCH("/keys/{key_id}", {
			params: { path: { key_id: keyId } }, body: { disabled: false, scopes: [] },
		});
		report("PATCH disabled false, scopes []: active, no scopes", on.response.status === 200
			&& on.data?.status === "active" && on.data?.scopes?.length === 0, on.data ?? on.error);
		const none = await asJwt.PATCH("/keys/{key_id}", { params: { path: { key_id: keyId } }, body: {} });
		listed("/keys/{key_id}", "patch", none.response, "PATCH with nothing to change");
		report("PATCH with nothing to change: 400 invalid_body",
			none.response.status === 400 && none.error?.code === "invalid_body", none.error);
	}

	// Rotate (with the key itself), then revoke the new key with the JWT.
	{
		const { data, error, response } = await asKey.POST("/keys/{key_id}/rotate", {
			params: { path: { key_id: keyId } }, body: { grace_seconds: 60 },
		});
		listed("/keys/{key_id}/rotate", "post", response, "rotate");
		report("rotate: 201, a new key rotated from the old one", response.status === 201
			&& data?.rotated_from === keyId && data?.key !== key && typeof data?.old_key_ends_at === "string", data ?? error);
		if (!data) return;
		const again = await asJwt.POST("/keys/{key_id}/rotate", { params: { path: { key_id: keyId } } });
		listed("/keys/{key_id}/rotate", "post", again.response, "rotate twice");
		report("rotate twice: 409 conflict", again.response.status === 409 && again.error?.code === "conflict", again.error);

		const rv = await asJwt.DELETE("/keys/{key_id}", {
			params: { path: { key_id: data.id } }, body: { reason: "openapi client test" },
		});
		listed("/keys/{key_id}", "delete", rv.response, "DELETE /keys/{key_id}");
		report("revoke: 200, revoked", rv.response.status === 200 && rv.data?.revoked === true
			&& rv.data?.status === "revoked", rv.data ?? rv.error);
		const rv2 = await asJwt.DELETE("/keys/{key_id}", { params: { path: { key_id: data.id } } });
		report("revoke again: 200, revoked false", rv2.response.status === 200 && rv2.data?.revoked === false,
			rv2.data ?? rv2.error);
	}
}

main().catch((e) => {
	report("the client ran", false, String(e && e.stack || e));
	process.exitCode = 1;
});
