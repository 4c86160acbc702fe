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
 * per key, and applied by one hokusai_auth._usage_touch() call for all of
 * them.  It waits for no key row: the rows of the touched keys are locked
 * first, without waiting (FOR NO KEY UPDATE SKIP LOCKED), and only those
 * are touched; the touches of rows another transaction holds (an
 * update_key() or a SELECT ... FOR UPDATE left idle) stay in the table for
 * the next cycle, and expire_keys() skips such rows too, so that an idle
 * transaction delays what concerns its key and nothing else
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

typedef struct TouchEntry
{
	pg_uuid_t	key_id;
	TimestampTz at;
	bool		done;			/* applied (or the key is gone) by the
								 * transaction in progress */
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
		e->done = false;
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

/* The touch table's keys, as a uuid[] (an array of keys[n], in cxt). */
static Datum
touch_keys(Datum **keys, long *nkeys)
{
	HASH_SEQ_STATUS seq;
	TouchEntry *e;
	long		i = 0;

	*nkeys = hash_get_num_entries(touches);
	*keys = palloc(sizeof(Datum) * Max(*nkeys, 1));
	hash_seq_init(&seq, touches);
	while ((e = hash_seq_search(&seq)) != NULL)
		(*keys)[i++] = UUIDPGetDatum(&e->key_id);
	return PointerGetDatum(construct_array(*keys, *nkeys, UUIDOID,
										   UUID_LEN, false, TYPALIGN_CHAR));
}

/*
 * Lock, without waiting, the rows of the touch table's keys that no other
 * transaction holds.  Returns a table of the ids locked; *gone gets the
 * ids that have no row (deleted keys: nothing to touch).
 */
static HTAB *
lock_touched_rows(List **gone)
{
	Datum	   *keys;
	long		nkeys;
	Datum		arg = touch_keys(&keys, &nkeys);
	HTAB	   *locked = hk_worker_key_table("hokusai_auth touched rows",
											 sizeof(pg_uuid_t), CurrentMemoryContext);
	HTAB	   *exist = hk_worker_key_table("hokusai_auth touched keys",
											sizeof(pg_uuid_t), CurrentMemoryContext);
	int			ret;
	uint64		i;
	bool		isnull;

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
		hash_search(exist, DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i],
													   SPI_tuptable->tupdesc, 1, &isnull)),
					HASH_ENTER, NULL);
	ret = SPI_execute_plan(lock_plan, &arg, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not lock touched keys: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
		hash_search(locked, DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc, 1, &isnull)),
					HASH_ENTER, NULL);
	*gone = NIL;
	for (i = 0; i < (uint64) nkeys; i++)
		if (!hash_search(exist, DatumGetUUIDP(keys[i]), HASH_FIND, NULL))
			*gone = lappend(*gone, DatumGetUUIDP(keys[i]));
	return locked;
}

/*
 * last_used_at for the keys of the touch table whose rows no one else
 * holds: one _usage_touch() call.  The touches applied, and those of keys
 * that no longer exist, leave the table; those of rows another transaction
 * holds (an open update_key(), SELECT ... FOR UPDATE) stay for the next
 * cycle: the worker never waits for a key row.
 */
static void
apply_touches(void)
{
	List	   *gone;
	HTAB	   *locked = lock_touched_rows(&gone);
	long		nkeys = hash_get_num_entries(locked);
	Datum	   *keys = palloc(sizeof(Datum) * Max(nkeys, 1));
	Datum	   *ats = palloc(sizeof(Datum) * Max(nkeys, 1));
	HASH_SEQ_STATUS seq;
	pg_uuid_t  *id;
	ListCell   *lc;
	Datum		args[2];
	int			ret;
	bool		isnull;
	int			i;

	i = 0;
	hash_seq_init(&seq, locked);
	while ((id = hash_seq_search(&seq)) != NULL)
	{
		TouchEntry *e = hash_search(touches, id, HASH_FIND, NULL);

		keys[i] = UUIDPGetDatum(&e->key_id);
		ats[i] = TimestampTzGetDatum(e->at);
		i++;
	}
	if (nkeys > 0)
	{
		args[0] = PointerGetDatum(construct_array(keys, nkeys, UUIDOID,
												  UUID_LEN, false, TYPALIGN_CHAR));
		args[1] = PointerGetDatum(construct_array(ats, nkeys, TIMESTAMPTZOID,
												  sizeof(TimestampTz), FLOAT8PASSBYVAL,
												  TYPALIGN_DOUBLE));
		if (touch_plan == NULL)
		{
			Oid			argtypes[2] = {UUIDARRAYOID, TIMESTAMPTZARRAYOID};

			touch_plan = hk_worker_keep_plan("SELECT " HK_SCHEMA "._usage_touch($1, $2)",
											 2, argtypes);
		}
		ret = SPI_execute_plan(touch_plan, args, NULL, false, 1);
		hk_usage_stat_add(HK_USTAT_KEYS_TOUCHED,
						  DatumGetInt32(hk_worker_one_value(ret, "_usage_touch failed",
															&isnull)));
	}
	/* Done once the transaction commits; the touches of held rows stay. */
	hash_seq_init(&seq, locked);
	while ((id = hash_seq_search(&seq)) != NULL)
		((TouchEntry *) hash_search(touches, id, HASH_FIND, NULL))->done = true;
	foreach(lc, gone)
		((TouchEntry *) hash_search(touches, lfirst(lc), HASH_FIND, NULL))->done = true;
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
