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
#include "utils/array.h"
#include "utils/builtins.h"

#include "hokusai_auth.h"
#include "validate/cidr_datum.h"
#include "validate/pipeline.h"
#include "validate/row.h"
#include "validate/scopes.h"

PG_FUNCTION_INFO_V1(hk_sql_validate_key);

#define VALIDATE_NATTS 9

StaticAssertDecl(HK_NUM_STATUSES <= HK_ROW_MAX_SHAPES, "one row template per status");

/*
 * The result type and one row template per status (row.c), kept per
 * backend for 1.6's hokusai_auth.validation.
 */
static HkRowType validation_row;

/*
 * The status column's values as text, made once per backend: a call copies
 * one into its row instead of building it (a palloc and a strlen).
 */
static text *status_text[HK_NUM_STATUSES];

static void
make_status_texts(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	int			i;

	/* The first one last: it says they are all made. */
	for (i = HK_NUM_STATUSES - 1; i >= 0; i--)
		status_text[i] = cstring_to_text(hk_status_names[i]);
	MemoryContextSwitchTo(old);
}

/*
 * hokusai_auth.validate_key(key text, client_ip inet, endpoint text,
 *							 cost integer, required_scopes text[])
 *	returns hokusai_auth.validation (valid, status, key_id, user_id,
 *			 rate_limit, remaining, reset_seconds, retry_after,
 *			 credits_remaining)
 *
 * Never raises for a bad key: every rejection is a status.  A bad cost or
 * scope list is the caller's mistake, not the key's: that raises.
 */
Datum
hk_sql_validate_key(PG_FUNCTION_ARGS)
{
	HkRowType  *rt;
	HkRequest	req;
	HkCidr		client;
	HkValidation res;
	Datum		values[VALIDATE_NATTS];
	bool		nulls[VALIDATE_NATTS];

	hk_require_preload();

	/* The result descriptor and the row templates (row.c). */
	rt = hk_row_type(fcinfo, &validation_row);
	if (status_text[0] == NULL)
		make_status_texts();

	/*
	 * A database not yet updated to 1.6 calls this with the three arguments
	 * and eight OUT columns of 1.5: no cost (one unit) and no scopes.
	 */
	memset(&req, 0, sizeof(req));
	req.cost = 1;
	if (PG_NARGS() >= 5)
	{
		if (PG_ARGISNULL(3))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("cost must not be null")));
		req.cost = PG_GETARG_INT32(3);
		if (req.cost < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cost must not be negative")));
		if (!PG_ARGISNULL(4))
		{
			ArrayType  *scopes = PG_GETARG_ARRAYTYPE_P(4);

			hk_scopes_check_argument(scopes, "required_scopes");
			/* An empty list requires nothing. */
			if (ARR_NDIM(scopes) > 0)
				req.required_scopes = scopes;
		}
	}
	if (!PG_ARGISNULL(0))
	{
		text	   *arg = PG_GETARG_TEXT_PP(0);

		req.key = VARDATA_ANY(arg);
		req.key_len = VARSIZE_ANY_EXHDR(arg);
		if (!PG_ARGISNULL(1))
		{
			hk_cidr_from_inet(PG_GETARG_INET_PP(1), &client);
			req.client = &client;
		}
		if (!PG_ARGISNULL(2))
			req.endpoint = PG_GETARG_TEXT_PP(2);
	}
	hk_validate(&req, &res);

	memset(values, 0, sizeof(values));
	memset(nulls, true, sizeof(nulls));
	values[0] = BoolGetDatum(res.status == HK_STATUS_OK);
	nulls[0] = false;
	values[1] = PointerGetDatum(status_text[res.status]);
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
	if (res.has_credits && rt->tupdesc->natts > 8)
	{
		values[8] = Int64GetDatum(res.credits_remaining);
		nulls[8] = false;
	}

	PG_RETURN_DATUM(hk_row_return(fcinfo, rt, &rt->rows[res.status],
								  values, nulls));
}
