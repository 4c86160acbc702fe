/*-------------------------------------------------------------------------
 *
 * ship.c
 *	  A hot standby's worker sends the usage events and last_used_at touches
 *	  queued on the standby to the primary, over libpq; the primary takes
 *	  them exactly once (replica/receive.c explains how).
 *
 * A standby never writes its own tables.  While the server is in recovery
 * the worker, each cycle, instead:
 *
 *	1. connects, if it is not connected, to hokusai_auth.primary_conninfo,
 *	   or when that is empty to the standby's own primary_conninfo, with the
 *	   database named by hokusai_auth.database; it then pins search_path to
 *	   pg_catalog, pg_temp and names everything with its schema;
 *	2. sends the events queued when the cycle began, from the tail, in calls
 *	   of up to HK_SHIP_BATCH, with their queue positions, and the touch
 *	   table's touches: hokusai_auth._receive_usage();
 *	3. consumes its queue up to the position the primary returns;
 *	4. sends the events noted on the request path (rate_limit.exceeded,
 *	   credits.low, credits.exhausted) the same way, with their positions in
 *	   the event queue: hokusai_auth._receive_events() (ship_events.c).
 *
 * When the primary cannot be reached or a call fails, the events stay
 * queued (new ones are dropped and counted once the queue is full, as on a
 * primary whose worker cannot write), the touches are kept, and the worker
 * tries again after HK_SHIP_RETRY_MS.  A failure is logged once, when it
 * starts, and so is the recovery; the conninfo itself is never logged.
 * Connecting and waiting for answers never block the worker beyond
 * HK_SHIP_TIMEOUT_MS, and a signal to stop ends the wait.
 *
 * The run id, the counters and whether the primary was reachable at the
 * last try are in shared memory (ship_state.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq-fe.h"

#include "access/xlogrecovery.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "utils/wait_event.h"

#include "hokusai_auth.h"
#include "replica/ship.h"
#include "usage/usage_queue.h"

#define HK_SHIP_BATCH		10000
#define HK_SHIP_RETRY_MS	2000
#define HK_SHIP_TIMEOUT_MS	30000
#define HK_SHIP_FINAL_MS	5000	/* the last cycle, at shutdown */

/* The worker's connection and state. */
static PGconn *conn = NULL;
static TimestampTz retry_after = 0;
static bool failing = false;
static HkUsageEvent **batch = NULL;	/* the batch, in the queue's slots */
static HTAB *touches = NULL;	/* key id -> latest time, kept until sent */
static const volatile sig_atomic_t *stop_flag = NULL;
static bool final_cycle = false;

typedef struct ShipTouch
{
	pg_uuid_t	key_id;
	TimestampTz at;
} ShipTouch;

/* A failure: log it if it starts an outage, and retry later. */
static void
ship_failed(const char *what, const char *detail)
{
	hk_ship_stat_add(HK_SSTAT_FAILURES, 1);
	hk_ship_set_reachable(false);
	if (!failing)
		ereport(WARNING,
				(errmsg("hokusai_auth worker cannot ship usage to the primary: %s", what),
				 detail ? errdetail_internal("%s", detail) : 0,
				 errhint("Events stay queued on this standby and are sent when the primary answers; "
						 "the queue drops new ones once it is full.")));
	failing = true;
	if (conn != NULL)
	{
		PQfinish(conn);
		conn = NULL;
	}
	retry_after = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HK_SHIP_RETRY_MS);
}

/*
 * Wait for conn's socket (or the latch), at most until deadline; false at
 * the deadline, and when the worker is told to stop (but for its last
 * cycle, which has HK_SHIP_FINAL_MS).
 */
static bool
wait_socket(int events, TimestampTz deadline)
{
	long		ms = (long) ((deadline - GetCurrentTimestamp()) / 1000);
	int			rc;

	if (ms <= 0 || (!final_cycle && *stop_flag))
		return false;
	rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | events,
						   PQsocket(conn), ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
	{
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return true;
}

/* Connect (see the banner); false, logged, when that fails. */
static bool
ship_connect(void)
{
	const char *conninfo = (hk_primary_conninfo && hk_primary_conninfo[0]) ?
		hk_primary_conninfo : PrimaryConnInfo;
	const char *keys[] = {"connect_timeout", "dbname", "dbname", "application_name",
	"client_encoding", NULL};
	const char *vals[] = {"10", conninfo, hk_database, "hokusai_auth usage shipping",
	GetDatabaseEncodingName(), NULL};
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   final_cycle ? HK_SHIP_FINAL_MS : HK_SHIP_TIMEOUT_MS);
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	PGresult   *res;

	if (conninfo == NULL || conninfo[0] == '\0')
	{
		ship_failed("neither hokusai_auth.primary_conninfo nor primary_conninfo is set", NULL);
		return false;
	}
	conn = PQconnectStartParams(keys, vals, true);
	if (conn == NULL || PQstatus(conn) == CONNECTION_BAD)
	{
		ship_failed("could not connect", conn ? PQerrorMessage(conn) : "out of memory");
		return false;
	}
	while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED)
	{
		if (!wait_socket(st == PGRES_POLLING_READING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE,
						 deadline))
		{
			ship_failed("could not connect", "timeout");
			return false;
		}
		st = PQconnectPoll(conn);
	}
	if (st == PGRES_POLLING_FAILED)
	{
		ship_failed("could not connect", PQerrorMessage(conn));
		return false;
	}
	/* DESIGN.md section 11: nothing on the remote search_path runs. */
	res = PQexec(conn, "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		ship_failed("could not set search_path", PQerrorMessage(conn));
		PQclear(res);
		return false;
	}
	PQclear(res);
	return true;
}

/*
 * Run one statement on the primary with text parameters and return its one
 * bigint result; -1 when that fails (logged as ship_failed() says, with
 * "refused" as what when the primary answered with an error).  Never waits
 * beyond HK_SHIP_TIMEOUT_MS (HK_SHIP_FINAL_MS in the last cycle).
 */
int64
hk_ship_call(const char *sql, int nparams, const Oid *types, const char *const *params,
			 const char *refused)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   final_cycle ? HK_SHIP_FINAL_MS : HK_SHIP_TIMEOUT_MS);
	PGresult   *res;
	int64		result = -1;

	if (!PQsendQueryParams(conn, sql, nparams, types, params, NULL, NULL, 0))
	{
		ship_failed("could not send", PQerrorMessage(conn));
		return -1;
	}
	while (PQisBusy(conn))
	{
		if (!wait_socket(WL_SOCKET_READABLE, deadline))
		{
			ship_failed("no answer", "timeout");
			return -1;
		}
		if (!PQconsumeInput(conn))
		{
			ship_failed("connection lost", PQerrorMessage(conn));
			return -1;
		}
	}
	while ((res = PQgetResult(conn)) != NULL)
	{
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
			!PQgetisnull(res, 0, 0))
			result = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		else
		{
			ship_failed(PQstatus(conn) == CONNECTION_BAD ? "connection lost" : refused,
						PQresultErrorMessage(res));
			PQclear(res);
			return -1;
		}
		PQclear(res);
	}
	if (result < 0)
		ship_failed(refused, "no position in the answer");
	return result;
}

/* A call succeeded: count it, and log the end of an outage. */
void
hk_ship_succeeded(void)
{
	hk_ship_stat_add(HK_SSTAT_BATCHES, 1);
	hk_ship_stat_set(HK_SSTAT_LAST_SHIP_AT, (uint64) GetCurrentTimestamp());
	hk_ship_set_reachable(true);
	if (failing)
		ereport(LOG, (errmsg("hokusai_auth worker ships usage to the primary again")));
	failing = false;
}

/* Append a uuid's text form to an array literal. */
void
hk_ship_append_uuid(StringInfo s, const pg_uuid_t *u)
{
	static const char hex[] = "0123456789abcdef";
	int			i;

	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			appendStringInfoChar(s, '-');
		appendStringInfoChar(s, hex[u->data[i] >> 4]);
		appendStringInfoChar(s, hex[u->data[i] & 0xf]);
	}
}

/* Append an endpoint, quoted for an array literal. */
static void
append_endpoint(StringInfo s, const HkUsageEvent *e)
{
	int			i;

	if (!(e->flags & HK_EV_HAS_ENDPOINT))
	{
		appendStringInfoString(s, "NULL");
		return;
	}
	appendStringInfoChar(s, '"');
	for (i = 0; i < e->endpoint_len; i++)
	{
		if (e->endpoint[i] == '"' || e->endpoint[i] == '\\')
			appendStringInfoChar(s, '\\');
		appendStringInfoChar(s, e->endpoint[i]);
	}
	appendStringInfoChar(s, '"');
}

/* Array literals of one call, built element by element. */
enum
{
	A_POS, A_KEY, A_EP, A_AT, A_RT, A_SC, A_TKEY, A_TAT, NUM_ARRAYS
};

/* Start n array literals. */
void
hk_ship_arrays_start(StringInfo a, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		initStringInfo(&a[i]);
		appendStringInfoChar(&a[i], '{');
	}
}

/* Before each element of an array literal: a comma after the first. */
void
hk_ship_add_sep(StringInfo a)
{
	appendStringInfoChar(a, a->len > 1 ? ',' : ' ');
}

/*
 * Close n array literals and run sql with this run's id, upto and them as
 * its parameters (types: of all 2 + n); frees the literals.  hk_ship_call()'s
 * result.
 */
int64
hk_ship_send_arrays(const char *sql, StringInfo a, int n, const Oid *types,
					uint64 upto, const char *refused)
{
	const char **params = palloc(sizeof(char *) * (2 + n));
	StringInfoData run;
	char		upto_s[24];
	int64		result;
	int			i;

	for (i = 0; i < n; i++)
	{
		appendStringInfoChar(&a[i], '}');
		params[2 + i] = a[i].data;
	}
	initStringInfo(&run);
	hk_ship_append_uuid(&run, hk_ship_run_id());
	snprintf(upto_s, sizeof(upto_s), UINT64_FORMAT, upto);
	params[0] = run.data;
	params[1] = upto_s;

	result = hk_ship_call(sql, 2 + n, types, params, refused);
	for (i = 0; i < n; i++)
		pfree(a[i].data);
	pfree(run.data);
	pfree(params);
	return result;
}

/*
 * Send events [0, n) (queue positions from first) and every kept touch;
 * returns the position the primary has received up to, or -1 on failure.
 */
static int64
send_batch(int n, uint64 first, int64 *nsent, int *ntouch)
{
	StringInfoData a[NUM_ARRAYS];
	Oid			types[2 + NUM_ARRAYS] = {UUIDOID, INT8OID, INT8ARRAYOID, UUIDARRAYOID,
	TEXTARRAYOID, INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID, UUIDARRAYOID, INT8ARRAYOID};
	HASH_SEQ_STATUS seq;
	ShipTouch  *t;
	int			i;

	hk_ship_arrays_start(a, NUM_ARRAYS);
	*nsent = 0;
	for (i = 0; i < n; i++)
	{
		HkUsageEvent *e = batch[i];

		if (e->dbid != MyDatabaseId)
		{
			hk_usage_stat_add(HK_USTAT_OTHER_DB, 1);
			continue;
		}
		if (!(e->flags & HK_EV_USAGE))
		{
			bool		found;
			ShipTouch  *st = hash_search(touches, &e->key_id, HASH_ENTER, &found);

			if (!found || st->at < e->at)
				st->at = e->at;
			continue;
		}
		hk_ship_add_sep(&a[A_POS]);
		appendStringInfo(&a[A_POS], UINT64_FORMAT, first + i);
		hk_ship_add_sep(&a[A_KEY]);
		hk_ship_append_uuid(&a[A_KEY], &e->key_id);
		hk_ship_add_sep(&a[A_EP]);
		append_endpoint(&a[A_EP], e);
		hk_ship_add_sep(&a[A_AT]);
		appendStringInfo(&a[A_AT], INT64_FORMAT, (int64) e->at);
		hk_ship_add_sep(&a[A_RT]);
		if (e->response_time_ms == HK_EV_NONE)
			appendStringInfoString(&a[A_RT], "NULL");
		else
			appendStringInfo(&a[A_RT], "%d", e->response_time_ms);
		hk_ship_add_sep(&a[A_SC]);
		if (e->status_code == HK_EV_NONE)
			appendStringInfoString(&a[A_SC], "NULL");
		else
			appendStringInfo(&a[A_SC], "%d", e->status_code);
		(*nsent)++;
	}
	*ntouch = 0;
	hash_seq_init(&seq, touches);
	while ((t = hash_seq_search(&seq)) != NULL)
	{
		hk_ship_add_sep(&a[A_TKEY]);
		hk_ship_append_uuid(&a[A_TKEY], &t->key_id);
		hk_ship_add_sep(&a[A_TAT]);
		appendStringInfo(&a[A_TAT], INT64_FORMAT, (int64) t->at);
		(*ntouch)++;
	}
	return hk_ship_send_arrays("SELECT hokusai_auth._receive_usage($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
							   a, NUM_ARRAYS, types, first + n, "the primary refused the usage");
}

/* An empty table of touches to send. */
static HTAB *
new_touch_table(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(ShipTouch);
	ctl.hcxt = TopMemoryContext;
	return hash_create("hokusai_auth touches to ship", 256, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Usage events of this database among the first n of the batch. */
static int64
count_usage(int n)
{
	int64		k = 0;
	int			i;

	for (i = 0; i < n; i++)
		if (batch[i]->dbid == MyDatabaseId && (batch[i]->flags & HK_EV_USAGE))
			k++;
	return k;
}

/* Close the connection to the primary (the server has been promoted). */
void
hk_ship_disconnect(void)
{
	if (conn != NULL)
	{
		PQfinish(conn);
		conn = NULL;
	}
}

/* Note a chunk of the queue's touches (hk_usage_drain_touches()). */
static void
note_touches(const HkUsageTouch *t, int n, void *arg)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		bool		found;
		ShipTouch  *st = hash_search(touches, &t[i].key_id, HASH_ENTER, &found);

		if (!found || st->at < t[i].at)
			st->at = t[i].at;
	}
}

/*
 * One cycle on a standby (see the banner); stop is the worker's flag that
 * it must exit, final says this is its last cycle.
 */
void
hk_ship_cycle(const volatile sig_atomic_t *stop, bool final)
{
	uint32		capacity;
	uint64		queued;
	int			worker_pid;
	int64		limit;
	int64		done = 0;

	stop_flag = stop;
	final_cycle = final;
	hk_ship_note_standby();
	if (batch == NULL)
	{
		batch = MemoryContextAlloc(TopMemoryContext, sizeof(HkUsageEvent *) * HK_SHIP_BATCH);
		touches = new_touch_table();
	}
	hk_usage_drain_touches(note_touches, NULL);

	hk_usage_queue_state(&capacity, &queued, &worker_pid);
	if (queued == 0 && hash_get_num_entries(touches) == 0 && !hk_ship_events_pending())
		return;
	if (conn == NULL && GetCurrentTimestamp() < retry_after)
		return;
	if (conn == NULL && !ship_connect())
		return;

	limit = (int64) queued;
	do
	{
		uint64		first = hk_usage_tail_position();
		int			n = hk_usage_peek_refs(batch, (int) Min(limit - done, HK_SHIP_BATCH));
		int64		nsent;
		int			ntouch;
		int64		upto;
		int64		consumed;

		if (n == 0 && hash_get_num_entries(touches) == 0)
			break;
		upto = send_batch(n, first, &nsent, &ntouch);
		if (upto < 0)
			return;
		consumed = Min(Max(upto - (int64) first, 0), n);
		if (consumed > 0)
			hk_usage_advance((int) consumed);
		hash_destroy(touches);
		touches = new_touch_table();
		hk_ship_stat_add(HK_SSTAT_SHIPPED, count_usage((int) consumed));
		hk_ship_stat_add(HK_SSTAT_TOUCHES_SHIPPED, ntouch);
		hk_ship_succeeded();
		done += consumed;
		if (consumed < n)
			break;				/* the primary is short of room: next cycle */
	} while (done < limit);

	/* Then the events noted on the request path (ship_events.c). */
	if (hk_ship_events_pending())
		(void) hk_ship_events();
}
