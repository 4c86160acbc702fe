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
 * cache hit (valid, 'ok', two ids, the limit figures), returned the way
 * validate_key returns its own: the descriptor and the status text kept per
 * backend, the values handed to the Validation Call scan, or else the row
 * copied from a template (hk_row_return(), src/validate/row.c, compiled
 * into this module).
 * Built and installed by test/bench/lib.sh only; not part of the extension.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/resource.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

#include "validate/row.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(hk_bench_noop_validate);
PG_FUNCTION_INFO_V1(hk_bench_cpu_us);

#define NOOP_MAX_NATTS 16

/* Kept per backend, as validate_key keeps them (src/validate/row.c). */
static HkRowType noop_row;
static Datum ok_text = (Datum) 0;	/* 'ok' as text */
static pg_uuid_t noop_id;

Datum
hk_bench_noop_validate(PG_FUNCTION_ARGS)
{
	HkRowType  *rt = hk_row_type(fcinfo, &noop_row);
	Datum		values[NOOP_MAX_NATTS];
	bool		nulls[NOOP_MAX_NATTS];
	int			natts;
	int			i;

	if (rt->tupdesc->natts > NOOP_MAX_NATTS)
		elog(ERROR, "too many result columns");
	if (ok_text == (Datum) 0)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		ok_text = CStringGetTextDatum("ok");
		memset(noop_id.data, 0x5a, UUID_LEN);
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
	memset(values, 0, sizeof(values));
	natts = rt->tupdesc->natts;
	for (i = 0; i < natts; i++)
	{
		Oid			typid = TupleDescAttr(rt->tupdesc, i)->atttypid;

		nulls[i] = false;
		switch (i)
		{
			case 0:
				values[i] = BoolGetDatum(true);
				break;
			case 1:
				values[i] = ok_text;
				break;
			case 2:
			case 3:
				values[i] = UUIDPGetDatum(&noop_id);
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
	PG_RETURN_DATUM(hk_row_return(fcinfo, rt, &rt->rows[0], values, nulls));
}

/*
 * hk_bench.cpu_us() returns float8: the CPU time (user + system) this
 * backend has used, in microseconds (getrusage).  The in-process loops of
 * cache_bench.sh read it beside clock_timestamp(): on a machine shared
 * with other work, wall time counts the time the backend waited for a CPU;
 * CPU time does not.
 */
Datum
hk_bench_cpu_us(PG_FUNCTION_ARGS)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		elog(ERROR, "getrusage failed: %m");
	PG_RETURN_FLOAT8((double) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
					 (double) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec));
}
