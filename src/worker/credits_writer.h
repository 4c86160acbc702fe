/*-------------------------------------------------------------------------
 *
 * credits_writer.h
 *	  The worker's write-back of live credit balances to api_keys.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_WORKER_CREDITS_WRITER_H
#define HK_WORKER_CREDITS_WRITER_H

#include "postgres.h"

/*
 * Write the balances changed since their last write-back, in batches (each
 * one transaction begun as locks.c says, memory in a child of cxt), then
 * drop idle balances from memory.
 */
extern void hk_worker_write_credits(MemoryContext cxt);

#endif							/* HK_WORKER_CREDITS_WRITER_H */
