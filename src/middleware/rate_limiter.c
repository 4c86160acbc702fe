/*-------------------------------------------------------------------------
 *
 * rate_limiter.c
 *	  Sliding-window rate limits per key: an hourly quota over any rolling
 *	  3600 seconds and a burst limit over any rolling second.
 *
 * The algorithm.  Each window (3600 s, 1 s) is cut into 60 sub-buckets and
 * a key keeps a ring of 61 counts per window: the current sub-bucket and
 * the 60 before it.  A request is admitted when the sum of the ring is
 * below the limit.  The ring always covers the whole rolling window ending
 * now, plus at most one sub-bucket of older requests, so the limiter never
 * admits more than the limit in any rolling window, and it may refuse early
 * by at most one sub-bucket (1/60 of the window).  Rejected requests are
 * not counted.  hk_limiter_decide() is pure: the same code runs on shared
 * entries and, for tests, on replayed timestamps (_rate_limit_replay()).
 *
 * Storage.  Entries live in a dshash table in a DSA area, so memory
 * follows the keys in use, not all keys.  The area and the table are
 * created by the first backend that needs them; their handles sit in a
 * small fixed struct in the main shared memory.  An entry is created on a
 * key's first request and removed by a periodic sweep once all its counts
 * have left both windows.  State starts empty at every server start.
 *
 * Locking rules:
 *
 *	- HkLimiterShared.lock (its own named tranche) is taken exclusively
 *	  only to create the area and table, or to read their handles; never
 *	  together with a dshash lock.
 *	- An entry is read and changed only while dshash holds its partition
 *	  lock: exclusively for admission, reset and the sweep, shared for
 *	  inspection.  Concurrent requests on one key are therefore serialised
 *	  and cannot over-admit.  No other lock is taken, and nothing that can
 *	  raise an ERROR is done, while a partition lock is held.
 *	- The statistics and the sweep time are atomics.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "lib/dshash.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/dsa.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "middleware/rate_limiter.h"

PG_FUNCTION_INFO_V1(hk_sql_rate_limit_replay);
PG_FUNCTION_INFO_V1(hk_sql_rate_limit_inspect);
PG_FUNCTION_INFO_V1(hk_sql_rate_limit_reset);
PG_FUNCTION_INFO_V1(hk_sql_rate_limit_stats);

#define HOUR_SUB_USECS		(INT64CONST(3600) * USECS_PER_SEC / HK_RL_SUBBUCKETS)
#define BURST_MAX			PG_UINT16_MAX	/* per-sub-bucket counts are uint16 */
#define SWEEP_INTERVAL		(60 * USECS_PER_SEC)
#define LIMITER_TRANCHE		"hokusai_auth rate limiter"

typedef struct HkLimiterKey
{
	Oid			dbid;
	pg_uuid_t	key_id;
} HkLimiterKey;

typedef struct HkLimiterEntry
{
	HkLimiterKey key;
	HkLimiterState state;
} HkLimiterEntry;

typedef struct HkLimiterShared
{
	LWLock	   *lock;
	int			tranche_id;
	dsa_handle	area_handle;
	dshash_table_handle table_handle;
	pg_atomic_uint64 admitted;
	pg_atomic_uint64 rejected_hourly;
	pg_atomic_uint64 rejected_burst;
	pg_atomic_uint64 created;
	pg_atomic_uint64 reclaimed;
	pg_atomic_uint64 last_sweep;
} HkLimiterShared;

static HkLimiterShared *limiter = NULL;
static dsa_area *limiter_area = NULL;
static dshash_table *limiter_table = NULL;

static const dshash_parameters limiter_params = {
	sizeof(HkLimiterKey),
	sizeof(HkLimiterEntry),
	dshash_memcmp,
	dshash_memhash,
	0							/* tranche id, set at attach */
};

/* ----------------------------------------------------------------
 * The algorithm
 * ----------------------------------------------------------------
 */

void
hk_limiter_state_init(HkLimiterState *st)
{
	memset(st, 0, sizeof(*st));
}

static inline int64
hour_bucket(TimestampTz now)
{
	return now / HOUR_SUB_USECS;
}

static inline int64
burst_bucket(TimestampTz now)
{
	return now * HK_RL_SUBBUCKETS / USECS_PER_SEC;
}

/* When sub-bucket b of a window begins. */
static inline TimestampTz
hour_bucket_start(int64 b)
{
	return b * HOUR_SUB_USECS;
}

static inline TimestampTz
burst_bucket_start(int64 b)
{
	return (b * USECS_PER_SEC + HK_RL_SUBBUCKETS - 1) / HK_RL_SUBBUCKETS;
}

/* Move the hour ring forward to sub-bucket b, dropping what fell out. */
static void
advance_hour(HkLimiterState *st, int64 b)
{
	int64		i;

	if (b <= st->hour_bucket)
		return;
	if (b - st->hour_bucket >= HK_RL_RING)
	{
		memset(st->hour, 0, sizeof(st->hour));
		st->hour_total = 0;
	}
	else
		for (i = st->hour_bucket + 1; i <= b; i++)
		{
			st->hour_total -= st->hour[i % HK_RL_RING];
			st->hour[i % HK_RL_RING] = 0;
		}
	st->hour_bucket = b;
}

static void
advance_burst(HkLimiterState *st, int64 b)
{
	int64		i;

	if (b <= st->burst_bucket)
		return;
	if (b - st->burst_bucket >= HK_RL_RING)
	{
		memset(st->burst, 0, sizeof(st->burst));
		st->burst_total = 0;
	}
	else
		for (i = st->burst_bucket + 1; i <= b; i++)
		{
			st->burst_total -= st->burst[i % HK_RL_RING];
			st->burst[i % HK_RL_RING] = 0;
		}
	st->burst_bucket = b;
}

/*
 * Microseconds until enough of the oldest sub-buckets leave the window for
 * total to drop below limit.  Sub-bucket i leaves when sub-bucket i + 61
 * begins.
 */
static int64
hour_wait(const HkLimiterState *st, int64 limit, TimestampTz now)
{
	int64		freed = 0;
	int64		i;

	for (i = st->hour_bucket - HK_RL_SUBBUCKETS; i <= st->hour_bucket; i++)
	{
		freed += st->hour[((i % HK_RL_RING) + HK_RL_RING) % HK_RL_RING];
		if ((int64) st->hour_total - freed < limit)
			return hour_bucket_start(i + HK_RL_RING) - now;
	}
	return hour_bucket_start(st->hour_bucket + HK_RL_RING) - now;
}

static int64
burst_wait(const HkLimiterState *st, int64 limit, TimestampTz now)
{
	int64		freed = 0;
	int64		i;

	for (i = st->burst_bucket - HK_RL_SUBBUCKETS; i <= st->burst_bucket; i++)
	{
		freed += st->burst[((i % HK_RL_RING) + HK_RL_RING) % HK_RL_RING];
		if ((int64) st->burst_total - freed < limit)
			return burst_bucket_start(i + HK_RL_RING) - now;
	}
	return burst_bucket_start(st->burst_bucket + HK_RL_RING) - now;
}

static inline int32
usecs_to_seconds_ceil(int64 us)
{
	if (us <= 0)
		return 0;
	return (int32) Min((us + USECS_PER_SEC - 1) / USECS_PER_SEC, PG_INT32_MAX);
}

/*
 * Decide one request at time now, counting it when admitted.  per_hour > 0;
 * burst <= 0 means no burst limit.
 */
void
hk_limiter_decide(HkLimiterState *st, TimestampTz now, int32 per_hour,
				  int32 burst, HkLimiterDecision *d)
{
	int64		hb = hour_bucket(now);
	int64		bb = burst_bucket(now);
	bool		hour_full;
	bool		burst_full;
	int64		wait = 0;

	if (burst > BURST_MAX)
		burst = BURST_MAX;
	advance_hour(st, hb);
	advance_burst(st, bb);
	/* A clock that stepped back counts into the newest sub-bucket. */
	hb = st->hour_bucket;
	bb = st->burst_bucket;

	hour_full = st->hour_total >= (uint32) per_hour;
	burst_full = burst > 0 && st->burst_total >= (uint32) burst;
	d->admitted = !hour_full && !burst_full;
	if (d->admitted)
	{
		st->hour[hb % HK_RL_RING]++;
		st->hour_total++;
		st->burst[bb % HK_RL_RING]++;
		st->burst_total++;
	}

	/* How long until one more request would be admitted. */
	if (st->hour_total >= (uint32) per_hour)
		wait = hour_wait(st, per_hour, now);
	if (burst > 0 && st->burst_total >= (uint32) burst)
		wait = Max(wait, burst_wait(st, burst, now));

	d->limit = per_hour;
	d->remaining = st->hour_total >= (uint32) per_hour ? 0 :
		(int32) (per_hour - st->hour_total);
	d->reset_seconds = usecs_to_seconds_ceil(wait);
	d->retry_after = d->admitted ? 0 : Max(d->reset_seconds, 1);
}

/* ----------------------------------------------------------------
 * Shared state
 * ----------------------------------------------------------------
 */

Size
hk_limiter_shmem_size(void)
{
	return MAXALIGN(sizeof(HkLimiterShared));
}

void
hk_limiter_shmem_request(void)
{
	RequestAddinShmemSpace(hk_limiter_shmem_size());
	RequestNamedLWLockTranche(LIMITER_TRANCHE, 1);
}

/* Called with AddinShmemInitLock held. */
void
hk_limiter_shmem_startup(void)
{
	bool		found;

	limiter = ShmemInitStruct("hokusai_auth rate limiter", hk_limiter_shmem_size(), &found);
	if (found)
		return;
	memset(limiter, 0, sizeof(*limiter));
	limiter->lock = &(GetNamedLWLockTranche(LIMITER_TRANCHE))->lock;
	limiter->tranche_id = LWLockNewTrancheId();
	limiter->area_handle = DSM_HANDLE_INVALID;
	pg_atomic_init_u64(&limiter->admitted, 0);
	pg_atomic_init_u64(&limiter->rejected_hourly, 0);
	pg_atomic_init_u64(&limiter->rejected_burst, 0);
	pg_atomic_init_u64(&limiter->created, 0);
	pg_atomic_init_u64(&limiter->reclaimed, 0);
	pg_atomic_init_u64(&limiter->last_sweep, 0);
}

/* Attach this backend to the area and table, creating them on first use. */
static void
limiter_attach(void)
{
	dshash_parameters params = limiter_params;
	MemoryContext old;

	if (limiter_table != NULL)
		return;
	hk_require_preload();
	if (limiter == NULL)
		elog(ERROR, "hokusai_auth rate limiter shared memory is missing");

	LWLockRegisterTranche(limiter->tranche_id, LIMITER_TRANCHE);
	params.tranche_id = limiter->tranche_id;
	old = MemoryContextSwitchTo(TopMemoryContext);
	LWLockAcquire(limiter->lock, LW_EXCLUSIVE);
	if (limiter->area_handle == DSM_HANDLE_INVALID)
	{
		limiter_area = dsa_create(limiter->tranche_id);
		dsa_pin(limiter_area);
		dsa_pin_mapping(limiter_area);
		limiter_table = dshash_create(limiter_area, &params, NULL);
		limiter->table_handle = dshash_get_hash_table_handle(limiter_table);
		limiter->area_handle = dsa_get_handle(limiter_area);
	}
	else
	{
		limiter_area = dsa_attach(limiter->area_handle);
		dsa_pin_mapping(limiter_area);
		limiter_table = dshash_attach(limiter_area, &params,
									  limiter->table_handle, NULL);
	}
	LWLockRelease(limiter->lock);
	MemoryContextSwitchTo(old);
}

/* Remove entries whose counts have all left both windows. */
static void
limiter_sweep(TimestampTz now)
{
	dshash_seq_status status;
	HkLimiterEntry *e;
	int64		hb = hour_bucket(now);
	int64		bb = burst_bucket(now);
	uint64		removed = 0;

	dshash_seq_init(&status, limiter_table, true);
	while ((e = dshash_seq_next(&status)) != NULL)
	{
		if (e->state.hour_bucket + HK_RL_RING <= hb &&
			e->state.burst_bucket + HK_RL_RING <= bb)
		{
			dshash_delete_current(&status);
			removed++;
		}
	}
	dshash_seq_term(&status);
	pg_atomic_fetch_add_u64(&limiter->reclaimed, removed);
}

static void
maybe_sweep(TimestampTz now)
{
	uint64		last = pg_atomic_read_u64(&limiter->last_sweep);

	if ((uint64) now - last < (uint64) SWEEP_INTERVAL)
		return;
	/* One backend wins the right to sweep. */
	if (pg_atomic_compare_exchange_u64(&limiter->last_sweep, &last, (uint64) now))
		limiter_sweep(now);
}

void
hk_limiter_admit(const pg_uuid_t *key_id, int32 per_hour, int32 burst,
				 HkLimiterDecision *d)
{
	HkLimiterKey key;
	HkLimiterEntry *e;
	bool		found;
	TimestampTz now;

	limiter_attach();
	memset(&key, 0, sizeof(key));
	key.dbid = MyDatabaseId;
	key.key_id = *key_id;

	now = GetCurrentTimestamp();
	maybe_sweep(now);

	e = dshash_find_or_insert(limiter_table, &key, &found);
	if (!found)
		hk_limiter_state_init(&e->state);
	hk_limiter_decide(&e->state, now, per_hour, burst, d);
	dshash_release_lock(limiter_table, e);

	if (!found)
		pg_atomic_fetch_add_u64(&limiter->created, 1);
	if (d->admitted)
		pg_atomic_fetch_add_u64(&limiter->admitted, 1);
	else if (d->remaining == 0)
		pg_atomic_fetch_add_u64(&limiter->rejected_hourly, 1);
	else
		pg_atomic_fetch_add_u64(&limiter->rejected_burst, 1);
}

/* ----------------------------------------------------------------
 * SQL functions
 * ----------------------------------------------------------------
 */

static int32
arg_limit(FunctionCallInfo fcinfo, int n, const char *name, bool allow_zero)
{
	int32		v;

	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	v = PG_GETARG_INT32(n);
	if (v < 0 || (v == 0 && !allow_zero))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 allow_zero ? errmsg("%s must not be negative", name) :
				 errmsg("%s must be positive", name)));
	return v;
}

/*
 * hokusai_auth._rate_limit_replay(at timestamptz[], per_hour integer,
 *								   burst integer) returns boolean[]
 *
 * For tests: run the limiter on a private state over the given request
 * times, in order, and return each decision.  The same code decides live
 * requests.
 */
Datum
hk_sql_rate_limit_replay(PG_FUNCTION_ARGS)
{
	ArrayType  *at;
	Datum	   *times;
	bool	   *nulls;
	int			n;
	int			i;
	int32		per_hour;
	int32		burst;
	HkLimiterState st;
	Datum	   *out;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("at must not be null")));
	per_hour = arg_limit(fcinfo, 1, "per_hour", false);
	burst = arg_limit(fcinfo, 2, "burst", true);
	at = PG_GETARG_ARRAYTYPE_P(0);
	deconstruct_array(at, TIMESTAMPTZOID, sizeof(TimestampTz), true,
					  TYPALIGN_DOUBLE, &times, &nulls, &n);

	hk_limiter_state_init(&st);
	out = palloc(sizeof(Datum) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		HkLimiterDecision d;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("at must not contain nulls")));
		hk_limiter_decide(&st, DatumGetTimestampTz(times[i]), per_hour, burst, &d);
		out[i] = BoolGetDatum(d.admitted);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(out, n, BOOLOID, 1, true, TYPALIGN_CHAR));
}

/*
 * hokusai_auth._rate_limit_inspect(key_id uuid, per_hour integer, burst integer)
 *	returns (tracked, hour_count, burst_count, remaining, reset_seconds)
 *
 * Internal: the SQL function rate_limit_status() passes the key's limits.
 * Looks without counting.
 */
Datum
hk_sql_rate_limit_inspect(PG_FUNCTION_ARGS)
{
	HkLimiterKey key;
	HkLimiterEntry *e;
	HkLimiterState st;
	bool		tracked = false;
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {0};
	int32		per_hour = arg_limit(fcinfo, 1, "per_hour", false);
	int32		burst = arg_limit(fcinfo, 2, "burst", true);
	TimestampTz now = GetCurrentTimestamp();
	int64		wait = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key_id must not be null")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	limiter_attach();

	memset(&key, 0, sizeof(key));
	key.dbid = MyDatabaseId;
	key.key_id = *PG_GETARG_UUID_P(0);
	hk_limiter_state_init(&st);
	e = dshash_find(limiter_table, &key, false);
	if (e != NULL)
	{
		st = e->state;
		tracked = true;
		dshash_release_lock(limiter_table, e);
	}
	advance_hour(&st, hour_bucket(now));
	advance_burst(&st, burst_bucket(now));
	if (burst > BURST_MAX)
		burst = BURST_MAX;
	if (st.hour_total >= (uint32) per_hour)
		wait = hour_wait(&st, per_hour, now);
	if (burst > 0 && st.burst_total >= (uint32) burst)
		wait = Max(wait, burst_wait(&st, burst, now));

	values[0] = BoolGetDatum(tracked);
	values[1] = Int64GetDatum(st.hour_total);
	values[2] = Int64GetDatum(st.burst_total);
	values[3] = Int32GetDatum(st.hour_total >= (uint32) per_hour ? 0 :
							  (int32) (per_hour - st.hour_total));
	values[4] = Int32GetDatum(usecs_to_seconds_ceil(wait));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* hokusai_auth._rate_limit_reset(key_id uuid) returns boolean */
Datum
hk_sql_rate_limit_reset(PG_FUNCTION_ARGS)
{
	HkLimiterKey key;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key_id must not be null")));
	limiter_attach();
	memset(&key, 0, sizeof(key));
	key.dbid = MyDatabaseId;
	key.key_id = *PG_GETARG_UUID_P(0);
	PG_RETURN_BOOL(dshash_delete_key(limiter_table, &key));
}

/*
 * hokusai_auth.rate_limit_stats() returns (admitted, rejected_hourly,
 *	rejected_burst, entries, created, reclaimed, entry_bytes)
 */
Datum
hk_sql_rate_limit_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {0};
	dshash_seq_status status;
	int64		entries = 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	limiter_attach();

	dshash_seq_init(&status, limiter_table, false);
	while (dshash_seq_next(&status) != NULL)
		entries++;
	dshash_seq_term(&status);

	values[0] = Int64GetDatum(pg_atomic_read_u64(&limiter->admitted));
	values[1] = Int64GetDatum(pg_atomic_read_u64(&limiter->rejected_hourly));
	values[2] = Int64GetDatum(pg_atomic_read_u64(&limiter->rejected_burst));
	values[3] = Int64GetDatum(entries);
	values[4] = Int64GetDatum(pg_atomic_read_u64(&limiter->created));
	values[5] = Int64GetDatum(pg_atomic_read_u64(&limiter->reclaimed));
	values[6] = Int32GetDatum((int32) sizeof(HkLimiterEntry));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
