/*-------------------------------------------------------------------------
 *
 * aggregate.h
 *	  The worker's per-minute and per-hour aggregates of a batch.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_WORKER_AGGREGATE_H
#define HK_WORKER_AGGREGATE_H

#include "usage/usage_queue.h"

/*
 * Count n events (of keys that exist, each with a minute partition) in
 * api_key_usage_minutely, _hourly and _daily: one group per key, minute
 * (hour, day), endpoint and status code, added to the stored row in one
 * upsert per partition.  In the current transaction; memory in
 * CurrentMemoryContext.
 */
extern void hk_worker_write_aggregates(HkUsageEvent **ev, int n);

#endif							/* HK_WORKER_AGGREGATE_H */
