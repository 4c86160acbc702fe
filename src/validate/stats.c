/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  The request path's counters (cache hits and misses, bcrypt
 *	  verifications, throttled attempts, invalidations, malformed keys, the
 *	  rate limiter's decisions, the usage queue's producers), and the SQL
 *	  functions cache_stats() and cache_stats_reset().
 *
 * Per-process counters, summed on read.  A shared atomic that every call
 * increments is a cache line that the backends take from each other on
 * every call; so, as pgstat and pg_stat_statements keep their counts
 * local until a reader wants them, each process here adds to its own slot,
 * one per PGPROC (MyProc->pgprocno), padded to whole cache lines, and a
 * reader sums the slots.  Slots are never zeroed: a reset records the sums
 * as they are (base[]) and readers subtract them.  A process that reuses a
 * PGPROC continues its slot, so nothing counted by an exited backend is
 * lost.
 *
 * Locking rules:
 *
 *	- A slot is written only by the process that owns its PGPROC, with
 *	  plain (unlocked) 64-bit atomic loads and stores: no lock, no locked
 *	  instruction.  Readers may read any slot at any time; a 64-bit atomic
 *	  read never sees a torn value.
 *	- A process without a PGPROC (none validates keys today) adds to the
 *	  last, shared slot with an atomic fetch-add.
 *	- base[] and reset_at are atomics written by resets.  A reset is not
 *	  atomic across counters, nor with a concurrent increment: a validation
 *	  running meanwhile may be counted either side of it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/twophase.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "validate/cache.h"
#include "validate/stats.h"

PG_FUNCTION_INFO_V1(hk_sql_cache_stats);
PG_FUNCTION_INFO_V1(hk_sql_cache_stats_reset);

/* One process's counters, in whole cache lines so no two share one. */
typedef union HkStatsSlot
{
	pg_atomic_uint64 counts[HK_NUM_COUNTERS];
	char		pad[TYPEALIGN(PG_CACHE_LINE_SIZE,
							  sizeof(pg_atomic_uint64) * HK_NUM_COUNTERS)];
} HkStatsSlot;

typedef struct HkStatsShared
{
	pg_atomic_uint64 base[HK_NUM_COUNTERS];	/* the sums at the last reset */
	pg_atomic_uint64 reset_at;	/* TimestampTz of cache_stats_reset() */
	int			nslots;			/* PGPROCs, plus the shared slot */
} HkStatsShared;

static HkStatsShared *stats = NULL;
static HkStatsSlot *slots = NULL;	/* after *stats, cache-line aligned */

/* This process's slot (NULL until first use), and whether it is shared. */
static pg_atomic_uint64 *my_counts = NULL;
static bool my_counts_shared = false;

/* One slot per PGPROC, as InitProcGlobal() counts them, and the shared one. */
static int
stats_nslots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts + 1;
}

static Size
stats_shmem_size(void)
{
	return add_size(add_size(sizeof(HkStatsShared), PG_CACHE_LINE_SIZE),
					mul_size(stats_nslots(), sizeof(HkStatsSlot)));
}

/* From shmem_request_hook (MaxBackends is known there): room for the slots. */
void
hk_stats_shmem_request(void)
{
	RequestAddinShmemSpace(stats_shmem_size());
}

/* Create or attach to the counters.  Called with AddinShmemInitLock held. */
void
hk_stats_shmem_startup(void)
{
	bool		found;
	int			i;
	int			j;

	stats = ShmemInitStruct("hokusai_auth validation statistics",
							stats_shmem_size(), &found);
	slots = (HkStatsSlot *) CACHELINEALIGN((char *) stats + sizeof(HkStatsShared));
	if (found)
		return;
	stats->nslots = stats_nslots();
	for (i = 0; i < stats->nslots; i++)
		for (j = 0; j < HK_NUM_COUNTERS; j++)
			pg_atomic_init_u64(&slots[i].counts[j], 0);
	for (j = 0; j < HK_NUM_COUNTERS; j++)
		pg_atomic_init_u64(&stats->base[j], 0);
	pg_atomic_init_u64(&stats->reset_at, (uint64) GetCurrentTimestamp());
}

/* Find this process's slot. */
static void
stats_attach(void)
{
	if (MyProc != NULL && MyProc->pgprocno >= 0 &&
		MyProc->pgprocno < stats->nslots - 1)
		my_counts = slots[MyProc->pgprocno].counts;
	else
	{
		my_counts = slots[stats->nslots - 1].counts;
		my_counts_shared = true;
	}
}

/* Count n events; nothing happens without shared memory. */
void
hk_stat_add_n(HkCacheStat which, uint64 n)
{
	pg_atomic_uint64 *c;

	if (unlikely(my_counts == NULL))
	{
		if (stats == NULL)
			return;
		stats_attach();
	}
	c = &my_counts[which];
	if (likely(!my_counts_shared))
		pg_atomic_write_u64(c, pg_atomic_read_u64(c) + n);
	else
		pg_atomic_fetch_add_u64(c, n);
}

/* The sum of one counter over every slot, since server start. */
static uint64
stat_sum(HkCacheStat which)
{
	uint64		sum = 0;
	int			i;

	for (i = 0; i < stats->nslots; i++)
		sum += pg_atomic_read_u64(&slots[i].counts[which]);
	return sum;
}

/* One counter since its last reset. */
uint64
hk_stat_read(HkCacheStat which)
{
	uint64		base = pg_atomic_read_u64(&stats->base[which]);
	uint64		sum;

	/* The base was a sum of values the slots have had before. */
	pg_memory_barrier();
	sum = stat_sum(which);
	return sum > base ? sum - base : 0;
}

/* Zero counters first .. last - 1, as readers see them. */
void
hk_stats_reset_range(HkCacheStat first, HkCacheStat last)
{
	int			i;

	for (i = (int) first; i < (int) last; i++)
		pg_atomic_write_u64(&stats->base[i], stat_sum(i));
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
		values[i] = Int64GetDatum((int64) hk_stat_read(i));
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
	hk_require_preload();
	hk_stats_reset_range(0, HK_NUM_STATS);
	pg_atomic_write_u64(&stats->reset_at, (uint64) GetCurrentTimestamp());
	PG_RETURN_VOID();
}
