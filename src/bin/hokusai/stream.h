/*-------------------------------------------------------------------------
 *
 * stream.h
 *	  Events in id order from hokusai_auth.events_after(), woken by
 *	  LISTEN hokusai_auth_events, across lost connections: for the events
 *	  and webhook commands.
 *
 * src/bin/hokusai/stream.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_STREAM_H
#define HOKUSAI_STREAM_H

#include <stdbool.h>

#include "libpq-fe.h"

/* Columns of a page (stream_fetch()) */
enum
{
	EV_ID,						/* the event's id */
	EV_JSON,					/* the event as one JSON object (at in UTC) */
	EV_KIND,
	EV_AT,						/* timestamptz, ISO, UTC */
	EV_WHO,						/* key_prefix, key id or "user <id>" */
	EV_DATA						/* data as JSON text */
};

typedef struct EventStream
{
	const char *command;		/* for messages: "events", "webhook" */
	PGconn	   *conn;
	long long	after;			/* the last event id handled */
	bool		listen;			/* LISTEN for new events */
	/*
	 * Run after every (re)connection, once the session is set up; false
	 * when the connection was lost meanwhile.
	 */
	bool		(*on_connect) (struct EventStream *s, void *arg);
	void	   *arg;
} EventStream;

extern void stream_start(EventStream *s);
extern PGresult *stream_fetch(EventStream *s, int max);
extern bool stream_wait(EventStream *s, int timeout_ms);
extern void stream_reconnect(EventStream *s);
extern void sleep_ms(long ms);

#endif							/* HOKUSAI_STREAM_H */
