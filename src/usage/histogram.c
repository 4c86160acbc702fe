/*-------------------------------------------------------------------------
 *
 * histogram.c
 *	  Response-time histograms of the usage aggregates
 *	  (api_key_usage_minutely, api_key_usage_hourly): the bucket scheme, a
 *	  sparse histogram for the worker, and the SQL functions that merge,
 *	  sum and read them.
 *
 * Buckets (histogram.h).  Bucket b holds exactly the response time b ms
 * below 32 ms.  Above, each power of two [2^e, 2^(e+1)) is cut into 16
 * buckets of 2^(e-4) ms: bucket (e - 4) * 16 + (v >> (e - 4)).  A bucket is
 * therefore at most 1/16 of its lower bound wide.
 *
 * Stored form.  A bigint[] of (bucket, count) pairs, buckets ascending,
 * empty buckets left out; NULL is the empty histogram.  Minute rows of a
 * busy key hold a handful of pairs.
 *
 * Percentiles.  _hist_percentile(h, p, max) finds the bucket that holds
 * the nearest-rank p-quantile (the value percentile_disc(p) returns over
 * the raw response times) and interpolates inside it, never above max.
 * Estimate and true value lie in the same bucket, so the estimate is exact
 * below 32 ms and less than 1/16 (6.25%) of the true value off above.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "usage/histogram.h"

PG_FUNCTION_INFO_V1(hk_sql_hist_merge);
PG_FUNCTION_INFO_V1(hk_sql_hist_sum_step);
PG_FUNCTION_INFO_V1(hk_sql_hist_of_step);
PG_FUNCTION_INFO_V1(hk_sql_hist_final);
PG_FUNCTION_INFO_V1(hk_sql_hist_percentile);

/* The response times of bucket b: [*lo, *hi). */
void
hk_hist_bucket_range(int b, int64 *lo, int64 *hi)
{
	int			shift;
	int64		mant;

	if (b < 32)
	{
		*lo = b;
		*hi = b + 1;
		return;
	}
	shift = b / 16 - 1;
	mant = b - 16 * shift;		/* 16 .. 31 */
	*lo = mant << shift;
	*hi = (mant + 1) << shift;
}

/*
 * Add count to bucket b, keeping the pairs in bucket order: the last pair
 * first (pairs merged in order append there), else a binary search.
 */
void
hk_hist_add(HkHist *h, int b, int64 count)
{
	int			lo = 0;
	int			hi = h->npairs;

	if (hi > 0 && h->pairs[hi - 1].bucket <= b)
		lo = h->pairs[hi - 1].bucket == b ? hi - 1 : hi;
	else
	{
		while (lo < hi)
		{
			int			mid = (lo + hi) / 2;

			if (h->pairs[mid].bucket < b)
				lo = mid + 1;
			else
				hi = mid;
		}
	}
	if (lo < h->npairs && h->pairs[lo].bucket == b)
	{
		h->pairs[lo].count += count;
		return;
	}
	if (h->npairs == h->cap)
	{
		h->cap = h->cap == 0 ? 8 : h->cap * 2;
		h->pairs = h->pairs == NULL ? palloc(sizeof(HkHistPair) * h->cap) :
			repalloc(h->pairs, sizeof(HkHistPair) * h->cap);
	}
	/* insert at lo */
	memmove(&h->pairs[lo + 1], &h->pairs[lo], sizeof(HkHistPair) * (h->npairs - lo));
	h->pairs[lo].bucket = b;
	h->pairs[lo].count = count;
	h->npairs++;
}

/* A bigint[] from n int64 values. */
static Datum
int8_array(const int64 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * n);
	int			i;

	for (i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, sizeof(int64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* The histogram as SQL stores it: a bigint[] of pairs (npairs > 0). */
Datum
hk_hist_datum(const HkHist *h)
{
	int64	   *v = palloc(sizeof(int64) * 2 * h->npairs);
	int			i;

	for (i = 0; i < h->npairs; i++)
	{
		v[2 * i] = h->pairs[i].bucket;
		v[2 * i + 1] = h->pairs[i].count;
	}
	return int8_array(v, 2 * h->npairs);
}

/*
 * Add a stored histogram into dense counts (HK_HIST_BUCKETS of them).  A
 * value that is not one is an error, not a silent miscount.
 */
static void
add_stored(int64 *dense, ArrayType *a)
{
	int64	   *v;
	int			n;
	int			i;

	if (ARR_NDIM(a) == 0)
		return;
	if (ARR_NDIM(a) != 1 || ARR_HASNULL(a) || ARR_ELEMTYPE(a) != INT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("malformed latency histogram"),
				 errdetail("A histogram is a one-dimensional bigint[] of (bucket, count) pairs.")));
	n = ARR_DIMS(a)[0];
	v = (int64 *) ((char *) a + ARR_OVERHEAD_NONULLS(1));	/* no NULLs: checked */
	if (n % 2 != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("malformed latency histogram"),
				 errdetail("It has an odd number of elements.")));
	for (i = 0; i < n; i += 2)
	{
		if (v[i] < 0 || v[i] >= HK_HIST_BUCKETS || v[i + 1] < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("malformed latency histogram"),
					 errdetail("Bucket %lld with count %lld is out of range.",
							   (long long) v[i], (long long) v[i + 1])));
		dense[v[i]] += v[i + 1];
	}
}

/* Dense counts as the stored form; NULL when all are zero. */
static Datum
dense_datum(const int64 *dense, bool *isnull)
{
	int64		v[2 * HK_HIST_BUCKETS];
	int			n = 0;
	int			b;

	for (b = 0; b < HK_HIST_BUCKETS; b++)
	{
		if (dense[b] == 0)
			continue;
		v[n++] = b;
		v[n++] = dense[b];
	}
	*isnull = n == 0;
	return n == 0 ? (Datum) 0 : int8_array(v, n);
}

/* hokusai_auth._hist_merge(a bigint[], b bigint[]) returns bigint[] */
Datum
hk_sql_hist_merge(PG_FUNCTION_ARGS)
{
	int64		dense[HK_HIST_BUCKETS];
	bool		isnull;
	Datum		result;

	memset(dense, 0, sizeof(dense));
	if (!PG_ARGISNULL(0))
		add_stored(dense, PG_GETARG_ARRAYTYPE_P(0));
	if (!PG_ARGISNULL(1))
		add_stored(dense, PG_GETARG_ARRAYTYPE_P(1));
	result = dense_datum(dense, &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/* The aggregates' state: dense counts in the aggregate's memory. */
static int64 *
agg_state(FunctionCallInfo fcinfo)
{
	MemoryContext aggcxt;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "histogram aggregate called in a non-aggregate context");
	if (!PG_ARGISNULL(0))
		return (int64 *) PG_GETARG_POINTER(0);
	return MemoryContextAllocZero(aggcxt, sizeof(int64) * HK_HIST_BUCKETS);
}

/* _hist_sum(bigint[]): one more histogram */
Datum
hk_sql_hist_sum_step(PG_FUNCTION_ARGS)
{
	int64	   *dense = agg_state(fcinfo);

	if (!PG_ARGISNULL(1))
		add_stored(dense, PG_GETARG_ARRAYTYPE_P(1));
	PG_RETURN_POINTER(dense);
}

/* _hist_of(integer): one more response time (NULL: none) */
Datum
hk_sql_hist_of_step(PG_FUNCTION_ARGS)
{
	int64	   *dense = agg_state(fcinfo);

	if (!PG_ARGISNULL(1))
		dense[hk_hist_bucket(PG_GETARG_INT32(1))]++;
	PG_RETURN_POINTER(dense);
}

/* Both aggregates: the stored form, NULL when empty. */
Datum
hk_sql_hist_final(PG_FUNCTION_ARGS)
{
	bool		isnull;
	Datum		result;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	result = dense_datum((int64 *) PG_GETARG_POINTER(0), &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * hokusai_auth._hist_percentile(h bigint[], p double precision,
 *		max_ms integer) returns numeric
 *
 * The p-quantile (see the banner), rounded to 0.1 ms; NULL for an empty
 * histogram.
 */
Datum
hk_sql_hist_percentile(PG_FUNCTION_ARGS)
{
	int64		dense[HK_HIST_BUCKETS];
	double		p;
	double		total = 0;
	double		rank;
	double		cum = 0;
	double		est = 0;
	bool		found = false;
	int			b;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	p = PG_GETARG_FLOAT8(1);
	if (p < 0 || p > 1 || isnan(p))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("percentile must be between 0 and 1")));
	memset(dense, 0, sizeof(dense));
	add_stored(dense, PG_GETARG_ARRAYTYPE_P(0));
	for (b = 0; b < HK_HIST_BUCKETS; b++)
		total += dense[b];
	if (total == 0)
		PG_RETURN_NULL();

	rank = p * total;
	for (b = 0; b < HK_HIST_BUCKETS; b++)
	{
		int64		lo;
		int64		hi;

		if (dense[b] == 0)
			continue;
		if (cum + dense[b] >= rank)
		{
			/* integer response times: the bucket holds lo .. hi - 1 */
			hk_hist_bucket_range(b, &lo, &hi);
			est = lo + (double) (hi - 1 - lo) * (rank - cum) / dense[b];
			if (!PG_ARGISNULL(2) && est > PG_GETARG_INT32(2))
				est = Max((double) PG_GETARG_INT32(2), (double) lo);
			found = true;
			break;
		}
		cum += dense[b];
	}
	if (!found)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(DirectFunctionCall2(numeric_round,
										DirectFunctionCall1(float8_numeric, Float8GetDatum(est)),
										Int32GetDatum(1)));
}
