/*-------------------------------------------------------------------------
 *
 * events_step.h
 *	  The worker's events: noted ones into hokusai_auth.events, key.expiring
 *	  notices and retention.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_WORKER_EVENTS_STEP_H
#define HK_WORKER_EVENTS_STEP_H

/* Once, at start: the buffer the notes are copied into. */
extern void hk_worker_events_init(void);

/*
 * Write the notes queued by the request path; on a full cycle, and at most
 * every HK_EVENTS_HOUSEKEEPING_MS, also key.expiring notices and the
 * pruning of events older than hokusai_auth.events_retention.
 */
extern void hk_worker_events(bool full_cycle);

#endif							/* HK_WORKER_EVENTS_STEP_H */
