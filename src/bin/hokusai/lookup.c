/*-------------------------------------------------------------------------
 *
 * lookup.c
 *	  What the commands share: the connection by the command line's
 *	  options, and finding the user or the key that an argument names
 *	  (ending with "not found", exit 5, when there is none).
 *
 * Every statement names its tables, functions, types and operators with
 * their schema: the session's search_path is empty (conn.c).
 *
 * src/bin/hokusai/lookup.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "common/text.h"

#include "conn.h"
#include "lookup.h"
#include "report.h"

/* Connect by the command line's connection options */
PGconn *
open_db(const CommandLine *cl)
{
	const CommonOptions *o = &cl->common;

	return connect_db(o->host, o->port, o->username, o->dbname,
					  o->prompt == PROMPT_NEVER, o->prompt == PROMPT_ALWAYS);
}

/*
 * A user given by id (a uuid) or username; sets its id and username, or
 * ends with "not found".
 */
void
resolve_user(PGconn *conn, const char *arg, char **id, char **username)
{
	PGresult   *res;
	const char *values[1] = {arg};

	if (hk_looks_like_uuid(arg))
		res = run_query(conn,
						"SELECT u.id, u.username FROM hokusai_auth.users u"
						" WHERE u.id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid",
						1, values);
	else
		res = run_query(conn,
						"SELECT u.id, u.username FROM hokusai_auth.users u"
						" WHERE u.username OPERATOR(pg_catalog.=) $1::pg_catalog.text",
						1, values);
	if (PQntuples(res) == 0)
		fail(EXIT_NOT_FOUND, "user \"%.100s%s\" does not exist",
			 arg, strlen(arg) > 100 ? "..." : "");
	*id = strdup(PQgetvalue(res, 0, 0));
	*username = strdup(PQgetvalue(res, 0, 1));
	PQclear(res);
}

/*
 * Run a query about the command's key argument, or end with "not found"
 * when it returns no row.  The query picks the key with KEY_MATCHES; its
 * $1 and $2 are set here (the argument as a uuid or as a key_prefix, the
 * other NULL), the caller sets values[2..nparams).
 */
PGresult *
query_key(PGconn *conn, const CommandLine *cl, const char *sql, int nparams,
		  const char **values)
{
	PGresult   *res;

	values[0] = cl->key_kind == KEYREF_ID ? cl->argument : NULL;
	values[1] = cl->key_kind == KEYREF_PREFIX ? cl->argument : NULL;
	res = run_query(conn, sql, nparams, values);
	if (PQntuples(res) == 0)
		fail(EXIT_NOT_FOUND, "api key %s does not exist", cl->argument);
	return res;
}

/* The command's key argument, with its owner's username and successor */
PGresult *
find_key(PGconn *conn, const CommandLine *cl)
{
	const char *values[2];

	return query_key(conn, cl,
					 "SELECT " KEY_COLUMNS ", "
					 "(SELECT r.id FROM hokusai_auth.keys r"
					 " WHERE r.rotated_from OPERATOR(pg_catalog.=) k.id LIMIT 1) AS replaced_by"
					 " FROM hokusai_auth.keys k"
					 " JOIN hokusai_auth.users u ON u.id OPERATOR(pg_catalog.=) k.user_id"
					 " WHERE " KEY_MATCHES,
					 2, values);
}
