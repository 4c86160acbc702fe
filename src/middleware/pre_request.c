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
 *	3. the client address from X-Forwarded-For (forwarded.c, the same as
 *	   hokusai_auth.client_ip(forwarded_for)), into hokusai.client_ip;
 *	4. an X-API-Key: validated (auth.c, with the client address); a refused
 *	   key ends the request with 401, 403 or 429.  A valid one must belong
 *	   to the JWT's subject when there is one; it sets hokusai.api_key_id,
 *	   hokusai.user_id, the X-RateLimit-* response headers, and queues one
 *	   usage event for the end of the transaction (usage_sql.c);
 *	5. else the JWT subject (request.jwt.claims' "sub") must be the uuid of
 *	   an active user, read as the schema's owner (PostgREST's roles cannot
 *	   read the users table); it sets hokusai.user_id;
 *	6. else 401 missing_credentials;
 *	7. when hokusai.api_role is set and differs from current_user (PostgREST
 *	   ran the request as its anonymous role), switch to it for the
 *	   transaction, as set_config('role', ..., true) does.
 *
 * Errors are PostgREST's custom errors: SQLSTATE PGRST, the message a JSON
 * object {code, message, details, hint} and the detail {status, headers},
 * with response.status set first (track_request's transaction callback
 * reads it).  Every setting is transaction-local.  Nothing here writes a
 * table, so it works in PostgREST's read-only transactions.
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
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inet.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "hokusai_auth.h"
#include "http/client_ip.h"
#include "validate/cidr_datum.h"
#include "validate/key_store.h"
#include "validate/pipeline.h"
#include "usage/usage_queue.h"

PG_FUNCTION_INFO_V1(hk_sql_pre_request);

/* HTTP response headers of an error or a success, in the order jsonb keeps
 * object keys (by length, then bytes), which is how 1.3 sent them. */
typedef enum HkHeader
{
	HDR_RETRY_AFTER,			/* Retry-After */
	HDR_WWW_AUTHENTICATE,		/* WWW-Authenticate */
	HDR_LIMIT,					/* X-RateLimit-Limit */
	HDR_RESET,					/* X-RateLimit-Reset */
	HDR_REMAINING,				/* X-RateLimit-Remaining */
	HDR_COUNT
} HkHeader;

static const char *const header_names[HDR_COUNT] = {
	[HDR_RETRY_AFTER] = "Retry-After",
	[HDR_WWW_AUTHENTICATE] = "WWW-Authenticate",
	[HDR_LIMIT] = "X-RateLimit-Limit",
	[HDR_RESET] = "X-RateLimit-Reset",
	[HDR_REMAINING] = "X-RateLimit-Remaining",
};

typedef struct HkHeaders
{
	const char *value[HDR_COUNT];	/* NULL: not sent */
} HkHeaders;

#define BEARER_INVALID_TOKEN	"Bearer error=\"invalid_token\""
#define MISSING_HINT \
	"Send an API key (Authorization: Bearer hk_..., X-API-Key or ?api_key=) or a JWT."

/* A setting as current_setting(name, true) gives it: NULL when unknown. */
static inline char *
setting(const char *name)
{
	return GetConfigOptionByName(name, NULL, true);
}

/* set_config(name, value, true) */
static void
set_local(const char *name, const char *value)
{
	(void) set_config_option(name, value,
							 superuser() ? PGC_SUSET : PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
}

/* No headers. */
static const HkHeaders no_headers;

/*
 * Append the headers that are set, as jsonb prints them: one JSON object
 * {"name": "value", ...} (an error's headers), or, as_array, a JSON array
 * of one-key objects [{"name": "value"}, ...] (response.headers).
 */
static void
append_headers(StringInfo buf, const HkHeaders *h, bool as_array)
{
	const char *sep = "";
	int			i;

	appendStringInfoChar(buf, as_array ? '[' : '{');
	for (i = 0; i < HDR_COUNT; i++)
	{
		if (h->value[i] == NULL)
			continue;
		appendStringInfoString(buf, sep);
		if (as_array)
			appendStringInfoChar(buf, '{');
		escape_json(buf, header_names[i]);
		appendStringInfoString(buf, ": ");
		escape_json(buf, h->value[i]);
		if (as_array)
			appendStringInfoChar(buf, '}');
		sep = ", ";
	}
	appendStringInfoChar(buf, as_array ? ']' : '}');
}

static void
append_json_or_null(StringInfo buf, const char *s)
{
	if (s == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, s);
}

static void http_error(int status, const char *code, const char *message,
					   const char *details, const char *hint,
					   const HkHeaders *headers) pg_attribute_noreturn();

/*
 * End the request with an HTTP status: PostgREST answers with status, the
 * headers, and {code, message, details, hint} as the body.  The JSON is
 * what json_build_object() printed in 1.3.
 */
static void
http_error(int status, const char *code, const char *message,
		   const char *details, const char *hint, const HkHeaders *headers)
{
	StringInfoData msg;
	StringInfoData detail;
	char		status_text[12];

	initStringInfo(&msg);
	appendStringInfoString(&msg, "{\"code\" : ");
	escape_json(&msg, code);
	appendStringInfoString(&msg, ", \"message\" : ");
	escape_json(&msg, message);
	appendStringInfoString(&msg, ", \"details\" : ");
	append_json_or_null(&msg, details);
	appendStringInfoString(&msg, ", \"hint\" : ");
	append_json_or_null(&msg, hint);
	appendStringInfoChar(&msg, '}');

	initStringInfo(&detail);
	appendStringInfo(&detail, "{\"status\" : %d, \"headers\" : ", status);
	append_headers(&detail, headers, false);
	appendStringInfoChar(&detail, '}');

	/* For track_request(), which records the status when the transaction ends. */
	snprintf(status_text, sizeof(status_text), "%d", status);
	set_local("response.status", status_text);

	ereport(ERROR,
			(errcode(MAKE_SQLSTATE('P', 'G', 'R', 'S', 'T')),
			 errmsg_internal("%s", msg.data),
			 errdetail_internal("%s", detail.data)));
	pg_unreachable();
}

/*
 * A setting that holds JSON, parsed as the ::jsonb cast does.  On bad
 * input, the cast's error but without its detail and context, which quote
 * the input (request.headers holds the API key).
 */
static Jsonb *
setting_jsonb(const char *name, const char *value)
{
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *volatile result = NULL;

	PG_TRY();
	{
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(value)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg_internal("%s", edata->message),
				 errdetail("The value of setting \"%s\" is not valid JSON; it is not shown, as it may hold credentials.",
						   name)));
	}
	PG_END_TRY();
	return result;
}

/*
 * jsonb ->> key: the member of an object as text (a string unquoted, other
 * values as JSON), NULL when j is not an object, has no such member or the
 * member is null.
 */
static char *
member_text(Jsonb *j, const char *key, int *len)
{
	JsonbValue	v;
	char	   *s;

	if (j == NULL || !JB_ROOT_IS_OBJECT(j) ||
		getKeyJsonValueFromContainer(&j->root, key, strlen(key), &v) == NULL)
		return NULL;
	switch (v.type)
	{
		case jbvString:
			*len = v.val.string.len;
			return v.val.string.val;	/* not NUL-terminated */
		case jbvNull:
			return NULL;
		case jbvBool:
			s = v.val.boolean ? "true" : "false";
			break;
		case jbvNumeric:
			s = DatumGetCString(DirectFunctionCall1(numeric_out,
													NumericGetDatum(v.val.numeric)));
			break;
		case jbvBinary:
			s = JsonbToCString(NULL, v.val.binary.data, v.val.binary.len);
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v.type);
			return NULL;		/* keep compiler quiet */
	}
	*len = strlen(s);
	return s;
}

/* Is the last comma-separated element, trimmed of spaces, "https"? */
static bool
proto_is_https(const char *s, int len)
{
	int			start = len;
	int			end = len;

	if (s == NULL)
		return false;
	while (start > 0 && s[start - 1] != ',')
		start--;
	while (start < end && s[start] == ' ')
		start++;
	while (end > start && s[end - 1] == ' ')
		end--;
	return end - start == 5 && pg_strncasecmp(s + start, "https", 5) == 0;
}

/* Does s look like a uuid: 8-4-4-4-12 hexadecimal digits, either case? */
static bool
is_uuid_text(const char *s)
{
	int			i;

	for (i = 0; i < 36; i++)
	{
		char		c = s[i];

		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (c != '-')
				return false;
		}
		else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
				   (c >= 'A' && c <= 'F')))
			return false;
	}
	return s[36] == '\0';
}

static char *
uuid_text(const pg_uuid_t *u)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(u)));
}

/* The JWT's "sub" as text (see member_text), NULL without one. */
static char *
jwt_subject(void)
{
	char	   *claims = setting("request.jwt.claims");
	const char *p;
	char	   *sub;
	int			len = 0;

	if (claims == NULL)
		return NULL;
	/* Claims that are not a JSON object have no subject. */
	for (p = claims; *p == ' ' || (*p >= '\t' && *p <= '\r'); p++)
		;
	if (*p != '{')
		return NULL;
	sub = member_text(setting_jsonb("request.jwt.claims", claims), "sub", &len);
	return sub ? pnstrdup(sub, len) : NULL;
}

/*
 * Add the rate-limit headers to response.headers, a JSON array of one-key
 * objects that PostgREST sends; what is there already is kept (jsonb ||).
 */
static void
add_response_headers(const HkHeaders *h)
{
	StringInfoData buf;
	char	   *resp;

	initStringInfo(&buf);
	append_headers(&buf, h, true);
	if (buf.len == 2)
		return;					/* nothing to add */

	resp = setting("response.headers");
	if (resp != NULL && resp[0] != '\0')
	{
		Datum		merged;

		merged = DirectFunctionCall2(jsonb_concat,
									 DirectFunctionCall1(jsonb_in, CStringGetDatum(resp)),
									 DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
		set_local("response.headers",
				  DatumGetCString(DirectFunctionCall1(jsonb_out, merged)));
	}
	else
		set_local("response.headers", buf.data);
}

static char *
int_text(int32 v)
{
	return psprintf("%d", v);
}

/* Step 4 of the banner: the request carries an API key. */
static void
authenticate_key(const char *key, int key_len, Datum client, bool have_client,
				 const char *client_text, const char *sub)
{
	HkValidation v;
	HkHeaders	rl;
	const char *prefix;
	char	   *method;
	char	   *path;
	text	   *endpoint = NULL;

	/*
	 * No endpoint for the validation: the usage event is queued below, once,
	 * with its response time and status, when the transaction ends.
	 */
	hk_validate(key, key_len, have_client ? DatumGetInetPP(client) : NULL, NULL, &v);

	memset(&rl, 0, sizeof(rl));
	if (v.known)
		rl.value[HDR_LIMIT] = int_text(v.rate_limit);
	if (v.has_limits)
	{
		rl.value[HDR_REMAINING] = int_text(v.remaining);
		rl.value[HDR_RESET] = int_text(v.reset_seconds);
	}

	if (v.status != HK_STATUS_OK)
	{
		/* Only a well-formed key has a key_prefix. */
		prefix = v.prefix[0] != '\0' ? v.prefix : NULL;

		switch (v.status)
		{
			case HK_STATUS_RATE_LIMITED:
				rl.value[HDR_RETRY_AFTER] = int_text(Max(v.retry_after, 1));
				http_error(429, "rate_limited", "rate limit exceeded",
						   psprintf("Key %s has used its requests for now.",
									prefix ? prefix : ""),
						   "Retry after the number of seconds in Retry-After.",
						   &rl);
				break;
			case HK_STATUS_IP_DENIED:
				http_error(403, "ip_denied",
						   "this API key may not be used from this address",
						   psprintf("Key %s has an IP allow-list that does not include %s.",
									prefix ? prefix : "",
									have_client ? client_text : "the client address"),
						   NULL, &rl);
				break;
			default:
				{
					const char *message;

					switch (v.status)
					{
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
					rl.value[HDR_WWW_AUTHENTICATE] = BEARER_INVALID_TOKEN;
					http_error(401, hk_status_names[v.status], message,
							   prefix ? psprintf("Key %s.", prefix) : NULL,
							   NULL, &rl);
				}
				break;
		}
	}

	{
		char	   *key_id = uuid_text(&v.key_id);
		char	   *user_id = uuid_text(&v.user_id);

		if (sub != NULL && strcmp(sub, user_id) != 0)
			http_error(401, "conflicting_credentials",
					   "the API key and the JWT belong to different users",
					   NULL, NULL, &no_headers);
		set_local("hokusai.api_key_id", key_id);
		set_local("hokusai.user_id", user_id);
	}
	add_response_headers(&rl);

	/* endpoint: request.method || ' ' || request.path, NULL if either is. */
	method = setting("request.method");
	path = setting("request.path");
	if (method != NULL && path != NULL)
		endpoint = cstring_to_text(psprintf("%s %s", method, path));
	hk_track_request(&v.key_id, endpoint);
}

/* Step 5 of the banner: a JWT and no API key. */
static void
authenticate_subject(const char *sub)
{
	pg_uuid_t  *id = NULL;

	if (is_uuid_text(sub))
		id = DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(sub)));
	if (id == NULL || !hk_user_is_active(id))
	{
		HkHeaders	h;

		memset(&h, 0, sizeof(h));
		h.value[HDR_WWW_AUTHENTICATE] = BEARER_INVALID_TOKEN;
		http_error(401, "invalid_token", "the JWT subject is not an active user",
				   NULL, NULL, &h);
	}
	set_local("hokusai.user_id", uuid_text(id));
}

/*
 * hokusai_auth.pre_request() returns void
 *
 * SECURITY INVOKER on purpose: only an invoker may switch role.
 */
Datum
hk_sql_pre_request(PG_FUNCTION_ARGS)
{
	char	   *api_role = setting("hokusai.api_role");
	char	   *raw_headers = setting("request.headers");
	Jsonb	   *headers;
	char	   *path;
	const char *xff;
	const char *api_key;
	int			len = 0;
	HkCidr		client;
	bool		have_client = false;
	Datum		client_inet = (Datum) 0;
	const char *client_text = "";
	char	   *sub;

	if (api_role != NULL && api_role[0] == '\0')
		api_role = NULL;

	/* An empty or missing request.headers is '{}'. */
	headers = (raw_headers == NULL || raw_headers[0] == '\0') ? NULL :
		setting_jsonb("request.headers", raw_headers);

	if (hk_require_https)
	{
		const char *proto = member_text(headers, "x-forwarded-proto", &len);

		if (!proto_is_https(proto, proto ? len : 0))
			http_error(403, "https_required", "HTTPS is required",
					   "The request did not arrive over HTTPS (X-Forwarded-Proto from a trusted proxy).",
					   "Use https://.", &no_headers);
	}

	/* The OpenAPI description (GET /) is public. */
	path = setting("request.path");
	if (path != NULL && strcmp(path, "/") == 0)
		PG_RETURN_VOID();

	xff = member_text(headers, "x-forwarded-for", &len);
	if (xff != NULL && hk_client_from_forwarded_for(xff, len, &client))
	{
		have_client = true;
		client_inet = hk_cidr_to_inet_datum(&client);
		client_text = TextDatumGetCString(DirectFunctionCall1(network_host, client_inet));
	}
	set_local("hokusai.client_ip", client_text);

	sub = jwt_subject();

	api_key = member_text(headers, "x-api-key", &len);
	if (api_key != NULL && len > 0)
		authenticate_key(api_key, len, client_inet, have_client, client_text, sub);
	else if (sub != NULL)
		authenticate_subject(sub);
	else
	{
		HkHeaders	h;

		memset(&h, 0, sizeof(h));
		h.value[HDR_WWW_AUTHENTICATE] = "Bearer";
		http_error(401, "missing_credentials", "authentication required",
				   NULL, MISSING_HINT, &h);
	}

	/*
	 * PostgREST ran the request as another role (its anonymous role, for a
	 * request with an API key and no JWT): switch to the API role.  The
	 * session user (the authenticator) must be a member of it.
	 */
	if (api_role != NULL &&
		strcmp(GetUserNameFromId(GetUserId(), false), api_role) != 0)
		set_local("role", api_role);

	PG_RETURN_VOID();
}
