/*-------------------------------------------------------------------------
 *
 * cache_sql.c
 *	  SQL-callable parts of the key cache: the statistics, their reset, and
 *	  the trigger that registers key and user changes for invalidation at
 *	  commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "hokusai_auth.h"
#include "middleware/key_cache.h"

PG_FUNCTION_INFO_V1(hk_sql_cache_stats);
PG_FUNCTION_INFO_V1(hk_sql_cache_stats_reset);
PG_FUNCTION_INFO_V1(hk_sql_invalidate_trigger);

#define CACHE_STATS_NATTS 11

/*
 * hokusai_auth.cache_stats() returns (hits, misses, negative_hits,
 *	evictions, bcrypt_verifications, throttled, invalidations, malformed,
 *	entries, capacity, stats_reset)
 */
Datum
hk_sql_cache_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[CACHE_STATS_NATTS];
	bool		nulls[CACHE_STATS_NATTS] = {0};
	int			i = 0;

	hk_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	values[i++] = Int64GetDatum(hk_stat_read(HK_STAT_HITS));
	values[i++] = Int64GetDatum(hk_stat_read(HK_STAT_MISSES));
	values[i++] = Int64GetDatum(hk_stat_read(HK_STAT_NEGATIVE_HITS));
	values[i++] = Int64GetDatum(hk_stat_read(HK_STAT_EVICTIONS));
	values[i++] = Int64GetDatum(hk_stat_read(HK_STAT_BCRYPT));
	values[i++] = Int64GetDatum(hk_stat_read(HK_STAT_THROTTLED));
	values[i++] = Int64GetDatum(hk_stat_read(HK_STAT_INVALIDATIONS));
	values[i++] = Int64GetDatum(hk_stat_read(HK_STAT_MALFORMED));
	values[i++] = Int64GetDatum(hk_cache_count_entries());
	values[i++] = Int64GetDatum(hk_cache_capacity());
	values[i++] = TimestampTzGetDatum(hk_stats_reset_time());
	Assert(i == CACHE_STATS_NATTS);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* hokusai_auth.cache_stats_reset() returns void */
Datum
hk_sql_cache_stats_reset(PG_FUNCTION_ARGS)
{
	hk_require_preload();
	hk_stats_reset();
	PG_RETURN_VOID();
}

/*
 * Trigger on api_keys (argument 'key') and users (argument 'user'): after
 * UPDATE or DELETE of a row, forget that key, or all keys of that user,
 * when the transaction commits; after TRUNCATE, forget everything.  The
 * trigger definitions carry WHEN clauses so that updates of columns
 * validation does not read (last_used_at, name, metadata) do not fire it.
 */
Datum
hk_sql_invalidate_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	bool		is_user;
	int			attno;
	bool		isnull;
	Datum		id;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "not called by trigger manager");
	if (trigdata->tg_trigger->tgnargs != 1)
		elog(ERROR, "hokusai_auth invalidation trigger needs one argument");
	is_user = strcmp(trigdata->tg_trigger->tgargs[0], "user") == 0;

	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
	{
		hk_invalidate_all_at_commit();
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "hokusai_auth invalidation trigger must be FOR EACH ROW or TRUNCATE");

	attno = SPI_fnumber(trigdata->tg_relation->rd_att, "id");
	if (attno <= 0)
		elog(ERROR, "relation has no \"id\" column");
	id = heap_getattr(trigdata->tg_trigtuple, attno, trigdata->tg_relation->rd_att, &isnull);
	if (!isnull)
	{
		if (is_user)
			hk_invalidate_user_at_commit(DatumGetUUIDP(id));
		else
			hk_invalidate_key_at_commit(DatumGetUUIDP(id));
	}
	return PointerGetDatum(NULL);
}
