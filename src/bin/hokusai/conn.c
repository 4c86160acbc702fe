/*-------------------------------------------------------------------------
 *
 * conn.c
 *	  Connecting, running statements, and turning failures into exit codes.
 *
 * The connection comes from --dsn (a connection string or URI) or, without
 * it, from the standard libpq environment (PGHOST, PGPORT, PGDATABASE,
 * PGUSER, PGSERVICE, PGPASSFILE, ...).  Every failure is reduced to one
 * line: the server's primary message (PG_DIAG_MESSAGE_PRIMARY), or the
 * first line of libpq's message when there is no server error; notices
 * are dropped.  The exit code follows the SQLSTATE:
 *
 *	42501			permission denied		EXIT_PERMISSION
 *	P0002			no data found			EXIT_NOT_FOUND
 *	22xxx, 23xxx	bad value, conflict		EXIT_INVALID
 *	08xxx, 57P0x	connection lost			EXIT_CONNECT
 *	anything else							EXIT_SERVER
 *
 * On connect the session's search_path is emptied, as pg_dump and the other
 * client tools of PostgreSQL do (ALWAYS_SECURE_SEARCH_PATH_SQL): whatever
 * the database's or the role's default puts there (a schema another role
 * owns, with look-alike operators, functions or types) is never searched,
 * and every statement the tool sends names its objects, types, functions
 * and operators with their schema besides (DESIGN.md section 11).
 *
 * There is one connection per run.  connect_db() registers disconnect_db()
 * with atexit(), so the connection is closed however the program ends and
 * the server rolls back a transaction that a failure left open.
 *
 * src/bin/hokusai/conn.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "report.h"

/* The one connection; closed at exit, which rolls back an open transaction */
static PGconn *db = NULL;

/* The notice processor: notices are not shown */
static void
ignore_notice(void *arg, const char *message)
{
	(void) arg;
	(void) message;
}

/* The first line of a libpq message, without trailing blanks */
static char *
first_line(const char *msg)
{
	static char buf[1024];
	size_t		n = strcspn(msg, "\r\n");

	if (n >= sizeof(buf))
		n = sizeof(buf) - 1;
	memcpy(buf, msg, n);
	while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		n--;
	buf[n] = '\0';
	return buf;
}

/*
 * Connect with dsn (NULL: the libpq environment), empty the search_path
 * and fix the date style; any failure ends the program.
 */
PGconn *
connect_db(const char *dsn)
{
	const char *keywords[3];
	const char *values[3];
	int			n = 0;
	PGresult   *res;

	/* fail() exits: close the connection then, so the server sees a goodbye */
	atexit(disconnect_db);
	if (dsn)
	{
		keywords[n] = "dbname";
		values[n++] = dsn;
	}
	keywords[n] = "fallback_application_name";
	values[n++] = "hokusai";
	keywords[n] = NULL;
	values[n] = NULL;

	db = PQconnectdbParams(keywords, values, 1);
	if (db == NULL)
		fail(EXIT_CONNECT, "could not connect: out of memory");
	if (PQstatus(db) != CONNECTION_OK)
		fail(EXIT_CONNECT, "could not connect: %s",
			 first_line(PQerrorMessage(db)));
	PQsetNoticeProcessor(db, ignore_notice, NULL);

	/* first of all: nothing on search_path but pg_catalog (see the banner) */
	res = run_query(db, "SELECT pg_catalog.set_config('search_path', '', false)",
					0, NULL);
	PQclear(res);

	/* timestamps in one unambiguous form, whatever the server's default */
	res = run_query(db, "SELECT pg_catalog.set_config('datestyle', 'ISO, YMD', false)",
					0, NULL);
	PQclear(res);
	return db;
}

/* Close the connection, if there is one; also run at exit */
void
disconnect_db(void)
{
	if (db)
	{
		PQfinish(db);
		db = NULL;
	}
}

/* The exit code for a failed statement's SQLSTATE */
static int
exit_code_for(const char *sqlstate)
{
	if (sqlstate == NULL)
		return EXIT_SERVER;
	if (strcmp(sqlstate, "42501") == 0)
		return EXIT_PERMISSION;
	if (strcmp(sqlstate, "P0002") == 0)
		return EXIT_NOT_FOUND;
	if (strncmp(sqlstate, "22", 2) == 0 || strncmp(sqlstate, "23", 2) == 0)
		return EXIT_INVALID;
	if (strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "57P0", 4) == 0)
		return EXIT_CONNECT;
	return EXIT_SERVER;
}

/*
 * Run one statement with text parameters.  Returns the result of a
 * successful statement; on failure reports it and exits.
 */
PGresult *
run_query(PGconn *conn, const char *sql, int nparams, const char *const *values)
{
	PGresult   *res;
	ExecStatusType status;
	const char *sqlstate;
	const char *primary;

	res = PQexecParams(conn, sql, nparams, NULL, values, NULL, NULL, 0);
	status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK)
		return res;

	if (PQstatus(conn) == CONNECTION_BAD)
		fail(EXIT_CONNECT, "lost the connection to the server: %s",
			 first_line(PQerrorMessage(conn)));

	sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (primary == NULL)
		primary = first_line(PQerrorMessage(conn));
	fail(exit_code_for(sqlstate), "%s", primary);
}

/* Run a statement without parameters or result (BEGIN, COMMIT) */
void
run_command(PGconn *conn, const char *sql)
{
	PQclear(run_query(conn, sql, 0, NULL));
}
