/*-------------------------------------------------------------------------
 *
 * locks.h
 *	  The worker's transactions on the extension's tables: the extension
 *	  check, every relation lock taken up front without waiting, yields,
 *	  prepared statements and their one-value results.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_WORKER_LOCKS_H
#define HK_WORKER_LOCKS_H

#include "executor/spi.h"

/*
 * Is hokusai_auth, with the functions the worker calls, installed here?
 * *can_seal says whether it has seal_audit_log() (1.5 and later).
 */
extern bool hk_worker_extension_ready(bool *can_seal);

/* Its usage tables are 1.6's (else write through 1.5's _usage_flush()). */
extern bool hk_worker_usage_is_partitioned(void);

/*
 * Begin a transaction that reads or writes the extension's tables, its
 * locks all taken; false (no transaction open, the yield noted) when one is
 * not available or the extension has gone.
 */
extern bool hk_worker_begin_xact(const char *activity);
extern void hk_worker_end_xact(void);

/*
 * Lock a usage partition (with its indexes) in that transaction, without
 * waiting; false when a lock is not available (the caller yields).
 */
extern bool hk_worker_lock_partition(Oid relid);

/* A cycle's work waits for the next cycle, for this reason. */
extern void hk_worker_yield(const char *reason);

/* ... because hk_worker_lock_partition() could not take a lock. */
extern void hk_worker_yield_for_lock(void);

/* Around each cycle: a cycle that did not yield ends a logged wait. */
extern void hk_worker_yields_start_cycle(void);
extern void hk_worker_yields_end_cycle(void);

/*
 * Run fn(arg) in a subtransaction of the transaction in progress: NULL when
 * it succeeded (its work is then its parent's), else the error it raised,
 * copied into the caller's memory context, with the subtransaction rolled
 * back.
 */
extern ErrorData *hk_worker_subxact(void (*fn) (void *arg), void *arg);

/* Prepare a statement once; its plan is kept for the worker's life. */
extern SPIPlanPtr hk_worker_keep_plan(const char *query, int nargs, Oid *argtypes);

/*
 * The first column of the one row a SELECT returned (ret is what SPI said);
 * anything else is an error "<failure>: <SPI result>".
 */
extern Datum hk_worker_one_value(int ret, const char *failure, bool *isnull);

#endif							/* HK_WORKER_LOCKS_H */
