/*-------------------------------------------------------------------------
 *
 * aggregate.c
 *	  The background worker's aggregates: a batch's events summed per key,
 *	  UTC minute, endpoint and status code (requests, those with a response
 *	  time, their sum, maximum and histogram), the minute groups summed
 *	  again per hour and the hour groups per day, then added to
 *	  api_key_usage_minutely, _hourly and _daily.
 *
 * Every event counts here, whatever hokusai_auth.usage_raw_sample keeps as
 * raw rows, and straight from the queue: no raw row in between.  Summing in
 * C costs a hash lookup per run of events of one group (a busy key's
 * events mostly come in runs: a comparison of the event's fields with the
 * run's group instead of hashing 160 bytes, and the run's response times
 * counted in a dense array of buckets, added to the group's histogram when
 * the run ends);
 * the tables then see one row per group and batch, through
 * hokusai_auth._usage_add(table, groups), which upserts
 * each partition's groups in one statement (ON CONFLICT on the partition's
 * unique index; the parents have none, see usage.sql).  A steady stream of
 * one key and endpoint is three row updates per batch, however many
 * requests it carries.
 *
 * Groups travel as an array of hokusai_auth._usage_group.  Its type is
 * looked up per batch and the statement is not kept prepared: both change
 * when the extension is dropped and created again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "port/pg_bitutils.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

#include "hokusai_auth.h"
#include "usage/histogram.h"
#include "worker/aggregate.h"
#include "worker/locks.h"

#define NUM_GROUP_COLS	9

/* What a group is of; zeroed before it is filled (it is hashed whole). */
typedef struct UsageGroupKey
{
	TimestampTz t;				/* the minute or hour */
	pg_uuid_t	key_id;
	int32		status_code;	/* HK_EV_NONE: NULL */
	int16		endpoint_len;	/* -1: NULL */
	char		endpoint[HK_USAGE_ENDPOINT_LEN];
} UsageGroupKey;

typedef struct UsageGroup
{
	UsageGroupKey	key;
	int64		requests;
	int64		timed;
	int64		ms_sum;
	int32		max_ms;			/* HK_EV_NONE: none timed */
	HkHist		hist;
} UsageGroup;

/* t rounded down to a multiple of unit (both in microseconds, UTC). */
static inline TimestampTz
floor_to(TimestampTz t, int64 unit)
{
	TimestampTz r = t % unit;

	return r < 0 ? t - r - unit : t - r;
}

static HTAB *
group_table(const char *name)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(UsageGroupKey);
	ctl.entrysize = sizeof(UsageGroup);
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, 256, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* The group of key k, new and empty if there is none yet. */
static UsageGroup *
group_for(HTAB *groups, const UsageGroupKey *k)
{
	bool		found;
	UsageGroup	   *g = hash_search(groups, k, HASH_ENTER, &found);

	if (!found)
	{
		g->requests = 0;
		g->timed = 0;
		g->ms_sum = 0;
		g->max_ms = HK_EV_NONE;
		memset(&g->hist, 0, sizeof(HkHist));
	}
	return g;
}

/* Is event e of the group k (whose minute is minute)? */
static inline bool
in_group(const HkUsageEvent *e, TimestampTz minute, const UsageGroupKey *k)
{
	int			len = (e->flags & HK_EV_HAS_ENDPOINT) ? e->endpoint_len : -1;

	return e->at >= minute && e->at < minute + USECS_PER_MINUTE &&
		memcmp(&e->key_id, &k->key_id, sizeof(pg_uuid_t)) == 0 &&
		e->status_code == k->status_code &&
		len == k->endpoint_len &&
		(len <= 0 || memcmp(e->endpoint, k->endpoint, len) == 0);
}

/*
 * The response times of the run of events being summed, counted per bucket
 * in a dense array (an increment an event) and added to the run's group's
 * sparse histogram, bucket by bucket in order, when the run ends.
 */
typedef struct RunHist
{
	int64		counts[HK_HIST_BUCKETS];
	uint64		used[(HK_HIST_BUCKETS + 63) / 64];	/* buckets counted */
} RunHist;

/* Move the run's counts into h and empty the run. */
static void
run_hist_flush(RunHist *r, HkHist *h)
{
	int			w;

	for (w = 0; w < (int) lengthof(r->used); w++)
	{
		while (r->used[w] != 0)
		{
			int			b = w * 64 + pg_rightmost_one_pos64(r->used[w]);

			hk_hist_add(h, b, r->counts[b]);
			r->counts[b] = 0;
			r->used[w] &= r->used[w] - 1;
		}
	}
}

/*
 * The minute groups of the events.  A run of events of one group costs one
 * hash lookup: each event is compared with the group of the one before,
 * field by field (the endpoint's bytes only), and the key is built and
 * looked up only when the run ends.
 */
static HTAB *
minute_groups(HkUsageEvent **ev, int n)
{
	HTAB	   *groups = group_table("hokusai_auth minute groups");
	RunHist    *run = palloc0(sizeof(RunHist));
	UsageGroupKey k;
	UsageGroup *g = NULL;
	int			i;

	for (i = 0; i < n; i++)
	{
		HkUsageEvent *e = ev[i];

		if (g == NULL || !in_group(e, k.t, &k))
		{
			if (g != NULL)
				run_hist_flush(run, &g->hist);
			memset(&k, 0, sizeof(UsageGroupKey));
			k.t = floor_to(e->at, USECS_PER_MINUTE);
			k.key_id = e->key_id;
			k.status_code = e->status_code;
			k.endpoint_len = (e->flags & HK_EV_HAS_ENDPOINT) ? e->endpoint_len : -1;
			if (k.endpoint_len > 0)
				memcpy(k.endpoint, e->endpoint, k.endpoint_len);
			g = group_for(groups, &k);
		}
		g->requests++;
		if (e->response_time_ms != HK_EV_NONE)
		{
			int			b = hk_hist_bucket(e->response_time_ms);

			g->timed++;
			g->ms_sum += e->response_time_ms;
			g->max_ms = Max(g->max_ms, e->response_time_ms);
			run->counts[b]++;
			run->used[b / 64] |= UINT64CONST(1) << (b % 64);
		}
	}
	if (g != NULL)
		run_hist_flush(run, &g->hist);
	pfree(run);
	return groups;
}

/* The groups summed again per unit (an hour or a day). */
static HTAB *
coarser_groups(HTAB *minutes, int64 unit)
{
	HTAB	   *groups = group_table("hokusai_auth coarser groups");
	HASH_SEQ_STATUS seq;
	UsageGroup	   *m;

	hash_seq_init(&seq, minutes);
	while ((m = hash_seq_search(&seq)) != NULL)
	{
		UsageGroupKey	k = m->key;
		UsageGroup	   *g;
		int			i;

		k.t = floor_to(m->key.t, unit);
		g = group_for(groups, &k);
		g->requests += m->requests;
		g->timed += m->timed;
		g->ms_sum += m->ms_sum;
		g->max_ms = Max(g->max_ms, m->max_ms);
		for (i = 0; i < m->hist.npairs; i++)
			hk_hist_add(&g->hist, m->hist.pairs[i].bucket, m->hist.pairs[i].count);
	}
	return groups;
}

/* hokusai_auth._usage_group, looked up by schema and name. */
static Oid
group_type(void)
{
	Oid			typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
										CStringGetDatum("_usage_group"),
										ObjectIdGetDatum(get_namespace_oid(HK_SCHEMA, false)));

	if (!OidIsValid(typid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("type %s._usage_group does not exist", HK_SCHEMA)));
	return typid;
}

/* The groups as an array of hokusai_auth._usage_group. */
static Datum
group_array(HTAB *groups, Oid typid)
{
	TupleDesc	desc = lookup_rowtype_tupdesc_copy(typid, -1);
	long		n = hash_get_num_entries(groups);
	Datum	   *elems = palloc(sizeof(Datum) * n);
	HASH_SEQ_STATUS seq;
	UsageGroup	   *g;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			i = 0;

	if (desc->natts != NUM_GROUP_COLS)
		elog(ERROR, "type %s._usage_group has %d columns, not %d",
			 HK_SCHEMA, desc->natts, NUM_GROUP_COLS);
	hash_seq_init(&seq, groups);
	while ((g = hash_seq_search(&seq)) != NULL)
	{
		Datum		values[NUM_GROUP_COLS];
		bool		nulls[NUM_GROUP_COLS];

		memset(nulls, false, sizeof(nulls));
		values[0] = TimestampTzGetDatum(g->key.t);
		values[1] = UUIDPGetDatum(&g->key.key_id);
		nulls[2] = g->key.endpoint_len < 0;
		values[2] = nulls[2] ? (Datum) 0 :
			PointerGetDatum(cstring_to_text_with_len(g->key.endpoint, g->key.endpoint_len));
		nulls[3] = g->key.status_code == HK_EV_NONE;
		values[3] = Int32GetDatum(g->key.status_code);
		values[4] = Int64GetDatum(g->requests);
		values[5] = Int64GetDatum(g->timed);
		values[6] = Int64GetDatum(g->ms_sum);
		nulls[7] = g->max_ms == HK_EV_NONE;
		values[7] = Int32GetDatum(g->max_ms);
		nulls[8] = g->hist.npairs == 0;
		values[8] = nulls[8] ? (Datum) 0 : hk_hist_datum(&g->hist);
		elems[i++] = HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
	}
	get_typlenbyvalalign(typid, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_array(elems, (int) n, typid, typlen, typbyval, typalign));
}

/* _usage_add(table, groups) for one of the two tables. */
static void
add_groups(const char *table, HTAB *groups, Oid typid)
{
	char		sql[256];
	Oid			argtypes[1];
	Datum		args[1];
	bool		isnull;
	int			ret;

	if (hash_get_num_entries(groups) == 0)
		return;
	argtypes[0] = get_array_type(typid);
	args[0] = group_array(groups, typid);
	snprintf(sql, sizeof(sql),
			 "SELECT " HK_SCHEMA "._usage_add('" HK_SCHEMA ".%s'::pg_catalog.regclass, $1)",
			 table);
	ret = SPI_execute_with_args(sql, 1, argtypes, args, NULL, false, 1);
	(void) hk_worker_one_value(ret, "_usage_add failed", &isnull);
}

/* Count the events in both tables (see aggregate.h). */
void
hk_worker_write_aggregates(HkUsageEvent **ev, int n)
{
	HTAB	   *minutes;
	HTAB	   *hours;
	Oid			typid;

	if (n == 0)
		return;
	typid = group_type();
	minutes = minute_groups(ev, n);
	hours = coarser_groups(minutes, USECS_PER_HOUR);
	add_groups("api_key_usage_minutely", minutes, typid);
	add_groups("api_key_usage_hourly", hours, typid);
	add_groups("api_key_usage_daily", coarser_groups(hours, USECS_PER_DAY), typid);
}
