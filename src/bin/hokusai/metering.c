/*-------------------------------------------------------------------------
 *
 * metering.c
 *	  The "hokusai auth" commands of metering (docs/metering.md):
 *	  add-credits and set-user-limits, and the checks of the options
 *	  create-key and update-key take for credits: --credits N and
 *	  --refill N/day|week|month.
 *
 * The rules of commands.c hold: the command line is checked whole before
 * connecting, the work is one statement through the hokusai_auth SQL
 * interface, output comes after it, every value is a parameter, every
 * object and operator is named with its schema.
 *
 * src/bin/hokusai/metering.c
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "lookup.h"
#include "metering.h"
#include "output.h"
#include "report.h"

/* Is s a whole number of at most 19 digits (a bigint), with a sign if allowed? */
static bool
is_bigint(const char *s, bool allow_negative)
{
	size_t		n;

	if (allow_negative && *s == '-')
		s++;
	n = strspn(s, "0123456789");
	return n > 0 && n <= 19 && s[n] == '\0' &&
		(n < 19 || strcmp(s, "9223372036854775807") <= 0);
}

/*
 * The value of --credits: a whole number (negative only where allowed),
 * or NULL when not given.  Anything else is a usage error, before
 * connecting.
 */
const char *
credits_param(const CommandLine *cl, bool allow_negative)
{
	const char *v = cl->value[OPT_CREDITS];

	if (v && !is_bigint(v, allow_negative))
		fail(EXIT_USAGE, "%s: invalid value \"%s\" for --credits: use a whole number%s",
			 cl->command, v, allow_negative ? " (negative takes credits away)" : " of 0 or more");
	return v;
}

/*
 * The value of --refill, N/day, N/week or N/month (N > 0), split into the
 * amount and the interval; both NULL when not given.
 */
RefillParam
refill_param(const CommandLine *cl)
{
	RefillParam r = {NULL, NULL};
	const char *v = cl->value[OPT_REFILL];
	const char *slash;

	if (v == NULL)
		return r;
	slash = strchr(v, '/');
	if (slash != NULL && slash > v)
	{
		r.amount = strndup(v, slash - v);
		r.interval = slash + 1;
	}
	if (r.amount == NULL || !is_bigint(r.amount, false) || strspn(r.amount, "0") == strlen(r.amount) ||
		(strcmp(r.interval, "day") != 0 && strcmp(r.interval, "week") != 0 &&
		 strcmp(r.interval, "month") != 0))
		fail(EXIT_USAGE, "%s: invalid value \"%s\" for --refill: use N/day, N/week or N/month (N > 0)",
			 cl->command, v);
	return r;
}

/*
 * add-credits KEY_ID_OR_PREFIX --credits N
 *
 * hokusai_auth.add_credits(): N may be negative (credits are taken away,
 * never below zero).  Prints the new balance.
 */
void
add_credits(const CommandLine *cl)
{
	const char *amount;
	const char *values[2];
	PGconn	   *conn;
	PGresult   *key;
	PGresult   *res;

	require_option(cl, OPT_CREDITS);
	amount = credits_param(cl, true);
	conn = open_db(cl);
	key = find_key(conn, cl);
	values[0] = PQgetvalue(key, 0, COL_ID);
	values[1] = amount;
	res = run_query(conn,
					"SELECT hokusai_auth.add_credits($1::pg_catalog.uuid, $2::pg_catalog.int8)",
					2, values);
	if (cl->common.json)
	{
		const JsonField fields[] = {
			{"id", values[0], false},
			{"key_prefix", PQgetvalue(key, 0, COL_PREFIX), false},
			{"amount", amount, true},
			{"credits_remaining", PQgetvalue(res, 0, 0), true}
		};

		print_json_fields(fields, sizeof(fields) / sizeof(fields[0]));
	}
	else
		printf("api key %s has %s credits\n", PQgetvalue(key, 0, COL_PREFIX),
			   PQgetvalue(res, 0, 0));
	PQclear(res);
	PQclear(key);
}

/*
 * set-user-limits USER [--rate-limit N] [--burst N]
 *
 * hokusai_auth.set_user_limits(): the limits shared by all of the user's
 * keys are exactly those given; a limit left out is none.
 */
void
set_user_limits(const CommandLine *cl)
{
	const char *values[3];
	char	   *user_id;
	char	   *username;
	PGconn	   *conn = open_db(cl);
	PGresult   *res;

	resolve_user(conn, cl->argument, &user_id, &username);
	values[0] = user_id;
	values[1] = cl->value[OPT_RATE_LIMIT];
	values[2] = cl->value[OPT_BURST];
	res = run_query(conn,
					"SELECT hokusai_auth.set_user_limits($1::pg_catalog.uuid,"
					" $2::pg_catalog.int4, $3::pg_catalog.int4)",
					3, values);
	if (cl->common.json)
	{
		const JsonField fields[] = {
			{"id", user_id, false},
			{"username", username, false},
			{"rate_limit_per_hour", values[1] ? values[1] : "null", true},
			{"burst_limit", values[2] ? values[2] : "null", true}
		};

		print_json_fields(fields, sizeof(fields) / sizeof(fields[0]));
	}
	else
	{
		char		hourly[64] = "no hourly limit";
		char		burst[64] = "no burst limit";

		if (values[1])
			snprintf(hourly, sizeof(hourly), "at most %s requests per hour", values[1]);
		if (values[2])
			snprintf(burst, sizeof(burst), "at most %s per second", values[2]);
		printf("the keys of user %s share %s and %s\n", username, hourly, burst);
	}
	PQclear(res);
}
