/*-------------------------------------------------------------------------
 *
 * stream.c
 *	  Events in id order, as they commit, across lost connections: what
 *	  "events --follow" prints and "webhook" delivers.
 *
 * Events are read with hokusai_auth.events_after(last id handled), which
 * never returns an event while one with a lower id may still commit (docs/
 * events.md): a reader that resumes after the last id it handled neither
 * misses nor repeats one.  LISTEN hokusai_auth_events is only the wake-up:
 * it is issued before each catch-up read, so a commit between the two is
 * announced, and stream_wait() also returns after a timeout, so an event
 * held back by a transaction that then rolled back (which announces
 * nothing) is read at the next look.
 *
 * The session reads in UTC and READ COMMITTED whatever the database's or
 * role's defaults (events_after() refuses REPEATABLE READ).  When the
 * connection is lost (a server restart, a network failure) stream_reconnect()
 * connects again with the same parameters, backing off from 0.25 s to 5 s,
 * until it succeeds: the commands built on this run until they are stopped.
 *
 * Every statement names its objects, functions and operators with their
 * schema: the session's search_path is empty (conn.c).
 *
 * src/bin/hokusai/stream.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>

#include "conn.h"
#include "report.h"
#include "stream.h"

#define RECONNECT_FIRST_MS	250
#define RECONNECT_MAX_MS	5000

/* Sleep, through signals that do not end the program */
void
sleep_ms(long ms)
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&t, &t) != 0 && errno == EINTR)
		;
}

/* One statement without parameters; false when the connection was lost */
static bool
run_or_lost(PGconn *conn, const char *sql)
{
	PGresult   *res = run_query_or_lost(conn, sql, 0, NULL);

	if (res == NULL)
		return false;
	PQclear(res);
	return true;
}

/* The stream's session settings, LISTEN, the command's own set-up */
static bool
setup(EventStream *s)
{
	if (!run_or_lost(s->conn, "SELECT pg_catalog.set_config('timezone', 'UTC', false)") ||
		!run_or_lost(s->conn, "SELECT pg_catalog.set_config('default_transaction_isolation',"
					 " 'read committed', false)"))
		return false;
	if (s->listen && !run_or_lost(s->conn, "LISTEN hokusai_auth_events"))
		return false;
	return s->on_connect == NULL || s->on_connect(s, s->arg);
}

/* Set the connection up for the stream (after connect_db()) */
void
stream_start(EventStream *s)
{
	if (!setup(s))
		stream_reconnect(s);
}

/* The connection was lost: connect again until it works */
void
stream_reconnect(EventStream *s)
{
	long		delay = RECONNECT_FIRST_MS;

	note("%s: lost the connection to the server; reconnecting", s->command);
	for (;;)
	{
		sleep_ms(delay);
		if (reconnect_db() && setup(s))
			break;
		delay = delay * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : delay * 2;
	}
	note("%s: reconnected; resuming after event %lld", s->command, s->after);
}

/*
 * Up to max events after s->after, in id order (columns EV_*); NULL when
 * the connection was lost.
 */
PGresult *
stream_fetch(EventStream *s, int max)
{
	char		after[24];
	char		count[16];
	const char *values[2] = {after, count};

	snprintf(after, sizeof(after), "%lld", s->after);
	snprintf(count, sizeof(count), "%d", max);
	return run_query_or_lost(s->conn,
							 "SELECT e.id, pg_catalog.to_jsonb(e)::pg_catalog.text, e.kind, e.at,"
							 " coalesce(e.data OPERATOR(pg_catalog.->>) 'key_prefix',"
							 " e.api_key_id::pg_catalog.text,"
							 " 'user ' OPERATOR(pg_catalog.||) e.user_id::pg_catalog.text, '-'),"
							 " e.data::pg_catalog.text"
							 " FROM hokusai_auth.events_after($1::pg_catalog.int8, $2::pg_catalog.int4) e"
							 " ORDER BY e.id",
							 2, values);
}

/* Drop the notifications received; true if there were any */
static bool
drain_notifications(PGconn *conn)
{
	PGnotify   *n;
	bool		any = false;

	while ((n = PQnotifies(conn)) != NULL)
	{
		PQfreemem(n);
		any = true;
	}
	return any;
}

/*
 * Wait until an event is announced or timeout_ms have passed.  False when
 * the connection was lost meanwhile.
 */
bool
stream_wait(EventStream *s, int timeout_ms)
{
	struct pollfd pfd;

	if (drain_notifications(s->conn))
		return true;
	pfd.fd = PQsocket(s->conn);
	pfd.events = POLLIN;
	pfd.revents = 0;
	if (pfd.fd < 0)
		return false;
	if (poll(&pfd, 1, timeout_ms) > 0)
	{
		if (!PQconsumeInput(s->conn))
			return false;
		drain_notifications(s->conn);
	}
	return PQstatus(s->conn) == CONNECTION_OK;
}
