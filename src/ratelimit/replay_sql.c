/*-------------------------------------------------------------------------
 *
 * replay_sql.c
 *	  hokusai_auth._admission_replay(): for tests, the all-or-nothing
 *	  admission of ratelimit/admit.c replayed on private states, with
 *	  every counter after every call, so that a regression suite can check
 *	  each one against an exact log (sql/ratelimit.sql).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "metering/balance.h"
#include "ratelimit/admit.h"

PG_FUNCTION_INFO_V1(hk_sql_admission_replay);

#define REPLAY_MAX_KEYS 1000
#define REPLAY_NATTS 8

static const char *const refusal_names[HK_REFUSAL_KINDS] = {
	[HK_REFUSED_NONE] = "ok",
	[HK_REFUSED_CREDITS] = "credits_exhausted",
	[HK_REFUSED_KEY_HOURLY] = "key_hourly",
	[HK_REFUSED_KEY_BURST] = "key_burst",
	[HK_REFUSED_USER_HOURLY] = "user_hourly",
	[HK_REFUSED_USER_BURST] = "user_burst",
};

/* Argument n as an int4, an error when NULL or out of [lo, hi]. */
static int32
arg_int(FunctionCallInfo fcinfo, int n, const char *name, int32 lo, int32 hi)
{
	int32		v;

	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	v = PG_GETARG_INT32(n);
	if (v < lo || v > hi)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between %d and %d", name, lo, hi)));
	return v;
}

/* An array argument's elements, which must all be present. */
static int
arg_array(FunctionCallInfo fcinfo, int n, const char *name, Oid type,
		  int16 len, bool byval, char align, Datum **elems)
{
	bool	   *nulls;
	int			count;
	int			i;

	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(n), type, len, byval, align,
					  elems, &nulls, &count);
	for (i = 0; i < count; i++)
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain nulls", name)));
	return count;
}

/*
 * hokusai_auth._admission_replay(at timestamptz[], key_no integer[],
 *	cost integer[], key_per_hour integer, key_burst integer,
 *	user_per_hour integer, user_burst integer, credits bigint,
 *	refill_amount bigint, refill_interval text)
 *	returns setof (i, status, key_hour, key_burst, user_hour, user_burst,
 *				   credits, refill_seq)
 *
 * Calls i = 1..n at times at[i] (in order), each by key key_no[i] (1 to
 * 1000) of one user, costing cost[i].  Every key has the same limits and
 * starts with credits (NULL: unmetered) and the same refill; the user's
 * limits (0: none) are shared by all keys.  Each row is one decision and
 * the counters of that call's key and of the user after it.
 */
Datum
hk_sql_admission_replay(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *at;
	Datum	   *key_no;
	Datum	   *cost;
	int			n;
	int			nkeys = 0;
	HkAdmission a;
	HkLimiterState *keys;
	HkBalance  *balances;
	HkLimiterState user;
	bool		metered = !PG_ARGISNULL(7);
	int			i;

	n = arg_array(fcinfo, 0, "at", TIMESTAMPTZOID, sizeof(TimestampTz),
				  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &at);
	if (arg_array(fcinfo, 1, "key_no", INT4OID, 4, true, TYPALIGN_INT, &key_no) != n ||
		arg_array(fcinfo, 2, "cost", INT4OID, 4, true, TYPALIGN_INT, &cost) != n)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("at, key_no and cost must have the same length")));

	memset(&a, 0, sizeof(a));
	a.key.per_hour = arg_int(fcinfo, 3, "key_per_hour", 1, PG_INT32_MAX);
	a.key.burst = arg_int(fcinfo, 4, "key_burst", 0, PG_INT32_MAX);
	a.user.per_hour = arg_int(fcinfo, 5, "user_per_hour", 0, PG_INT32_MAX);
	a.user.burst = arg_int(fcinfo, 6, "user_burst", 0, PG_INT32_MAX);
	a.metered = metered;
	if (metered && PG_GETARG_INT64(7) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("credits must not be negative")));
	if (!PG_ARGISNULL(8) || !PG_ARGISNULL(9))
	{
		if (PG_ARGISNULL(8) || PG_ARGISNULL(9) || PG_GETARG_INT64(8) <= 0 ||
			!hk_refill_parse(text_to_cstring(PG_GETARG_TEXT_PP(9)), &a.refill.interval))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("refill_amount must be positive and refill_interval day, week or month")));
		a.refill.amount = PG_GETARG_INT64(8);
	}

	for (i = 0; i < n; i++)
		nkeys = Max(nkeys, DatumGetInt32(key_no[i]));
	if (n > 0 && (nkeys > REPLAY_MAX_KEYS))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key_no must be between 1 and %d", REPLAY_MAX_KEYS)));
	keys = palloc0(sizeof(HkLimiterState) * (nkeys + 1));
	balances = palloc0(sizeof(HkBalance) * (nkeys + 1));
	for (i = 0; i <= nkeys; i++)
	{
		hk_limiter_state_init(&keys[i]);
		hk_balance_init(&balances[i], metered ? PG_GETARG_INT64(7) : 0,
						metered ? PG_GETARG_INT64(7) : 0, 0, HK_REFILL_NONE);
	}
	hk_limiter_state_init(&user);

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < n; i++)
	{
		int32		k = DatumGetInt32(key_no[i]);
		HkAdmitStates s;
		HkAdmitResult r;
		Datum		values[REPLAY_NATTS];
		bool		nulls[REPLAY_NATTS] = {0};

		if (k < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key_no must be between 1 and %d", REPLAY_MAX_KEYS)));
		a.cost = DatumGetInt32(cost[i]);
		if (a.cost < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cost must not be negative")));
		s.key = &keys[k];
		s.user = (a.user.per_hour > 0 || a.user.burst > 0) ? &user : NULL;
		s.credits = metered ? &balances[k] : NULL;
		hk_admit_decide(&a, &s, DatumGetTimestampTz(at[i]), &r);

		values[0] = Int32GetDatum(i + 1);
		values[1] = CStringGetTextDatum(refusal_names[r.refused_by]);
		values[2] = Int64GetDatum(keys[k].hour_total);
		values[3] = Int64GetDatum(keys[k].burst_total);
		values[4] = Int64GetDatum(user.hour_total);
		values[5] = Int64GetDatum(user.burst_total);
		nulls[4] = nulls[5] = s.user == NULL;
		values[6] = Int64GetDatum(balances[k].balance);
		values[7] = Int64GetDatum(balances[k].refill_seq);
		nulls[6] = nulls[7] = !metered;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
