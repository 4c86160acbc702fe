/*-------------------------------------------------------------------------
 *
 * credits_internal.h
 *	  The shared state of the credit balances, for credits.c and
 *	  credits_scan.c only.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_CREDITS_INTERNAL_H
#define HK_CREDITS_INTERNAL_H

#include "postgres.h"

#include "lib/dshash.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "utils/dsa.h"

#include "metering/credits.h"

/*
 * A backend's slot: one cache line each, as every transaction that spends
 * writes its own twice and backends must not contend for the line.
 */
typedef union HkOpenSince
{
	pg_atomic_uint64 since;
	char		pad[PG_CACHE_LINE_SIZE];
} HkOpenSince;

typedef struct HkCreditsShared
{
	LWLock	   *lock;
	int			tranche_id;
	dsa_handle	area_handle;
	dshash_table_handle table_handle;
	pg_atomic_uint64 generation;	/* bumped by every removal */
	pg_atomic_uint64 stats[HK_CSTAT_COUNT];
	int			nslots;
	/* per backend: since when its transaction has spent credits; 0: not */
	HkOpenSince open_since[FLEXIBLE_ARRAY_MEMBER];
} HkCreditsShared;

extern HkCreditsShared *hk_credits_sh;
extern dshash_table *hk_credits_tab;

extern void hk_credits_attach(void);
extern void hk_credit_key(Oid dbid, Oid nspid, const pg_uuid_t *root,
						  HkCreditKey *key);

#endif							/* HK_CREDITS_INTERNAL_H */
