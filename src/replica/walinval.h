/*-------------------------------------------------------------------------
 *
 * walinval.h
 *	  Applying, on a hot standby, the cache invalidations that the primary's
 *	  commits carry in the WAL.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_WALINVAL_H
#define HK_WALINVAL_H

#include "postgres.h"

#include "access/xlog.h"
#include "utils/inval.h"

/* Shared memory (shmem.c) and per-backend set-up (_PG_init). */
extern Size hk_walinval_shmem_size(void);
extern void hk_walinval_shmem_request(void);
extern void hk_walinval_shmem_startup(void);
extern void hk_walinval_init(void);

/* This backend may have to read the invalidation log before using the cache. */
extern PGDLLIMPORT bool hk_walinval_pending;
extern void hk_walinval_catch_up(void);

/* Counters for replica_stats(). */
typedef enum HkWalinvalStat
{
	HK_WSTAT_PASSES,			/* reads of the invalidation log */
	HK_WSTAT_APPLIED,			/* keys and users cleared from those rows */
	HK_WSTAT_CLEARED_ALL,		/* times a database's entries were all cleared */
	HK_NUM_WSTATS
} HkWalinvalStat;
extern uint64 hk_walinval_stat(HkWalinvalStat which);

/*
 * Before each use of the cache: on a standby, take in the invalidation
 * messages replay has sent (even inside a transaction, so a key revoked on
 * the primary is refused from the moment its commit has replayed), then,
 * when one concerned the invalidation log, read the log.  On a primary this
 * is two tests of backend-local flags.
 */
static inline void
hk_walinval_sync(void)
{
	if (RecoveryInProgress())
		AcceptInvalidationMessages();
	if (unlikely(hk_walinval_pending))
		hk_walinval_catch_up();
}

#endif							/* HK_WALINVAL_H */
