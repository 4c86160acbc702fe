/*-------------------------------------------------------------------------
 *
 * locks.c
 *	  The background worker's transactions on the extension's tables: the
 *	  check that the extension is installed, every relation lock taken up
 *	  front without waiting, yields, and the statements' prepared plans and
 *	  one-value results.
 *
 * Locks.  DDL on the extension's relations (DROP EXTENSION above all, which
 * takes every one of them, one after the other) must never deadlock with
 * the worker, and the worker must not lose events to it.  The rule: each
 * transaction that reads or writes the extension's tables begins by taking,
 * without waiting (ConditionalLockRelationOid), every relation lock it can
 * need: each relation that is a member of the extension, with its
 * inheritance children, indexes, TOAST table and owned sequences, each in
 * every mode of lock_modes[] (what its statements, the functions it calls
 * and their triggers take).  The partitions of the usage tables (dozens to
 * hundreds: one per day) are the exception: a transaction takes the
 * parents up front and then, still without waiting and before any
 * statement that touches them, only the partitions its events go to
 * (hk_worker_lock_partition(), from worker/partitions.c).  If one is not available the transaction ends
 * at once, releasing what it took, and the work waits for the next cycle:
 * a yield, not a failure; the events stay queued and nothing is counted.
 * Once they are all held, every relation lock the transaction asks for
 * later is one it already holds, granted without a wait.  So the worker
 * never waits for a relation lock while holding one: at any moment it holds
 * none of the extension's relations or all of them, and DDL on them either
 * makes it yield or waits for its transaction to end; no cycle of relation
 * locks can include it.  After the locks it looks the extension up again
 * (a DROP that committed just before we locked shows only then) and only
 * then takes the snapshot its statements use.  Row locks are the other
 * waits, and the worker takes none of them waiting: the usage_rollup_state
 * row is read FOR SHARE SKIP LOCKED (while rollup_usage() holds it the
 * batch yields), and the key rows that expiry and the credit write-back
 * change are locked FOR NO KEY UPDATE SKIP LOCKED first (a row another
 * transaction holds, say an update_key() left idle, is left for a later
 * cycle: housekeeping.c, credits_writer.c).  last_used_at is written
 * without locking first, in a subtransaction whose lock waits are bounded
 * to a few milliseconds, and only after such a wait in that locking way
 * (housekeeping.c).  lock_timeout stays as a bound for anything else.  A statement added to the worker (or
 * to a function it calls) that needs a stronger mode on a relation must add
 * that mode to lock_modes[].
 *
 * Yields.  Each one is noted at DEBUG1 with its reason.  When the worker
 * has been yielding for HK_YIELD_REPORT_MS it says so once in the log, and
 * logs the end of that wait when a cycle then runs through without one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/pg_class.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "worker/locks.h"

#define HK_EXTENSION		"hokusai_auth"
/* Yielding for this long is logged (once), and so is the end of it. */
#define HK_YIELD_REPORT_MS	(60 * 1000)

/*
 * The modes in which the worker's statements, the functions it calls and
 * their triggers lock the extension's relations: reads, FOR SHARE /
 * FOR UPDATE, writes (and nextval()).  Each transaction takes all of them
 * on every relation up front (see the banner).
 */
static const LOCKMODE lock_modes[] = {AccessShareLock, RowShareLock, RowExclusiveLock};

/* Yields: why the last one happened, since when, and whether it was logged. */
static char yield_reason[2 * NAMEDATALEN + 64];
static bool cycle_yielded = false;
static TimestampTz yielding_since = 0;
static bool yield_reported = false;

/* The extension has the 1.6 usage tables (set by hk_worker_extension_ready). */
static bool usage_partitioned = false;

/* A cycle's work waits for the next cycle; log it when it lasts. */
static void
note_yield(void)
{
	TimestampTz now = GetCurrentTimestamp();

	cycle_yielded = true;
	ereport(DEBUG1,
			(errmsg_internal("hokusai_auth worker yields: %s", yield_reason)));
	if (yielding_since == 0)
		yielding_since = now;
	else if (!yield_reported &&
			 TimestampDifferenceExceeds(yielding_since, now, HK_YIELD_REPORT_MS))
	{
		ereport(LOG,
				(errmsg("hokusai_auth worker has been waiting for its locks for %d seconds: %s",
						HK_YIELD_REPORT_MS / 1000, yield_reason),
				 errdetail("Usage events stay queued meanwhile; the queue drops new ones once it is full.")));
		yield_reported = true;
	}
}

/* A cycle ran without yielding. */
static void
note_no_yield(void)
{
	if (yield_reported)
		ereport(LOG,
				(errmsg("hokusai_auth worker has its locks again")));
	yielding_since = 0;
	yield_reported = false;
}

/* A cycle's work waits for the next cycle, for this reason. */
void
hk_worker_yield(const char *reason)
{
	strlcpy(yield_reason, reason, sizeof(yield_reason));
	note_yield();
}

/* A cycle's work waits for the next cycle: a lock was not available. */
void
hk_worker_yield_for_lock(void)
{
	note_yield();
}

/* A cycle begins: it has not yielded yet. */
void
hk_worker_yields_start_cycle(void)
{
	cycle_yielded = false;
}

/* A cycle ends: if it did not yield, a wait (logged or not) is over. */
void
hk_worker_yields_end_cycle(void)
{
	if (!cycle_yielded)
		note_no_yield();
}

/* Does hokusai_auth.name(argtypes) exist?  A lookup by schema and name. */
static bool
function_exists(const char *name, int nargs, const Oid *argtypes)
{
	List	   *qualified = list_make2(makeString(pstrdup(HK_SCHEMA)),
									   makeString(pstrdup(name)));

	return OidIsValid(LookupFuncName(qualified, nargs, argtypes, true));
}

/*
 * Is hokusai_auth, with the functions this worker calls, installed here?
 * *can_seal says whether it can seal the audit log (1.5 and later).
 */
bool
hk_worker_extension_ready(bool *can_seal)
{
	Oid			flush_args[5] = {UUIDARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID,
	INT4ARRAYOID, INT4ARRAYOID};
	Oid			no_args[1] = {InvalidOid};
	Oid			seal_args[1] = {INT4OID};
	Oid			add_args[2] = {REGCLASSOID, InvalidOid};
	bool		ready;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "hokusai_auth: checking the extension");
	/* Catalog cache entries may hold TOASTed values (function bodies). */
	PushActiveSnapshot(GetTransactionSnapshot());
	add_args[1] = get_array_type(GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
												 CStringGetDatum("_usage_group"),
												 ObjectIdGetDatum(get_namespace_oid(HK_SCHEMA, true))));
	ready = OidIsValid(get_extension_oid(HK_EXTENSION, true)) &&
		function_exists("_usage_flush", 5, flush_args) &&
		function_exists("expire_keys", 0, no_args);
	*can_seal = ready && function_exists("seal_audit_log", 1, seal_args);
	usage_partitioned = ready && function_exists("_usage_add", 2, add_args);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return ready;
}

/*
 * Does the extension have the 1.6 usage tables (partitioned, aggregates)?
 * Until ALTER EXTENSION UPDATE, a 1.5 database is written the 1.5 way.
 */
bool
hk_worker_usage_is_partitioned(void)
{
	return usage_partitioned;
}

/* The relations that are members of extension extoid. */
static List *
extension_relations(Oid extoid)
{
	List	   *result = NIL;
	Relation	depRel;
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tup;

	depRel = table_open(DependRelationId, AccessShareLock);
	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(ExtensionRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(extoid));
	scan = systable_beginscan(depRel, DependReferenceIndexId, true, NULL, 2, key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tup);

		if (dep->deptype == DEPENDENCY_EXTENSION && dep->classid == RelationRelationId)
			result = lappend_oid(result, dep->objid);
	}
	systable_endscan(scan);
	table_close(depRel, AccessShareLock);
	return result;
}

/* Lock relid in every mode of lock_modes[] without waiting. */
static bool
lock_now(Oid relid)
{
	int			i;

	for (i = 0; i < (int) lengthof(lock_modes); i++)
	{
		if (!ConditionalLockRelationOid(relid, lock_modes[i]))
		{
			char	   *name = get_rel_name(relid);

			snprintf(yield_reason, sizeof(yield_reason),
					 "relation \"%s\" is locked by another session",
					 name ? name : "?");
			return false;
		}
	}
	return true;
}

/*
 * Lock a relation and what is read or written with it: its indexes, its
 * TOAST table (with its index) and the sequences it owns.  A relation that
 * is gone by the time we hold its lock needs nothing more.
 */
static bool
lock_relation(Oid relid)
{
	Relation	rel;
	List	   *parts = NIL;
	ListCell   *lc;
	char		relkind;

	if (!lock_now(relid))
		return false;
	rel = try_relation_open(relid, NoLock);
	if (rel == NULL)
		return true;
	relkind = rel->rd_rel->relkind;
	if (relkind == RELKIND_RELATION || relkind == RELKIND_PARTITIONED_TABLE ||
		relkind == RELKIND_MATVIEW || relkind == RELKIND_TOASTVALUE)
	{
		parts = RelationGetIndexList(rel);
		if (OidIsValid(rel->rd_rel->reltoastrelid))
			parts = lappend_oid(parts, rel->rd_rel->reltoastrelid);
		if (relkind != RELKIND_TOASTVALUE)
			parts = list_concat(parts, getOwnedSequences(relid));
	}
	relation_close(rel, NoLock);
	foreach(lc, parts)
	{
		if (!lock_relation(lfirst_oid(lc)))
			return false;
	}
	return true;
}

/*
 * Take, without waiting, every relation lock a transaction of the worker's
 * can need (see the banner).  False when one is not available.
 */
static bool
lock_extension(Oid extoid)
{
	ListCell   *lc;

	foreach(lc, extension_relations(extoid))
	{
		ListCell   *lc2;

		/* a partitioned table's partitions are locked when used */
		if (get_rel_relkind(lfirst_oid(lc)) == RELKIND_PARTITIONED_TABLE)
		{
			if (!lock_relation(lfirst_oid(lc)))
				return false;
			continue;
		}
		foreach(lc2, find_all_inheritors(lfirst_oid(lc), NoLock, NULL))
		{
			if (!lock_relation(lfirst_oid(lc2)))
				return false;
		}
	}
	return true;
}

/*
 * A partition of a usage table (not taken up front, see the banner), with
 * its indexes and TOAST table, in every mode, without waiting; false, with
 * the yield's reason noted, when a lock is not available.
 */
bool
hk_worker_lock_partition(Oid relid)
{
	return lock_relation(relid);
}

/*
 * Begin a transaction that reads or writes the extension's tables: every
 * relation lock it can need first, without waiting, then SPI and the
 * snapshot.  Returns false, with no transaction left open, when a lock is
 * not available or the extension has gone meanwhile: the caller yields.
 */
bool
hk_worker_begin_xact(const char *activity)
{
	Oid			extoid;
	bool		ok;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, activity);
	yield_reason[0] = '\0';
	/* Building relcache entries may read TOASTed catalog values. */
	PushActiveSnapshot(GetTransactionSnapshot());
	extoid = get_extension_oid(HK_EXTENSION, true);
	if (!OidIsValid(extoid))
		ok = false;
	else if (!lock_extension(extoid))
		ok = false;				/* lock_now() said which lock */
	else
	{
		/* A DROP EXTENSION that committed before we locked shows only now. */
		InvalidateCatalogSnapshot();
		ok = get_extension_oid(HK_EXTENSION, true) == extoid;
	}
	if (!ok && (!OidIsValid(extoid) || yield_reason[0] == '\0'))
		snprintf(yield_reason, sizeof(yield_reason),
				 "extension \"%s\" was dropped meanwhile", HK_EXTENSION);
	PopActiveSnapshot();
	if (!ok)
	{
		/* Nothing was written: ending the transaction releases the locks. */
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		note_yield();
		return false;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* Taken after the locks: the statements see every commit before them. */
	PushActiveSnapshot(GetTransactionSnapshot());
	return true;
}

/* End a transaction begun by hk_worker_begin_xact(). */
void
hk_worker_end_xact(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Run fn(arg) in a subtransaction; its error, if any (see locks.h). */
ErrorData *
hk_worker_subxact(void (*fn) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}

/* Prepare a statement once; its plan is kept for the worker's life. */
SPIPlanPtr
hk_worker_keep_plan(const char *query, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(query, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/* The one row's first column, or an error naming the failure (see locks.h). */
Datum
hk_worker_one_value(int ret, const char *failure, bool *isnull)
{
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "%s: %s", failure, SPI_result_code_string(ret));
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
}
