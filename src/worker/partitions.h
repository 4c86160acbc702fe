/*-------------------------------------------------------------------------
 *
 * partitions.h
 *	  The worker's side of the usage partitions: routing a batch's events
 *	  to them, and making them ahead.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_WORKER_PARTITIONS_H
#define HK_WORKER_PARTITIONS_H

#include "usage/usage_queue.h"

/* Where each event of a batch goes; InvalidOid: nowhere. */
typedef struct HkRoute
{
	Oid			minute_part;	/* api_key_usage_minutely's partition */
	Oid			hour_part;		/* api_key_usage_hourly's */
	Oid			day_part;		/* api_key_usage_daily's */
	Oid			raw_part;		/* api_key_usage's, for events sampled */
} HkRoute;

/*
 * Route n events (in a transaction begun by hk_worker_begin_xact()):
 * route[i] for ev[i], the raw row drawn with probability
 * hokusai_auth.usage_raw_sample; then lock every partition named, without
 * waiting.  False, the yield noted, when a lock was not available or a
 * partition for the last hour is not made yet (the caller ends the
 * transaction: the batch waits for the next cycle).
 */
extern bool hk_worker_route_events(HkUsageEvent **ev, int n, HkRoute *route);

/*
 * Make the partitions of today and the next days (create_usage_partitions())
 * when due: at the first cycle, then every hour, and a minute after a try
 * that could not make them all.  Its own transaction.
 */
extern void hk_worker_make_partitions(void);

#endif							/* HK_WORKER_PARTITIONS_H */
