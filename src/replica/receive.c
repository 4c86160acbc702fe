/*-------------------------------------------------------------------------
 *
 * receive.c
 *	  The primary's side of usage shipping: hokusai_auth._receive_usage(),
 *	  which a standby's worker calls over libpq (replica/ship.c), and
 *	  hokusai_auth.replica_stats().
 *
 * Exactly once.  A standby's events are identified by its run (a random id
 * drawn when its shared memory was made) and their position in its queue,
 * which only grows.  The standby sends the events from its queue's tail,
 * with their positions, and "upto", the position after the last one it
 * looked at; this keeps, per run, in hokusai_auth.usage_shipments, the
 * position below which it has received everything.  Events below it are
 * duplicates (a call whose answer the standby never got, sent again) and
 * are skipped; the others are taken, and the position moved, in one
 * transaction.  The standby consumes its queue up to the position this
 * returns, so a lost answer costs a repeat, never a duplicate or a gap.
 * The state row is replicated like any row, so a promoted standby carries
 * on where the old primary was.
 *
 * As if local.  Taken events are put in this server's usage queue when the
 * transaction commits, as track_request() does, so this server's worker
 * writes them with its own events, in the same tables and rollups.  If
 * the queue has no room for them now, fewer are taken (the rest stay
 * queued on the standby, which sends them again) and counted as deferred.
 * Like local events, they are lost if this server crashes within a
 * flush_interval of the commit.  last_used_at touches need no position:
 * they only ever move last_used_at forward.
 *
 * Rights.  SECURITY DEFINER with search_path pinned (its definition), so
 * the shipping role needs EXECUTE on this function and nothing else.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "replica/ship.h"
#include "replica/walinval.h"
#include "usage/endpoint.h"
#include "usage/usage_queue.h"

PG_FUNCTION_INFO_V1(hk_sql_receive_usage);
PG_FUNCTION_INFO_V1(hk_sql_replica_stats);

/* Events and touches to queue when the receiving transaction commits. */
typedef struct Received
{
	pg_uuid_t	key_id;
	TimestampTz at;
	int32		response_time_ms;
	int32		status_code;
	bool		usage;			/* false: a touch */
	int			endpoint_len;	/* -1: none */
	char		endpoint[HK_USAGE_ENDPOINT_LEN];
} Received;

static Received *received = NULL;	/* in TopTransactionContext */
static int	nreceived = 0;
static bool callback_registered = false;

/* At commit, queue what was received; at abort, forget it. */
static void
receive_xact_callback(XactEvent event, void *arg)
{
	int			i;

	if (nreceived == 0)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		for (i = 0; i < nreceived; i++)
		{
			Received   *r = &received[i];

			if (r->usage)
				(void) hk_usage_enqueue(&r->key_id, r->at,
										r->endpoint_len < 0 ? NULL : r->endpoint,
										Max(r->endpoint_len, 0),
										r->response_time_ms, r->status_code);
			else
				hk_usage_touch_at(&r->key_id, r->at);
		}
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		received = NULL;
		nreceived = 0;
	}
}

/* An array argument's elements; *n 0 for NULL. */
static void
array_arg(FunctionCallInfo fcinfo, int argno, Oid type, int16 len, bool byval,
		  char align, Datum **values, bool **nulls, int *n)
{
	*n = 0;
	*values = NULL;
	*nulls = NULL;
	if (PG_ARGISNULL(argno))
		return;
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(argno), type, len, byval, align,
					  values, nulls, n);
}

/* The position below which this run's events have all been received. */
static int64
run_position(Datum run_id, bool lock)
{
	int			ret;
	bool		isnull;
	Oid			type = UUIDOID;

	ret = SPI_execute_with_args("INSERT INTO " HK_SCHEMA ".usage_shipments (run_id)"
								" VALUES ($1) ON CONFLICT (run_id) DO NOTHING",
								1, &type, &run_id, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not record the run: %s", SPI_result_code_string(ret));
	ret = SPI_execute_with_args("SELECT s.received_until FROM " HK_SCHEMA ".usage_shipments s"
								" WHERE s.run_id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
								1, &type, &run_id, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the run's position: %s", SPI_result_code_string(ret));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Remember one received event or touch for the commit. */
static Received *
stash(void)
{
	if (received == NULL)
		received = MemoryContextAlloc(TopTransactionContext, sizeof(Received) * 1024);
	else if (nreceived % 1024 == 0)
		received = repalloc(received, sizeof(Received) * (nreceived + 1024));
	return &received[nreceived++];
}

/*
 * hokusai_auth._receive_usage(run_id uuid, upto bigint, positions bigint[],
 *		key_ids uuid[], endpoints text[], ats bigint[], response_times
 *		integer[], status_codes integer[], touch_keys uuid[], touch_ats
 *		bigint[]) returns bigint
 *
 * Take a standby's events (times as TimestampTz microseconds) and touches;
 * returns the run's new position (see the banner).
 */
Datum
hk_sql_receive_usage(PG_FUNCTION_ARGS)
{
	Datum		run_id;
	int64		upto;
	int64		done;
	int64		new_done;
	Datum	   *pos, *keys, *eps, *ats, *rts, *scs, *tkeys, *tats;
	bool	   *pos_n, *keys_n, *eps_n, *ats_n, *rts_n, *scs_n, *tkeys_n, *tats_n;
	int			n, n2, n3, n4, n5, n6, nt, nt2;
	uint32		capacity;
	uint64		queued;
	int			worker_pid;
	int64		room;
	int			taken = 0;
	int			dups = 0;
	int			i;
	Oid			wdb;

	hk_require_preload();
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot receive usage on a server in recovery"),
				 errhint("Ship usage to the primary: set hokusai_auth.primary_conninfo on the standby.")));
	wdb = hk_usage_worker_database();
	if (OidIsValid(wdb) && wdb != MyDatabaseId)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("usage is written in another database of this server"),
				 errhint("Connect to the database named by hokusai_auth.database.")));
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("run_id and upto must not be null")));
	run_id = PG_GETARG_DATUM(0);
	upto = PG_GETARG_INT64(1);
	array_arg(fcinfo, 2, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &pos, &pos_n, &n);
	array_arg(fcinfo, 3, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR, &keys, &keys_n, &n2);
	array_arg(fcinfo, 4, TEXTOID, -1, false, TYPALIGN_INT, &eps, &eps_n, &n3);
	array_arg(fcinfo, 5, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &ats, &ats_n, &n4);
	array_arg(fcinfo, 6, INT4OID, 4, true, TYPALIGN_INT, &rts, &rts_n, &n5);
	array_arg(fcinfo, 7, INT4OID, 4, true, TYPALIGN_INT, &scs, &scs_n, &n6);
	array_arg(fcinfo, 8, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR, &tkeys, &tkeys_n, &nt);
	array_arg(fcinfo, 9, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &tats, &tats_n, &nt2);
	if (n2 != n || n3 != n || n4 != n || n5 != n || n6 != n || nt2 != nt)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("the event arrays must have the same length")));

	if (!callback_registered)
	{
		RegisterXactCallback(receive_xact_callback, NULL);
		callback_registered = true;
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	done = run_position(run_id, true);

	/* Leave an eighth of the queue to this server's own requests. */
	hk_usage_queue_state(&capacity, &queued, &worker_pid);
	room = (int64) capacity - (int64) capacity / 8 - (int64) queued;
	new_done = Max(done, upto);
	for (i = 0; i < n; i++)
	{
		Received   *r;
		int64		p;

		if (pos_n[i] || keys_n[i] || ats_n[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("positions, key ids and times must not be null")));
		p = DatumGetInt64(pos[i]);
		if (p < done)
		{
			dups++;
			continue;
		}
		if (taken >= room)
		{
			/* No room: the standby sends the rest again. */
			new_done = Max(done, p);
			hk_ship_stat_add(HK_SSTAT_DEFERRED, n - i);
			break;
		}
		r = stash();
		memcpy(&r->key_id, DatumGetUUIDP(keys[i]), sizeof(pg_uuid_t));
		r->at = DatumGetInt64(ats[i]);
		r->response_time_ms = rts_n[i] ? HK_EV_NONE : Max(DatumGetInt32(rts[i]), 0);
		r->status_code = scs_n[i] ? HK_EV_NONE : DatumGetInt32(scs[i]);
		if (r->status_code != HK_EV_NONE && (r->status_code < 100 || r->status_code > 599))
			r->status_code = HK_EV_NONE;
		r->usage = true;
		r->endpoint_len = -1;
		if (!eps_n[i])
		{
			text	   *t = DatumGetTextPP(eps[i]);

			r->endpoint_len = hk_usage_clean_endpoint(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
													  r->endpoint);
		}
		taken++;
	}
	for (i = 0; i < nt; i++)
	{
		Received   *r;

		if (tkeys_n[i] || tats_n[i])
			continue;
		r = stash();
		memcpy(&r->key_id, DatumGetUUIDP(tkeys[i]), sizeof(pg_uuid_t));
		r->at = DatumGetInt64(tats[i]);
		r->usage = false;
	}

	if (new_done > done)
	{
		Oid			types[2] = {UUIDOID, INT8OID};
		Datum		values[2] = {run_id, Int64GetDatum(new_done)};
		int			ret;

		ret = SPI_execute_with_args("UPDATE " HK_SCHEMA ".usage_shipments s"
									"   SET received_until = $2, last_at = pg_catalog.now()"
									" WHERE s.run_id OPERATOR(pg_catalog.=) $1",
									2, types, values, NULL, false, 0);
		if (ret != SPI_OK_UPDATE)
			elog(ERROR, "could not move the run's position: %s", SPI_result_code_string(ret));
	}
	SPI_finish();
	hk_ship_stat_add(HK_SSTAT_RECEIVED, taken);
	hk_ship_stat_add(HK_SSTAT_DUPLICATES, dups);
	PG_RETURN_INT64(new_done);
}

/*
 * hokusai_auth.replica_stats(): this server's side of replication, one row.
 */
Datum
hk_sql_replica_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[14];
	bool		nulls[14];
	uint64		last;
	int			i = 0;

	hk_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	memset(nulls, 0, sizeof(nulls));
	values[i++] = BoolGetDatum(RecoveryInProgress());
	values[i++] = Int64GetDatum(hk_walinval_stat(HK_WSTAT_PASSES));
	values[i++] = Int64GetDatum(hk_walinval_stat(HK_WSTAT_APPLIED));
	values[i++] = Int64GetDatum(hk_walinval_stat(HK_WSTAT_CLEARED_ALL));
	values[i++] = Int64GetDatum(hk_ship_stat(HK_SSTAT_SHIPPED));
	values[i++] = Int64GetDatum(hk_ship_stat(HK_SSTAT_TOUCHES_SHIPPED));
	values[i++] = Int64GetDatum(hk_ship_stat(HK_SSTAT_BATCHES));
	values[i++] = Int64GetDatum(hk_ship_stat(HK_SSTAT_FAILURES));
	last = hk_ship_stat(HK_SSTAT_LAST_SHIP_AT);
	nulls[i] = last == 0;
	values[i++] = TimestampTzGetDatum((TimestampTz) last);
	values[i++] = BoolGetDatum(hk_ship_primary_reachable());
	values[i++] = Int64GetDatum(hk_ship_stat(HK_SSTAT_RECEIVED));
	values[i++] = Int64GetDatum(hk_ship_stat(HK_SSTAT_DUPLICATES));
	values[i++] = Int64GetDatum(hk_ship_stat(HK_SSTAT_DEFERRED));
	values[i++] = Int64GetDatum(hk_ship_stat(HK_SSTAT_EVENTS_SHIPPED));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
