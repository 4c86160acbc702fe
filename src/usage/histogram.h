/*-------------------------------------------------------------------------
 *
 * histogram.h
 *	  Response-time histograms of the usage aggregates: the bucket scheme
 *	  and a small sparse histogram the worker builds.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_USAGE_HISTOGRAM_H
#define HK_USAGE_HISTOGRAM_H

#include "postgres.h"

/*
 * Buckets: v ms falls in bucket v below 32; above, 16 buckets per power of
 * two, so a bucket is at most 1/16 of its lower bound wide.  448 buckets
 * cover 0 .. 2^31 - 1 ms.
 */
#define HK_HIST_BUCKETS		448

/* The bucket of a response time (negative counts as 0). */
static inline int
hk_hist_bucket(int32 ms)
{
	int			e;

	if (ms < 32)
		return ms < 0 ? 0 : ms;
	e = 31 - __builtin_clz((uint32) ms);	/* 5 .. 30 */
	return (e - 4) * 16 + (ms >> (e - 4));
}

/* The response times of bucket b: [*lo, *hi). */
extern void hk_hist_bucket_range(int b, int64 *lo, int64 *hi);

/* A sparse histogram: (bucket, count) pairs, buckets ascending. */
typedef struct HkHistPair
{
	int32		bucket;
	int64		count;
} HkHistPair;

typedef struct HkHist
{
	int			npairs;
	int			cap;
	HkHistPair *pairs;			/* in CurrentMemoryContext at first add */
} HkHist;

/* Add count to bucket b. */
extern void hk_hist_add(HkHist *h, int b, int64 count);

/* The histogram as SQL stores it: a bigint[] of pairs (npairs > 0). */
extern Datum hk_hist_datum(const HkHist *h);

#endif							/* HK_USAGE_HISTOGRAM_H */
