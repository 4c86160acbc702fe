/*-------------------------------------------------------------------------
 *
 * commands.c
 *	  The "hokusai auth" commands, and their table by name.
 *
 * Each command's command line is checked whole before connecting (parse.c,
 * by the command's entry in the table at the end of this file); then the
 * command does its work through the hokusai_auth SQL interface in one
 * statement or one transaction, and prints only after the work has
 * committed: a key is never shown for a transaction that did not commit,
 * and a failure never leaves half an operation behind.  A command returns
 * only when it succeeded; every failure ends the program in fail().
 *
 * Plaintext keys appear exactly once, on stdout, from create-key and
 * rotate-key.  Nothing else prints more of a key than its key_prefix.
 *
 * Every statement names its tables, functions, types and operators with
 * their schema: the session's search_path is empty (conn.c).
 *
 * src/bin/hokusai/commands.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "commands.h"
#include "conn.h"
#include "events.h"
#include "lookup.h"
#include "metering.h"
#include "output.h"
#include "parse.h"
#include "report.h"
#include "switch.h"

/*
 * A new key on stdout, flushed before any note on stderr: the key alone
 * (column 1 of res), or with --json row 0 of res and of more as one object.
 */
static void
show_new_key(const PGresult *res, const PGresult *more, bool json)
{
	if (json)
		print_json_object(res, more);
	else
		puts(PQgetvalue(res, 0, 1));
	fflush(stdout);
}

/* After a new key and its note: it will not be shown again */
static void
warn_key_shown_once(void)
{
	note("warning: the key printed on stdout will not be shown again; store it now");
}

/*
 * create-user USERNAME [--email EMAIL]
 */
static void
create_user(const CommandLine *cl)
{
	const char *values[2] = {cl->argument, cl->value[OPT_EMAIL]};
	PGconn	   *conn = open_db(cl);
	PGresult   *res;

	res = run_query(conn,
					"SELECT hokusai_auth.create_user($1::pg_catalog.text, $2::pg_catalog.text) AS id,"
					" $1::pg_catalog.text AS username, $2::pg_catalog.text AS email",
					2, values);
	if (cl->common.json)
		print_json_object(res, NULL);
	else
	{
		puts(PQgetvalue(res, 0, 0));
		note("created user %s", PQgetvalue(res, 0, 1));
	}
	PQclear(res);
}

/*
 * create-key --user USER --name NAME [--env live|test]
 *			  [--expires-in DURATION | --expires-at TIME] [--rate-limit N]
 *			  [--burst N] [--allow-ip CIDR ...] [--metadata JSON]
 *			  [--scope SCOPE ...] [--credits N] [--refill N/day|week|month]
 */
static void
create_key(const CommandLine *cl)
{
	const char *env = cl->value[OPT_ENV] ? cl->value[OPT_ENV] : "live";
	const char *expires_in = cl->value[OPT_EXPIRES_IN];
	char	   *interval = NULL;
	char	   *user_id;
	char	   *username;
	const char *values[13];
	const char *credits = credits_param(cl, false);
	RefillParam refill = refill_param(cl);
	PGconn	   *conn;
	PGresult   *res;
	PGresult   *info;

	require_option(cl, OPT_USER);
	require_option(cl, OPT_NAME);
	if (strcmp(env, "live") != 0 && strcmp(env, "test") != 0)
		fail(EXIT_USAGE, "%s: invalid value \"%s\" for --env: use live or test",
			 cl->command, env);
	if (expires_in && cl->value[OPT_EXPIRES_AT])
		fail(EXIT_USAGE, "%s: --expires-in and --expires-at cannot be used together",
			 cl->command);
	if (expires_in)
		interval = duration_param("--expires-in", expires_in, false);

	conn = open_db(cl);
	run_command(conn, "BEGIN");
	resolve_user(conn, cl->value[OPT_USER], &user_id, &username);
	values[0] = user_id;
	values[1] = cl->value[OPT_NAME];
	values[2] = env;
	values[3] = cl->value[OPT_EXPIRES_AT];
	values[4] = interval;
	values[5] = cl->value[OPT_RATE_LIMIT];
	values[6] = cl->value[OPT_BURST];
	values[7] = cl->value[OPT_ALLOW_IP];
	values[8] = cl->value[OPT_METADATA];
	values[9] = cl->value[OPT_SCOPE];
	values[10] = credits;
	values[11] = refill.amount;
	values[12] = refill.interval;
	res = run_query(conn,
					"SELECT id, key, key_prefix, expires_at"
					" FROM hokusai_auth.create_key("
					"user_id => $1::pg_catalog.uuid, name => $2::pg_catalog.text,"
					" environment => $3::pg_catalog.text,"
					" expires_at => coalesce($4::pg_catalog.timestamptz,"
					" pg_catalog.now() OPERATOR(pg_catalog.+) $5::pg_catalog.interval),"
					" rate_limit_per_hour => $6::pg_catalog.int4, burst_limit => $7::pg_catalog.int4,"
					" allowed_ips => $8::pg_catalog.cidr[], metadata => $9::pg_catalog.jsonb,"
					" scopes => $10::pg_catalog.text[],"
					" credits => $11::pg_catalog.int8, refill_amount => $12::pg_catalog.int8,"
					" refill_interval => $13::pg_catalog.text)",
					13, values);
	values[0] = PQgetvalue(res, 0, 0);
	info = run_query(conn,
					 "SELECT k.user_id, u.username, k.name, k.environment,"
					 " k.rate_limit_per_hour, k.burst_limit,"
					 " pg_catalog.to_json(k.allowed_ips) AS allowed_ips, k.metadata,"
					 " pg_catalog.to_json(k.scopes) AS scopes,"
					 " k.credits_remaining, k.refill_amount, k.refill_interval"
					 " FROM hokusai_auth.keys k"
					 " JOIN hokusai_auth.users u ON u.id OPERATOR(pg_catalog.=) k.user_id"
					 " WHERE k.id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid",
					 1, values);
	run_command(conn, "COMMIT");

	/* committed: now, and only now, show the key */
	show_new_key(res, info, cl->common.json);
	note("created api key %s (id %s) for user %s, %s%s",
		 PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 0), username,
		 PQgetisnull(res, 0, 3) ? "no expiry" : "expires ",
		 display_value(res, 0, 3)[0] == '-' ? "" : display_value(res, 0, 3));
	warn_key_shown_once();
	PQclear(res);
	PQclear(info);
}

/*
 * list-keys [--user USER] [--all]
 *
 * Without --all: the keys that work or can work again (active, disabled).
 */
static void
list_keys(const CommandLine *cl)
{
	static const int cols[] = {
		COL_PREFIX, COL_NAME, COL_USERNAME, COL_ENV, COL_STATUS,
		COL_CREATED, COL_EXPIRES, COL_LAST_USED, COL_CREDITS, COL_ID
	};
	static const char *const headers[] = {
		"PREFIX", "NAME", "USER", "ENV", "STATUS",
		"CREATED", "EXPIRES", "LAST USED", "CREDITS", "ID"
	};
	const char *all = cl->value[OPT_ALL] ? "true" : "false";
	PGconn	   *conn = open_db(cl);
	PGresult   *res;

	if (cl->value[OPT_USER])
	{
		char	   *user_id;
		char	   *username;
		const char *values[2];

		resolve_user(conn, cl->value[OPT_USER], &user_id, &username);
		values[0] = user_id;
		values[1] = all;
		res = run_query(conn,
						"SELECT " KEY_COLUMNS
						" FROM hokusai_auth.list_keys($1::pg_catalog.uuid) k"
						" JOIN hokusai_auth.users u ON u.id OPERATOR(pg_catalog.=) k.user_id"
						" WHERE $2::pg_catalog.bool"
						" OR k.status OPERATOR(pg_catalog.=) ANY ('{active,disabled}'::pg_catalog.text[])"
						" ORDER BY k.created_at, k.id",
						2, values);
	}
	else
		res = run_query(conn,
						"SELECT " KEY_COLUMNS
						" FROM hokusai_auth.keys k"
						" JOIN hokusai_auth.users u ON u.id OPERATOR(pg_catalog.=) k.user_id"
						" WHERE $1::pg_catalog.bool"
						" OR k.status OPERATOR(pg_catalog.=) ANY ('{active,disabled}'::pg_catalog.text[])"
						" ORDER BY u.username, k.created_at, k.id",
						1, &all);

	if (cl->common.json)
		print_json_rows(res);
	else
		print_table(res, cols, headers, sizeof(cols) / sizeof(cols[0]));
	PQclear(res);
}

/*
 * show-key KEY_ID_OR_PREFIX
 */
static void
show_key(const CommandLine *cl)
{
	PGresult   *res = find_key(open_db(cl), cl);

	print_row(res, cl->common.json);
	PQclear(res);
}

/*
 * revoke-key KEY_ID_OR_PREFIX [--reason TEXT] [--yes]
 */
static void
revoke_key(const CommandLine *cl)
{
	bool		yes = cl->value[OPT_YES] != NULL;
	PGconn	   *conn;
	PGresult   *key;
	PGresult   *res;
	const char *values[2];
	bool		revoked;

	if (!yes && !isatty(STDIN_FILENO))
		fail(EXIT_USAGE, "%s: standard input is not a terminal, so there is no one to confirm; pass --yes to revoke",
			 cl->command);

	conn = open_db(cl);
	key = find_key(conn, cl);
	if (!yes)
	{
		char		question[1024];

		snprintf(question, sizeof(question),
				 "Revoke api key %s (\"%s\" of user %s)? It stops working at once and cannot be restored.",
				 PQgetvalue(key, 0, COL_PREFIX), PQgetvalue(key, 0, COL_NAME),
				 PQgetvalue(key, 0, COL_USERNAME));
		if (!confirm(question))
			fail(EXIT_CANCELLED, "%s: not confirmed; api key %s was not revoked",
				 cl->command, PQgetvalue(key, 0, COL_PREFIX));
	}

	values[0] = PQgetvalue(key, 0, COL_ID);
	values[1] = cl->value[OPT_REASON];
	res = run_query(conn,
					"SELECT hokusai_auth.revoke_key($1::pg_catalog.uuid, $2::pg_catalog.text) AS revoked",
					2, values);
	revoked = PQgetvalue(res, 0, 0)[0] == 't';
	if (cl->common.json)
	{
		const JsonField fields[] = {
			{"id", PQgetvalue(key, 0, COL_ID), false},
			{"key_prefix", PQgetvalue(key, 0, COL_PREFIX), false},
			{"revoked", revoked ? "true" : "false", true}
		};

		print_json_fields(fields, sizeof(fields) / sizeof(fields[0]));
	}
	else if (revoked)
		printf("revoked api key %s\n", PQgetvalue(key, 0, COL_PREFIX));
	else
		printf("api key %s was already revoked; nothing changed\n",
			   PQgetvalue(key, 0, COL_PREFIX));
	PQclear(res);
	PQclear(key);
}

/*
 * rotate-key KEY_ID_OR_PREFIX [--grace DURATION]
 */
static void
rotate_key(const CommandLine *cl)
{
	const char *values[2];
	PGconn	   *conn = open_db(cl);
	PGresult   *key;
	PGresult   *res;
	PGresult   *old;

	run_command(conn, "BEGIN");
	key = find_key(conn, cl);
	values[0] = PQgetvalue(key, 0, COL_ID);
	values[1] = cl->value[OPT_GRACE] ? cl->value[OPT_GRACE] : interval_param(0);
	res = run_query(conn,
					"SELECT id, key, key_prefix, expires_at"
					" FROM hokusai_auth.rotate_key(key_id => $1::pg_catalog.uuid,"
					" grace => $2::pg_catalog.interval)",
					2, values);
	old = run_query(conn,
					"SELECT k.id AS rotated_from, k.key_prefix AS old_key_prefix,"
					" coalesce(k.revoked_at, k.expires_at) AS old_key_ends_at"
					" FROM hokusai_auth.keys k WHERE k.id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid",
					1, values);
	run_command(conn, "COMMIT");

	show_new_key(res, old, cl->common.json);
	note("rotated api key %s: the new key is %s (id %s); the old key stops working at %s",
		 PQgetvalue(old, 0, 1), PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 0),
		 display_value(old, 0, 2));
	warn_key_shown_once();
	PQclear(key);
	PQclear(res);
	PQclear(old);
}

/*
 * usage KEY_ID_OR_PREFIX [--since TIME] [--until TIME]
 *
 * hokusai_auth.usage_summary(), the one implementation that SQL and HTTP
 * use too (raw events and hourly rollups), with its column names; the key
 * and the bounds come first, as in the HTTP response (until: now when not
 * given).  An unknown key gives no row.
 */
static void
usage(const CommandLine *cl)
{
	const char *values[6];
	PGconn	   *conn;
	PGresult   *res;

	check_time_range(cl->command, cl->value[OPT_SINCE], cl->value[OPT_UNTIL]);
	time_param(cl->value[OPT_SINCE], &values[2], &values[3]);
	time_param(cl->value[OPT_UNTIL], &values[4], &values[5]);

	conn = open_db(cl);
	if (cl->value[OPT_SINCE] && cl->value[OPT_UNTIL])
	{
		/* a timestamp is read by the server, in the session's time zone */
		res = run_query(conn,
						"SELECT coalesce($1::pg_catalog.timestamptz,"
						" pg_catalog.now() OPERATOR(pg_catalog.-) $2::pg_catalog.interval)"
						" OPERATOR(pg_catalog.>) coalesce($3::pg_catalog.timestamptz,"
						" pg_catalog.now() OPERATOR(pg_catalog.-) $4::pg_catalog.interval)",
						4, values + 2);
		if (PQgetvalue(res, 0, 0)[0] == 't')
			fail_empty_range(cl->command, cl->value[OPT_SINCE], cl->value[OPT_UNTIL]);
		PQclear(res);
	}
	res = query_key(conn, cl,
					"WITH b AS (SELECT"
					" coalesce($3::pg_catalog.timestamptz,"
					" pg_catalog.now() OPERATOR(pg_catalog.-) $4::pg_catalog.interval) AS since,"
					" coalesce($5::pg_catalog.timestamptz,"
					" pg_catalog.now() OPERATOR(pg_catalog.-) $6::pg_catalog.interval) AS until)"
					" SELECT k.id AS key_id, k.key_prefix, b.since,"
					" coalesce(b.until, pg_catalog.now()) AS until, s.*"
					" FROM hokusai_auth.keys k CROSS JOIN b,"
					" LATERAL hokusai_auth.usage_summary(k.id, b.since, b.until) s"
					" WHERE " KEY_MATCHES,
					6, values);
	print_row(res, cl->common.json);
	PQclear(res);
}

/* The commands: what each accepts, and the function that does it */
static const struct
{
	CommandSyntax syntax;
	void		(*run) (const CommandLine *cl);
}			commands[] = {
	{{"create-user", OPTION_SET(OPT_EMAIL), "USERNAME"}, create_user},
	{{"create-key",
			OPTION_SET(OPT_USER) | OPTION_SET(OPT_NAME) | OPTION_SET(OPT_ENV) |
			OPTION_SET(OPT_EXPIRES_IN) | OPTION_SET(OPT_EXPIRES_AT) |
			OPTION_SET(OPT_RATE_LIMIT) | OPTION_SET(OPT_BURST) |
			OPTION_SET(OPT_ALLOW_IP) | OPTION_SET(OPT_METADATA) |
			OPTION_SET(OPT_SCOPE) | OPTION_SET(OPT_CREDITS) | OPTION_SET(OPT_REFILL),
		NULL}, create_key},
	{{"list-keys", OPTION_SET(OPT_USER) | OPTION_SET(OPT_ALL), NULL}, list_keys},
	{{"show-key", 0, KEY_ARGUMENT}, show_key},
	{{"revoke-key", OPTION_SET(OPT_REASON) | OPTION_SET(OPT_YES), KEY_ARGUMENT}, revoke_key},
	{{"rotate-key", OPTION_SET(OPT_GRACE), KEY_ARGUMENT}, rotate_key},
	{{"usage", OPTION_SET(OPT_SINCE) | OPTION_SET(OPT_UNTIL), KEY_ARGUMENT}, usage},
	{{"update-key",
			OPTION_SET(OPT_NAME) | OPTION_SET(OPT_EXPIRES_AT) | OPTION_SET(OPT_NO_EXPIRY) |
			OPTION_SET(OPT_RATE_LIMIT) | OPTION_SET(OPT_BURST) | OPTION_SET(OPT_NO_BURST) |
			OPTION_SET(OPT_ALLOWED_IPS) | OPTION_SET(OPT_NO_ALLOWED_IPS) |
			OPTION_SET(OPT_SCOPE) | OPTION_SET(OPT_NO_SCOPES) |
			OPTION_SET(OPT_REFILL) | OPTION_SET(OPT_NO_REFILL) |
			OPTION_SET(OPT_CREDITS) | OPTION_SET(OPT_NO_CREDITS),
		KEY_ARGUMENT}, update_key},
	{{"disable-key", OPTION_SET(OPT_REASON), KEY_ARGUMENT}, disable_key},
	{{"enable-key", 0, KEY_ARGUMENT}, enable_key},
	{{"list-users", 0, NULL}, list_users},
	{{"deactivate-user", 0, "USER"}, deactivate_user},
	{{"audit", OPTION_SET(OPT_KEY) | OPTION_SET(OPT_LIMIT) | OPTION_SET(OPT_VERIFY), NULL}, audit},
	{{"rate-limit-reset", 0, KEY_ARGUMENT}, rate_limit_reset},
	{{"add-credits", OPTION_SET(OPT_CREDITS), KEY_ARGUMENT}, add_credits},
	{{"set-user-limits", OPTION_SET(OPT_RATE_LIMIT) | OPTION_SET(OPT_BURST), "USER"},
		set_user_limits},
	{{"events", OPTION_SET(OPT_AFTER) | OPTION_SET(OPT_FOLLOW), NULL}, events},
	{{"webhook",
			OPTION_SET(OPT_URL) | OPTION_SET(OPT_SECRET_FILE) | OPTION_SET(OPT_AFTER) |
			OPTION_SET(OPT_CACERT),
		NULL}, webhook},
};

/*
 * Run the command named argv[0] (its arguments follow) and close the
 * connection.  Returns EXIT_OK: a command that fails does not return.  An
 * unknown name is a usage error.
 */
int
run_auth_command(int argc, char **argv, const CommonOptions *common)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
	{
		if (strcmp(commands[i].syntax.name, argv[0]) == 0)
		{
			CommandLine cl = {.common = *common};

			parse_command_line(argc, argv, &commands[i].syntax, &cl);
			commands[i].run(&cl);
			disconnect_db();
			return EXIT_OK;
		}
	}
	fail(EXIT_USAGE, "unknown command \"%s\" (see \"hokusai auth --help\")", argv[0]);
}
