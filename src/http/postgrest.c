/*-------------------------------------------------------------------------
 *
 * postgrest.c
 *	  PostgREST's conventions, as pre_request() needs them (DESIGN.md
 *	  section 8): reading the request.* settings PostgREST sets, setting
 *	  values for the rest of the transaction only (connections are pooled),
 *	  merging into response.headers, and ending a request with a custom
 *	  HTTP status.
 *
 * Errors are PostgREST's custom errors: SQLSTATE PGRST, the message a JSON
 * object {code, message, details, hint} and the detail {status, headers},
 * with response.status set first (track_request's transaction callback
 * reads it).  The JSON is what json_build_object() printed in version 1.3,
 * when pre_request() was PL/pgSQL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "http/postgrest.h"

static const char *const header_names[HK_HDR_COUNT] = {
	[HK_HDR_RATELIMIT] = "RateLimit",
	[HK_HDR_RETRY_AFTER] = "Retry-After",
	[HK_HDR_POLICY] = "RateLimit-Policy",
	[HK_HDR_WWW_AUTHENTICATE] = "WWW-Authenticate",
	[HK_HDR_USED] = "X-RateLimit-Used",
	[HK_HDR_LIMIT] = "X-RateLimit-Limit",
	[HK_HDR_RESET] = "X-RateLimit-Reset",
	[HK_HDR_RESOURCE] = "X-RateLimit-Resource",
	[HK_HDR_REMAINING] = "X-RateLimit-Remaining",
};

/* No headers. */
const HkHeaders hk_no_headers;

/* A setting as current_setting(name, true) gives it: NULL when unknown. */
char *
hk_setting(const char *name)
{
	return GetConfigOptionByName(name, NULL, true);
}

/* set_config(name, value, true) */
void
hk_set_local(const char *name, const char *value)
{
	(void) set_config_option(name, value,
							 superuser() ? PGC_SUSET : PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
}

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
	for (i = 0; i < HK_HDR_COUNT; i++)
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

/* Append s as a JSON string, or null. */
static void
append_json_or_null(StringInfo buf, const char *s)
{
	if (s == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, s);
}

/*
 * End the request with an HTTP status: PostgREST answers with status, the
 * headers, and {code, message, details, hint} as the body.
 */
void
hk_http_error(int status, const char *code, const char *message,
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
	hk_set_local("response.status", status_text);

	/*
	 * A refusal is an answer, not a server error: keep it out of the
	 * server log.  The transaction is about to abort, which restores both
	 * settings, so nothing else is silenced (docs/http.md, "Logging").
	 */
	if (status == 401 || status == 403 || status == 429)
	{
		(void) set_config_option("log_min_messages", "fatal", PGC_SUSET,
								 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
		(void) set_config_option("log_min_error_statement", "fatal", PGC_SUSET,
								 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
	}

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
Jsonb *
hk_setting_jsonb(const char *name, const char *value)
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
 * member is null.  A string is not NUL-terminated: *len is its length.
 */
char *
hk_member_text(Jsonb *j, const char *key, int *len)
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

/*
 * Add headers to response.headers, a JSON array of one-key objects that
 * PostgREST sends; what is there already is kept (jsonb ||).
 */
void
hk_add_response_headers(const HkHeaders *h)
{
	StringInfoData buf;
	char	   *resp;

	initStringInfo(&buf);
	append_headers(&buf, h, true);
	if (buf.len == 2)
		return;					/* nothing to add */

	resp = hk_setting("response.headers");
	if (resp != NULL && resp[0] != '\0')
	{
		Datum		merged;

		merged = DirectFunctionCall2(jsonb_concat,
									 DirectFunctionCall1(jsonb_in, CStringGetDatum(resp)),
									 DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
		hk_set_local("response.headers",
					 DatumGetCString(DirectFunctionCall1(jsonb_out, merged)));
	}
	else
		hk_set_local("response.headers", buf.data);
}
