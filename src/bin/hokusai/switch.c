/*-------------------------------------------------------------------------
 *
 * switch.c
 *	  The "hokusai auth" commands that switch a key off and on again:
 *	  disable-key and enable-key (hokusai_auth.disable_key(), enable_key();
 *	  docs/authorization.md).
 *
 * They follow the rules of commands.c: the command line is checked whole
 * before connecting, the work is one statement, output comes after it has
 * committed, and every failure ends in fail().  A disabled key is refused
 * from the moment the statement commits, on every session, until it is
 * enabled; unlike revoke-key, nothing here is final, so neither asks for
 * confirmation.  Neither prints more of a key than its key_prefix.
 *
 * src/bin/hokusai/switch.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>

#include "conn.h"
#include "lookup.h"
#include "output.h"
#include "report.h"
#include "switch.h"

/*
 * Run one of the two functions on the key the command line names; print
 * whether it changed anything (field, in --json) and the sentence for it.
 */
static void
switch_key(const CommandLine *cl, const char *sql, const char *field,
		   const char *changed_fmt, const char *unchanged_fmt)
{
	PGconn	   *conn = open_db(cl);
	PGresult   *key = find_key(conn, cl);
	PGresult   *res;
	const char *values[2] = {PQgetvalue(key, 0, COL_ID), cl->value[OPT_REASON]};
	const char *prefix = PQgetvalue(key, 0, COL_PREFIX);
	bool		changed;

	res = run_query(conn, sql, cl->value[OPT_REASON] ? 2 : 1, values);
	changed = PQgetvalue(res, 0, 0)[0] == 't';
	if (cl->common.json)
	{
		const JsonField fields[] = {
			{"id", values[0], false},
			{"key_prefix", prefix, false},
			{field, changed ? "true" : "false", true}
		};

		print_json_fields(fields, sizeof(fields) / sizeof(fields[0]));
	}
	else
		printf(changed ? changed_fmt : unchanged_fmt, prefix);
	PQclear(res);
	PQclear(key);
}

/*
 * disable-key KEY_ID_OR_PREFIX [--reason TEXT]
 */
void
disable_key(const CommandLine *cl)
{
	switch_key(cl,
			   cl->value[OPT_REASON] ?
			   "SELECT hokusai_auth.disable_key($1::pg_catalog.uuid, $2::pg_catalog.text)" :
			   "SELECT hokusai_auth.disable_key($1::pg_catalog.uuid)",
			   "disabled",
			   "disabled api key %s: it is refused until enable-key\n",
			   "api key %s was already disabled; nothing changed\n");
}

/*
 * enable-key KEY_ID_OR_PREFIX
 */
void
enable_key(const CommandLine *cl)
{
	switch_key(cl, "SELECT hokusai_auth.enable_key($1::pg_catalog.uuid)",
			   "enabled",
			   "enabled api key %s: it works again\n",
			   "api key %s was not disabled; nothing changed\n");
}
