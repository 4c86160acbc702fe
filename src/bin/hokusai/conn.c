/*-------------------------------------------------------------------------
 *
 * conn.c
 *	  Connecting, running statements, and turning failures into exit codes.
 *
 * The connection comes from the options -h, -p, -U and -d (a database name
 * or a connection string; --dsn is the same) and, for what they leave out,
 * from the standard libpq environment (PGHOST, PGPORT, PGDATABASE, PGUSER,
 * PGSERVICE, PGPASSFILE, ...).  A password is asked for on the terminal as
 * psql asks: with -W before connecting, otherwise only when the server
 * wants one and none was given, and never with -w.  A database without
 * the extension is reported as such (EXIT_CONNECT).  Every failure is reduced to one
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
 * the server rolls back a transaction that a failure left open.  The
 * commands that run until stopped (events --follow, webhook) get a lost
 * connection back from run_query_or_lost() and make it again with
 * reconnect_db().
 *
 * src/bin/hokusai/conn.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>

#include "conn.h"
#include "report.h"

/* The one connection; closed at exit, which rolls back an open transaction */
static PGconn *db = NULL;

static bool setup_session(void);

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
 * Ask for user's password (NULL: not known yet) on the terminal (/dev/tty),
 * without echo, as psql does; NULL when there is no terminal.
 */
static char *
read_password(const char *user)
{
	static char buf[1024];
	FILE	   *tty = fopen("/dev/tty", "r+");
	struct termios saved;
	struct termios quiet;
	bool		restore;
	bool		got;

	if (tty == NULL)
		return NULL;
	restore = tcgetattr(fileno(tty), &saved) == 0;
	if (restore)
	{
		quiet = saved;
		quiet.c_lflag &= ~ECHO;
		quiet.c_lflag |= ECHONL;
		/* TCSANOW: keep what was typed ahead */
		tcsetattr(fileno(tty), TCSANOW, &quiet);
	}
	if (user)
		fprintf(tty, "Password for user %s: ", user);
	else
		fputs("Password: ", tty);
	fflush(tty);
	got = fgets(buf, sizeof(buf), tty) != NULL;
	if (restore)
		tcsetattr(fileno(tty), TCSANOW, &saved);
	else
		fputc('\n', tty);
	fclose(tty);
	if (!got)
		buf[0] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf;
}

/* One attempt with the given password (NULL: libpq's own sources) */
static PGconn *
try_connect(const char *host, const char *port, const char *user,
			const char *dbname, const char *password)
{
	/* as psql: a connection string in dbname overrides the rest */
	const char *keywords[] = {"host", "port", "user", "password", "dbname",
	"fallback_application_name", NULL};
	const char *values[] = {host, port, user, password, dbname, "hokusai", NULL};
	PGconn	   *conn = PQconnectdbParams(keywords, values, 1);

	if (conn == NULL)
		fail(EXIT_CONNECT, "could not connect: out of memory");
	return conn;
}

/*
 * Connect (a NULL option: the libpq environment and defaults), asking for
 * a password as psql does: first with always_prompt, or on a terminal when
 * the server asks for one and none was given, unless never_prompt.  Then
 * check that the database has hokusai_auth, empty the search_path and fix
 * the date style.  Any failure ends the program.
 */
PGconn *
connect_db(const char *host, const char *port, const char *user,
		   const char *dbname, bool never_prompt, bool always_prompt)
{
	char	   *password = NULL;

	/* fail() exits: close the connection then, so the server sees a goodbye */
	atexit(disconnect_db);
	if (always_prompt &&
		(password = read_password(user)) == NULL)
		fail(EXIT_USAGE, "-W/--password: there is no terminal to ask for the password on");

	for (;;)
	{
		db = try_connect(host, port, user, dbname, password);
		if (PQstatus(db) == CONNECTION_OK)
			break;
		if (!PQconnectionNeedsPassword(db) || password != NULL)
			fail(EXIT_CONNECT, "could not connect: %s",
				 first_line(PQerrorMessage(db)));
		if (never_prompt)
			fail(EXIT_CONNECT, "could not connect to database \"%s\" as user \"%s\": the server asks for a password, and -w/--no-password forbids asking; set PGPASSWORD or use a password file",
				 PQdb(db), PQuser(db));
		if ((password = read_password(PQuser(db))) == NULL)
			fail(EXIT_CONNECT, "could not connect to database \"%s\" as user \"%s\": the server asks for a password, and there is no terminal to ask on; set PGPASSWORD or use a password file",
				 PQdb(db), PQuser(db));
		PQfinish(db);
	}
	if (password)
		memset(password, 0, strlen(password));
	if (!setup_session())
		fail(EXIT_CONNECT, "lost the connection to the server: %s",
			 first_line(PQerrorMessage(db)));
	return db;
}

/*
 * What every connection gets first (see the banner): an empty search_path,
 * the check for the extension, the date style.  False when the connection
 * was lost meanwhile; any other failure ends the program.
 */
static bool
setup_session(void)
{
	PGresult   *res;

	PQsetNoticeProcessor(db, ignore_notice, NULL);

	/* first of all: nothing on search_path but pg_catalog (see the banner) */
	res = run_query_or_lost(db, "SELECT pg_catalog.set_config('search_path', '', false)",
							0, NULL);
	if (res == NULL)
		return false;
	PQclear(res);

	/* a database without the extension: say so, not "relation ... does not exist" */
	res = run_query_or_lost(db, "SELECT pg_catalog.to_regnamespace('hokusai_auth') IS NULL",
							0, NULL);
	if (res == NULL)
		return false;
	if (PQgetvalue(res, 0, 0)[0] == 't')
		fail(EXIT_CONNECT, "database \"%s\" does not have the hokusai_auth extension: run CREATE EXTENSION hokusai_auth CASCADE as a superuser in it, or connect to another database (-d)",
			 PQdb(db));
	PQclear(res);

	/* timestamps in one unambiguous form, whatever the server's default */
	res = run_query_or_lost(db, "SELECT pg_catalog.set_config('datestyle', 'ISO, YMD', false)",
							0, NULL);
	if (res == NULL)
		return false;
	PQclear(res);
	return true;
}

/*
 * Connect again with the same parameters (a password asked for is kept by
 * libpq) after the connection was lost, and set the session up again.
 * False when the server cannot be reached yet; the caller tries again.
 */
bool
reconnect_db(void)
{
	if (db == NULL)
		return false;
	PQreset(db);
	if (PQstatus(db) != CONNECTION_OK)
		return false;
	return setup_session();
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
 * successful statement, or NULL when lost is not NULL and the connection
 * was lost (the server went away, or is shutting down: *lost is then set);
 * on any other failure reports it and exits.
 */
static PGresult *
exec_query(PGconn *conn, const char *sql, int nparams, const char *const *values,
		   bool *lost)
{
	PGresult   *res;
	ExecStatusType status;
	const char *sqlstate;
	const char *primary;

	res = PQexecParams(conn, sql, nparams, NULL, values, NULL, NULL, 0);
	status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK)
		return res;

	sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (lost != NULL &&
		(PQstatus(conn) == CONNECTION_BAD ||
		 exit_code_for(sqlstate) == EXIT_CONNECT))
	{
		PQclear(res);
		*lost = true;
		return NULL;
	}
	if (PQstatus(conn) == CONNECTION_BAD)
		fail(EXIT_CONNECT, "lost the connection to the server: %s",
			 first_line(PQerrorMessage(conn)));

	primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (primary == NULL)
		primary = first_line(PQerrorMessage(conn));
	fail(exit_code_for(sqlstate), "%s", primary);
}

/*
 * Run one statement with text parameters.  Returns the result of a
 * successful statement; on failure reports it and exits.
 */
PGresult *
run_query(PGconn *conn, const char *sql, int nparams, const char *const *values)
{
	return exec_query(conn, sql, nparams, values, NULL);
}

/*
 * The same, except that a lost connection returns NULL instead of ending
 * the program: for the commands that reconnect (reconnect_db()).
 */
PGresult *
run_query_or_lost(PGconn *conn, const char *sql, int nparams,
				  const char *const *values)
{
	bool		lost = false;

	return exec_query(conn, sql, nparams, values, &lost);
}

/* Run a statement without parameters or result (BEGIN, COMMIT) */
void
run_command(PGconn *conn, const char *sql)
{
	PQclear(run_query(conn, sql, 0, NULL));
}
