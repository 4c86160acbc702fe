/*-------------------------------------------------------------------------
 *
 * flush.c
 *	  The background worker's batches: the usage events queued when a
 *	  cycle begins, counted in the usage aggregates and, as far as
 *	  hokusai_auth.usage_raw_sample says, written to api_key_usage.
 *
 * The events queued when the cycle began are taken in batches of up to
 * HK_BATCH, one transaction each (begun as locks.c says).  A batch's usage
 * events are routed to the partitions they go to and those are locked
 * (partitions.c), then written in a subtransaction (write_events(), the
 * "write a batch" step): events of keys that do not exist are left out and
 * counted as discarded; those whose minute has no partition (a late event
 * after prune_usage() dropped its day) are counted as late_discarded and
 * written nowhere; all others are counted in the per-minute and per-hour
 * aggregates (aggregate.c), and those drawn for the raw log are appended in
 * bulk to their partition of api_key_usage (usage_writer.c), or through
 * SQL, hokusai_auth._usage_insert_raw(), when the table has been altered.
 * The events are consumed (tail moved) only after the commit, so an error
 * loses nothing; a batch that fails HK_MAX_RETRIES cycles in a row is
 * dropped and counted.  A batch that yields (a lock not available) is no
 * failure: it waits for the next cycle, uncounted.  Every event of this
 * database, usage or not, is also noted as a touch of its key for
 * housekeeping.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "hokusai_auth.h"
#include "usage/usage_queue.h"
#include "worker/flush.h"
#include "worker/housekeeping.h"
#include "worker/aggregate.h"
#include "worker/locks.h"
#include "worker/partitions.h"
#include "worker/usage_writer.h"

#define HK_BATCH			16384
#define HK_MAX_RETRIES		3

/* How a batch went. */
typedef enum BatchResult
{
	BATCH_DONE,					/* written, or dropped after HK_MAX_RETRIES
								 * failures: consume its events */
	BATCH_FAILED,				/* failed: try again at the next cycle */
	BATCH_YIELDED				/* not tried, a lock was not available: try
								 * again at the next cycle, not a failure */
} BatchResult;

/* What became of a batch's events. */
typedef struct BatchCounts
{
	int64		aggregated;		/* counted in the aggregates */
	int64		raw;			/* written as raw rows too */
	int64		discarded;		/* their key does not exist */
	int64		late;			/* their minute has no partition */
} BatchCounts;

/*
 * The batch being written: pointers to its events in the queue's slots
 * (HK_BATCH of them), which stay put until the batch is consumed.
 */
static HkUsageEvent **events = NULL;
static SPIPlanPtr raw_plan = NULL;
static SPIPlanPtr legacy_plan = NULL;
static SPIPlanPtr keys_plan = NULL;
/* Failures in a row of the batch at the queue's tail (one try a cycle). */
static int	batch_failures = 0;

/* Once, at start: the array of a batch's events. */
void
hk_worker_flush_init(void)
{
	events = MemoryContextAlloc(TopMemoryContext, sizeof(HkUsageEvent *) * HK_BATCH);
}

static inline bool
same_key(const pg_uuid_t *a, const pg_uuid_t *b)
{
	return memcmp(a->data, b->data, UUID_LEN) == 0;
}

/* The batch's keys that exist, as a hash table of key ids. */
static HTAB *
existing_keys(HkUsageEvent **ev, int n)
{
	HTAB	   *wanted;
	HTAB	   *found;
	HASH_SEQ_STATUS seq;
	pg_uuid_t  *k;
	Datum	   *ids;
	Datum		arg;
	long		nkeys;
	uint64		r;
	int			ret;
	int			i;

	wanted = hk_worker_key_table("hokusai_auth batch keys", sizeof(pg_uuid_t),
								 CurrentMemoryContext);
	found = hk_worker_key_table("hokusai_auth existing keys", sizeof(pg_uuid_t),
								CurrentMemoryContext);
	for (i = 0; i < n; i++)
	{
		/* runs of one key's events: one lookup per run */
		if (i > 0 && same_key(&ev[i]->key_id, &ev[i - 1]->key_id))
			continue;
		(void) hash_search(wanted, &ev[i]->key_id, HASH_ENTER, NULL);
	}

	nkeys = hash_get_num_entries(wanted);
	ids = palloc(sizeof(Datum) * nkeys);
	i = 0;
	hash_seq_init(&seq, wanted);
	while ((k = hash_seq_search(&seq)) != NULL)
		ids[i++] = UUIDPGetDatum(k);
	arg = PointerGetDatum(construct_array(ids, (int) nkeys, UUIDOID,
										  UUID_LEN, false, TYPALIGN_CHAR));
	if (keys_plan == NULL)
	{
		Oid			argtypes[1] = {UUIDARRAYOID};

		keys_plan = hk_worker_keep_plan("SELECT a.id FROM " HK_SCHEMA ".api_keys a"
										" WHERE a.id OPERATOR(pg_catalog.=) ANY ($1)",
										1, argtypes);
	}
	ret = SPI_execute_plan(keys_plan, &arg, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not look up api_keys: %s", SPI_result_code_string(ret));
	for (r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			(void) hash_search(found, DatumGetUUIDP(d), HASH_ENTER, NULL);
	}
	return found;
}

/*
 * Events through SQL, hokusai_auth.<fn>(key_ids, endpoints, ats,
 * response_times, status_codes) returning bigint, its plan kept in *plan:
 * _usage_insert_raw() (raw rows for a table someone altered), or 1.5's
 * _usage_flush() (a database not yet updated to 1.6).
 */
static int64
call_with_events(SPIPlanPtr *plan, const char *fn, HkUsageEvent **ev, int n)
{
	Datum	   *keys = palloc(sizeof(Datum) * n);
	Datum	   *endpoints = palloc(sizeof(Datum) * n);
	bool	   *endpoint_nulls = palloc(sizeof(bool) * n);
	Datum	   *ats = palloc(sizeof(Datum) * n);
	Datum	   *rts = palloc(sizeof(Datum) * n);
	bool	   *rt_nulls = palloc(sizeof(bool) * n);
	Datum	   *sts = palloc(sizeof(Datum) * n);
	bool	   *st_nulls = palloc(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};
	Datum		args[5];
	bool		isnull;
	int			ret;
	int			i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
	{
		HkUsageEvent *e = ev[i];

		keys[i] = UUIDPGetDatum(&e->key_id);
		endpoint_nulls[i] = !(e->flags & HK_EV_HAS_ENDPOINT);
		endpoints[i] = endpoint_nulls[i] ? (Datum) 0 :
			PointerGetDatum(cstring_to_text_with_len(e->endpoint, e->endpoint_len));
		ats[i] = TimestampTzGetDatum(e->at);
		rt_nulls[i] = e->response_time_ms == HK_EV_NONE;
		rts[i] = Int32GetDatum(e->response_time_ms);
		st_nulls[i] = e->status_code == HK_EV_NONE;
		sts[i] = Int32GetDatum(e->status_code);
	}
	args[0] = PointerGetDatum(construct_array(keys, n, UUIDOID,
											  UUID_LEN, false, TYPALIGN_CHAR));
	args[1] = PointerGetDatum(construct_md_array(endpoints, endpoint_nulls, 1, dims, lbs,
												 TEXTOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(ats, n, TIMESTAMPTZOID,
											  sizeof(TimestampTz), FLOAT8PASSBYVAL,
											  TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(construct_md_array(rts, rt_nulls, 1, dims, lbs,
												 INT4OID, sizeof(int32), true, TYPALIGN_INT));
	args[4] = PointerGetDatum(construct_md_array(sts, st_nulls, 1, dims, lbs,
												 INT4OID, sizeof(int32), true, TYPALIGN_INT));
	if (*plan == NULL)
	{
		Oid			argtypes[5] = {UUIDARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID,
		INT4ARRAYOID, INT4ARRAYOID};
		char		sql[128];

		snprintf(sql, sizeof(sql), "SELECT " HK_SCHEMA ".%s($1, $2, $3, $4, $5)", fn);
		*plan = hk_worker_keep_plan(sql, 5, argtypes);
	}
	ret = SPI_execute_plan(*plan, args, NULL, false, 1);
	return DatumGetInt64(hk_worker_one_value(ret, "writing usage events through SQL failed",
											 &isnull));
}

/*
 * The raw rows of a batch: those of one partition in bulk (usage_writer.c),
 * partition after partition, in the order they come (mostly one run).  If
 * the table has been altered, all of them through SQL.  Returns the rows.
 */
static int64
write_raw(HkUsageEvent **ev, const HkRoute *route, int n)
{
	HkUsageEvent **run = palloc(sizeof(HkUsageEvent *) * n);
	bool	   *done = palloc0(sizeof(bool) * n);
	int64		rows = 0;
	int			i;
	int			j;

	for (i = 0; i < n; i++)
	{
		Oid			part = route[i].raw_part;
		int			nrun = 0;
		int64		r;

		if (done[i])
			continue;
		for (j = i; j < n; j++)
		{
			if (!done[j] && route[j].raw_part == part)
			{
				run[nrun++] = ev[j];
				done[j] = true;
			}
		}
		r = hk_usage_append(part, run, nrun);
		if (r < 0)
			return call_with_events(&raw_plan, "_usage_insert_raw", ev, n);	/* nothing written yet */
		rows += r;
	}
	return rows;
}

/*
 * The write step: a batch of queued events of this database (usage events
 * only), routed (route[i] for ev[i], partitions locked), into the tables.
 * Events of keys that do not exist are left out; the others with a minute
 * partition are counted in the aggregates, and the sampled ones with a raw
 * partition written as raw rows.  What a standby's worker ships instead of
 * writing, the primary writes with _usage_flush(), the same step in SQL.
 */
static void
write_events(HkUsageEvent **ev, const HkRoute *route, int n, BatchCounts *c)
{
	HTAB	   *exists;
	HkUsageEvent **counted = palloc(sizeof(HkUsageEvent *) * n);
	HkUsageEvent **raw = palloc(sizeof(HkUsageEvent *) * n);
	HkRoute    *raw_route = palloc(sizeof(HkRoute) * n);
	int			ncounted = 0;
	int			nraw = 0;
	bool		key_exists = false;
	int			i;

	memset(c, 0, sizeof(BatchCounts));
	if (route == NULL)
	{
		/* 1.5's tables: its _usage_flush() skips keys that do not exist */
		c->raw = call_with_events(&legacy_plan, "_usage_flush", ev, n);
		c->discarded = n - c->raw;
		return;
	}
	exists = existing_keys(ev, n);
	for (i = 0; i < n; i++)
	{
		/* runs of one key's events: one lookup per run */
		if (i == 0 || !same_key(&ev[i]->key_id, &ev[i - 1]->key_id))
			key_exists = hash_search(exists, &ev[i]->key_id, HASH_FIND, NULL) != NULL;
		if (!key_exists)
			c->discarded++;
		else if (!OidIsValid(route[i].minute_part))
			c->late++;
		else
		{
			counted[ncounted++] = ev[i];
			if (OidIsValid(route[i].raw_part))
			{
				raw_route[nraw] = route[i];
				raw[nraw++] = ev[i];
			}
		}
	}
	hk_worker_write_aggregates(counted, ncounted);
	c->aggregated = ncounted;
	c->raw = write_raw(raw, raw_route, nraw);
}

/* write_events()'s arguments, for hk_worker_subxact(). */
typedef struct WriteArgs
{
	HkUsageEvent **ev;
	const HkRoute *route;
	int			n;
	BatchCounts *c;
} WriteArgs;

static void
write_events_fn(void *arg)
{
	WriteArgs  *w = (WriteArgs *) arg;

	write_events(w->ev, w->route, w->n, w->c);
}

/*
 * Write the events in a subtransaction, so that a failing batch does not
 * take the worker down.  False, with a WARNING logged, when it failed.
 */
static bool
write_in_subxact(HkUsageEvent **ev, const HkRoute *route, int n, BatchCounts *c)
{
	WriteArgs	w = {ev, route, n, c};
	ErrorData  *edata = hk_worker_subxact(write_events_fn, &w);

	if (edata == NULL)
		return true;
	ereport(WARNING,
			(errmsg("hokusai_auth worker could not write %d usage events: %s",
					n, edata->message)));
	FreeErrorData(edata);
	return false;
}

/* Count a committed batch: what went where, and the oldest event's lag. */
static void
count_written(const BatchCounts *c, TimestampTz oldest)
{
	uint64		lag;

	hk_usage_stat_add(HK_USTAT_FLUSHED, c->raw);
	hk_usage_stat_add(HK_USTAT_AGGREGATED, c->aggregated);
	hk_usage_stat_add(HK_USTAT_DISCARDED, c->discarded);
	hk_usage_stat_add(HK_USTAT_LATE_DISCARDED, c->late);
	hk_usage_stat_add(HK_USTAT_FLUSHES, 1);
	lag = (uint64) Max(GetCurrentTimestamp() - oldest, 0);
	hk_usage_stat_set(HK_USTAT_LAST_LAG_US, lag);
	if (lag > hk_usage_stat(HK_USTAT_MAX_LAG_US))
		hk_usage_stat_set(HK_USTAT_MAX_LAG_US, lag);
}

/*
 * Write one batch in its own transaction.  Its events stay queued unless it
 * returns BATCH_DONE.
 */
static BatchResult
write_batch(HkUsageEvent **ev, int n)
{
	HkUsageEvent **mine = palloc(sizeof(HkUsageEvent *) * n);
	int			nusage = 0;
	int			other_db = 0;
	TimestampTz oldest = 0;
	HkRoute    *route;
	BatchCounts counts;
	bool		ok;
	const pg_uuid_t *run_key = NULL;
	TimestampTz run_at = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		HkUsageEvent *e = ev[i];

		if (e->dbid != MyDatabaseId)
		{
			other_db++;
			continue;
		}
		/* last_used_at: noted once per run of one key's events */
		if (run_key != NULL && same_key(run_key, &e->key_id))
			run_at = Max(run_at, e->at);
		else
		{
			if (run_key != NULL)
				hk_worker_note_touch(run_key, run_at);
			run_key = &e->key_id;
			run_at = e->at;
		}
		if (!(e->flags & HK_EV_USAGE))
			continue;
		if (nusage == 0 || e->at < oldest)
			oldest = e->at;
		mine[nusage++] = e;
	}
	if (run_key != NULL)
		hk_worker_note_touch(run_key, run_at);
	if (nusage == 0)
	{
		hk_usage_stat_add(HK_USTAT_OTHER_DB, other_db);
		return BATCH_DONE;
	}

	if (!hk_worker_begin_xact("hokusai_auth: writing usage events"))
		return BATCH_YIELDED;
	route = hk_worker_usage_is_partitioned() ? palloc(sizeof(HkRoute) * nusage) : NULL;
	if (route != NULL && !hk_worker_route_events(mine, nusage, route))
	{
		/* Nothing was written: the batch waits for the next cycle. */
		hk_worker_end_xact();
		return BATCH_YIELDED;
	}
	ok = write_in_subxact(mine, route, nusage, &counts);
	hk_worker_end_xact();

	if (!ok)
	{
		if (++batch_failures < HK_MAX_RETRIES)
			return BATCH_FAILED;
		/* Give up on this batch: drop it rather than block the queue. */
		batch_failures = 0;
		hk_usage_stat_add(HK_USTAT_FAILED, nusage);
		hk_usage_stat_add(HK_USTAT_OTHER_DB, other_db);
		return BATCH_DONE;
	}
	batch_failures = 0;
	hk_usage_stat_add(HK_USTAT_OTHER_DB, other_db);
	count_written(&counts, oldest);
	return BATCH_DONE;
}

/*
 * Write the events that were queued when the cycle began.  Events that
 * arrive meanwhile wait for the next cycle: chasing them would turn a
 * steady stream into a stream of tiny transactions, each with its own
 * commit, and that overhead is taken from the request path's CPU.
 */
void
hk_worker_flush_events(MemoryContext cxt)
{
	MemoryContext batch_cxt = AllocSetContextCreate(cxt,
													"hokusai_auth worker batch",
													ALLOCSET_DEFAULT_SIZES);
	uint32		capacity;
	uint64		queued;
	int			worker_pid;
	int64		limit;
	int64		done = 0;

	hk_usage_queue_state(&capacity, &queued, &worker_pid);
	limit = (int64) queued;

	while (done < limit)
	{
		MemoryContext old;
		int			n = hk_usage_peek_refs(events, (int) Min(limit - done, HK_BATCH));
		BatchResult result;

		if (n == 0)
			break;
		old = MemoryContextSwitchTo(batch_cxt);
		result = write_batch(events, n);
		MemoryContextSwitchTo(old);
		MemoryContextReset(batch_cxt);
		if (result != BATCH_DONE)
			break;
		hk_usage_advance(n);
		done += n;
	}
	MemoryContextDelete(batch_cxt);
}
