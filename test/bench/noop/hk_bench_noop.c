/*-------------------------------------------------------------------------
 *
 * hk_bench_noop.c
 *	  The benchmarks' floor for validate_key's interface: a C function
 *	  with its exact signature and result type that validates nothing.
 *
 *	  hk_bench.noop_validate(key text, client_ip inet DEFAULT NULL,
 *		endpoint text DEFAULT NULL, cost integer DEFAULT 1,
 *		required_scopes text[] DEFAULT NULL) RETURNS hokusai_auth.validation
 *
 * It reads its arguments as validate_key does and returns the row of a
 * cache hit (valid, 'ok', two ids, the limit figures), built the cheapest
 * way: the blessed descriptor and the status text made once per call site.
 * Built and installed by test/bench/lib.sh only; not part of the extension.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/uuid.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(hk_bench_noop_validate);

#define NOOP_MAX_NATTS 16

typedef struct NoopCache
{
	TupleDesc	tupdesc;
	Datum		ok;				/* 'ok' as text */
	pg_uuid_t	id;
} NoopCache;

Datum
hk_bench_noop_validate(PG_FUNCTION_ARGS)
{
	NoopCache  *c = (NoopCache *) fcinfo->flinfo->fn_extra;
	Datum		values[NOOP_MAX_NATTS];
	bool		nulls[NOOP_MAX_NATTS];
	int			natts;
	int			i;

	if (c == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
		TupleDesc	tupdesc;

		c = palloc0(sizeof(NoopCache));
		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		if (tupdesc->natts > NOOP_MAX_NATTS)
			elog(ERROR, "too many result columns");
		c->tupdesc = BlessTupleDesc(CreateTupleDescCopy(tupdesc));
		c->ok = CStringGetTextDatum("ok");
		memset(c->id.data, 0x5a, UUID_LEN);
		fcinfo->flinfo->fn_extra = c;
		MemoryContextSwitchTo(old);
	}

	/* Touch the arguments as validate_key does. */
	if (!PG_ARGISNULL(0))
	{
		text	   *key = PG_GETARG_TEXT_PP(0);

		if (VARSIZE_ANY_EXHDR(key) == 0)
			elog(DEBUG5, "empty key");
	}
	if (!PG_ARGISNULL(1))
		(void) PG_GETARG_INET_PP(1);

	/* The row of a cache hit: valid, 'ok', two ids, then integers. */
	natts = c->tupdesc->natts;
	for (i = 0; i < natts; i++)
	{
		Oid			typid = TupleDescAttr(c->tupdesc, i)->atttypid;

		nulls[i] = false;
		switch (i)
		{
			case 0:
				values[i] = BoolGetDatum(true);
				break;
			case 1:
				values[i] = c->ok;
				break;
			case 2:
			case 3:
				values[i] = UUIDPGetDatum(&c->id);
				break;
			default:
				/* The limit figures; anything else (credits_remaining: unlimited) NULL. */
				if (typid == INT4OID)
					values[i] = Int32GetDatum(1000);
				else
					nulls[i] = true;
				break;
		}
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(c->tupdesc, values, nulls)));
}
