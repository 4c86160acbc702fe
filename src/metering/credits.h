/*-------------------------------------------------------------------------
 *
 * credits.h
 *	  Credit balances in shared memory: the live balance of every metered
 *	  key in use, written back to api_keys by the background worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_CREDITS_H
#define HK_CREDITS_H

#include "postgres.h"

#include "utils/uuid.h"

#include "metering/balance.h"

/* A balance is identified by database, schema and the key that owns it. */
typedef struct HkCreditKey
{
	Oid			dbid;
	Oid			nspid;			/* this database's hokusai_auth schema */
	pg_uuid_t	key_id;			/* the balance's key (api_keys.credits_key_id,
								 * else the key itself) */
} HkCreditKey;

/* One live balance (see credits.c for who may touch what, and when). */
typedef struct HkCreditEntry
{
	HkCreditKey key;
	HkBalance	b;
	uint64		version;		/* bumped by every change of b */
	uint64		flushed;		/* the version the table has */
	TimestampTz changed_at;
	int32		pins;			/* add_credits() calls in progress */
	uint64		charged;		/* calls that spent, since loaded */
	uint64		spent;			/* credits they spent */
	/* On a hot standby: the row as last read (hk_credits_replica_sync()). */
	int64		row_balance;
	TimestampTz row_refilled_at;
} HkCreditEntry;

/* Counters of credits_stats(). */
typedef enum HkCreditStat
{
	HK_CSTAT_CHARGED,			/* calls that spent credits (with the
								 * entries' own counts) */
	HK_CSTAT_SPENT,				/* credits spent (the same) */
	HK_CSTAT_REFUSED,			/* calls refused as credits_exhausted */
	HK_CSTAT_GIVEN_BACK,		/* credits given back at abort */
	HK_CSTAT_REFILLS,			/* refills applied */
	HK_CSTAT_ADDED,				/* add_credits() changes applied */
	HK_CSTAT_LOW,				/* crossings of 10% */
	HK_CSTAT_EXHAUSTED,			/* crossings of zero */
	HK_CSTAT_LOADED,			/* balances read from the table */
	HK_CSTAT_WRITTEN,			/* balances written back */
	HK_CSTAT_SWEPT,				/* idle balances dropped from memory */
	HK_CSTAT_COUNT
} HkCreditStat;

/* Shared memory set-up (shmem.c). */
extern void hk_credits_shmem_request(void);
extern void hk_credits_shmem_startup(void);

/* Hot path (ratelimit/admit.c): load first, then lock with nothing held
 * but the limiter's partition locks. */
extern bool hk_credits_ensure(const pg_uuid_t *root);
extern HkCreditEntry *hk_credits_lock(const pg_uuid_t *root);
extern void hk_credits_unlock(HkCreditEntry *e);
extern void hk_credits_changed(HkCreditEntry *e, TimestampTz now);
extern void hk_credits_stat_add(HkCreditStat s, uint64 n);
extern uint64 hk_credits_stat(HkCreditStat s);
extern void hk_credits_entry_counts(uint64 *charged, uint64 *spent);

/*
 * Transactions (credits_xact.c).  What runs at commit or abort names the
 * balance by its whole key: no catalog lookup is allowed there.
 */
extern void hk_credits_key_of(const pg_uuid_t *root, HkCreditKey *key);
extern void hk_credits_give_back(const HkCreditKey *key, int64 amount, uint32 seq);
extern uint8 hk_credits_crossings_held(const HkCreditKey *key, const HkRefill *r,
									   uint8 crossed, int64 *balance);
extern bool hk_credits_pin(const pg_uuid_t *root, const HkRefill *r,
						   HkBalance *b);
extern int64 hk_credits_adjust(const HkCreditKey *key, int64 delta,
							   const HkRefill *r);
extern void hk_credits_note_crossings(uint8 crossed, const pg_uuid_t *key_id,
									  const pg_uuid_t *user_id, int64 balance);
extern void hk_credits_replica_sync(const pg_uuid_t *root);
extern void hk_credits_unpin(const HkCreditKey *key);
extern void hk_credits_set(const HkCreditKey *key, int64 balance, const HkRefill *r,
						   TimestampTz refilled_at, HkBalance *prev, bool *existed);
extern void hk_credits_restore(const HkCreditKey *key, const HkBalance *prev,
							   bool existed);
extern void hk_credits_remove(const HkCreditKey *key);
extern void hk_credits_open_spend(TimestampTz since);
extern void hk_credits_close_spend(void);

/* SQL (credits_sql.c). */
extern bool hk_credits_status(const pg_uuid_t *root, const HkRefill *r,
							  HkBalance *b);
extern int64 hk_credits_count_entries(void);

/* Write-back (worker/credits_writer.c). */
extern bool hk_credits_exist(void);
extern Oid	hk_credits_nspid(void);
extern int	hk_credits_dirty(Oid dbid, Oid nspid, pg_uuid_t *roots, int max);
extern bool hk_credits_snapshot(Oid dbid, Oid nspid, const pg_uuid_t *root,
								int64 *balance, TimestampTz *refilled_at,
								uint64 *version);
extern void hk_credits_flushed(Oid dbid, Oid nspid, const pg_uuid_t *root,
							   uint64 version);
extern int64 hk_credits_sweep(Oid dbid, Oid nspid, TimestampTz now);

#endif							/* HK_CREDITS_H */
