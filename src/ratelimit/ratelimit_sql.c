/*-------------------------------------------------------------------------
 *
 * ratelimit_sql.c
 *	  The SQL functions of the rate limits: _rate_limit_replay() (the
 *	  algorithm on given timestamps, for tests), _rate_limit_inspect() and
 *	  _user_limit_inspect() (behind rate_limit_status()),
 *	  _rate_limit_reset() and rate_limit_stats().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "ratelimit/limiter.h"
#include "ratelimit/window.h"

PG_FUNCTION_INFO_V1(hk_sql_rate_limit_replay);
PG_FUNCTION_INFO_V1(hk_sql_rate_limit_inspect);
PG_FUNCTION_INFO_V1(hk_sql_user_limit_inspect);
PG_FUNCTION_INFO_V1(hk_sql_rate_limit_reset);
PG_FUNCTION_INFO_V1(hk_sql_rate_limit_stats);

/* Argument n, a limit: not NULL, not negative, and not zero unless allowed. */
static int32
arg_limit(FunctionCallInfo fcinfo, int n, const char *name, bool allow_zero)
{
	int32		v;

	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	v = PG_GETARG_INT32(n);
	if (v < 0 || (v == 0 && !allow_zero))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 allow_zero ? errmsg("%s must not be negative", name) :
				 errmsg("%s must be positive", name)));
	return v;
}

/* Argument 0, a key id: not NULL. */
static pg_uuid_t *
arg_key_id(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key_id must not be null")));
	return PG_GETARG_UUID_P(0);
}

/*
 * hokusai_auth._rate_limit_replay(at timestamptz[], per_hour integer,
 *								   burst integer) returns boolean[]
 *
 * For tests: run the limiter on a private state over the given request
 * times, in order, and return each decision.  The same code decides live
 * requests.
 */
Datum
hk_sql_rate_limit_replay(PG_FUNCTION_ARGS)
{
	ArrayType  *at;
	Datum	   *times;
	bool	   *nulls;
	int			n;
	int			i;
	int32		per_hour;
	int32		burst;
	HkLimiterState st;
	Datum	   *out;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("at must not be null")));
	per_hour = arg_limit(fcinfo, 1, "per_hour", false);
	burst = arg_limit(fcinfo, 2, "burst", true);
	at = PG_GETARG_ARRAYTYPE_P(0);
	deconstruct_array(at, TIMESTAMPTZOID, sizeof(TimestampTz), true,
					  TYPALIGN_DOUBLE, &times, &nulls, &n);

	hk_limiter_state_init(&st);
	out = palloc(sizeof(Datum) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		HkLimiterDecision d;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("at must not contain nulls")));
		hk_limiter_decide(&st, DatumGetTimestampTz(times[i]), per_hour, burst, &d);
		out[i] = BoolGetDatum(d.admitted);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(out, n, BOOLOID, 1, true, TYPALIGN_CHAR));
}

/*
 * The windows of a key (or user) as (tracked, hour_count, burst_count,
 * remaining, reset_seconds), looking without counting.
 */
static Datum
inspect(FunctionCallInfo fcinfo, HkLimiterKind kind)
{
	HkLimiterState st;
	HkLimiterDecision d;
	bool		tracked;
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {0};
	int32		per_hour = arg_limit(fcinfo, 1, "per_hour", kind == HK_LIMITER_USER);
	int32		burst = arg_limit(fcinfo, 2, "burst", true);
	TimestampTz now = GetCurrentTimestamp();
	pg_uuid_t  *id = arg_key_id(fcinfo);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	tracked = hk_limiter_lookup(kind, id, &st);
	hk_limiter_peek(&st, now, per_hour, burst, &d);

	values[0] = BoolGetDatum(tracked);
	values[1] = Int64GetDatum(st.hour_total);
	values[2] = Int64GetDatum(st.burst_total);
	values[3] = Int32GetDatum(d.remaining);
	values[4] = Int32GetDatum(d.reset_seconds);
	nulls[3] = per_hour == 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * hokusai_auth._rate_limit_inspect(key_id uuid, per_hour integer, burst integer)
 *	returns (tracked, hour_count, burst_count, remaining, reset_seconds)
 *
 * Internal: the SQL function rate_limit_status() passes the key's limits.
 */
Datum
hk_sql_rate_limit_inspect(PG_FUNCTION_ARGS)
{
	return inspect(fcinfo, HK_LIMITER_KEY);
}

/*
 * hokusai_auth._user_limit_inspect(user_id uuid, per_hour integer, burst integer)
 *	returns (tracked, hour_count, burst_count, remaining, reset_seconds)
 *
 * The same for the limits a user's keys share; per_hour 0 is none
 * (remaining is then NULL).
 */
Datum
hk_sql_user_limit_inspect(PG_FUNCTION_ARGS)
{
	return inspect(fcinfo, HK_LIMITER_USER);
}

/* hokusai_auth._rate_limit_reset(key_id uuid) returns boolean */
Datum
hk_sql_rate_limit_reset(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(hk_limiter_forget(HK_LIMITER_KEY, arg_key_id(fcinfo)));
}

/*
 * hokusai_auth.rate_limit_stats() returns (admitted, rejected_hourly,
 *	rejected_burst, entries, created, reclaimed, entry_bytes)
 */
Datum
hk_sql_rate_limit_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {0};
	HkLimiterStats s;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	hk_limiter_stats(&s);

	values[0] = Int64GetDatum(s.admitted);
	values[1] = Int64GetDatum(s.rejected[HK_REFUSED_KEY_HOURLY]);
	values[2] = Int64GetDatum(s.rejected[HK_REFUSED_KEY_BURST]);
	values[3] = Int64GetDatum(s.entries);
	values[4] = Int64GetDatum(s.created);
	values[5] = Int64GetDatum(s.reclaimed);
	values[6] = Int32GetDatum(s.entry_bytes);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
