/*-------------------------------------------------------------------------
 *
 * pre_request.c
 *	  hokusai_auth.pre_request(): PostgREST's db-pre-request hook, run once
 *	  per HTTP request before the route's statement (docs/http.md).
 *
 * In this order:
 *
 *	1. HTTPS: with hokusai_auth.require_https on, the last comma-separated
 *	   value of X-Forwarded-Proto, trimmed of spaces, must be "https"
 *	   (case-insensitive); otherwise 403 https_required;
 *	2. request.path "/" (the OpenAPI description) needs nothing more;
 *	3. the client address from X-Forwarded-For (client_ip.c, the same as
 *	   hokusai_auth.client_ip(forwarded_for)), into hokusai.client_ip;
 *	4. an X-API-Key: validated (validate/pipeline.c, with the client
 *	   address, kept as an HkCidr throughout); a refused key ends the
 *	   request with 401, 402 (credits exhausted, see refuse_key()), 403 or
 *	   429.  Every request of a known key (its
 *	   secret proven), refused or not, queues one usage event for the end
 *	   of the transaction (usage/track.c), with the answer's status.  A
 *	   valid key must belong to the JWT's subject when there is one; it
 *	   sets hokusai.api_key_id, hokusai.user_id and the rate-limit response
 *	   headers.  The key must have the scopes the route demands
 *	   (route_scopes.c), checked in validation before the rate limit (a
 *	   refused request spends nothing): else 403 insufficient_scope naming
 *	   the first one missing.  A disabled key is 403 disabled: the key is
 *	   known and right, its owner switched it off, and a client should keep
 *	   it, not discard it as a 401 (revoked, expired) would suggest;
 *	5. else the JWT subject (request.jwt.claims' "sub") must be the uuid of
 *	   an active user, read as the schema's owner (PostgREST's roles cannot
 *	   read the users table); it sets hokusai.user_id.  A JWT is the user
 *	   itself: route scopes are not demanded of it;
 *	6. else 401 missing_credentials;
 *	7. when hokusai.api_role is set and differs from current_user (PostgREST
 *	   ran the request as its anonymous role), switch to it for the
 *	   transaction, as set_config('role', ..., true) does.
 *
 * The caller it admits (key or user) is recorded for current_key_id(),
 * current_user_id() and current_scopes() (caller.c), after clearing the
 * previous one first.
 *
 * How errors, settings and response headers look to PostgREST is
 * postgrest.c's business.  Every setting is transaction-local.  Nothing
 * here writes a table, so it works in PostgREST's read-only transactions.
 *
 * The plaintext key is never put in a message: errors name its key_prefix.
 * request.headers holds it, so a malformed request.headers is reported
 * without the JSON parser's detail and context, which quote the input.
 *
 * Version 1.3 of the extension did the same in PL/pgSQL; this is the same
 * behaviour with one round of SQL-level function calls fewer per step.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "hokusai_auth.h"
#include "common/text.h"
#include "http/caller.h"
#include "http/client_ip.h"
#include "http/postgrest.h"
#include "http/route_scopes.h"
#include "ratelimit/admit.h"
#include "usage/track.h"
#include "validate/cidr_datum.h"
#include "validate/key_store.h"
#include "validate/pipeline.h"

PG_FUNCTION_INFO_V1(hk_sql_pre_request);

#define BEARER_INVALID_TOKEN	"Bearer error=\"invalid_token\""
#define MISSING_HINT \
	"Send an API key (Authorization: Bearer hk_..., X-API-Key or ?api_key=) or a JWT."

/* Is the last comma-separated element, trimmed of spaces, "https"? */
static bool
proto_is_https(const char *s, int len)
{
	int			start = len;
	size_t		n;

	if (s == NULL)
		return false;
	while (start > 0 && s[start - 1] != ',')
		start--;
	s += start;
	n = len - start;
	hk_trim(&s, &n, " ");
	return n == 5 && pg_strncasecmp(s, "https", 5) == 0;
}

/* A uuid as text, palloc'd. */
static char *
uuid_text(const pg_uuid_t *u)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(u)));
}

/* An integer as text, palloc'd. */
static char *
int_text(int32 v)
{
	return psprintf("%d", v);
}

/* The JWT's "sub" as text (see hk_member_text), NULL without one. */
static char *
jwt_subject(void)
{
	char	   *claims = hk_setting("request.jwt.claims");
	const char *p = claims;
	size_t		n;
	char	   *sub;
	int			len = 0;

	if (claims == NULL)
		return NULL;
	/* Claims that are not a JSON object have no subject. */
	n = strlen(p);
	hk_trim(&p, &n, HK_SPACES);
	if (n == 0 || *p != '{')
		return NULL;
	sub = hk_member_text(hk_setting_jsonb("request.jwt.claims", claims), "sub", &len);
	return sub ? pnstrdup(sub, len) : NULL;
}

/* Unix epoch seconds of t, rounded up. */
static int64
epoch_seconds_ceil(TimestampTz t)
{
	return (t + USECS_PER_SEC - 1) / USECS_PER_SEC +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
}

/* Seconds from now to t, rounded up; 0 when t is not later. */
static int64
seconds_until(TimestampTz t, TimestampTz now)
{
	return t <= now ? 0 : (t - now + USECS_PER_SEC - 1) / USECS_PER_SEC;
}

/*
 * The rate-limit headers of a request that the limiter decided
 * (docs/http.md, "Rate-limit headers"): the X-RateLimit-* fields as GitHub
 * defines them, for the hourly quota, or for the burst limit when that is
 * what refused the request; RateLimit-Policy and RateLimit (the IETF
 * httpapi draft's structured fields) for both limits.  d is the key's
 * windows, or the owner's (user set) when the limits shared by the user's
 * keys refused the request: the names are then user_hourly and user_burst.
 */
static void
rate_limit_headers(const HkLimiterDecision *d, HkHeaders *rl, bool user)
{
	bool		burst = d->limited_by == HK_LIMIT_BURST;
	const char *hourly_name = user ? "user_hourly" : "hourly";
	const char *burst_name = user ? "user_burst" : "burst";

	rl->value[HK_HDR_LIMIT] = psprintf("%d", burst ? d->burst_limit : d->limit);
	rl->value[HK_HDR_REMAINING] = psprintf("%d", burst ? d->burst_remaining : d->remaining);
	rl->value[HK_HDR_USED] = psprintf("%d", burst ? d->burst_used : d->hour_used);
	rl->value[HK_HDR_RESET] = psprintf(INT64_FORMAT,
									   epoch_seconds_ceil(burst ? d->burst_reset_at : d->hour_reset_at));
	rl->value[HK_HDR_RESOURCE] = burst ? burst_name : hourly_name;
	if (d->burst_limit > 0 && d->limit > 0)
	{
		rl->value[HK_HDR_POLICY] =
			psprintf("\"%s\";q=%d;w=3600, \"%s\";q=%d;w=1", hourly_name, d->limit,
					 burst_name, d->burst_limit);
		rl->value[HK_HDR_RATELIMIT] =
			psprintf("\"%s\";r=%d;t=" INT64_FORMAT ", \"%s\";r=%d;t=" INT64_FORMAT,
					 hourly_name, d->remaining, seconds_until(d->hour_reset_at, d->now),
					 burst_name, d->burst_remaining, seconds_until(d->burst_reset_at, d->now));
	}
	else if (d->limit > 0)
	{
		rl->value[HK_HDR_POLICY] = psprintf("\"%s\";q=%d;w=3600", hourly_name, d->limit);
		rl->value[HK_HDR_RATELIMIT] =
			psprintf("\"%s\";r=%d;t=" INT64_FORMAT, hourly_name,
					 d->remaining, seconds_until(d->hour_reset_at, d->now));
	}
	else
	{
		/* A user's limits may be a burst limit alone. */
		rl->value[HK_HDR_POLICY] = psprintf("\"%s\";q=%d;w=1", burst_name, d->burst_limit);
		rl->value[HK_HDR_RATELIMIT] =
			psprintf("\"%s\";r=%d;t=" INT64_FORMAT, burst_name,
					 d->burst_remaining, seconds_until(d->burst_reset_at, d->now));
	}
}

static void refuse_key(const HkValidation *v, const HkAdmitResult *adm,
					   HkHeaders *rl, const char *client_text) pg_attribute_noreturn();

/*
 * End the request for a key that validation refused.  adm is the
 * admission of a rate-limited or credits_exhausted key, else NULL.
 *
 * Credits exhausted is 402 Payment Required: the key may not make this
 * request until its balance grows (a refill, add_credits()), which waiting
 * a few seconds will not bring about; a 429 would invite clients and
 * proxies to retry on a timer, and 403 says the request is forbidden
 * outright.  RFC 9110 reserves 402 "for future use", and APIs that sell
 * usage have made it the answer for a used-up balance.  Retry-After is
 * sent when a refill is coming: the seconds until it.
 */
static void
refuse_key(const HkValidation *v, const HkAdmitResult *adm, HkHeaders *rl,
		   const char *client_text)
{
	/* Only a well-formed key has a key_prefix. */
	const char *prefix = v->prefix;
	const char *message;
	HkRefusal	refused = adm != NULL ? adm->refused_by : HK_REFUSED_KEY_HOURLY;

	switch (v->status)
	{
		case HK_STATUS_CREDITS_EXHAUSTED:
			if (v->retry_after > 0)
				rl->value[HK_HDR_RETRY_AFTER] = int_text(v->retry_after);
			hk_http_error(402, "credits_exhausted", "API key credits exhausted",
						  psprintf("Key %s has " INT64_FORMAT " credits left, fewer than this request costs.",
								   prefix, v->credits_remaining),
						  v->retry_after > 0 ?
						  "Retry after the number of seconds in Retry-After, when the key's credits are refilled, or ask for more credits." :
						  "Ask for more credits: the key has no refill.",
						  rl);
		case HK_STATUS_RATE_LIMITED:
			rl->value[HK_HDR_RETRY_AFTER] = int_text(Max(v->retry_after, 1));
			if (refused == HK_REFUSED_USER_HOURLY || refused == HK_REFUSED_USER_BURST)
				hk_http_error(429, "rate_limited",
							  refused == HK_REFUSED_USER_BURST ?
							  "the user's burst limit exceeded" :
							  "the user's hourly rate limit exceeded",
							  refused == HK_REFUSED_USER_BURST ?
							  psprintf("The keys of the owner of key %s have used their shared burst limit of %d requests per second.",
									   prefix, adm->user.burst_limit) :
							  psprintf("The keys of the owner of key %s have used their shared hourly limit of %d requests.",
									   prefix, adm->user.limit),
							  refused == HK_REFUSED_USER_BURST ?
							  "Retry after the number of seconds in Retry-After; X-RateLimit-Resource is user_burst." :
							  "Retry after the number of seconds in Retry-After; X-RateLimit-Resource is user_hourly.",
							  rl);
			if (refused == HK_REFUSED_KEY_BURST)
				hk_http_error(429, "rate_limited", "burst limit exceeded",
							  psprintf("Key %s has used its burst limit of %d requests per second.",
									   prefix, adm->key.burst_limit),
							  "Retry after the number of seconds in Retry-After; X-RateLimit-Resource is burst.",
							  rl);
			hk_http_error(429, "rate_limited", "hourly rate limit exceeded",
						  psprintf("Key %s has used its hourly limit of %d requests.",
								   prefix, v->rate_limit),
						  "Retry after the number of seconds in Retry-After; X-RateLimit-Resource is hourly.",
						  rl);
		case HK_STATUS_IP_DENIED:
			hk_http_error(403, "ip_denied",
						  "this API key may not be used from this address",
						  psprintf("Key %s has an IP allow-list that does not include %s.",
								   prefix, client_text ? client_text : "the client address"),
						  NULL, rl);
		case HK_STATUS_INSUFFICIENT_SCOPE:
			/* RFC 6750, section 3.1: 403 and the scope that is needed. */
			rl->value[HK_HDR_WWW_AUTHENTICATE] =
				psprintf("Bearer error=\"insufficient_scope\", scope=\"%s\"", v->missing_scope);
			hk_http_error(403, "insufficient_scope",
						  psprintf("this API key lacks the scope %s", v->missing_scope),
						  psprintf("Key %s does not have scope %s, which this request requires.",
								   prefix, v->missing_scope),
						  "Use a key with this scope; its owner can add it (PATCH /keys/{key_id} with \"scopes\").",
						  rl);
		case HK_STATUS_DISABLED:
			hk_http_error(403, "disabled", "API key disabled",
						  psprintf("Key %s has been disabled by its owner; it works again once enabled.",
								   prefix),
						  NULL, rl);
		case HK_STATUS_MALFORMED:
			message = "malformed API key";
			break;
		case HK_STATUS_UNKNOWN:
			message = "unknown API key";
			break;
		case HK_STATUS_REVOKED:
			message = "API key revoked";
			break;
		case HK_STATUS_EXPIRED:
			message = "API key expired";
			break;
		default:
			message = "invalid API key";
			break;
	}
	rl->value[HK_HDR_WWW_AUTHENTICATE] = BEARER_INVALID_TOKEN;
	hk_http_error(401, hk_status_names[v->status], message,
				  prefix[0] != '\0' ? psprintf("Key %s.", prefix) : NULL,
				  NULL, rl);
}

/*
 * Step 4 of the banner: the request carries an API key.  client is NULL
 * when the client address is unknown; client_text is its text then.
 */
static void
authenticate_key(const char *key, int key_len, const HkCidr *client,
				 const char *client_text, const char *sub)
{
	HkRequest	req;
	HkValidation v;
	HkAdmitResult adm;
	bool		have_decision = false;
	HkHeaders	rl;
	char	   *key_id;
	char	   *user_id;
	char	   *method;
	char	   *path;
	text	   *endpoint = NULL;
	HkRouteScope *route_scopes;

	/*
	 * No endpoint for the validation: the usage event is queued below, once,
	 * with its response time and status, when the transaction ends.
	 */
	memset(&req, 0, sizeof(req));
	req.key = key;
	req.key_len = key_len;
	req.client = client;
	req.cost = 1;
	method = hk_setting("request.method");
	path = hk_setting("request.path");
	req.n_route_scopes = hk_route_scopes_for(method, path, &route_scopes);
	req.route_scopes = route_scopes;
	req.want_scopes = true;
	hk_validate(&req, &v);

	memset(&rl, 0, sizeof(rl));
	if (v.known)
		rl.value[HK_HDR_LIMIT] = int_text(v.rate_limit);
	if (v.has_limits)
	{
		/* The limiter decided this request in this backend just now. */
		have_decision = hk_admit_last(&v.key_id, &adm);
		if (have_decision)
		{
			bool		user = adm.refused_by == HK_REFUSED_USER_HOURLY ||
				adm.refused_by == HK_REFUSED_USER_BURST;

			rate_limit_headers(user ? &adm.user : &adm.key, &rl, user);
		}
		else
		{
			rl.value[HK_HDR_REMAINING] = int_text(v.remaining);
			rl.value[HK_HDR_RESET] = int_text(v.reset_seconds);
		}
	}

	/*
	 * Every answered request of a known key is one usage event, refusals
	 * included (their status is response.status, set by hk_http_error()):
	 * queued when the transaction ends, commit or abort, in shared memory.
	 * A key that is not known (malformed, unknown) has no id to count it on.
	 */
	if (v.known)
	{
		if (method != NULL && path != NULL)
			endpoint = cstring_to_text(psprintf("%s %s", method, path));
		hk_track_request(&v.key_id, endpoint);
	}

	if (v.status != HK_STATUS_OK)
		refuse_key(&v, have_decision ? &adm : NULL, &rl, client ? client_text : NULL);

	key_id = uuid_text(&v.key_id);
	user_id = uuid_text(&v.user_id);
	if (sub != NULL && strcmp(sub, user_id) != 0)
		hk_http_error(401, "conflicting_credentials",
					  "the API key and the JWT belong to different users",
					  NULL, NULL, &hk_no_headers);
	hk_set_local("hokusai.api_key_id", key_id);
	hk_set_local("hokusai.user_id", user_id);
	hk_caller_set_key(&v.key_id, &v.user_id, v.scopes, v.scopes_len);
	hk_add_response_headers(&rl);
}

/* Step 5 of the banner: a JWT and no API key. */
static void
authenticate_subject(const char *sub)
{
	pg_uuid_t  *id = NULL;

	if (hk_looks_like_uuid(sub))
		id = DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(sub)));
	if (id == NULL || !hk_user_is_active(id))
	{
		HkHeaders	h;

		memset(&h, 0, sizeof(h));
		h.value[HK_HDR_WWW_AUTHENTICATE] = BEARER_INVALID_TOKEN;
		hk_http_error(401, "invalid_token", "the JWT subject is not an active user",
					  NULL, NULL, &h);
	}
	hk_set_local("hokusai.user_id", uuid_text(id));
	hk_caller_set_user(id);
}

/*
 * hokusai_auth.pre_request() returns void
 *
 * SECURITY INVOKER on purpose: only an invoker may switch role.
 */
Datum
hk_sql_pre_request(PG_FUNCTION_ARGS)
{
	char	   *api_role = hk_setting("hokusai.api_role");
	char	   *raw_headers = hk_setting("request.headers");
	Jsonb	   *headers;
	char	   *path;
	const char *xff;
	const char *api_key;
	int			len = 0;
	HkCidr		client;
	bool		have_client = false;
	const char *client_text = "";
	char	   *sub;

	if (api_role != NULL && api_role[0] == '\0')
		api_role = NULL;
	hk_caller_reset();

	/* An empty or missing request.headers is '{}'. */
	headers = (raw_headers == NULL || raw_headers[0] == '\0') ? NULL :
		hk_setting_jsonb("request.headers", raw_headers);

	if (hk_require_https)
	{
		const char *proto = hk_member_text(headers, "x-forwarded-proto", &len);

		if (!proto_is_https(proto, proto ? len : 0))
			hk_http_error(403, "https_required", "HTTPS is required",
						  "The request did not arrive over HTTPS (X-Forwarded-Proto from a trusted proxy).",
						  "Use https://.", &hk_no_headers);
	}

	/* The OpenAPI description (GET /) is public. */
	path = hk_setting("request.path");
	if (path != NULL && strcmp(path, "/") == 0)
		PG_RETURN_VOID();

	xff = hk_member_text(headers, "x-forwarded-for", &len);
	if (xff != NULL && hk_client_from_forwarded_for(xff, len, &client))
	{
		have_client = true;
		client_text = hk_cidr_host_text(&client);
	}
	hk_set_local("hokusai.client_ip", client_text);

	sub = jwt_subject();

	api_key = hk_member_text(headers, "x-api-key", &len);
	if (api_key != NULL && len > 0)
		authenticate_key(api_key, len, have_client ? &client : NULL,
						 client_text, sub);
	else if (sub != NULL)
		authenticate_subject(sub);
	else
	{
		HkHeaders	h;

		memset(&h, 0, sizeof(h));
		h.value[HK_HDR_WWW_AUTHENTICATE] = "Bearer";
		hk_http_error(401, "missing_credentials", "authentication required",
					  NULL, MISSING_HINT, &h);
	}

	/*
	 * PostgREST ran the request as another role (its anonymous role, for a
	 * request with an API key and no JWT): switch to the API role.  The
	 * session user (the authenticator) must be a member of it.
	 */
	if (api_role != NULL &&
		strcmp(GetUserNameFromId(GetUserId(), false), api_role) != 0)
		hk_set_local("role", api_role);

	PG_RETURN_VOID();
}
