/*-------------------------------------------------------------------------
 *
 * events.c
 *	  events [--after ID] [--follow] [--json]: hokusai_auth.events in id
 *	  order, from after ID (default: from the first one kept), then, with
 *	  --follow, each new one as it commits, until stopped.
 *
 * One line per event on stdout, flushed at once: for people
 *
 *	ID  AT (UTC)  KIND  KEY  DATA
 *
 * where KEY is the key_prefix (or key id; "user <id>" for events about a
 * user), and with --json the event as one JSON object per line (JSON
 * Lines: id, at, kind, api_key_id, user_id, data), the same object the
 * webhook command posts.  --follow survives a server restart: it connects
 * again and resumes after the last event it printed, so it neither skips
 * nor repeats one (stream.c).
 *
 * src/bin/hokusai/events.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>

#include "events.h"
#include "lookup.h"
#include "report.h"
#include "stream.h"

#define EVENTS_PAGE		1000
/* --follow looks again this often without an announcement */
#define EVENTS_POLL_MS	2000

/*
 * events [--after ID] [--follow] [--json]
 */
void
events(const CommandLine *cl)
{
	bool		follow = cl->value[OPT_FOLLOW] != NULL;
	EventStream s = {.command = cl->command, .listen = follow};

	s.after = cl->value[OPT_AFTER] ? strtoll(cl->value[OPT_AFTER], NULL, 10) : 0;
	s.conn = open_db(cl);
	stream_start(&s);
	for (;;)
	{
		PGresult   *res = stream_fetch(&s, EVENTS_PAGE);
		int			n;

		if (res == NULL)
		{
			if (!follow)
				fail(EXIT_CONNECT, "%s: lost the connection to the server", cl->command);
			stream_reconnect(&s);
			continue;
		}
		n = PQntuples(res);
		for (int i = 0; i < n; i++)
		{
			if (cl->common.json)
				puts(PQgetvalue(res, i, EV_JSON));
			else
				printf("%s  %s  %s  %s  %s\n", PQgetvalue(res, i, EV_ID),
					   PQgetvalue(res, i, EV_AT), PQgetvalue(res, i, EV_KIND),
					   PQgetvalue(res, i, EV_WHO), PQgetvalue(res, i, EV_DATA));
			s.after = strtoll(PQgetvalue(res, i, EV_ID), NULL, 10);
		}
		PQclear(res);
		if (fflush(stdout) != 0 || ferror(stdout))
			fail(EXIT_SERVER, "could not write to standard output");
		if (n == EVENTS_PAGE)
			continue;
		if (!follow)
			break;
		if (!stream_wait(&s, EVENTS_POLL_MS))
			stream_reconnect(&s);
	}
}
