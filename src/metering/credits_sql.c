/*-------------------------------------------------------------------------
 *
 * credits_sql.c
 *	  The SQL functions of metering in C: _credits_status() (the live
 *	  balance, behind rate_limit_status(), add_credits() and rotate_key()),
 *	  _credits_add() (behind add_credits()), _credits_reset() (behind
 *	  update_key(credits => ..., clear_credits => ...)) and
 *	  metering_stats().  The checks of the arguments users give are in
 *	  sql/install/metering.sql; these are internal.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "hokusai_auth.h"
#include "metering/credits.h"
#include "metering/credits_internal.h"
#include "metering/credits_xact.h"
#include "ratelimit/limiter.h"
#include "validate/invalidate.h"

PG_FUNCTION_INFO_V1(hk_sql_credits_status);
PG_FUNCTION_INFO_V1(hk_sql_credits_add);
PG_FUNCTION_INFO_V1(hk_sql_metering_stats);
PG_FUNCTION_INFO_V1(hk_sql_credits_reset);


/* Argument 0, the balance's key: not NULL. */
static pg_uuid_t *
arg_root(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key_id must not be null")));
	return PG_GETARG_UUID_P(0);
}

/* Arguments n and n + 1: refill_amount and refill_interval (both or neither). */
static void
arg_refill(FunctionCallInfo fcinfo, int n, HkRefill *r)
{
	r->amount = 0;
	r->interval = HK_REFILL_NONE;
	if (PG_ARGISNULL(n) || PG_ARGISNULL(n + 1))
		return;
	if (!hk_refill_parse(text_to_cstring(PG_GETARG_TEXT_PP(n + 1)), &r->interval) ||
		PG_GETARG_INT64(n) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid refill settings")));
	r->amount = PG_GETARG_INT64(n);
}

/*
 * hokusai_auth._credits_status(key_id uuid, refill_amount bigint,
 *	refill_interval text, OUT balance bigint, OUT refilled_at timestamptz,
 *	OUT next_refill_at timestamptz) returns record
 *
 * The live balance owned by key_id, a refill that is due applied; NULL
 * when the key has no balance or the library was not preloaded.  Reads the
 * row the first time.
 */
Datum
hk_sql_credits_status(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *root = arg_root(fcinfo);
	HkRefill	r;
	HkBalance	b;
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {0};

	arg_refill(fcinfo, 1, &r);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	/* Without shared memory there is no live balance: the row is it. */
	if (!hk_shmem_ready() || !hk_credits_status(root, &r, &b))
		PG_RETURN_NULL();
	values[0] = Int64GetDatum(b.balance);
	values[1] = TimestampTzGetDatum(b.refilled_at);
	nulls[1] = b.refilled_at == 0;
	values[2] = TimestampTzGetDatum(b.next_refill_at);
	nulls[2] = r.interval == HK_REFILL_NONE;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * hokusai_auth._credits_add(key_id uuid, amount bigint, refill_amount bigint,
 *	refill_interval text, OUT old_balance bigint, OUT new_balance bigint,
 *	OUT refilled_at timestamptz) returns record
 *
 * For add_credits(), which holds the balance row's lock: pin the live
 * balance, compute the new one (never below zero; an error past the largest
 * bigint) and note the change for the commit (credits_xact.c).  NULL when
 * the key has no balance or the library was not preloaded.
 */
Datum
hk_sql_credits_add(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *root = arg_root(fcinfo);
	int64		amount;
	HkRefill	r;
	HkBalance	b;
	int64		new_balance;
	HkCreditKey key;
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {0};

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("amount must not be null")));
	amount = PG_GETARG_INT64(1);
	arg_refill(fcinfo, 2, &r);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	/*
	 * Hot standbys learn of the change through the invalidation log
	 * (replica/inval_log.c): they add it to the balance they keep
	 * (hk_credits_replica_sync()).  Here it also drops the key's cache entry
	 * at commit, which costs its next validation a bcrypt.
	 */
	hk_invalidate_key_at_commit(root);
	/* Without shared memory there is no live balance: the row is it. */
	if (!hk_shmem_ready() || !hk_credits_pin(root, &r, &b))
		PG_RETURN_NULL();
	hk_credits_key_of(root, &key);
	if (amount > 0 && b.balance > PG_INT64_MAX - amount)
	{
		hk_credits_unpin(&key);
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("credits would exceed the largest balance"),
				 errdetail("The balance is " INT64_FORMAT "; it can grow by at most " INT64_FORMAT ".",
						   b.balance, PG_INT64_MAX - b.balance)));
	}
	new_balance = (amount < 0 && amount < -b.balance) ? 0 : b.balance + amount;
	hk_credits_note_add(&key, new_balance - b.balance, &r);
	values[0] = Int64GetDatum(b.balance);
	values[1] = Int64GetDatum(new_balance);
	values[2] = TimestampTzGetDatum(b.refilled_at);
	nulls[2] = b.refilled_at == 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * hokusai_auth.metering_stats() returns (credits_charged, credits_spent,
 *	credits_refused, credits_given_back, credits_refills, credits_added,
 *	credits_low, credits_exhausted, credits_loaded, credits_written,
 *	credits_swept, credit_entries, rejected_user_hourly,
 *	rejected_user_burst, user_entries)
 */
Datum
hk_sql_metering_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[HK_CSTAT_COUNT + 4];
	bool		nulls[HK_CSTAT_COUNT + 4] = {0};
	HkLimiterStats ls;
	uint64		charged;
	uint64		spent;
	int			i;

	hk_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	hk_credits_entry_counts(&charged, &spent);
	for (i = 0; i < HK_CSTAT_COUNT; i++)
		values[i] = Int64GetDatum((int64) hk_credits_stat((HkCreditStat) i));
	values[HK_CSTAT_CHARGED] = Int64GetDatum((int64) (hk_credits_stat(HK_CSTAT_CHARGED) + charged));
	values[HK_CSTAT_SPENT] = Int64GetDatum((int64) (hk_credits_stat(HK_CSTAT_SPENT) + spent));
	hk_limiter_stats(&ls);
	values[i++] = Int64GetDatum(hk_credits_count_entries());
	values[i++] = Int64GetDatum((int64) ls.rejected[HK_REFUSED_USER_HOURLY]);
	values[i++] = Int64GetDatum((int64) ls.rejected[HK_REFUSED_USER_BURST]);
	values[i++] = Int64GetDatum(ls.user_entries);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * hokusai_auth._credits_reset(key_id uuid, key_ids uuid[], balance bigint,
 *	refill_amount bigint, refill_interval text, refilled_at timestamptz)
 *	returns void
 *
 * For update_key(), which has written the rows key_ids of the balance
 * owned by key_id and holds their locks: the live balance becomes balance
 * when the transaction commits (NULL: the key is no longer metered, and
 * the balance leaves memory).  Every key of key_ids leaves the key cache at
 * commit (whether a key is metered, and whose balance it spends, are in
 * its entry), and the balance's key is registered in the invalidation log,
 * so that a hot standby takes the change in (hk_credits_replica_sync(): a
 * key no longer metered loses its balance there; a set balance reaches it
 * as the difference of the rows, as for add_credits()).
 */
Datum
hk_sql_credits_reset(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *root = arg_root(fcinfo);
	HkRefill	r;
	HkCreditKey key;
	TimestampTz refilled_at = PG_ARGISNULL(5) ? 0 : PG_GETARG_TIMESTAMPTZ(5);

	arg_refill(fcinfo, 3, &r);
	hk_invalidate_key_at_commit(root);
	if (!PG_ARGISNULL(1))
	{
		ArrayType  *ids = PG_GETARG_ARRAYTYPE_P(1);
		Datum	   *elems;
		bool	   *nulls;
		int			n;
		int			i;

		deconstruct_array(ids, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR,
						  &elems, &nulls, &n);
		for (i = 0; i < n; i++)
			if (!nulls[i])
				hk_invalidate_key_at_commit(DatumGetUUIDP(elems[i]));
	}
	if (!PG_ARGISNULL(2) && PG_GETARG_INT64(2) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("credits must not be negative")));
	/* Without shared memory there is no live balance: the row is it. */
	if (!hk_shmem_ready())
		PG_RETURN_VOID();
	/* Attached now: what runs at commit must not have to. */
	hk_credits_attach();
	hk_credits_key_of(root, &key);
	hk_credits_note_reset(&key, !PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2),
						  &r, refilled_at);
	PG_RETURN_VOID();
}
