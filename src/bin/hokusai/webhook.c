/*-------------------------------------------------------------------------
 *
 * webhook.c
 *	  webhook --url URL --secret-file FILE [--after ID] [--cacert FILE]:
 *	  deliver every event, in id order, to a receiver as a signed POST
 *	  (post.c), at least once, until stopped.
 *
 * The cursor.  hokusai_auth.webhook_cursors keeps, per URL, the last event
 * delivered (or given up on).  The command starts after it, or after --after
 * ID when given (which also sets it: events after ID are sent again), or
 * from the first event kept when there is none.  After each event it moves
 * the cursor; an event is sent before the cursor passes it, so a restart
 * (of this command or of the server) can repeat the event that was being
 * delivered, never skip one.  When the database goes away the delivery of
 * the events already read goes on; the cursor is written once connected
 * again.
 *
 * One relay per URL: a session advisory lock on the URL's hash; a second
 * one exits at once.
 *
 * The secret is read from a file (never the command line, which others can
 * see in the process list), once, and never printed; a trailing newline is
 * not part of it.
 *
 * src/bin/hokusai/webhook.c
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <sodium.h>

#include "conn.h"
#include "events.h"
#include "lookup.h"
#include "post.h"
#include "report.h"
#include "stream.h"

#define WEBHOOK_PAGE		100
#define WEBHOOK_POLL_MS		2000
#define WEBHOOK_URL_MAX		2048

static unsigned char secret[WEBHOOK_SECRET_MAX + 2];
static size_t secret_len = 0;

/* What on_connect() needs */
typedef struct Relay
{
	const char *url;
	bool		cursor_pending; /* s->after is not in the database yet */
} Relay;

/* The secret is wiped from memory at exit */
static void
forget_secret(void)
{
	sodium_memzero(secret, sizeof(secret));
}

/* --url: http or https, no blanks or control characters, not too long */
static void
check_url(const char *cmd, const char *url)
{
	if (strlen(url) > WEBHOOK_URL_MAX)
		fail(EXIT_USAGE, "%s: --url is longer than %d characters", cmd, WEBHOOK_URL_MAX);
	if (strncasecmp(url, "https://", 8) != 0 && strncasecmp(url, "http://", 7) != 0)
		fail(EXIT_USAGE, "%s: --url must start with https:// (or http://)", cmd);
	for (const char *p = url; *p; p++)
		if (isspace((unsigned char) *p) || iscntrl((unsigned char) *p))
			fail(EXIT_USAGE, "%s: --url must not contain blanks or control characters", cmd);
}

/* Read --secret-file: not empty, at most WEBHOOK_SECRET_MAX bytes */
static void
read_secret(const char *cmd, const char *path)
{
	FILE	   *f = fopen(path, "rb");
	struct stat st;
	bool		world_readable;

	if (f == NULL)
		fail(EXIT_USAGE, "%s: could not open --secret-file %s: %s", cmd, path, strerror(errno));
	atexit(forget_secret);
	secret_len = fread(secret, 1, sizeof(secret), f);
	if (ferror(f))
		fail(EXIT_USAGE, "%s: could not read --secret-file %s: %s", cmd, path, strerror(errno));
	world_readable = fstat(fileno(f), &st) == 0 && (st.st_mode & S_IROTH);
	fclose(f);
	if (secret_len > WEBHOOK_SECRET_MAX + 1 ||
		(secret_len == WEBHOOK_SECRET_MAX + 1 && secret[WEBHOOK_SECRET_MAX] != '\n'))
		fail(EXIT_USAGE, "%s: --secret-file %s holds more than %d bytes", cmd, path,
			 WEBHOOK_SECRET_MAX);
	if (secret_len > 0 && secret[secret_len - 1] == '\n')
		secret_len--;
	if (secret_len > 0 && secret[secret_len - 1] == '\r')
		secret_len--;
	if (secret_len == 0)
		fail(EXIT_USAGE, "%s: --secret-file %s is empty", cmd, path);
	if (world_readable)
		note("warning: --secret-file %s can be read by every user of this machine (chmod o-r it)",
			 path);
}

/* Write the cursor; false when the connection was lost */
static bool
store_cursor(PGconn *conn, const char *url, long long id)
{
	char		idtext[24];
	const char *values[2] = {url, idtext};
	PGresult   *res;

	snprintf(idtext, sizeof(idtext), "%lld", id);
	res = run_query_or_lost(conn,
							"SELECT hokusai_auth.set_webhook_cursor($1::pg_catalog.text, $2::pg_catalog.int8)",
							2, values);
	if (res == NULL)
		return false;
	PQclear(res);
	return true;
}

/* Every connection: the URL's lock, and the cursor if it is behind */
static bool
on_connect(EventStream *s, void *arg)
{
	Relay	   *r = arg;
	const char *values[1] = {r->url};
	PGresult   *res;

	res = run_query_or_lost(s->conn,
							"SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended($1::pg_catalog.text, 0))",
							1, values);
	if (res == NULL)
		return false;
	if (PQgetvalue(res, 0, 0)[0] != 't')
		fail(EXIT_SERVER, "%s: another hokusai auth webhook is delivering to this URL (%s)",
			 s->command, receiver_origin());
	PQclear(res);
	if (r->cursor_pending)
	{
		if (!store_cursor(s->conn, r->url, s->after))
			return false;
		r->cursor_pending = false;
	}
	return true;
}

/*
 * webhook --url URL --secret-file FILE [--after ID] [--cacert FILE]
 */
void
webhook(const CommandLine *cl)
{
	const char *url = cl->value[OPT_URL];
	const char *cacert = cl->value[OPT_CACERT];
	Relay		relay = {0};
	EventStream s = {.command = cl->command, .listen = true,
	.on_connect = on_connect, .arg = &relay};

	require_option(cl, OPT_URL);
	require_option(cl, OPT_SECRET_FILE);
	check_url(cl->command, url);
	if (cacert == NULL && getenv("CURL_CA_BUNDLE") && getenv("CURL_CA_BUNDLE")[0])
		cacert = getenv("CURL_CA_BUNDLE");
	if (cacert != NULL)
	{
		FILE	   *f = fopen(cacert, "r");

		if (f == NULL)
			fail(EXIT_USAGE, "%s: could not open CA certificates %s: %s",
				 cl->command, cacert, strerror(errno));
		fclose(f);
	}
	read_secret(cl->command, cl->value[OPT_SECRET_FILE]);
	receiver_open(url, cacert, secret, secret_len);
	if (strncasecmp(url, "http://", 7) == 0)
		note("warning: %s: --url is http://: events and their signatures travel unencrypted",
			 cl->command);

	relay.url = url;
	s.conn = open_db(cl);
	if (cl->value[OPT_AFTER])
	{
		s.after = strtoll(cl->value[OPT_AFTER], NULL, 10);
		relay.cursor_pending = true;
	}
	stream_start(&s);
	if (!cl->value[OPT_AFTER])
	{
		const char *values[1] = {url};
		PGresult   *res = run_query(s.conn,
									"SELECT hokusai_auth.webhook_cursor($1::pg_catalog.text)",
									1, values);

		s.after = PQgetisnull(res, 0, 0) ? 0 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
	}
	note("%s: delivering the events after %lld to %s", cl->command, s.after,
		 receiver_origin());

	for (;;)
	{
		PGresult   *res = stream_fetch(&s, WEBHOOK_PAGE);
		int			n;

		if (res == NULL)
		{
			stream_reconnect(&s);
			continue;
		}
		n = PQntuples(res);
		for (int i = 0; i < n; i++)
		{
			(void) deliver_event(PQgetvalue(res, i, EV_ID), PQgetvalue(res, i, EV_KIND),
								 PQgetvalue(res, i, EV_JSON));
			s.after = strtoll(PQgetvalue(res, i, EV_ID), NULL, 10);
			if (relay.cursor_pending || !store_cursor(s.conn, url, s.after))
				relay.cursor_pending = true;
		}
		PQclear(res);
		if (relay.cursor_pending)
		{
			/* the connection was lost: the cursor is written on reconnecting */
			stream_reconnect(&s);
			continue;
		}
		if (n == WEBHOOK_PAGE)
			continue;
		if (!stream_wait(&s, WEBHOOK_POLL_MS))
			stream_reconnect(&s);
	}
}
