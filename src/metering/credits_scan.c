/*-------------------------------------------------------------------------
 *
 * credits_scan.c
 *	  Whole-table passes over the credit balances in shared memory: what
 *	  the write-back needs (dirty balances, their values, marking them
 *	  written), the sweep, and counting.
 *
 * The rules of credits.c apply: one partition lock at a time (a scan holds
 * each partition's lock while it visits that partition), nothing else held.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/dshash.h"
#include "port/atomics.h"
#include "utils/timestamp.h"

#include "metering/credits.h"
#include "metering/credits_internal.h"

/* Balances unchanged for this long (and written back) may leave memory. */
#define HK_CREDITS_IDLE		(10 * 60 * USECS_PER_SEC)

/* The calls and credits spent counted in the entries in memory. */
void
hk_credits_entry_counts(uint64 *charged, uint64 *spent)
{
	dshash_seq_status status;
	HkCreditEntry *e;

	*charged = *spent = 0;
	hk_credits_attach();
	dshash_seq_init(&status, hk_credits_tab, false);
	while ((e = dshash_seq_next(&status)) != NULL)
	{
		*charged += e->charged;
		*spent += e->spent;
	}
	dshash_seq_term(&status);
}

/* How many balances are in memory, in every database. */
int64
hk_credits_count_entries(void)
{
	dshash_seq_status status;
	int64		n = 0;

	hk_credits_attach();
	dshash_seq_init(&status, hk_credits_tab, false);
	while (dshash_seq_next(&status) != NULL)
		n++;
	dshash_seq_term(&status);
	return n;
}

/* Up to max balances of a database's schema not yet written back. */
int
hk_credits_dirty(Oid dbid, Oid nspid, pg_uuid_t *roots, int max)
{
	dshash_seq_status status;
	HkCreditEntry *e;
	int			n = 0;

	hk_credits_attach();
	dshash_seq_init(&status, hk_credits_tab, false);
	while (n < max && (e = dshash_seq_next(&status)) != NULL)
	{
		if (e->key.dbid == dbid && e->key.nspid == nspid && e->version != e->flushed)
			roots[n++] = e->key.key_id;
	}
	dshash_seq_term(&status);
	return n;
}

/* Copy what the write-back writes; false when the balance is not in memory. */
bool
hk_credits_snapshot(Oid dbid, Oid nspid, const pg_uuid_t *root,
					int64 *balance, TimestampTz *refilled_at, uint64 *version)
{
	HkCreditKey key;
	HkCreditEntry *e;

	hk_credits_attach();
	hk_credit_key(dbid, nspid, root, &key);
	e = dshash_find(hk_credits_tab, &key, false);
	if (e == NULL)
		return false;
	*balance = e->b.balance;
	*refilled_at = e->b.refilled_at;
	*version = e->version;
	dshash_release_lock(hk_credits_tab, e);
	return true;
}

/* The write-back of version has committed. */
void
hk_credits_flushed(Oid dbid, Oid nspid, const pg_uuid_t *root, uint64 version)
{
	HkCreditKey key;
	HkCreditEntry *e;

	hk_credits_attach();
	hk_credit_key(dbid, nspid, root, &key);
	e = dshash_find(hk_credits_tab, &key, true);
	if (e == NULL)
		return;
	if (version > e->flushed)
		e->flushed = version;
	dshash_release_lock(hk_credits_tab, e);
}

/* The oldest open_since of a transaction that has spent credits; now if none. */
static TimestampTz
oldest_open_spend(TimestampTz now)
{
	TimestampTz oldest = now;
	int			i;

	for (i = 0; i < hk_credits_sh->nslots; i++)
	{
		uint64		since = pg_atomic_read_u64(&hk_credits_sh->open_since[i].since);

		if (since != 0 && (TimestampTz) since < oldest)
			oldest = (TimestampTz) since;
	}
	return oldest;
}

/*
 * Remove the balances of a database that may leave memory (see "Sweep" in
 * credits.c): those of its current schema that are written back, unpinned
 * and idle, and all of those of a schema that is gone.  Returns how many.
 */
int64
hk_credits_sweep(Oid dbid, Oid nspid, TimestampTz now)
{
	dshash_seq_status status;
	HkCreditEntry *e;
	TimestampTz before = Min(now - HK_CREDITS_IDLE, oldest_open_spend(now));
	int64		removed = 0;

	hk_credits_attach();
	dshash_seq_init(&status, hk_credits_tab, true);
	while ((e = dshash_seq_next(&status)) != NULL)
	{
		if (e->key.dbid != dbid)
			continue;
		if (e->key.nspid == nspid &&
			(e->version != e->flushed || e->pins > 0 || e->changed_at >= before))
			continue;
		pg_atomic_fetch_add_u64(&hk_credits_sh->stats[HK_CSTAT_CHARGED], e->charged);
		pg_atomic_fetch_add_u64(&hk_credits_sh->stats[HK_CSTAT_SPENT], e->spent);
		dshash_delete_current(&status);
		/* Under the partition lock: see "Loading" in credits.c. */
		pg_atomic_fetch_add_u64(&hk_credits_sh->generation, 1);
		removed++;
	}
	dshash_seq_term(&status);
	pg_atomic_fetch_add_u64(&hk_credits_sh->stats[HK_CSTAT_SWEPT], removed);
	return removed;
}
