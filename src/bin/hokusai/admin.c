/*-------------------------------------------------------------------------
 *
 * admin.c
 *	  The "hokusai auth" commands that operators needed SQL for before:
 *	  update-key, list-users, deactivate-user, audit, rate-limit-reset.
 *
 * They follow the rules of commands.c: the command line is checked whole
 * before connecting, the work is one statement or one transaction through
 * the hokusai_auth SQL interface, output comes after the commit, and every
 * failure ends in fail().  No command here prints more of a key than its
 * key_prefix.  Every statement names its objects and operators with their
 * schema (the session's search_path is empty) and passes every value as a
 * parameter.
 *
 * src/bin/hokusai/admin.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "conn.h"
#include "lookup.h"
#include "metering.h"
#include "output.h"
#include "report.h"

/* "true" or "false" for a flag option, as a bool parameter */
static const char *
flag_param(const CommandLine *cl, CommandOption opt)
{
	return cl->value[opt] ? "true" : "false";
}

/* Two options that contradict each other */
static void
refuse_both(const CommandLine *cl, CommandOption a, const char *a_label,
			CommandOption b, const char *b_label)
{
	if (cl->value[a] && cl->value[b])
		fail(EXIT_USAGE, "%s: %s and %s cannot be used together",
			 cl->command, a_label, b_label);
}

/*
 * update-key KEY_ID_OR_PREFIX [--name NAME] [--expires-at TIME | --no-expiry]
 *			  [--rate-limit N] [--burst N | --no-burst]
 *			  [--allowed-ips CIDR,... | --no-allowed-ips]
 *			  [--scope SCOPE ... | --no-scopes]
 *			  [--refill N/day|week|month | --no-refill]
 *			  [--credits N | --no-credits]
 *
 * hokusai_auth.update_key(): a setting not given stays as it is; the
 * --no-* options are its clear_* flags (--no-scopes: no scopes; --scope,
 * repeated, replaces the list; --credits sets the balance, --no-credits
 * makes the key unmetered: clear_credits).  Prints the key as show-key does.
 */
void
update_key(const CommandLine *cl)
{
	static const CommandOption changes[] = {
		OPT_NAME, OPT_EXPIRES_AT, OPT_NO_EXPIRY, OPT_RATE_LIMIT, OPT_BURST,
		OPT_NO_BURST, OPT_ALLOWED_IPS, OPT_NO_ALLOWED_IPS, OPT_SCOPE, OPT_NO_SCOPES,
		OPT_REFILL, OPT_NO_REFILL, OPT_CREDITS, OPT_NO_CREDITS
	};
	bool		any = false;
	const char *values[15];
	RefillParam refill = refill_param(cl);
	const char *credits = credits_param(cl, false);
	PGconn	   *conn;
	PGresult   *key;
	PGresult   *res;

	refuse_both(cl, OPT_EXPIRES_AT, "--expires-at", OPT_NO_EXPIRY, "--no-expiry");
	refuse_both(cl, OPT_BURST, "--burst", OPT_NO_BURST, "--no-burst");
	refuse_both(cl, OPT_ALLOWED_IPS, "--allowed-ips", OPT_NO_ALLOWED_IPS, "--no-allowed-ips");
	refuse_both(cl, OPT_SCOPE, "--scope", OPT_NO_SCOPES, "--no-scopes");
	refuse_both(cl, OPT_REFILL, "--refill", OPT_NO_REFILL, "--no-refill");
	refuse_both(cl, OPT_CREDITS, "--credits", OPT_NO_CREDITS, "--no-credits");
	refuse_both(cl, OPT_REFILL, "--refill", OPT_NO_CREDITS, "--no-credits");
	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++)
		any |= cl->value[changes[i]] != NULL;
	if (!any)
		fail(EXIT_USAGE, "%s: nothing to change (see \"hokusai auth %s --help\")",
			 cl->command, cl->command);

	conn = open_db(cl);
	run_command(conn, "BEGIN");
	key = find_key(conn, cl);
	values[0] = PQgetvalue(key, 0, COL_ID);
	values[1] = cl->value[OPT_NAME];
	values[2] = cl->value[OPT_EXPIRES_AT];
	values[3] = cl->value[OPT_RATE_LIMIT];
	values[4] = cl->value[OPT_BURST];
	values[5] = cl->value[OPT_ALLOWED_IPS];
	values[6] = flag_param(cl, OPT_NO_EXPIRY);
	values[7] = flag_param(cl, OPT_NO_BURST);
	values[8] = flag_param(cl, OPT_NO_ALLOWED_IPS);
	values[9] = cl->value[OPT_NO_SCOPES] ? "{}" : cl->value[OPT_SCOPE];
	values[10] = refill.amount;
	values[11] = refill.interval;
	values[12] = flag_param(cl, OPT_NO_REFILL);
	values[13] = credits;
	values[14] = flag_param(cl, OPT_NO_CREDITS);
	res = run_query(conn,
					"SELECT " KEY_COLUMNS
					" FROM hokusai_auth.update_key(key_id => $1::pg_catalog.uuid,"
					" name => $2::pg_catalog.text, expires_at => $3::pg_catalog.timestamptz,"
					" rate_limit_per_hour => $4::pg_catalog.int4, burst_limit => $5::pg_catalog.int4,"
					" allowed_ips => $6::pg_catalog.cidr[], clear_expires_at => $7::pg_catalog.bool,"
					" clear_burst_limit => $8::pg_catalog.bool,"
					" clear_allowed_ips => $9::pg_catalog.bool,"
					" scopes => $10::pg_catalog.text[],"
					" refill_amount => $11::pg_catalog.int8, refill_interval => $12::pg_catalog.text,"
					" clear_refill => $13::pg_catalog.bool,"
					" credits => $14::pg_catalog.int8, clear_credits => $15::pg_catalog.bool) k"
					" JOIN hokusai_auth.users u ON u.id OPERATOR(pg_catalog.=) k.user_id",
					15, values);
	run_command(conn, "COMMIT");
	print_row(res, cl->common.json);
	PQclear(res);
	PQclear(key);
}

/* The users and how many of their keys are active, for list-users */
#define USER_ROWS \
	" FROM hokusai_auth.users u ORDER BY u.username"
#define ACTIVE_KEYS \
	"(SELECT pg_catalog.count(*) FROM hokusai_auth.keys k" \
	" WHERE k.user_id OPERATOR(pg_catalog.=) u.id" \
	" AND k.status OPERATOR(pg_catalog.=) 'active'::pg_catalog.text) AS active_keys"

/*
 * list-users
 */
void
list_users(const CommandLine *cl)
{
	static const char *const headers[] = {
		"USERNAME", "EMAIL", "STATUS", "ACTIVE KEYS", "CREATED", "ID"
	};
	static const int cols[] = {0, 1, 2, 3, 4, 5};
	PGconn	   *conn = open_db(cl);
	PGresult   *res;

	if (cl->common.json)
	{
		res = run_query(conn,
						"SELECT u.id, u.username, u.email, u.is_active, u.created_at, "
						ACTIVE_KEYS USER_ROWS, 0, NULL);
		print_json_rows(res);
	}
	else
	{
		res = run_query(conn,
						"SELECT u.username, u.email,"
						" CASE WHEN u.is_active THEN 'active' ELSE 'inactive' END,"
						ACTIVE_KEYS ", u.created_at, u.id" USER_ROWS, 0, NULL);
		print_table(res, cols, headers, sizeof(cols) / sizeof(cols[0]));
	}
	PQclear(res);
}

/*
 * deactivate-user USER
 *
 * The user's keys are not revoked: validate_key() refuses them while the
 * user is inactive, and create_key() and rotate_key() refuse the user.
 */
void
deactivate_user(const CommandLine *cl)
{
	PGconn	   *conn = open_db(cl);
	PGresult   *res;
	PGresult   *keys;
	char	   *id;
	char	   *username;
	bool		changed;

	run_command(conn, "BEGIN");
	resolve_user(conn, cl->argument, &id, &username);
	res = run_query(conn,
					"UPDATE hokusai_auth.users u SET is_active = false"
					" WHERE u.id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid AND u.is_active"
					" RETURNING u.id",
					1, (const char *const *) &id);
	changed = PQntuples(res) == 1;
	PQclear(res);
	keys = run_query(conn,
					 "SELECT pg_catalog.count(*) FROM hokusai_auth.keys k"
					 " WHERE k.user_id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid"
					 " AND k.status OPERATOR(pg_catalog.=) 'active'::pg_catalog.text",
					 1, (const char *const *) &id);
	run_command(conn, "COMMIT");

	if (cl->common.json)
	{
		const JsonField fields[] = {
			{"id", id, false},
			{"username", username, false},
			{"deactivated", changed ? "true" : "false", true},
			{"active_keys", PQgetvalue(keys, 0, 0), true}
		};

		print_json_fields(fields, sizeof(fields) / sizeof(fields[0]));
	}
	else if (changed)
		printf("deactivated user %s: its %s active api keys are refused while the user is inactive (they are not revoked), and it cannot get new keys\n",
			   username, PQgetvalue(keys, 0, 0));
	else
		printf("user %s was already inactive; nothing changed (its %s active api keys are refused)\n",
			   username, PQgetvalue(keys, 0, 0));
	PQclear(keys);
}

/* audit --verify: seal what is committed, then check the whole chain */
static void
verify_audit(const CommandLine *cl)
{
	PGconn	   *conn = open_db(cl);
	PGresult   *sealed;
	PGresult   *broken;

	sealed = run_query(conn, "SELECT hokusai_auth.seal_audit_log()", 0, NULL);
	broken = run_query(conn, "SELECT hokusai_auth.verify_audit_chain()", 0, NULL);
	if (!PQgetisnull(broken, 0, 0))
		fail(EXIT_AUDIT_BROKEN,
			 "audit chain broken: the first row that fails the check is hokusai_auth.audit_log id %s",
			 PQgetvalue(broken, 0, 0));
	if (cl->common.json)
	{
		const JsonField fields[] = {
			{"intact", "true", true},
			{"sealed_now", PQgetvalue(sealed, 0, 0), true}
		};

		print_json_fields(fields, sizeof(fields) / sizeof(fields[0]));
	}
	else
		printf("audit chain intact (%s rows sealed now)\n", PQgetvalue(sealed, 0, 0));
	PQclear(sealed);
	PQclear(broken);
}

/*
 * audit [--key KEY_ID_OR_PREFIX] [--limit N] [--verify]
 *
 * The newest --limit (default 50) rows of hokusai_auth.audit_log, oldest
 * first; or, with --verify, the check of its hash chain.
 */
void
audit(const CommandLine *cl)
{
	static const char *const headers[] = {
		"ID", "AT", "ACTION", "KEY", "USER", "ACTOR", "DETAILS"
	};
	static const int cols[] = {0, 1, 2, 3, 6, 7, 8};
	const char *values[2] = {NULL, cl->value[OPT_LIMIT] ? cl->value[OPT_LIMIT] : "50"};
	PGconn	   *conn;
	PGresult   *key = NULL;
	PGresult   *res;

	if (cl->value[OPT_VERIFY])
	{
		if (cl->value[OPT_KEY] || cl->value[OPT_LIMIT])
			fail(EXIT_USAGE, "%s: --verify checks the whole chain: it takes neither --key nor --limit",
				 cl->command);
		verify_audit(cl);
		return;
	}
	if (cl->value[OPT_KEY])
	{
		CommandLine by_key = *cl;
		const char *kv[2];

		by_key.argument = cl->value[OPT_KEY];
		by_key.key_kind = parse_key_ref(cl->command, by_key.argument);
		conn = open_db(cl);
		key = query_key(conn, &by_key,
						"SELECT k.id FROM hokusai_auth.keys k WHERE " KEY_MATCHES, 2, kv);
		values[0] = PQgetvalue(key, 0, 0);
	}
	else
		conn = open_db(cl);

	res = run_query(conn,
					"SELECT * FROM (SELECT a.id, a.at, a.action,"
					" a.details OPERATOR(pg_catalog.->>) 'key_prefix'::pg_catalog.text AS key_prefix,"
					" a.api_key_id, a.user_id, u.username, a.actor_role, a.details,"
					" a.seq IS NOT NULL AS sealed"
					" FROM hokusai_auth.audit_log a"
					" LEFT JOIN hokusai_auth.users u ON u.id OPERATOR(pg_catalog.=) a.user_id"
					" WHERE $1::pg_catalog.uuid IS NULL"
					" OR a.api_key_id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid"
					" ORDER BY a.id DESC LIMIT $2::pg_catalog.int8) s ORDER BY s.id",
					2, values);
	if (cl->common.json)
		print_json_rows(res);
	else
		print_table(res, cols, headers, sizeof(cols) / sizeof(cols[0]));
	PQclear(res);
	PQclear(key);
}

/*
 * rate-limit-reset KEY_ID_OR_PREFIX
 */
void
rate_limit_reset(const CommandLine *cl)
{
	PGconn	   *conn = open_db(cl);
	PGresult   *key = find_key(conn, cl);
	PGresult   *res;
	const char *values[1] = {PQgetvalue(key, 0, COL_ID)};
	const char *prefix = PQgetvalue(key, 0, COL_PREFIX);
	bool		had;

	res = run_query(conn, "SELECT hokusai_auth.rate_limit_reset($1::pg_catalog.uuid)",
					1, values);
	had = PQgetvalue(res, 0, 0)[0] == 't';
	if (cl->common.json)
	{
		const JsonField fields[] = {
			{"id", values[0], false},
			{"key_prefix", prefix, false},
			{"had_windows", had ? "true" : "false", true}
		};

		print_json_fields(fields, sizeof(fields) / sizeof(fields[0]));
	}
	else if (had)
		printf("reset the rate limit of api key %s: it can use its full quota again\n", prefix);
	else
		printf("api key %s had no rate-limit windows; nothing to reset\n", prefix);
	PQclear(res);
	PQclear(key);
}
