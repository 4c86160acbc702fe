/*-------------------------------------------------------------------------
 *
 * usage_sql.c
 *	  SQL functions that feed and watch the usage queue: record_usage(),
 *	  track_request() (the tracking itself is track.c),
 *	  usage_queue_stats(), usage_queue_stats_reset() and _uuid_v7().
 *
 * None of them writes a table: they only copy an event into shared memory,
 * so they work in read-only transactions (PostgREST runs GET requests in
 * one) and cost no WAL on the request path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "hokusai_auth.h"
#include "usage/endpoint.h"
#include "usage/track.h"
#include "usage/usage_queue.h"
#include "usage/uuid7.h"

PG_FUNCTION_INFO_V1(hk_sql_record_usage);
PG_FUNCTION_INFO_V1(hk_sql_track_request);
PG_FUNCTION_INFO_V1(hk_sql_uuid_v7);
PG_FUNCTION_INFO_V1(hk_sql_usage_queue_stats);
PG_FUNCTION_INFO_V1(hk_sql_usage_queue_stats_reset);

/* Argument 0, a key id: not NULL. */
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
		len = hk_usage_endpoint_arg(PG_GETARG_TEXT_PP(1), buf);
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

#define STATS_NATTS 19

/*
 * hokusai_auth.usage_queue_stats() returns (capacity, queued, enqueued,
 *	dropped, other_database, touches_dropped, flushed, discarded, failed,
 *	flushes, keys_touched, keys_expired, last_flush_lag_ms,
 *	max_flush_lag_ms, last_flush_at, worker_pid, stats_reset, aggregated,
 *	late_discarded)
 */
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
	HkUsageStat s;
	TimestampTz last_flush;

	hk_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	memset(nulls, false, sizeof(nulls));

	hk_usage_queue_state(&capacity, &queued, &worker_pid);
	values[i++] = Int64GetDatum(capacity);
	values[i++] = Int64GetDatum(queued);
	/* The counters, in the enum's order, which is the columns' order. */
	for (s = HK_USTAT_ENQUEUED; s <= HK_USTAT_KEYS_EXPIRED; s++)
		values[i++] = Int64GetDatum(hk_usage_stat(s));
	values[i++] = Float8GetDatum(hk_usage_stat(HK_USTAT_LAST_LAG_US) / 1000.0);
	values[i++] = Float8GetDatum(hk_usage_stat(HK_USTAT_MAX_LAG_US) / 1000.0);
	last_flush = (TimestampTz) hk_usage_stat(HK_USTAT_LAST_FLUSH_AT);
	values[i] = TimestampTzGetDatum(last_flush);
	nulls[i++] = last_flush == 0;
	values[i] = Int32GetDatum(worker_pid);
	nulls[i++] = worker_pid == 0;
	values[i++] = TimestampTzGetDatum((TimestampTz) hk_usage_stat(HK_USTAT_RESET_AT));
	values[i++] = Int64GetDatum(hk_usage_stat(HK_USTAT_AGGREGATED));
	values[i++] = Int64GetDatum(hk_usage_stat(HK_USTAT_LATE_DISCARDED));
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
