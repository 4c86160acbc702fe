/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The hokusai_auth background worker, which writes queued usage events
 *	  to the usage aggregates and raw log, applies last_used_at touches and
 *	  expires keys whose expires_at has passed.  This file owns its
 *	  registration, its signals, the main loop with its error recovery and
 *	  the schedule of its cycles; the work is done by the files named below.
 *
 * One worker per server, registered from _PG_init when the library is
 * preloaded, connected to hokusai_auth.database.  Every
 * hokusai_auth.flush_interval it runs a cycle:
 *
 *	1. while the server is in recovery (a hot standby), only ship the usage
 *	   queue and the noted events to the primary over libpq (replica/ship.c,
 *	   replica/ship_events.c): a standby never writes;
 *	   nothing while the extension (at 1.2 or later) is not installed in
 *	   that database; the queue keeps its events (and drops new ones once
 *	   full) until then;
 *	2. the credit balances changed in shared memory since their last
 *	   write-back, to api_keys (credits_writer.c), which waits for no row
 *	   lock: first, so that write-backs start flush_interval apart however
 *	   long the usage flush takes, which bounds what a crash loses; then
 *	   every hour (and at once after a start), the usage partitions of
 *	   today and the next two days, unless they exist (partitions.c);
 *	   then the events queued when the cycle began, in batches of up to
 *	   HK_BATCH, one transaction each: counted in the per-minute and
 *	   per-hour aggregates, the share usage_raw_sample keeps written as raw
 *	   rows; they leave the queue only once committed (flush.c,
 *	   aggregate.c, usage_writer.c);
 *	3. last_used_at: the touch table and the batches' keys, merged to the
 *	   latest time per key, then one UPDATE for all of them whose rows no
 *	   other transaction holds (the others wait for a later cycle);
 *	4. hokusai_auth.expire_keys(), then hokusai_auth.seal_audit_log(), which
 *	   chains the audit rows committed since (1.5 and later); steps 3 and 4
 *	   are one transaction (housekeeping.c);
 *	5. the events noted on the request path into hokusai_auth.events, and
 *	   every few seconds key.expiring notices and retention (1.6 and later,
 *	   events_step.c).
 *
 * When the queue is a quarter full a producer sets our latch and we run
 * steps 1 to 3 at once; so does any other wake-up of the latch (a signal).
 * Such an early cycle, and the last one, also runs step 4 when a full cycle
 * asked for it and it has not run yet (that cycle yielded or failed, or
 * found no extension or a server in recovery).  SIGHUP reloads the
 * configuration; SIGTERM (server shutdown, pg_terminate_backend) runs a
 * last flush, once the other sessions of its database have ended (for at
 * most HK_SHUTDOWN_WAIT_MS: the credits they spend or give back until then
 * must be in the last write-back), and exits; the postmaster restarts the worker
 * HK_RESTART_SECONDS after it dies for any other reason, or after a crash
 * restart of the server.  An error in a cycle outside a batch is logged and
 * the next cycle runs as usual.
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
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "storage/procarray.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "replica/ship.h"
#include "usage/usage_queue.h"
#include "worker/credits_writer.h"
#include "worker/events_step.h"
#include "worker/flush.h"
#include "worker/housekeeping.h"
#include "worker/locks.h"
#include "worker/partitions.h"
#include "worker/trust.h"
#include "worker/worker.h"

#define HK_RESTART_SECONDS	5
#define HK_SHUTDOWN_WAIT_MS 10000

PGDLLEXPORT void hk_worker_main(Datum main_arg);

static emit_log_hook_type prev_emit_log_hook = NULL;

static volatile sig_atomic_t got_sigterm = false;

static MemoryContext cycle_cxt = NULL;
static TimestampTz next_cycle = 0;
static bool shutting_down = false;

/*
 * emit_log_hook while connecting: the first "database does not exist" since
 * the worker last connected gets a hint; the repeats are not logged.
 */
static void
quiet_missing_database(ErrorData *edata)
{
	if (edata->elevel == FATAL && edata->sqlerrcode == ERRCODE_UNDEFINED_DATABASE)
	{
		if (hk_usage_missing_db_first_report())
			edata->hint = psprintf("The hokusai_auth worker connects to hokusai_auth.database. "
								   "Create that database (and CREATE EXTENSION hokusai_auth in it) "
								   "or set hokusai_auth.database and restart; the worker tries again "
								   "every %d seconds and says nothing more until it connects.",
								   HK_RESTART_SECONDS);
		else
			edata->output_to_server = false;
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * Is there a database of this name?  A heap scan of the shared catalog
 * pg_database, which a process connected to no database can read (as the
 * autovacuum launcher does); its index it cannot open.
 */
static bool
database_exists(const char *name)
{
	Relation	rel = table_open(DatabaseRelationId, AccessShareLock);
	TableScanDesc scan = table_beginscan_catalog(rel, 0, NULL);
	HeapTuple	tup;
	bool		found = false;

	while (!found && (tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
		found = strcmp(NameStr(((Form_pg_database) GETSTRUCT(tup))->datname), name) == 0;
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The worker's database was missing at its last start: connected to no
 * database, look for it every HK_RESTART_SECONDS without a word, and once
 * it is there exit, to be started again and connect to it.
 */
static void
wait_for_database(void)
{
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("hokusai_auth usage worker");
	for (;;)
	{
		bool		exists;

		StartTransactionCommand();
		exists = database_exists(hk_database);
		CommitTransactionCommand();
		if (exists || got_sigterm)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 HK_RESTART_SECONDS * 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	hk_usage_missing_db_clear();
	proc_exit(1);
}

/* Register the worker with the postmaster (from _PG_init). */
void
hk_worker_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* Started on a hot standby too: it ships usage there until promotion. */
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
 * At shutdown: wait (at most HK_SHUTDOWN_WAIT_MS) until no client session
 * is connected to our database, so that credits they spend or give back
 * before they exit are in the last write-back.  In a fast shutdown they
 * are told to end when we are; in a smart one they are gone already.
 */
static void
wait_for_sessions(void)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												   HK_SHUTDOWN_WAIT_MS);

	while (CountDBConnections(MyDatabaseId) > 0 && GetCurrentTimestamp() < until)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 20L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* One cycle; expire is false for early and final flushes. */
static void
run_cycle(bool expire)
{
	bool		can_seal;

	if (expire)
		hk_worker_expiry_due();
	MemoryContextSwitchTo(cycle_cxt);
	if (RecoveryInProgress())
	{
		hk_ship_cycle(&got_sigterm, shutting_down);
		return;
	}
	hk_ship_disconnect();
	if (!hk_worker_extension_ready(&can_seal))
		return;
	/* Once after a promotion: what the old primary took is written. */
	hk_ship_after_promotion();

	/* Transactions leave CurrentMemoryContext at TopMemoryContext. */
	MemoryContextSwitchTo(cycle_cxt);
	hk_worker_yields_start_cycle();
	/* First: write-backs flush_interval apart bound what a crash loses. */
	hk_worker_write_credits(cycle_cxt);
	MemoryContextSwitchTo(cycle_cxt);
	if (hk_worker_usage_is_partitioned())
	{
		hk_worker_make_partitions();
		MemoryContextSwitchTo(cycle_cxt);
	}
	hk_worker_flush_events(cycle_cxt);
	hk_worker_touch_and_expire(can_seal);
	hk_worker_events(expire);
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

	/*
	 * A hokusai_auth.database that does not exist ends this process with
	 * FATAL: say so once, with what to do (quiet_missing_database), and
	 * from the next start on wait for it quietly (wait_for_database).
	 */
	if (hk_usage_missing_db_reported())
		wait_for_database();
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = quiet_missing_database;
	BackgroundWorkerInitializeConnection(hk_database, NULL, 0);
	emit_log_hook = prev_emit_log_hook;
	hk_usage_missing_db_clear();
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
	hk_worker_flush_init();
	hk_worker_housekeeping_init();
	hk_worker_events_init();

	elog(LOG, "hokusai_auth usage worker started in database \"%s\"", hk_database);

	/*
	 * An error in a cycle is reported and the next cycle runs as usual: the
	 * events it did not write are still queued, and so are the touches it
	 * did not apply.  Errors writing a batch are caught closer (flush.c)
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
			/* A shorter flush_interval applies now, not once the old one ends. */
			next_cycle = Min(next_cycle,
							 TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 hk_flush_interval));
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

	/* Shutting down: write what is queued, once the sessions are gone. */
	shutting_down = true;
	wait_for_sessions();
	run_cycle(false);
	elog(LOG, "hokusai_auth usage worker shutting down");
	proc_exit(1);
}
