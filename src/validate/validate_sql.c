/*-------------------------------------------------------------------------
 *
 * validate_sql.c
 *	  hokusai_auth.validate_key(): the SQL face of validate/pipeline.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "hokusai_auth.h"
#include "validate/cidr_datum.h"
#include "validate/pipeline.h"

PG_FUNCTION_INFO_V1(hk_sql_validate_key);

#define VALIDATE_NATTS 8

/*
 * hokusai_auth.validate_key(key text, client_ip inet, endpoint text)
 *	returns (valid, status, key_id, user_id, rate_limit, remaining,
 *			 reset_seconds, retry_after)
 *
 * Never raises for a bad key: every rejection is a status.
 */
Datum
hk_sql_validate_key(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc = (TupleDesc) fcinfo->flinfo->fn_extra;
	HkValidation res;
	Datum		values[VALIDATE_NATTS];
	bool		nulls[VALIDATE_NATTS];

	hk_require_preload();

	/* The blessed result descriptor, built once per call site. */
	if (tupdesc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		tupdesc = BlessTupleDesc(CreateTupleDescCopy(tupdesc));
		fcinfo->flinfo->fn_extra = tupdesc;
		MemoryContextSwitchTo(old);
	}

	if (PG_ARGISNULL(0))
		hk_validate(NULL, 0, NULL, NULL, &res);
	else
	{
		text	   *arg = PG_GETARG_TEXT_PP(0);
		HkCidr		client;

		if (!PG_ARGISNULL(1))
			hk_cidr_from_inet(PG_GETARG_INET_PP(1), &client);
		hk_validate(VARDATA_ANY(arg), VARSIZE_ANY_EXHDR(arg),
					PG_ARGISNULL(1) ? NULL : &client,
					PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2), &res);
	}

	memset(nulls, true, sizeof(nulls));
	values[0] = BoolGetDatum(res.status == HK_STATUS_OK);
	nulls[0] = false;
	values[1] = CStringGetTextDatum(hk_status_names[res.status]);
	nulls[1] = false;
	if (res.known)
	{
		values[2] = UUIDPGetDatum(&res.key_id);
		nulls[2] = false;
		values[3] = UUIDPGetDatum(&res.user_id);
		nulls[3] = false;
		values[4] = Int32GetDatum(res.rate_limit);
		nulls[4] = false;
	}
	if (res.has_limits)
	{
		values[5] = Int32GetDatum(res.remaining);
		nulls[5] = false;
		values[6] = Int32GetDatum(res.reset_seconds);
		nulls[6] = false;
		values[7] = Int32GetDatum(res.retry_after);
		nulls[7] = false;
	}

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
