/*-------------------------------------------------------------------------
 *
 * housekeeping.c
 *	  The background worker's housekeeping on api_keys: last_used_at for the
 *	  keys used since it last succeeded, expiry of the keys whose expires_at
 *	  has passed, then sealing of the audit log.
 *
 * Touches come from two places: the queue's touch table (validations
 * without an endpoint) and the events of the batches flush.c writes.  They
 * are merged here, in a table that lives across cycles, to the latest time
 * per key, and applied by hokusai_auth._usage_touch(), which writes a row
 * only when its last_used_at moves on by a minute or more.  It waits for no
 * key row for long:
 *
 *	1. the touches of keys whose rows were not found held before go to one
 *	   _usage_touch() call, in a subtransaction whose lock waits are bounded
 *	   to a few milliseconds (worker/trust.c).  It locks only the rows it
 *	   writes, and writes each once: this is the common case, and its cost
 *	   is one row version (and its WAL) per key written;
 *	2. if that call waited too long for a row, it is rolled back, and the
 *	   touches are applied as before it: the rows of the touched keys are
 *	   locked first, without waiting (FOR NO KEY UPDATE SKIP LOCKED), and
 *	   only those are touched.  The touches of rows another transaction
 *	   holds (an update_key() or a SELECT ... FOR UPDATE left idle) stay in
 *	   the table for the next cycle, marked held, and from then on take
 *	   this way, not the first (which would wait for them again).
 *
 * So an idle transaction costs the worker one brief wait, and delays what
 * concerns its key and nothing else; expire_keys() skips such rows too
 * (test/t/035_worker_row_lock.pl).  Expiry (hokusai_auth.expire_keys(),
 * an audit row per key) is asked for by each full cycle, not by the early
 * and final flushes;
 * hokusai_auth.seal_audit_log() (1.5 and later) then chains the audit rows
 * committed since it last ran, expiry's too, and
 * hokusai_auth._prune_replica_state() (1.6 and later) forgets invalidation
 * log rows older than an hour (replica/inval_log.c).  All of it is one transaction
 * begun as locks.c says: when it yields, the touches are kept and expiry
 * stays due for the next cycle.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "replica/inval_log.h"
#include "usage/usage_queue.h"
#include "worker/housekeeping.h"
#include "worker/locks.h"
#include "worker/trust.h"

typedef struct TouchEntry
{
	pg_uuid_t	key_id;
	TimestampTz at;
	bool		done;			/* applied (or the key is gone) by the
								 * transaction in progress */
	bool		held;			/* its row was found held by another
								 * transaction: take the locking way */
} TouchEntry;

static SPIPlanPtr touch_plan = NULL;
static SPIPlanPtr exists_plan = NULL;
static SPIPlanPtr lock_plan = NULL;

/* last_used_at touches not yet applied: kept across cycles that yield. */
static HTAB *touches = NULL;
/* expire_keys() is due (a full cycle asked for it and it has not run). */
static bool expire_due = false;

/* Note that a key was used at "at" (the latest time per key is kept). */
void
hk_worker_note_touch(const pg_uuid_t *key_id, TimestampTz at)
{
	bool		found;
	TouchEntry *e = hash_search(touches, key_id, HASH_ENTER, &found);

	if (!found)
		e->done = e->held = false;
	if (!found || e->at < at)
		e->at = at;
}

/* A hash table keyed by key id, entries of entrysize bytes, in cxt. */
HTAB *
hk_worker_key_table(const char *name, Size entrysize, MemoryContext cxt)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = entrysize;
	ctl.hcxt = cxt;
	return hash_create(name, 256, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Forget the touches: they have been applied. */
static void
forget_touches(void)
{
	if (touches != NULL)
		hash_destroy(touches);
	touches = hk_worker_key_table("hokusai_auth touches", sizeof(TouchEntry), TopMemoryContext);
}

/* Once, at start: an empty table of touches. */
void
hk_worker_housekeeping_init(void)
{
	forget_touches();
}

/* A full cycle asks for expiry; it stays due until a transaction runs it. */
void
hk_worker_expiry_due(void)
{
	expire_due = true;
}

/*
 * The touches not yet done, as a list of TouchEntry pointers: all of them,
 * or (unheld_only) those whose rows were not found held.
 */
static List *
pending_touches(bool unheld_only)
{
	HASH_SEQ_STATUS seq;
	TouchEntry *e;
	List	   *list = NIL;

	hash_seq_init(&seq, touches);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (!e->done && !(unheld_only && e->held))
			list = lappend(list, e);
	return list;
}

/* Keys of a list of touches, as a uuid[]. */
static Datum
touch_keys(List *list)
{
	Datum	   *keys = palloc(sizeof(Datum) * Max(list_length(list), 1));
	ListCell   *lc;
	int			i = 0;

	foreach(lc, list)
		keys[i++] = UUIDPGetDatum(&((TouchEntry *) lfirst(lc))->key_id);
	return PointerGetDatum(construct_array(keys, i, UUIDOID,
										   UUID_LEN, false, TYPALIGN_CHAR));
}

/*
 * One _usage_touch() call for a list of touches; returns how many rows it
 * wrote.  Waits for a held row as long as lock_timeout says.
 */
static int32
call_usage_touch(List *list)
{
	Datum	   *ats = palloc(sizeof(Datum) * Max(list_length(list), 1));
	Datum		args[2];
	ListCell   *lc;
	int			ret;
	bool		isnull;
	int			i = 0;

	foreach(lc, list)
		ats[i++] = TimestampTzGetDatum(((TouchEntry *) lfirst(lc))->at);
	args[0] = touch_keys(list);
	args[1] = PointerGetDatum(construct_array(ats, i, TIMESTAMPTZOID,
											  sizeof(TimestampTz), FLOAT8PASSBYVAL,
											  TYPALIGN_DOUBLE));
	if (touch_plan == NULL)
	{
		Oid			argtypes[2] = {UUIDARRAYOID, TIMESTAMPTZARRAYOID};

		touch_plan = hk_worker_keep_plan("SELECT " HK_SCHEMA "._usage_touch($1, $2)",
										 2, argtypes);
	}
	ret = SPI_execute_plan(touch_plan, args, NULL, false, 1);
	return DatumGetInt32(hk_worker_one_value(ret, "_usage_touch failed", &isnull));
}

/* call_usage_touch()'s list and result, for hk_worker_subxact(). */
typedef struct TouchCall
{
	List	   *list;
	int32		written;
} TouchCall;

static void
touch_call_fn(void *arg)
{
	TouchCall  *call = (TouchCall *) arg;

	call->written = call_usage_touch(call->list);
}

/*
 * Step 1 of the banner: the touches of rows not found held before, in one
 * _usage_touch() call, in a subtransaction whose lock waits are brief.
 * When it waits too long for a row (lock_not_available) nothing is applied,
 * and step 2 takes them all; any other error is raised.
 */
static void
touch_unheld(void)
{
	TouchCall	call = {pending_touches(true), 0};
	ErrorData  *edata;
	ListCell   *lc;

	if (call.list == NIL)
		return;
	hk_worker_brief_lock_waits(true);
	edata = hk_worker_subxact(touch_call_fn, &call);
	hk_worker_brief_lock_waits(false);
	if (edata != NULL)
	{
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			ReThrowError(edata);
		FreeErrorData(edata);
		ereport(DEBUG1,
				(errmsg("hokusai_auth worker: a touched key's row is held by another transaction"),
				 errdetail("The rows of the touched keys are locked first, without waiting.")));
		return;
	}
	hk_usage_stat_add(HK_USTAT_KEYS_TOUCHED, call.written);
	/* Done once the transaction commits: written, not due, or key gone. */
	foreach(lc, call.list)
		((TouchEntry *) lfirst(lc))->done = true;
}

/*
 * Lock, without waiting, the rows of a list of touches that no other
 * transaction holds.  Returns a table of the ids locked, and one of the ids
 * that have a row in *exist (the others are deleted keys: nothing to touch).
 */
static HTAB *
lock_touched_rows(List *list, HTAB **exist)
{
	Datum		arg = touch_keys(list);
	HTAB	   *locked = hk_worker_key_table("hokusai_auth touched rows",
											 sizeof(pg_uuid_t), CurrentMemoryContext);
	int			ret;
	uint64		i;
	bool		isnull;

	*exist = hk_worker_key_table("hokusai_auth touched keys",
								 sizeof(pg_uuid_t), CurrentMemoryContext);
	if (exists_plan == NULL)
	{
		Oid			argtypes[1] = {UUIDARRAYOID};

		exists_plan = hk_worker_keep_plan("SELECT a.id FROM " HK_SCHEMA ".api_keys a"
										  " WHERE a.id OPERATOR(pg_catalog.=) ANY ($1)",
										  1, argtypes);
		lock_plan = hk_worker_keep_plan("SELECT a.id FROM " HK_SCHEMA ".api_keys a"
										" WHERE a.id OPERATOR(pg_catalog.=) ANY ($1)"
										"   FOR NO KEY UPDATE OF a SKIP LOCKED",
										1, argtypes);
	}
	ret = SPI_execute_plan(exists_plan, &arg, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read touched keys: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
		hash_search(*exist, DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc, 1, &isnull)),
					HASH_ENTER, NULL);
	ret = SPI_execute_plan(lock_plan, &arg, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not lock touched keys: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
		hash_search(locked, DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc, 1, &isnull)),
					HASH_ENTER, NULL);
	return locked;
}

/*
 * Step 2 of the banner: the touches not done yet, for the rows no one else
 * holds, by one _usage_touch() call once those rows are locked.  The
 * touches of keys that no longer exist are done too; those of rows another
 * transaction holds (an open update_key(), SELECT ... FOR UPDATE) are
 * marked held and stay for the next cycle: this step never waits.
 */
static void
touch_locked(void)
{
	List	   *list = pending_touches(false);
	List	   *lockable = NIL;
	HTAB	   *exist;
	HTAB	   *locked;
	ListCell   *lc;

	if (list == NIL)
		return;
	locked = lock_touched_rows(list, &exist);
	foreach(lc, list)
	{
		TouchEntry *e = lfirst(lc);

		if (hash_search(locked, &e->key_id, HASH_FIND, NULL))
			lockable = lappend(lockable, e);
		else if (hash_search(exist, &e->key_id, HASH_FIND, NULL))
			e->held = true;
		else
			e->done = true;		/* the key is gone */
	}
	if (lockable != NIL)
		hk_usage_stat_add(HK_USTAT_KEYS_TOUCHED, call_usage_touch(lockable));
	/* Done once the transaction commits; the touches of held rows stay. */
	foreach(lc, lockable)
		((TouchEntry *) lfirst(lc))->done = true;
}

/*
 * last_used_at for the keys of the touch table whose rows no one else
 * holds (see the banner): step 1, then step 2 for what is left (the
 * touches of held rows, or all of them when step 1 met one).  The touches
 * applied, and those of keys that no longer exist, leave the table once
 * the transaction commits.
 */
static void
apply_touches(void)
{
	touch_unheld();
	touch_locked();
}

/* The transaction that applied them has committed: forget those done. */
static void
forget_done_touches(void)
{
	HASH_SEQ_STATUS seq;
	TouchEntry *e;

	hash_seq_init(&seq, touches);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->done)
			hash_search(touches, &e->key_id, HASH_REMOVE, NULL);
}

/* Expire the keys whose expires_at has passed; count and log them. */
static void
expire_keys(void)
{
	int			ret = SPI_execute("SELECT " HK_SCHEMA ".expire_keys()", false, 1);
	bool		isnull;
	int32		expired;

	expired = DatumGetInt32(hk_worker_one_value(ret, "expire_keys failed", &isnull));
	if (expired > 0)
	{
		hk_usage_stat_add(HK_USTAT_KEYS_EXPIRED, expired);
		ereport(LOG,
				(errmsg("hokusai_auth worker expired %d api keys", expired)));
	}
}

/* Chain the audit rows committed since the last cycle (and expiry's). */
static void
seal_audit_log(void)
{
	int			ret = SPI_execute("SELECT " HK_SCHEMA ".seal_audit_log()", false, 1);
	bool		isnull;

	(void) hk_worker_one_value(ret, "seal_audit_log failed", &isnull);
}

/* Note a chunk of the queue's touches (hk_usage_drain_touches()). */
static void
note_touches(const HkUsageTouch *t, int n, void *arg)
{
	int			i;

	for (i = 0; i < n; i++)
		hk_worker_note_touch(&t[i].key_id, t[i].at);
}

/*
 * last_used_at for every key used since this last succeeded, and expiry
 * when it is due.  When the transaction yields, both wait for the next
 * cycle.
 */
void
hk_worker_touch_and_expire(bool can_seal)
{
	hk_usage_drain_touches(note_touches, NULL);

	if (hash_get_num_entries(touches) == 0 && !expire_due)
		return;

	if (!hk_worker_begin_xact("hokusai_auth: last_used_at and expiry"))
		return;
	if (hash_get_num_entries(touches) > 0)
	{
		HASH_SEQ_STATUS seq;
		TouchEntry *e;

		/* A transaction that failed or yielded before applied none. */
		hash_seq_init(&seq, touches);
		while ((e = hash_seq_search(&seq)) != NULL)
			e->done = false;
		apply_touches();
	}
	if (expire_due)
		expire_keys();
	if (expire_due && can_seal)
		seal_audit_log();
	if (expire_due)
		hk_inval_log_prune();
	hk_worker_end_xact();
	forget_done_touches();
	expire_due = false;
}
