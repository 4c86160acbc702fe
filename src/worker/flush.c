/*-------------------------------------------------------------------------
 *
 * flush.c
 *	  The background worker's batches: the usage events queued when a
 *	  cycle begins, written to hokusai_auth.api_key_usage.
 *
 * The events queued when the cycle began are taken in batches of up to
 * HK_BATCH, one transaction each (begun as locks.c says).  Events of keys
 * that exist, not older than usage_rollup_state.rolled_until (share-locked,
 * which orders us against rollup_usage()), are appended in bulk by
 * usage_writer.c; older ones go through SQL,
 * hokusai_auth._usage_flush(arrays...), which also adds them to the
 * rollups, and so does everything when the table has been altered.  The
 * events are consumed (tail moved) only after the commit, so an error loses
 * nothing; a batch that fails HK_MAX_RETRIES cycles in a row is dropped and
 * counted.  A batch that yields (a lock, or the rollup row, not available)
 * is no failure: it waits for the next cycle, uncounted.  Every event of
 * this database, usage or not, is also noted as a touch of its key for
 * housekeeping.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "hokusai_auth.h"
#include "usage/usage_queue.h"
#include "worker/flush.h"
#include "worker/housekeeping.h"
#include "worker/locks.h"
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

/* The batch being written, copied from the queue (HK_BATCH events). */
static HkUsageEvent *events = NULL;
static SPIPlanPtr flush_plan = NULL;
static SPIPlanPtr rolled_plan = NULL;
static SPIPlanPtr keys_plan = NULL;
/* Failures in a row of the batch at the queue's tail (one try a cycle). */
static int	batch_failures = 0;

/* Once, at start: the buffer the batches are copied into. */
void
hk_worker_flush_init(void)
{
	events = MemoryContextAlloc(TopMemoryContext, sizeof(HkUsageEvent) * HK_BATCH);
}

/*
 * Read rolled_until (the rollups are complete before it), share-locking
 * the state row, which orders us against rollup_usage().  Returns false,
 * without waiting, when another transaction holds the row.
 */
static bool
read_rolled_until(TimestampTz *rolled)
{
	int			ret;
	bool		isnull;
	Datum		d;

	if (rolled_plan == NULL)
		rolled_plan = hk_worker_keep_plan("SELECT s.rolled_until FROM " HK_SCHEMA ".usage_rollup_state s"
										  " FOR SHARE SKIP LOCKED", 0, NULL);
	ret = SPI_execute_plan(rolled_plan, NULL, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read usage_rollup_state: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
	{
		/* Locked, or not there at all: that one is an error. */
		ret = SPI_execute("SELECT EXISTS (SELECT FROM " HK_SCHEMA ".usage_rollup_state)",
						  true, 1);
		if (!DatumGetBool(hk_worker_one_value(ret, "could not read usage_rollup_state",
											  &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table %s.usage_rollup_state has no row", HK_SCHEMA)));
		return false;
	}
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*rolled = isnull ? DT_NOBEGIN : DatumGetTimestampTz(d);
	return true;
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
		(void) hash_search(wanted, &ev[i]->key_id, HASH_ENTER, NULL);

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
 * Insert events through SQL: _usage_flush(), which skips events of keys that
 * no longer exist and also adds events older than rolled_until to the
 * rollups.  Returns the number of rows inserted.
 */
static int64
write_via_sql(HkUsageEvent **ev, int n)
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
	if (flush_plan == NULL)
	{
		Oid			argtypes[5] = {UUIDARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID,
		INT4ARRAYOID, INT4ARRAYOID};

		flush_plan = hk_worker_keep_plan("SELECT " HK_SCHEMA "._usage_flush($1, $2, $3, $4, $5)",
										 5, argtypes);
	}
	ret = SPI_execute_plan(flush_plan, args, NULL, false, 1);
	return DatumGetInt64(hk_worker_one_value(ret, "_usage_flush failed", &isnull));
}

/*
 * Insert a batch: events of keys that exist and not older than rolled in
 * bulk (usage_writer.c), the others through SQL.  Returns the number of
 * rows inserted.
 */
static int64
write_events(HkUsageEvent **ev, int n, TimestampTz rolled)
{
	HTAB	   *exists = existing_keys(ev, n);
	HkUsageEvent **bulk = palloc(sizeof(HkUsageEvent *) * n);
	HkUsageEvent **late = palloc(sizeof(HkUsageEvent *) * n);
	int			nbulk = 0;
	int			nlate = 0;
	int64		inserted;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (ev[i]->at < rolled)
			late[nlate++] = ev[i];
		else if (hash_search(exists, &ev[i]->key_id, HASH_FIND, NULL) != NULL)
			bulk[nbulk++] = ev[i];
	}
	inserted = hk_usage_append(bulk, nbulk);
	if (inserted < 0)
	{
		/*
		 * The table was altered: let SQL (triggers, defaults, constraints)
		 * see every row.
		 */
		return write_via_sql(ev, n);
	}
	if (nlate > 0)
		inserted += write_via_sql(late, nlate);
	return inserted;
}

/*
 * Write the events in a subtransaction, so that a failing batch does not
 * take the worker down.  False, with a WARNING logged, when it failed.
 */
static bool
write_in_subxact(HkUsageEvent **ev, int n, TimestampTz rolled, int64 *inserted)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		*inserted = write_events(ev, n, rolled);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		ereport(WARNING,
				(errmsg("hokusai_auth worker could not write %d usage events: %s",
						n, edata->message)));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* Count a committed batch: rows, events discarded, and the oldest one's lag. */
static void
count_written(int nusage, int64 inserted, TimestampTz oldest)
{
	uint64		lag;

	hk_usage_stat_add(HK_USTAT_FLUSHED, inserted);
	hk_usage_stat_add(HK_USTAT_DISCARDED, nusage - inserted);
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
write_batch(HkUsageEvent *ev, int n)
{
	HkUsageEvent **mine = palloc(sizeof(HkUsageEvent *) * n);
	int			nusage = 0;
	int			other_db = 0;
	TimestampTz oldest = 0;
	TimestampTz rolled;
	int64		inserted = 0;
	bool		ok;
	int			i;

	for (i = 0; i < n; i++)
	{
		HkUsageEvent *e = &ev[i];

		if (e->dbid != MyDatabaseId)
		{
			other_db++;
			continue;
		}
		hk_worker_note_touch(&e->key_id, e->at);
		if (!(e->flags & HK_EV_USAGE))
			continue;
		if (nusage == 0 || e->at < oldest)
			oldest = e->at;
		mine[nusage++] = e;
	}
	if (nusage == 0)
	{
		hk_usage_stat_add(HK_USTAT_OTHER_DB, other_db);
		return BATCH_DONE;
	}

	if (!hk_worker_begin_xact("hokusai_auth: writing usage events"))
		return BATCH_YIELDED;
	if (!read_rolled_until(&rolled))
	{
		hk_worker_end_xact();
		hk_worker_yield("the usage_rollup_state row is locked (rollup_usage() is running)");
		return BATCH_YIELDED;
	}
	ok = write_in_subxact(mine, nusage, rolled, &inserted);
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
	count_written(nusage, inserted, oldest);
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
		int			n = hk_usage_peek(events, (int) Min(limit - done, HK_BATCH));
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
