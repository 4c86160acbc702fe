/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The hokusai_auth background worker: writes queued usage events to
 *	  hokusai_auth.api_key_usage, applies last_used_at touches and expires
 *	  keys whose expires_at has passed.
 *
 * One worker per server, registered from _PG_init when the library is
 * preloaded, connected to hokusai_auth.database.  Every
 * hokusai_auth.flush_interval it runs a cycle:
 *
 *	1. nothing while the server is in recovery or the extension (at 1.2 or
 *	   later) is not installed in that database; the queue keeps its events
 *	   (and drops new ones once full) until then;
 *	2. the events queued when the cycle began, in batches of up to
 *	   HK_BATCH, one transaction each.  Events of keys that exist, not
 *	   older than usage_rollup_state.rolled_until (share-locked, which
 *	   orders us against rollup_usage()), are appended in bulk by
 *	   usage_writer.c; older ones go through SQL,
 *	   hokusai_auth._usage_flush(arrays...), which also adds them to the
 *	   rollups, and so does everything when the table has been altered.
 *	   The events are consumed (tail moved) only after the commit, so an
 *	   error loses nothing; a batch that fails HK_MAX_RETRIES cycles in a
 *	   row is dropped and counted;
 *	3. last_used_at: the touch table and the batches' keys, merged here to
 *	   the latest time per key, then one UPDATE for all of them;
 *	4. hokusai_auth.expire_keys(), then hokusai_auth.seal_audit_log(), which
 *	   chains the audit rows committed since (1.5 and later).
 *
 * When the queue is a quarter full a producer sets our latch and we run
 * steps 1 to 3 at once.  SIGHUP reloads the configuration; SIGTERM (server
 * shutdown, pg_terminate_backend) runs a last flush and exits; the
 * postmaster restarts the worker HK_RESTART_SECONDS after it dies for any
 * other reason, or after a crash restart of the server.  An error in a
 * cycle outside a batch is logged and the next cycle runs as usual.
 *
 * Trust: the settings pinned right after connecting, and the rule that
 * every statement names its objects with their schema, are in trust.c.
 *
 * Locks: every transaction on the extension's tables takes all its relation
 * locks up front without waiting, or yields; the rule is in locks.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "hokusai_auth.h"
#include "usage/usage_queue.h"
#include "worker/housekeeping.h"
#include "worker/locks.h"
#include "worker/trust.h"
#include "worker/usage_writer.h"
#include "worker/worker.h"

#define HK_BATCH			16384
#define HK_MAX_RETRIES		3
#define HK_RESTART_SECONDS	5

PGDLLEXPORT void hk_worker_main(Datum main_arg);

/* How a batch went. */
typedef enum BatchResult
{
	BATCH_DONE,					/* written, or dropped after HK_MAX_RETRIES
								 * failures: consume its events */
	BATCH_FAILED,				/* failed: try again at the next cycle */
	BATCH_YIELDED				/* not tried, a lock was not available: try
								 * again at the next cycle, not a failure */
} BatchResult;

static volatile sig_atomic_t got_sigterm = false;

static MemoryContext cycle_cxt = NULL;
static HkUsageEvent *events = NULL;
static SPIPlanPtr flush_plan = NULL;
static SPIPlanPtr rolled_plan = NULL;
static SPIPlanPtr keys_plan = NULL;
static int	batch_failures = 0;
static TimestampTz next_cycle = 0;
static bool shutting_down = false;

/* Register the worker with the postmaster (from _PG_init). */
void
hk_worker_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* Started on a hot standby too: it waits there until promotion. */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = HK_RESTART_SECONDS;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "hokusai_auth");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "hk_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "hokusai_auth usage worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "hokusai_auth usage worker");
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

/* SIGTERM: flush what is queued and exit. */
static void
worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
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
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not read usage_rollup_state: %s", SPI_result_code_string(ret));
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										1, &isnull)))
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

	wanted = hk_worker_key_table("hokusai_auth batch keys", sizeof(pg_uuid_t), CurrentMemoryContext);
	found = hk_worker_key_table("hokusai_auth existing keys", sizeof(pg_uuid_t), CurrentMemoryContext);
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
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "_usage_flush failed: %s", SPI_result_code_string(ret));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
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
	bool		ok = true;
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
	{
		MemoryContext oldcxt = CurrentMemoryContext;
		ResourceOwner oldowner = CurrentResourceOwner;

		/* A failing batch must not take the worker down: a subtransaction. */
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(oldcxt);
		PG_TRY();
		{
			inserted = write_events(mine, nusage, rolled);
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
							nusage, edata->message)));
			FreeErrorData(edata);
			ok = false;
		}
		PG_END_TRY();
	}
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
	hk_usage_stat_add(HK_USTAT_FLUSHED, inserted);
	hk_usage_stat_add(HK_USTAT_DISCARDED, nusage - inserted);
	hk_usage_stat_add(HK_USTAT_FLUSHES, 1);
	{
		uint64		lag = (uint64) Max(GetCurrentTimestamp() - oldest, 0);

		hk_usage_stat_set(HK_USTAT_LAST_LAG_US, lag);
		if (lag > hk_usage_stat(HK_USTAT_MAX_LAG_US))
			hk_usage_stat_set(HK_USTAT_MAX_LAG_US, lag);
	}
	return BATCH_DONE;
}

/*
 * Write the events that were queued when the cycle began.  Events that
 * arrive meanwhile wait for the next cycle: chasing them would turn a
 * steady stream into a stream of tiny transactions, each with its own
 * commit, and that overhead is taken from the request path's CPU.
 */
static void
flush_events(void)
{
	MemoryContext batch_cxt = AllocSetContextCreate(cycle_cxt,
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

/* One cycle; expire is false for early and final flushes. */
static void
run_cycle(bool expire)
{
	bool		can_seal;

	if (expire)
		hk_worker_expiry_due();
	if (RecoveryInProgress())
		return;
	if (!hk_worker_extension_ready(&can_seal))
		return;

	/* Transactions leave CurrentMemoryContext at TopMemoryContext. */
	MemoryContextSwitchTo(cycle_cxt);
	hk_worker_yields_start_cycle();
	flush_events();
	hk_worker_touch_and_expire(can_seal);
	hk_worker_yields_end_cycle();
	hk_usage_stat_set(HK_USTAT_LAST_FLUSH_AT, (uint64) GetCurrentTimestamp());
}

/* The worker's entry point: connect, pin the settings, run cycles. */
void
hk_worker_main(Datum main_arg)
{
	sigjmp_buf	local_sigjmp_buf;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, worker_sigterm);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(hk_database, NULL, 0);
	/* Before anything runs in the database: see trust.c. */
	hk_worker_pin_settings();
	hk_usage_worker_attach();
	pgstat_report_appname("hokusai_auth usage worker");
	/*
	 * Commits stay synchronous: rows the worker has written (usage, expiry
	 * and its audit rows) must survive a crash.  It commits about once per
	 * flush_interval, so the fsync costs little.
	 */

	cycle_cxt = AllocSetContextCreate(TopMemoryContext, "hokusai_auth worker cycle",
									  ALLOCSET_DEFAULT_SIZES);
	events = MemoryContextAlloc(TopMemoryContext, sizeof(HkUsageEvent) * HK_BATCH);
	hk_worker_housekeeping_init();

	elog(LOG, "hokusai_auth usage worker started in database \"%s\"", hk_database);

	/*
	 * An error in a cycle is reported and the next cycle runs as usual: the
	 * events it did not write are still queued, and so are the touches it
	 * did not apply.  Errors writing a batch are caught closer (write_batch)
	 * and counted.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortCurrentTransaction();
		LWLockReleaseAll();
		MemoryContextSwitchTo(TopMemoryContext);
		FlushErrorState();
		MemoryContextReset(cycle_cxt);
		RESUME_INTERRUPTS();
		if (shutting_down)
			proc_exit(1);
		next_cycle = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), hk_flush_interval);
	}
	else
		next_cycle = GetCurrentTimestamp();
	PG_exception_stack = &local_sigjmp_buf;

	while (!got_sigterm)
	{
		TimestampTz now = GetCurrentTimestamp();
		bool		full_cycle;

		if (next_cycle > now)
		{
			long		wait_ms = (long) ((next_cycle - now + 999) / 1000);

			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (got_sigterm)
			break;

		now = GetCurrentTimestamp();
		full_cycle = now >= next_cycle;
		run_cycle(full_cycle);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(cycle_cxt);
		if (full_cycle)
			next_cycle = TimestampTzPlusMilliseconds(now, hk_flush_interval);
	}

	/* Shutting down: write what is queued. */
	shutting_down = true;
	run_cycle(false);
	elog(LOG, "hokusai_auth usage worker shutting down");
	proc_exit(1);
}
