/*-------------------------------------------------------------------------
 *
 * flush.h
 *	  The worker's batches: queued usage events into the usage tables.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_WORKER_FLUSH_H
#define HK_WORKER_FLUSH_H

/* Once, at start: the buffer the batches are copied into. */
extern void hk_worker_flush_init(void);

/*
 * Write the events that were queued when this began, in batches (memory in
 * a child of cxt), until one fails or yields.
 */
extern void hk_worker_flush_events(MemoryContext cxt);

#endif							/* HK_WORKER_FLUSH_H */
