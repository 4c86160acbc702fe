/*-------------------------------------------------------------------------
 *
 * partitions.c
 *	  The background worker's side of the usage partitions: where each
 *	  event of a batch goes (and whether it becomes a raw row), the locks
 *	  on those partitions, and making the partitions ahead.
 *
 * Routing.  The worker writes into partitions directly, so it finds each
 * event's partition itself (usage/partition.c reads the parent's partition
 * descriptor): the minute, hour and day aggregates' partitions, and the raw
 * table's for the events hokusai_auth.usage_raw_sample keeps.  An event
 * whose minute has no partition (a late event whose day prune_usage()
 * dropped: it falls before the last partition) is counted by flush.c and
 * written nowhere; never an error.  An event after the last partition (and
 * less than a day ahead) is not late: its partition is not made yet (say,
 * the extension was just created), so the batch yields and the next cycle
 * makes it first.  (One more than a day ahead is discarded as late: no
 * clock of this server is that far off.)  A batch's events mostly share a day, so the last range
 * found per table is remembered for the batch.
 *
 * Sampling.  Each event is kept as a raw row with probability
 * usage_raw_sample, drawn from this process's own generator (seeded from a
 * strong source once): independent per request, so the raw rows are an
 * unbiased sample whatever order requests come in.  1 keeps every event and
 * 0 none, without a draw.
 *
 * Locks.  The parents are locked by hk_worker_begin_xact(); the partitions
 * a batch writes into are locked here, before any statement touches them,
 * without waiting (locks.c): when one is not available the batch yields.
 *
 * Making partitions.  hokusai_auth.create_usage_partitions() (today and two
 * days ahead; the hourly table's months, the daily table's years) in a
 * transaction of its own, at
 * the first cycle and then every hour; a minute after a try that left some
 * unmade (its locks are taken NOWAIT too).  So events always find today's
 * partitions without pg_cron; pg_cron only drops old ones (prune_usage()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/namespace.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "usage/partition.h"
#include "worker/locks.h"
#include "worker/partitions.h"

/*
 * An event after every partition and before this far ahead is not late:
 * its partition is not made yet (create_usage_partitions() makes two days
 * ahead).
 */
#define HK_AHEAD_MS				(24 * 60 * 60 * 1000)

/* After a failed try, try again this soon; after a good one, this late. */
#define HK_PARTITIONS_RETRY_MS	(60 * 1000)
#define HK_PARTITIONS_EVERY_MS	(60 * 60 * 1000)

/* One table's partitions, and the range last found. */
typedef struct TableRouter
{
	Relation	rel;
	Oid			part;
	TimestampTz lo;
	TimestampTz hi;
} TableRouter;

static pg_prng_state prng;
static bool prng_seeded = false;
static TimestampTz next_make = 0;

/* Open a usage table (locked by hk_worker_begin_xact()). */
static void
router_open(TableRouter *r, const char *name)
{
	Oid			relid = RangeVarGetRelid(makeRangeVar(HK_SCHEMA, (char *) name, -1),
										 AccessShareLock, false);

	r->rel = relation_open(relid, NoLock);
	r->part = InvalidOid;
	r->lo = DT_NOEND;
	r->hi = DT_NOBEGIN;
}

/* The partition of t, from the last range found when it holds t. */
static Oid
router_find(TableRouter *r, TimestampTz t)
{
	if (t < r->lo || t >= r->hi)
		r->part = hk_usage_partition_for(r->rel, t, &r->lo, &r->hi);
	/* no partition: remember only this instant */
	if (!OidIsValid(r->part))
	{
		r->lo = t;
		r->hi = t + 1;
	}
	return r->part;
}

/* Is this event kept as a raw row? */
static bool
draw_raw(void)
{
	if (hk_usage_raw_sample >= 1.0)
		return true;
	if (hk_usage_raw_sample <= 0.0)
		return false;
	if (!prng_seeded)
	{
		if (!pg_prng_strong_seed(&prng))
			pg_prng_seed(&prng, (uint64) MyProcPid ^ (uint64) GetCurrentTimestamp());
		prng_seeded = true;
	}
	return pg_prng_double(&prng) < hk_usage_raw_sample;
}

/* Lock part unless it is the one locked last; false when not available. */
static bool
lock_part(Oid part, Oid *last)
{
	if (!OidIsValid(part) || part == *last)
		return true;
	*last = part;
	return hk_worker_lock_partition(part);
}

/* Route a batch's events and lock their partitions (see partitions.h). */
bool
hk_worker_route_events(HkUsageEvent **ev, int n, HkRoute *route)
{
	TableRouter minutes;
	TableRouter hours;
	TableRouter days;
	TableRouter raw;
	Oid			last[4] = {InvalidOid, InvalidOid, InvalidOid, InvalidOid};
	TimestampTz ahead = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HK_AHEAD_MS);
	TimestampTz end;
	bool		unmade = false;
	bool		ok = true;
	int			i;

	router_open(&minutes, "api_key_usage_minutely");
	router_open(&hours, "api_key_usage_hourly");
	router_open(&days, "api_key_usage_daily");
	router_open(&raw, "api_key_usage");
	end = hk_usage_partitions_end(minutes.rel);
	for (i = 0; i < n; i++)
	{
		TimestampTz t = ev[i]->at;

		route[i].minute_part = router_find(&minutes, t);
		if (!OidIsValid(route[i].minute_part) && t >= end && t < ahead)
			unmade = true;
		route[i].hour_part = OidIsValid(route[i].minute_part) ? router_find(&hours, t) : InvalidOid;
		route[i].day_part = OidIsValid(route[i].minute_part) ? router_find(&days, t) : InvalidOid;
		route[i].raw_part = OidIsValid(route[i].minute_part) && draw_raw() ?
			router_find(&raw, t) : InvalidOid;
	}
	relation_close(minutes.rel, NoLock);
	relation_close(hours.rel, NoLock);
	relation_close(days.rel, NoLock);
	relation_close(raw.rel, NoLock);
	if (unmade)
	{
		/* not late, not made yet: make it at the next cycle, then write */
		next_make = 0;
		hk_worker_yield("the usage partitions for the current time are not made yet");
		return false;
	}

	/*
	 * Locking a partition twice costs a lookup in the local lock table;
	 * events come in time order, so most repeats are the last one.
	 */
	for (i = 0; ok && i < n; i++)
		ok = lock_part(route[i].minute_part, &last[0]) &&
			lock_part(route[i].hour_part, &last[1]) &&
			lock_part(route[i].day_part, &last[2]) &&
			lock_part(route[i].raw_part, &last[3]);
	if (!ok)
		hk_worker_yield_for_lock();
	return ok;
}

/* Make the partitions of today and the next days, when due. */
void
hk_worker_make_partitions(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		made_all;
	bool		isnull;
	int			ret;

	if (now < next_make)
		return;
	next_make = TimestampTzPlusMilliseconds(now, HK_PARTITIONS_RETRY_MS);
	if (!hk_worker_begin_xact("hokusai_auth: making usage partitions"))
		return;
	ret = SPI_execute("SELECT " HK_SCHEMA ".create_usage_partitions()", false, 1);
	(void) hk_worker_one_value(ret, "create_usage_partitions failed", &isnull);
	/* It warns when it could not make some; then try again sooner. */
	ret = SPI_execute("SELECT pg_catalog.bool_and(" HK_SCHEMA "._usage_partition(t.t::pg_catalog.regclass,"
					  " pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(days => 2))"
					  " IS NOT NULL) FROM pg_catalog.unnest(ARRAY['" HK_SCHEMA ".api_key_usage',"
					  " '" HK_SCHEMA ".api_key_usage_minutely', '" HK_SCHEMA ".api_key_usage_hourly',"
					  " '" HK_SCHEMA ".api_key_usage_daily']) t",
					  true, 1);
	made_all = DatumGetBool(hk_worker_one_value(ret, "could not look up the usage partitions", &isnull));
	hk_worker_end_xact();
	if (made_all)
		next_make = TimestampTzPlusMilliseconds(now, HK_PARTITIONS_EVERY_MS);
}
