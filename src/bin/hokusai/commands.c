/*-------------------------------------------------------------------------
 *
 * commands.c
 *	  The "hokusai auth" commands.
 *
 * Each command checks its whole command line before connecting, then does
 * its work through the hokusai_auth SQL interface in one statement or one
 * transaction, and prints only after the work has committed: a key is
 * never shown for a transaction that did not commit, and a failure never
 * leaves half an operation behind.
 *
 * Plaintext keys appear exactly once, on stdout, from create-key and
 * rotate-key.  Nothing else prints more of a key than its key_prefix.
 *
 * src/bin/hokusai/commands.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "conn.h"
#include "output.h"
#include "parse.h"
#include "report.h"

/* getopt_long codes of the commands' own options */
enum
{
	OPT_USER = OPT_COMMAND,
	OPT_NAME,
	OPT_ENV,
	OPT_EXPIRES_IN,
	OPT_EXPIRES_AT,
	OPT_RATE_LIMIT,
	OPT_BURST,
	OPT_ALLOW_IP,
	OPT_METADATA,
	OPT_ALL,
	OPT_REASON,
	OPT_YES,
	OPT_GRACE,
	OPT_SINCE,
	OPT_UNTIL,
	OPT_EMAIL
};

/*
 * Key columns as list-keys, show-key and --json show them (no key_hash:
 * hokusai_auth.keys does not have it).  Table column numbers follow.
 */
#define KEY_COLUMNS \
	"k.id, k.key_prefix, k.user_id, u.username, k.name, k.environment, " \
	"k.status, k.created_at, k.expires_at, k.last_used_at, k.revoked_at, " \
	"k.rate_limit_per_hour, k.burst_limit, " \
	"pg_catalog.to_json(k.allowed_ips) AS allowed_ips, k.metadata, k.rotated_from"

enum
{
	COL_ID, COL_PREFIX, COL_USER_ID, COL_USERNAME, COL_NAME, COL_ENV,
	COL_STATUS, COL_CREATED, COL_EXPIRES, COL_LAST_USED
};

static char *
int_text(int n)
{
	char	   *buf = malloc(16);

	if (buf == NULL)
		fail(EXIT_SERVER, "out of memory");
	snprintf(buf, 16, "%d", n);
	return buf;
}

/*
 * A user given by id (a uuid) or username; sets its id and username, or
 * ends with "not found".
 */
static void
resolve_user(PGconn *conn, const char *arg, char **id, char **username)
{
	PGresult   *res;
	const char *values[1] = {arg};

	if (looks_like_uuid(arg))
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
		fail(EXIT_NOT_FOUND, "user \"%s\" does not exist", arg);
	*id = strdup(PQgetvalue(res, 0, 0));
	*username = strdup(PQgetvalue(res, 0, 1));
	PQclear(res);
}

/*
 * One key by id or key_prefix (classified by parse_key_ref()), with its
 * owner's username, or "not found".
 */
static PGresult *
find_key(PGconn *conn, const char *ref, KeyRefKind kind)
{
	PGresult   *res;
	const char *values[2];

	values[0] = kind == KEYREF_ID ? ref : NULL;
	values[1] = kind == KEYREF_PREFIX ? ref : NULL;
	res = run_query(conn,
					"SELECT " KEY_COLUMNS ", "
					"(SELECT r.id FROM hokusai_auth.keys r"
					" WHERE r.rotated_from OPERATOR(pg_catalog.=) k.id LIMIT 1) AS replaced_by"
					" FROM hokusai_auth.keys k"
					" JOIN hokusai_auth.users u ON u.id OPERATOR(pg_catalog.=) k.user_id"
					" WHERE k.id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid"
					" OR k.key_prefix OPERATOR(pg_catalog.=) $2::pg_catalog.text",
					2, values);
	if (PQntuples(res) == 0)
		fail(EXIT_NOT_FOUND, "api key %s does not exist", ref);
	return res;
}

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
static int
cmd_create_user(int argc, char **argv, CommonOptions *common)
{
	static const struct option opts[] = {
		COMMON_OPTIONS,
		{"email", required_argument, NULL, OPT_EMAIL},
		{NULL, 0, NULL, 0}
	};
	const char *values[2] = {NULL, NULL};
	PGconn	   *conn;
	PGresult   *res;
	int			c;

	start_options();
	while ((c = next_option(argc, argv, opts, common)) != -1)
	{
		if (c == OPT_EMAIL)
			values[1] = optarg;
	}
	values[0] = one_argument(argc, argv, "USERNAME");

	conn = connect_db(common->dsn);
	res = run_query(conn,
					"SELECT hokusai_auth.create_user($1::pg_catalog.text, $2::pg_catalog.text) AS id,"
					" $1::pg_catalog.text AS username, $2::pg_catalog.text AS email",
					2, values);
	if (common->json)
		print_json_object(res, NULL);
	else
	{
		puts(PQgetvalue(res, 0, 0));
		note("created user %s", PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	return EXIT_OK;
}

/*
 * create-key --user USER --name NAME [--env live|test]
 *			  [--expires-in DURATION | --expires-at TIME] [--rate-limit N]
 *			  [--burst N] [--allow-ip CIDR ...] [--metadata JSON]
 */
static int
cmd_create_key(int argc, char **argv, CommonOptions *common)
{
	static const struct option opts[] = {
		COMMON_OPTIONS,
		{"user", required_argument, NULL, OPT_USER},
		{"name", required_argument, NULL, OPT_NAME},
		{"env", required_argument, NULL, OPT_ENV},
		{"expires-in", required_argument, NULL, OPT_EXPIRES_IN},
		{"expires-at", required_argument, NULL, OPT_EXPIRES_AT},
		{"rate-limit", required_argument, NULL, OPT_RATE_LIMIT},
		{"burst", required_argument, NULL, OPT_BURST},
		{"allow-ip", required_argument, NULL, OPT_ALLOW_IP},
		{"metadata", required_argument, NULL, OPT_METADATA},
		{NULL, 0, NULL, 0}
	};
	const char *user = NULL;
	const char *name = NULL;
	const char *env = "live";
	const char *expires_in = NULL;
	const char *expires_at = NULL;
	char	   *rate_limit = NULL;
	char	   *burst = NULL;
	char	   *allowed_ips = NULL;
	const char *metadata = NULL;
	char	   *interval = NULL;
	char	   *user_id;
	char	   *username;
	const char *values[9];
	PGconn	   *conn;
	PGresult   *res;
	PGresult   *info;
	int			c;

	start_options();
	while ((c = next_option(argc, argv, opts, common)) != -1)
	{
		switch (c)
		{
			case OPT_USER:
				user = optarg;
				break;
			case OPT_NAME:
				name = optarg;
				break;
			case OPT_ENV:
				env = optarg;
				break;
			case OPT_EXPIRES_IN:
				expires_in = optarg;
				break;
			case OPT_EXPIRES_AT:
				expires_at = optarg;
				break;
			case OPT_RATE_LIMIT:
				rate_limit = int_text(positive_int_option("--rate-limit", optarg));
				break;
			case OPT_BURST:
				burst = int_text(positive_int_option("--burst", optarg));
				break;
			case OPT_ALLOW_IP:
				append_array_element(&allowed_ips, optarg);
				break;
			case OPT_METADATA:
				metadata = optarg;
				break;
		}
	}
	no_arguments(argc, argv);
	require_option(argv[0], user, "--user");
	require_option(argv[0], name, "--name");
	if (strcmp(env, "live") != 0 && strcmp(env, "test") != 0)
		fail(EXIT_USAGE, "%s: invalid value \"%s\" for --env: use live or test",
			 argv[0], env);
	if (expires_in && expires_at)
		fail(EXIT_USAGE, "%s: --expires-in and --expires-at cannot be used together",
			 argv[0]);
	if (expires_in)
		interval = interval_param(duration_option("--expires-in", expires_in, false));

	conn = connect_db(common->dsn);
	run_command(conn, "BEGIN");
	resolve_user(conn, user, &user_id, &username);
	values[0] = user_id;
	values[1] = name;
	values[2] = env;
	values[3] = expires_at;
	values[4] = interval;
	values[5] = rate_limit;
	values[6] = burst;
	values[7] = allowed_ips;
	values[8] = metadata;
	res = run_query(conn,
					"SELECT id, key, key_prefix, expires_at"
					" FROM hokusai_auth.create_key("
					"user_id => $1::pg_catalog.uuid, name => $2::pg_catalog.text,"
					" environment => $3::pg_catalog.text,"
					" expires_at => coalesce($4::pg_catalog.timestamptz,"
					" pg_catalog.now() OPERATOR(pg_catalog.+) $5::pg_catalog.interval),"
					" rate_limit_per_hour => $6::pg_catalog.int4, burst_limit => $7::pg_catalog.int4,"
					" allowed_ips => $8::pg_catalog.cidr[], metadata => $9::pg_catalog.jsonb)",
					9, values);
	values[0] = PQgetvalue(res, 0, 0);
	info = run_query(conn,
					 "SELECT k.user_id, u.username, k.name, k.environment,"
					 " k.rate_limit_per_hour, k.burst_limit,"
					 " pg_catalog.to_json(k.allowed_ips) AS allowed_ips, k.metadata"
					 " FROM hokusai_auth.keys k"
					 " JOIN hokusai_auth.users u ON u.id OPERATOR(pg_catalog.=) k.user_id"
					 " WHERE k.id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid",
					 1, values);
	run_command(conn, "COMMIT");

	/* committed: now, and only now, show the key */
	show_new_key(res, info, common->json);
	note("created api key %s (id %s) for user %s, %s%s",
		 PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 0), username,
		 PQgetisnull(res, 0, 3) ? "no expiry" : "expires ",
		 display_value(res, 0, 3)[0] == '-' ? "" : display_value(res, 0, 3));
	warn_key_shown_once();
	PQclear(res);
	PQclear(info);
	return EXIT_OK;
}

/*
 * list-keys [--user USER] [--all]
 */
static int
cmd_list_keys(int argc, char **argv, CommonOptions *common)
{
	static const struct option opts[] = {
		COMMON_OPTIONS,
		{"user", required_argument, NULL, OPT_USER},
		{"all", no_argument, NULL, OPT_ALL},
		{NULL, 0, NULL, 0}
	};
	static const int cols[] = {
		COL_PREFIX, COL_NAME, COL_USERNAME, COL_ENV, COL_STATUS,
		COL_CREATED, COL_EXPIRES, COL_LAST_USED, COL_ID
	};
	static const char *const headers[] = {
		"PREFIX", "NAME", "USER", "ENV", "STATUS",
		"CREATED", "EXPIRES", "LAST USED", "ID"
	};
	const char *user = NULL;
	bool		all = false;
	PGconn	   *conn;
	PGresult   *res;
	int			c;

	start_options();
	while ((c = next_option(argc, argv, opts, common)) != -1)
	{
		if (c == OPT_USER)
			user = optarg;
		else if (c == OPT_ALL)
			all = true;
	}
	no_arguments(argc, argv);

	conn = connect_db(common->dsn);
	if (user)
	{
		char	   *user_id;
		char	   *username;
		const char *values[2];

		resolve_user(conn, user, &user_id, &username);
		values[0] = user_id;
		values[1] = all ? "true" : "false";
		res = run_query(conn,
						"SELECT " KEY_COLUMNS
						" FROM hokusai_auth.list_keys($1::pg_catalog.uuid) k"
						" JOIN hokusai_auth.users u ON u.id OPERATOR(pg_catalog.=) k.user_id"
						" WHERE $2::pg_catalog.bool"
						" OR k.status OPERATOR(pg_catalog.=) 'active'::pg_catalog.text"
						" ORDER BY k.created_at, k.id",
						2, values);
	}
	else
	{
		const char *values[1] = {all ? "true" : "false"};

		res = run_query(conn,
						"SELECT " KEY_COLUMNS
						" FROM hokusai_auth.keys k"
						" JOIN hokusai_auth.users u ON u.id OPERATOR(pg_catalog.=) k.user_id"
						" WHERE $1::pg_catalog.bool"
						" OR k.status OPERATOR(pg_catalog.=) 'active'::pg_catalog.text"
						" ORDER BY u.username, k.created_at, k.id",
						1, values);
	}

	if (common->json)
		print_json_rows(res);
	else
		print_table(res, cols, headers, sizeof(cols) / sizeof(cols[0]));
	PQclear(res);
	return EXIT_OK;
}

/*
 * show-key KEY_ID_OR_PREFIX
 */
static int
cmd_show_key(int argc, char **argv, CommonOptions *common)
{
	static const struct option opts[] = {
		COMMON_OPTIONS,
		{NULL, 0, NULL, 0}
	};
	const char *ref;
	KeyRefKind	kind;
	PGconn	   *conn;
	PGresult   *res;

	start_options();
	while (next_option(argc, argv, opts, common) != -1)
		;
	ref = one_argument(argc, argv, "KEY_ID_OR_PREFIX");
	kind = parse_key_ref(argv[0], ref);

	conn = connect_db(common->dsn);
	res = find_key(conn, ref, kind);
	print_row(res, common->json);
	PQclear(res);
	return EXIT_OK;
}

/*
 * revoke-key KEY_ID_OR_PREFIX [--reason TEXT] [--yes]
 */
static int
cmd_revoke_key(int argc, char **argv, CommonOptions *common)
{
	static const struct option opts[] = {
		COMMON_OPTIONS,
		{"reason", required_argument, NULL, OPT_REASON},
		{"yes", no_argument, NULL, OPT_YES},
		{NULL, 0, NULL, 0}
	};
	const char *ref;
	const char *reason = NULL;
	bool		yes = false;
	KeyRefKind	kind;
	PGconn	   *conn;
	PGresult   *key;
	PGresult   *res;
	const char *values[2];
	bool		revoked;
	int			c;

	start_options();
	while ((c = next_option(argc, argv, opts, common)) != -1)
	{
		if (c == OPT_REASON)
			reason = optarg;
		else if (c == OPT_YES)
			yes = true;
	}
	ref = one_argument(argc, argv, "KEY_ID_OR_PREFIX");
	kind = parse_key_ref(argv[0], ref);
	if (!yes && !isatty(STDIN_FILENO))
		fail(EXIT_USAGE, "%s: standard input is not a terminal, so there is no one to confirm; pass --yes to revoke",
			 argv[0]);

	conn = connect_db(common->dsn);
	key = find_key(conn, ref, kind);
	if (!yes)
	{
		char		question[1024];

		snprintf(question, sizeof(question),
				 "Revoke api key %s (\"%s\" of user %s)? It stops working at once and cannot be restored.",
				 PQgetvalue(key, 0, COL_PREFIX), PQgetvalue(key, 0, COL_NAME),
				 PQgetvalue(key, 0, COL_USERNAME));
		if (!confirm(question))
			fail(EXIT_CANCELLED, "%s: not confirmed; api key %s was not revoked",
				 argv[0], PQgetvalue(key, 0, COL_PREFIX));
	}

	values[0] = PQgetvalue(key, 0, COL_ID);
	values[1] = reason;
	res = run_query(conn,
					"SELECT hokusai_auth.revoke_key($1::pg_catalog.uuid, $2::pg_catalog.text) AS revoked",
					2, values);
	revoked = PQgetvalue(res, 0, 0)[0] == 't';
	if (common->json)
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
	return EXIT_OK;
}

/*
 * rotate-key KEY_ID_OR_PREFIX [--grace DURATION]
 */
static int
cmd_rotate_key(int argc, char **argv, CommonOptions *common)
{
	static const struct option opts[] = {
		COMMON_OPTIONS,
		{"grace", required_argument, NULL, OPT_GRACE},
		{NULL, 0, NULL, 0}
	};
	const char *ref;
	char	   *grace = interval_param(0);
	KeyRefKind	kind;
	PGconn	   *conn;
	PGresult   *key;
	PGresult   *res;
	PGresult   *old;
	const char *values[2];
	int			c;

	start_options();
	while ((c = next_option(argc, argv, opts, common)) != -1)
	{
		if (c == OPT_GRACE)
			grace = interval_param(duration_option("--grace", optarg, true));
	}
	ref = one_argument(argc, argv, "KEY_ID_OR_PREFIX");
	kind = parse_key_ref(argv[0], ref);

	conn = connect_db(common->dsn);
	run_command(conn, "BEGIN");
	key = find_key(conn, ref, kind);
	values[0] = PQgetvalue(key, 0, COL_ID);
	values[1] = grace;
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

	show_new_key(res, old, common->json);
	note("rotated api key %s: the new key is %s (id %s); the old key stops working at %s",
		 PQgetvalue(old, 0, 1), PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 0),
		 display_value(old, 0, 2));
	warn_key_shown_once();
	PQclear(key);
	PQclear(res);
	PQclear(old);
	return EXIT_OK;
}

/* A --since or --until value: a duration ago, or a timestamp */
static void
time_option(const char *value, const char **timestamp, char **ago)
{
	long long	seconds;

	if (parse_duration(value, &seconds))
	{
		*timestamp = NULL;
		*ago = interval_param(seconds);
	}
	else
	{
		*timestamp = value;
		*ago = NULL;
	}
}

/*
 * usage KEY_ID_OR_PREFIX [--since TIME] [--until TIME]
 *
 * One aggregate over hokusai_auth.api_key_usage; the key's row is the
 * outer side, so an unknown key gives no row and a quiet key gives zeros.
 */
static int
cmd_usage(int argc, char **argv, CommonOptions *common)
{
	static const struct option opts[] = {
		COMMON_OPTIONS,
		{"since", required_argument, NULL, OPT_SINCE},
		{"until", required_argument, NULL, OPT_UNTIL},
		{NULL, 0, NULL, 0}
	};
	const char *ref;
	KeyRefKind	kind;
	const char *values[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
	PGconn	   *conn;
	PGresult   *res;
	int			c;

	start_options();
	while ((c = next_option(argc, argv, opts, common)) != -1)
	{
		if (c == OPT_SINCE)
			time_option(optarg, &values[2], (char **) &values[3]);
		else if (c == OPT_UNTIL)
			time_option(optarg, &values[4], (char **) &values[5]);
	}
	ref = one_argument(argc, argv, "KEY_ID_OR_PREFIX");
	kind = parse_key_ref(argv[0], ref);
	values[0] = kind == KEYREF_ID ? ref : NULL;
	values[1] = kind == KEYREF_PREFIX ? ref : NULL;

	conn = connect_db(common->dsn);
	res = run_query(conn,
					"WITH b AS (SELECT"
					" coalesce($3::pg_catalog.timestamptz,"
					" pg_catalog.now() OPERATOR(pg_catalog.-) $4::pg_catalog.interval) AS since,"
					" coalesce($5::pg_catalog.timestamptz,"
					" pg_catalog.now() OPERATOR(pg_catalog.-) $6::pg_catalog.interval) AS until)"
					" SELECT k.id AS key_id, k.key_prefix, b.since, b.until,"
					" pg_catalog.count(u.id) AS requests,"
					" pg_catalog.count(u.id) FILTER"
					" (WHERE u.status_code OPERATOR(pg_catalog.>=) 400) AS errors,"
					" pg_catalog.round(pg_catalog.avg(u.response_time_ms), 2) AS avg_response_time_ms,"
					" pg_catalog.percentile_cont(0.5::pg_catalog.float8) WITHIN GROUP"
					" (ORDER BY u.response_time_ms::pg_catalog.float8) AS p50_response_time_ms,"
					" pg_catalog.percentile_cont(0.95::pg_catalog.float8) WITHIN GROUP"
					" (ORDER BY u.response_time_ms::pg_catalog.float8) AS p95_response_time_ms,"
					" pg_catalog.percentile_cont(0.99::pg_catalog.float8) WITHIN GROUP"
					" (ORDER BY u.response_time_ms::pg_catalog.float8) AS p99_response_time_ms,"
					" pg_catalog.min(u.\"timestamp\") AS first_request_at,"
					" pg_catalog.max(u.\"timestamp\") AS last_request_at"
					" FROM hokusai_auth.keys k CROSS JOIN b"
					" LEFT JOIN hokusai_auth.api_key_usage u"
					" ON u.api_key_id OPERATOR(pg_catalog.=) k.id"
					" AND (b.since IS NULL OR u.\"timestamp\" OPERATOR(pg_catalog.>=) b.since)"
					" AND (b.until IS NULL OR u.\"timestamp\" OPERATOR(pg_catalog.<) b.until)"
					" WHERE k.id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid"
					" OR k.key_prefix OPERATOR(pg_catalog.=) $2::pg_catalog.text"
					" GROUP BY k.id, k.key_prefix, b.since, b.until",
					6, values);
	if (PQntuples(res) == 0)
		fail(EXIT_NOT_FOUND, "api key %s does not exist", ref);
	print_row(res, common->json);
	PQclear(res);
	return EXIT_OK;
}

/* The commands by name */
static const struct
{
	const char *name;
	int			(*run) (int argc, char **argv, CommonOptions *common);
}			commands[] = {
	{"create-user", cmd_create_user},
	{"create-key", cmd_create_key},
	{"list-keys", cmd_list_keys},
	{"show-key", cmd_show_key},
	{"revoke-key", cmd_revoke_key},
	{"rotate-key", cmd_rotate_key},
	{"usage", cmd_usage},
	{NULL, NULL}
};

/*
 * Run the command named argv[0] (its arguments follow), close the
 * connection and return its exit code; an unknown name is a usage error.
 */
int
run_auth_command(int argc, char **argv, CommonOptions *common)
{
	for (int i = 0; commands[i].name; i++)
	{
		if (strcmp(commands[i].name, argv[0]) == 0)
		{
			int			rc = commands[i].run(argc, argv, common);

			disconnect_db();
			return rc;
		}
	}
	fail(EXIT_USAGE, "unknown command \"%s\" (see \"hokusai auth --help\")", argv[0]);
}
