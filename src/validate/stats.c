/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Server-wide counters of validation (cache hits and misses, bcrypt
 *	  verifications, throttled attempts, invalidations, malformed keys),
 *	  and the SQL functions cache_stats() and cache_stats_reset().
 *
 * The counters are atomics in a small struct of their own in the main
 * shared memory; they need no lock.  A reset is not atomic across
 * counters: a validation running meanwhile may be counted either side.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "port/atomics.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "validate/cache.h"
#include "validate/stats.h"

PG_FUNCTION_INFO_V1(hk_sql_cache_stats);
PG_FUNCTION_INFO_V1(hk_sql_cache_stats_reset);

typedef struct HkStatsShared
{
	pg_atomic_uint64 counts[HK_NUM_STATS];
	pg_atomic_uint64 reset_at;	/* TimestampTz */
} HkStatsShared;

static HkStatsShared *stats = NULL;

/* From shmem_request_hook: room for the counters. */
void
hk_stats_shmem_request(void)
{
	RequestAddinShmemSpace(sizeof(HkStatsShared));
}

/* Create or attach to the counters.  Called with AddinShmemInitLock held. */
void
hk_stats_shmem_startup(void)
{
	bool		found;
	int			i;

	stats = ShmemInitStruct("hokusai_auth validation statistics",
							sizeof(HkStatsShared), &found);
	if (found)
		return;
	for (i = 0; i < HK_NUM_STATS; i++)
		pg_atomic_init_u64(&stats->counts[i], 0);
	pg_atomic_init_u64(&stats->reset_at, (uint64) GetCurrentTimestamp());
}

/* Count one event; nothing happens without shared memory. */
void
hk_stat_add(HkCacheStat which)
{
	if (stats != NULL)
		pg_atomic_fetch_add_u64(&stats->counts[which], 1);
}

#define CACHE_STATS_NATTS	(HK_NUM_STATS + 3)

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
	int			i;

	hk_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	for (i = 0; i < HK_NUM_STATS; i++)
		values[i] = Int64GetDatum(pg_atomic_read_u64(&stats->counts[i]));
	values[i++] = Int64GetDatum(hk_cache_count_entries());
	values[i++] = Int64GetDatum(hk_cache_capacity());
	values[i++] = TimestampTzGetDatum((TimestampTz) pg_atomic_read_u64(&stats->reset_at));
	Assert(i == CACHE_STATS_NATTS);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* hokusai_auth.cache_stats_reset() returns void */
Datum
hk_sql_cache_stats_reset(PG_FUNCTION_ARGS)
{
	int			i;

	hk_require_preload();
	for (i = 0; i < HK_NUM_STATS; i++)
		pg_atomic_write_u64(&stats->counts[i], 0);
	pg_atomic_write_u64(&stats->reset_at, (uint64) GetCurrentTimestamp());
	PG_RETURN_VOID();
}
