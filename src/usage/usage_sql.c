/*-------------------------------------------------------------------------
 *
 * usage_sql.c
 *	  SQL functions that feed and watch the usage queue:
 *	  record_usage(), track_request() with its transaction callback,
 *	  usage_queue_stats() and usage_queue_stats_reset().
 *
 * None of them writes a table: they only copy an event into shared memory,
 * so they work in read-only transactions (PostgREST runs GET requests in
 * one) and cost no WAL on the request path.
 *
 * track_request(key_id, endpoint) remembers, in this backend, the key, the
 * endpoint and the time of the call.  When the transaction ends, a
 * transaction callback (registered once per backend) queues one event:
 * response_time_ms is the time from the call to the end of the
 * transaction, and status_code is the transaction's setting response.status
 * when that is an integer from 100 to 599, otherwise 200 on commit and 500
 * on abort.  Calling it again in the same transaction replaces the key and
 * endpoint and keeps the first start time, so a request is counted once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "hokusai_auth.h"
#include "usage/usage_queue.h"
#include "usage/uuid7.h"

#define HK_ENDPOINT_MAX_CHARS	2048

PG_FUNCTION_INFO_V1(hk_sql_record_usage);
PG_FUNCTION_INFO_V1(hk_sql_track_request);
PG_FUNCTION_INFO_V1(hk_sql_uuid_v7);
PG_FUNCTION_INFO_V1(hk_sql_usage_queue_stats);
PG_FUNCTION_INFO_V1(hk_sql_usage_queue_stats_reset);

/*
 * Check an endpoint argument and copy what the queue keeps of it into buf.
 * Returns its length in bytes.
 */
static int
endpoint_arg(const text *t, char *buf)
{
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;
	int			i;

	if (pg_mbstrlen_with_len(s, len) > HK_ENDPOINT_MAX_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("endpoint is too long"),
				 errdetail("The limit is %d characters.", HK_ENDPOINT_MAX_CHARS)));
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c == 0x7f ||
			(utf8 && c == 0xc2 && i + 1 < len && (unsigned char) s[i + 1] < 0xa0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("endpoint must not contain control characters")));
	}
	return hk_usage_clean_endpoint(s, len, buf);
}

static void
key_id_arg(FunctionCallInfo fcinfo, pg_uuid_t *key_id)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key_id must not be null")));
	*key_id = *PG_GETARG_UUID_P(0);
}

/*
 * hokusai_auth.record_usage(key_id uuid, endpoint text,
 *		response_time_ms integer, status_code integer) returns boolean
 *
 * Queue one usage event; false when the queue was full and it was dropped.
 */
Datum
hk_sql_record_usage(PG_FUNCTION_ARGS)
{
	pg_uuid_t	key_id;
	char		buf[HK_USAGE_ENDPOINT_LEN];
	int			len = 0;
	int32		rt = HK_EV_NONE;
	int32		status = HK_EV_NONE;

	hk_require_preload();
	key_id_arg(fcinfo, &key_id);
	if (!PG_ARGISNULL(1))
		len = endpoint_arg(PG_GETARG_TEXT_PP(1), buf);
	if (!PG_ARGISNULL(2))
	{
		rt = PG_GETARG_INT32(2);
		if (rt < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("response_time_ms must not be negative")));
	}
	if (!PG_ARGISNULL(3))
	{
		status = PG_GETARG_INT32(3);
		if (status < 100 || status > 599)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("status_code must be between 100 and 599")));
	}

	PG_RETURN_BOOL(hk_usage_enqueue(&key_id, GetCurrentTimestamp(),
									PG_ARGISNULL(1) ? NULL : buf, len,
									rt, status));
}

/* track_request() state of this backend's current transaction. */
static bool track_active = false;
static bool track_callback_registered = false;
static pg_uuid_t track_key_id;
static TimestampTz track_start;
static bool track_has_endpoint;
static int	track_endpoint_len;
static char track_endpoint[HK_USAGE_ENDPOINT_LEN];

/* response.status as a valid HTTP status, or -1. */
static int32
response_status_setting(void)
{
	const char *v = GetConfigOption("response.status", true, false);
	char	   *end;
	long		n;

	if (v == NULL)
		return -1;
	while (*v == ' ')
		v++;
	if (*v == '\0')
		return -1;
	errno = 0;
	n = strtol(v, &end, 10);
	while (*end == ' ')
		end++;
	if (errno != 0 || *end != '\0' || n < 100 || n > 599)
		return -1;
	return (int32) n;
}

static void
track_xact_callback(XactEvent event, void *arg)
{
	int32		status;
	int64		elapsed_us;
	int32		elapsed_ms;

	if (!track_active)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			status = 200;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			status = 500;
			break;
		default:
			return;
	}
	track_active = false;

	/* SET LOCAL values are still in place: AtEOXact_GUC runs later. */
	{
		int32		set = response_status_setting();

		if (set > 0)
			status = set;
	}
	elapsed_us = GetCurrentTimestamp() - track_start;
	if (elapsed_us < 0)
		elapsed_us = 0;
	elapsed_ms = (int32) Min((elapsed_us + 500) / 1000, (int64) PG_INT32_MAX);

	hk_usage_enqueue(&track_key_id, track_start,
					 track_has_endpoint ? track_endpoint : NULL,
					 track_endpoint_len, elapsed_ms, status);
}

/*
 * Queue one usage event for this request when the transaction ends (see the
 * banner); endpoint NULL for none.  Shared by track_request() and
 * pre_request().
 */
void
hk_track_request(const pg_uuid_t *key_id, const text *endpoint)
{
	char		buf[HK_USAGE_ENDPOINT_LEN];
	int			len = 0;

	hk_require_preload();
	if (endpoint != NULL)
		len = endpoint_arg(endpoint, buf);

	if (!track_callback_registered)
	{
		RegisterXactCallback(track_xact_callback, NULL);
		track_callback_registered = true;
	}
	if (!track_active)
		track_start = GetCurrentTimestamp();
	track_key_id = *key_id;
	track_has_endpoint = endpoint != NULL;
	track_endpoint_len = len;
	if (track_has_endpoint)
		memcpy(track_endpoint, buf, len + 1);
	track_active = true;
}

/*
 * hokusai_auth.track_request(key_id uuid, endpoint text) returns void
 *
 * Queue one usage event for this request when the transaction ends.
 */
Datum
hk_sql_track_request(PG_FUNCTION_ARGS)
{
	pg_uuid_t	key_id;

	hk_require_preload();
	key_id_arg(fcinfo, &key_id);
	hk_track_request(&key_id, PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1));
	PG_RETURN_VOID();
}

#define STATS_NATTS 17

/* hokusai_auth.usage_queue_stats() */
Datum
hk_sql_usage_queue_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[STATS_NATTS];
	bool		nulls[STATS_NATTS];
	uint32		capacity;
	uint64		queued;
	int			worker_pid;
	int			i = 0;
	TimestampTz last_flush;

	hk_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	memset(nulls, false, sizeof(nulls));

	hk_usage_queue_state(&capacity, &queued, &worker_pid);
	values[i++] = Int64GetDatum(capacity);
	values[i++] = Int64GetDatum(queued);
	values[i++] = Int64GetDatum(hk_usage_stat(HK_USTAT_ENQUEUED));
	values[i++] = Int64GetDatum(hk_usage_stat(HK_USTAT_DROPPED));
	values[i++] = Int64GetDatum(hk_usage_stat(HK_USTAT_OTHER_DB));
	values[i++] = Int64GetDatum(hk_usage_stat(HK_USTAT_TOUCHES_DROPPED));
	values[i++] = Int64GetDatum(hk_usage_stat(HK_USTAT_FLUSHED));
	values[i++] = Int64GetDatum(hk_usage_stat(HK_USTAT_DISCARDED));
	values[i++] = Int64GetDatum(hk_usage_stat(HK_USTAT_FAILED));
	values[i++] = Int64GetDatum(hk_usage_stat(HK_USTAT_FLUSHES));
	values[i++] = Int64GetDatum(hk_usage_stat(HK_USTAT_KEYS_TOUCHED));
	values[i++] = Int64GetDatum(hk_usage_stat(HK_USTAT_KEYS_EXPIRED));
	values[i++] = Float8GetDatum(hk_usage_stat(HK_USTAT_LAST_LAG_US) / 1000.0);
	values[i++] = Float8GetDatum(hk_usage_stat(HK_USTAT_MAX_LAG_US) / 1000.0);
	last_flush = (TimestampTz) hk_usage_stat(HK_USTAT_LAST_FLUSH_AT);
	values[i] = TimestampTzGetDatum(last_flush);
	nulls[i++] = last_flush == 0;
	values[i] = Int32GetDatum(worker_pid);
	nulls[i++] = worker_pid == 0;
	values[i++] = TimestampTzGetDatum((TimestampTz) hk_usage_stat(HK_USTAT_RESET_AT));
	Assert(i == STATS_NATTS);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* hokusai_auth.usage_queue_stats_reset() */
Datum
hk_sql_usage_queue_stats_reset(PG_FUNCTION_ARGS)
{
	hk_require_preload();
	hk_usage_stats_reset();
	PG_RETURN_VOID();
}

/*
 * hokusai_auth._uuid_v7(at timestamptz) returns uuid
 *
 * A time-ordered UUID for a usage row (uuid7.c); the worker's SQL path uses
 * it, the bulk path calls hk_uuid_v7() itself.
 */
Datum
hk_sql_uuid_v7(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *u = (pg_uuid_t *) palloc(sizeof(pg_uuid_t));

	hk_uuid_v7(PG_GETARG_TIMESTAMPTZ(0), u);
	PG_RETURN_UUID_P(u);
}
