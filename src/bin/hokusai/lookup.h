/*-------------------------------------------------------------------------
 *
 * lookup.h
 *	  What the commands share: the connection by the command line, and
 *	  finding the user or key an argument names.
 *
 * src/bin/hokusai/lookup.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_LOOKUP_H
#define HOKUSAI_LOOKUP_H

#include "libpq-fe.h"
#include "parse.h"

/*
 * Key columns as list-keys, show-key and --json show them (no key_hash:
 * hokusai_auth.keys does not have it).  Table column numbers follow.
 */
#define KEY_COLUMNS \
	"k.id, k.key_prefix, k.user_id, u.username, k.name, k.environment, " \
	"k.status, k.created_at, k.expires_at, k.last_used_at, k.revoked_at, " \
	"k.rate_limit_per_hour, k.burst_limit, " \
	"pg_catalog.to_json(k.allowed_ips) AS allowed_ips, k.metadata, k.rotated_from, " \
	"pg_catalog.to_json(k.scopes) AS scopes, k.disabled_at, " \
	"k.credits_remaining, k.refill_amount, k.refill_interval"

enum
{
	COL_ID, COL_PREFIX, COL_USER_ID, COL_USERNAME, COL_NAME, COL_ENV,
	COL_STATUS, COL_CREATED, COL_EXPIRES, COL_LAST_USED
};
#define COL_CREDITS 18			/* credits_remaining */

/* The condition on hokusai_auth.keys k that picks the key of query_key() */
#define KEY_MATCHES \
	"k.id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid" \
	" OR k.key_prefix OPERATOR(pg_catalog.=) $2::pg_catalog.text"

extern PGconn *open_db(const CommandLine *cl);
extern void resolve_user(PGconn *conn, const char *arg, char **id,
						 char **username);
extern PGresult *query_key(PGconn *conn, const CommandLine *cl, const char *sql,
						   int nparams, const char **values);
extern PGresult *find_key(PGconn *conn, const CommandLine *cl);

#endif							/* HOKUSAI_LOOKUP_H */
