/*-------------------------------------------------------------------------
 *
 * credits_writer.c
 *	  The background worker's write-back of credit balances: the live
 *	  balance and refill time of every balance changed in shared memory
 *	  since its last write-back (metering/credits.c), written to
 *	  api_keys.credits_remaining and credits_refilled_at.
 *
 * Each cycle takes the changed balances of the worker's database in
 * batches of up to HK_CREDITS_BATCH, one transaction each (begun as
 * locks.c says: every relation lock up front, without waiting):
 *
 *	1. lock, without waiting (FOR NO KEY UPDATE SKIP LOCKED), the rows that
 *	   show each balance: the key that owns it and the keys that share it
 *	   (credits_key_id, made by rotate_key()).  A balance with a row that
 *	   another transaction holds (add_credits() in progress, an update_key()
 *	   left idle in its transaction) is skipped this cycle: the worker never
 *	   waits for a row lock here, so an idle transaction can delay one key's
 *	   write-back but not stop the others or the worker;
 *	2. copy each such balance from shared memory, after its rows are
 *	   locked: add_credits() applies its change before it commits, while it
 *	   holds the row, so the copy includes every committed add;
 *	3. one UPDATE of every locked row to the absolute values;
 *	4. after the commit, record the version written; a balance changed
 *	   meanwhile stays due.
 *
 * A balance whose rows are all gone (key deleted, table truncated) is
 * recorded as written: there is nothing to write it to.  Then idle balances
 * leave memory (hk_credits_sweep()).
 *
 * A crash loses the changes since the last write-back: with the default
 * flush_interval, at most about one second of spending (docs/metering.md).
 * At a clean shutdown the worker waits for the other sessions of its
 * database to end before its last cycle (worker.c), so nothing is lost.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "metering/credits.h"
#include "worker/credits_writer.h"
#include "worker/housekeeping.h"
#include "worker/locks.h"

#define HK_CREDITS_BATCH	4096

/* A balance of the batch: its rows, how many of them are locked. */
typedef struct BalanceRows
{
	pg_uuid_t	root;
	int64		total;			/* rows that show it */
	int64		locked;			/* of those, locked by us */
	bool		copied;
	int64		balance;
	TimestampTz refilled_at;
	uint64		version;
} BalanceRows;

static SPIPlanPtr count_plan = NULL;
static SPIPlanPtr lock_plan = NULL;
static SPIPlanPtr write_plan = NULL;

/* The rows of the batch's balances, counted without locking anything. */
static void
count_rows(Datum roots, HTAB *balances)
{
	int			ret;
	uint64		i;

	if (count_plan == NULL)
	{
		Oid			argtypes[1] = {UUIDARRAYOID};

		count_plan = hk_worker_keep_plan(
			"SELECT coalesce(a.credits_key_id, a.id), pg_catalog.count(*)"
			"  FROM " HK_SCHEMA ".api_keys a"
			" WHERE a.id OPERATOR(pg_catalog.=) ANY ($1)"
			"    OR a.credits_key_id OPERATOR(pg_catalog.=) ANY ($1)"
			" GROUP BY 1", 1, argtypes);
	}
	ret = SPI_execute_plan(count_plan, &roots, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not count credit rows: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[i];
		BalanceRows *b = hash_search(balances,
									 DatumGetUUIDP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull)),
									 HASH_FIND, NULL);

		if (b != NULL)
			b->total = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
	}
}

/*
 * Lock the rows of the batch's balances that no one else holds; returns
 * their ids (in *ids) and owners (in *owners).  Never waits.
 */
static int
lock_rows(Datum roots, HTAB *balances, Datum **ids, pg_uuid_t **owners)
{
	int			ret;
	uint64		i;

	if (lock_plan == NULL)
	{
		Oid			argtypes[1] = {UUIDARRAYOID};

		lock_plan = hk_worker_keep_plan(
			"SELECT a.id, coalesce(a.credits_key_id, a.id)"
			"  FROM " HK_SCHEMA ".api_keys a"
			" WHERE a.id OPERATOR(pg_catalog.=) ANY ($1)"
			"    OR a.credits_key_id OPERATOR(pg_catalog.=) ANY ($1)"
			"   FOR NO KEY UPDATE OF a SKIP LOCKED", 1, argtypes);
	}
	ret = SPI_execute_plan(lock_plan, &roots, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not lock credit rows: %s", SPI_result_code_string(ret));
	*ids = palloc(sizeof(Datum) * Max(SPI_processed, 1));
	*owners = palloc(sizeof(pg_uuid_t) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[i];
		pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));
		BalanceRows *b;

		memcpy(id, DatumGetUUIDP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull)),
			   sizeof(pg_uuid_t));
		memcpy(&(*owners)[i], DatumGetUUIDP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull)),
			   sizeof(pg_uuid_t));
		(*ids)[i] = UUIDPGetDatum(id);
		b = hash_search(balances, &(*owners)[i], HASH_FIND, NULL);
		if (b != NULL)
			b->locked++;
	}
	return (int) SPI_processed;
}

/* One UPDATE of the locked rows of fully locked balances. */
static void
write_rows(Datum *ids, pg_uuid_t *owners, int nrows, HTAB *balances)
{
	Datum	   *wid = palloc(sizeof(Datum) * Max(nrows, 1));
	Datum	   *wbal = palloc(sizeof(Datum) * Max(nrows, 1));
	Datum	   *wref = palloc(sizeof(Datum) * Max(nrows, 1));
	bool	   *refnull = palloc(sizeof(bool) * Max(nrows, 1));
	int			dims[1];
	int			lbs[1] = {1};
	Datum		args[3];
	int			n = 0;
	int			ret;
	int			i;

	for (i = 0; i < nrows; i++)
	{
		BalanceRows *b = hash_search(balances, &owners[i], HASH_FIND, NULL);

		if (b == NULL || !b->copied)
			continue;
		wid[n] = ids[i];
		wbal[n] = Int64GetDatum(b->balance);
		wref[n] = TimestampTzGetDatum(b->refilled_at);
		refnull[n] = b->refilled_at == 0;
		n++;
	}
	if (n == 0)
		return;
	dims[0] = n;
	args[0] = PointerGetDatum(construct_array(wid, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	args[1] = PointerGetDatum(construct_array(wbal, n, INT8OID, sizeof(int64),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = PointerGetDatum(construct_md_array(wref, refnull, 1, dims, lbs, TIMESTAMPTZOID,
												 sizeof(TimestampTz), FLOAT8PASSBYVAL,
												 TYPALIGN_DOUBLE));
	if (write_plan == NULL)
	{
		Oid			argtypes[3] = {UUIDARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID};

		write_plan = hk_worker_keep_plan(
			"UPDATE " HK_SCHEMA ".api_keys a"
			"   SET credits_remaining = d.balance, credits_refilled_at = d.refilled_at"
			"  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
			"                 pg_catalog.unnest($3)) AS d(id, balance, refilled_at)"
			" WHERE a.id OPERATOR(pg_catalog.=) d.id"
			/* Made unmetered by update_key() just before we locked it. */
			"   AND a.credits_remaining IS NOT NULL", 3, argtypes);
	}
	ret = SPI_execute_plan(write_plan, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not write credit balances: %s", SPI_result_code_string(ret));
}

/*
 * Write one batch of balances in one transaction; returns how many were
 * written (and recorded as such), -1 when it yielded.
 */
static int64
write_batch(Oid nspid, pg_uuid_t *roots, int n)
{
	HTAB	   *balances = hk_worker_key_table("hokusai_auth credit balances",
											   sizeof(BalanceRows), CurrentMemoryContext);
	Datum	   *rootd = palloc(sizeof(Datum) * n);
	Datum		arg;
	Datum	   *ids;
	pg_uuid_t  *owners;
	HASH_SEQ_STATUS seq;
	BalanceRows *b;
	int			nrows;
	int64		written = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		b = hash_search(balances, &roots[i], HASH_ENTER, NULL);
		b->total = b->locked = 0;
		b->copied = false;
		rootd[i] = UUIDPGetDatum(&roots[i]);
	}
	arg = PointerGetDatum(construct_array(rootd, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));

	if (!hk_worker_begin_xact("hokusai_auth: writing credit balances"))
		return -1;
	count_rows(arg, balances);
	nrows = lock_rows(arg, balances, &ids, &owners);
	hash_seq_init(&seq, balances);
	while ((b = hash_seq_search(&seq)) != NULL)
	{
		/* Every row locked (or none left): copy after the locks. */
		if (b->locked == b->total &&
			hk_credits_snapshot(MyDatabaseId, nspid, &b->root, &b->balance,
								&b->refilled_at, &b->version))
		{
			b->copied = true;
			written++;
		}
	}
	write_rows(ids, owners, nrows, balances);
	hk_worker_end_xact();

	hash_seq_init(&seq, balances);
	while ((b = hash_seq_search(&seq)) != NULL)
		if (b->copied)
			hk_credits_flushed(MyDatabaseId, nspid, &b->root, b->version);
	hk_credits_stat_add(HK_CSTAT_WRITTEN, written);
	return written;
}

/* Write back the changed balances of this database, then sweep. */
void
hk_worker_write_credits(MemoryContext cxt)
{
	MemoryContext batch_cxt;
	pg_uuid_t  *roots;
	Oid			nspid = InvalidOid;
	int			rounds = 0;

	if (!hk_credits_exist())
		return;
	batch_cxt = AllocSetContextCreate(cxt, "hokusai_auth worker credits",
									  ALLOCSET_DEFAULT_SIZES);
	roots = MemoryContextAlloc(cxt, sizeof(pg_uuid_t) * HK_CREDITS_BATCH);

	/* The schema's oid needs a transaction; the worker checked it exists. */
	StartTransactionCommand();
	nspid = hk_credits_nspid();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);

	/*
	 * Batch after batch while they are full and make progress; balances
	 * skipped (rows locked) or changed meanwhile wait for the next cycle.
	 */
	while (rounds++ < 64)
	{
		MemoryContext old;
		int64		written;
		int			n = hk_credits_dirty(MyDatabaseId, nspid, roots, HK_CREDITS_BATCH);

		if (n == 0)
			break;
		old = MemoryContextSwitchTo(batch_cxt);
		written = write_batch(nspid, roots, n);
		MemoryContextSwitchTo(old);
		MemoryContextReset(batch_cxt);
		if (written <= 0 || n < HK_CREDITS_BATCH)
			break;
	}
	(void) hk_credits_sweep(MyDatabaseId, nspid, GetCurrentTimestamp());
	MemoryContextDelete(batch_cxt);
}
