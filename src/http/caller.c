/*-------------------------------------------------------------------------
 *
 * caller.c
 *	  The authenticated caller of the current request, for row-level
 *	  security: hokusai_auth.current_key_id(), current_user_id(),
 *	  current_scopes() and has_scope() (docs/authorization.md).
 *
 * pre_request() records the caller here when it admits a request: the key
 * (its id, its user, its scopes) or, for a JWT, the user alone.  The record
 * is tagged with the transaction's local id (MyProc's lxid) and is read
 * back only by the same transaction: PostgREST runs pre_request() and the
 * request's statement in one transaction, so the functions answer for that
 * request, and NULL anywhere else (another transaction of the pooled
 * connection, a session that never ran pre_request()).  Nothing a caller can
 * set changes it: unlike a setting (hokusai.api_key_id, which pre_request()
 * also sets, for the audit log), it cannot be SET by SQL.
 *
 * pre_request() clears the record first, so a request that it refuses
 * leaves no caller behind, even when the refusal is caught.
 *
 * The functions are PARALLEL RESTRICTED: the record lives in the leader
 * backend only.  The scopes are kept in TopTransactionContext, which ends
 * with the transaction; the tag guards against reading them afterwards.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "http/caller.h"
#include "validate/scopes.h"

PG_FUNCTION_INFO_V1(hk_sql_current_key_id);
PG_FUNCTION_INFO_V1(hk_sql_current_user_id);
PG_FUNCTION_INFO_V1(hk_sql_current_scopes);
PG_FUNCTION_INFO_V1(hk_sql_has_scope);

static struct
{
	LocalTransactionId lxid;	/* InvalidLocalTransactionId: no caller */
	bool		has_key;
	pg_uuid_t	key_id;
	pg_uuid_t	user_id;
	char	   *scopes;			/* packed, in TopTransactionContext */
	int			scopes_len;
} caller = {InvalidLocalTransactionId};

/* This backend's current top-level transaction. */
static inline LocalTransactionId
current_lxid(void)
{
#if PG_VERSION_NUM >= 170000
	return MyProc->vxid.lxid;
#else
	return MyProc->lxid;
#endif
}

/* Is there a caller recorded by this transaction? */
static inline bool
have_caller(void)
{
	return caller.lxid != InvalidLocalTransactionId && caller.lxid == current_lxid();
}

/* Forget the caller (pre_request() does, first). */
void
hk_caller_reset(void)
{
	caller.lxid = InvalidLocalTransactionId;
	caller.has_key = false;
	caller.scopes = NULL;
	caller.scopes_len = 0;
}

/* The request was admitted with an API key. */
void
hk_caller_set_key(const pg_uuid_t *key_id, const pg_uuid_t *user_id,
				  const char *scopes, int scopes_len)
{
	hk_caller_reset();
	caller.scopes = MemoryContextAlloc(TopTransactionContext, Max(scopes_len, 1));
	if (scopes_len > 0)
		memcpy(caller.scopes, scopes, scopes_len);
	caller.scopes_len = scopes_len;
	caller.key_id = *key_id;
	caller.user_id = *user_id;
	caller.has_key = true;
	caller.lxid = current_lxid();
}

/* The request was admitted with a JWT: a user, no key. */
void
hk_caller_set_user(const pg_uuid_t *user_id)
{
	hk_caller_reset();
	caller.user_id = *user_id;
	caller.lxid = current_lxid();
}

/* A pg_uuid_t as a palloc'd uuid Datum. */
static Datum
uuid_datum(const pg_uuid_t *u)
{
	pg_uuid_t  *copy = palloc(sizeof(pg_uuid_t));

	*copy = *u;
	return UUIDPGetDatum(copy);
}

/*
 * hokusai_auth.current_key_id() returns uuid
 *	The API key of the current request; NULL for a JWT or outside a request.
 */
Datum
hk_sql_current_key_id(PG_FUNCTION_ARGS)
{
	if (!have_caller() || !caller.has_key)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(uuid_datum(&caller.key_id));
}

/*
 * hokusai_auth.current_user_id() returns uuid
 *	The user the current request acts for (the key's owner, or the JWT's
 *	subject); NULL outside a request.
 */
Datum
hk_sql_current_user_id(PG_FUNCTION_ARGS)
{
	if (!have_caller())
		PG_RETURN_NULL();
	PG_RETURN_DATUM(uuid_datum(&caller.user_id));
}

/*
 * hokusai_auth.current_scopes() returns text[]
 *	The scopes of the current request's key ('{}' for a key without
 *	scopes); NULL for a JWT or outside a request.
 */
Datum
hk_sql_current_scopes(PG_FUNCTION_ARGS)
{
	if (!have_caller() || !caller.has_key)
		PG_RETURN_NULL();
	PG_RETURN_ARRAYTYPE_P(hk_scopes_to_array(caller.scopes, caller.scopes_len));
}

/*
 * hokusai_auth.has_scope(scope text) returns boolean
 *	Does the current request's key grant scope (wildcards included)?  False
 *	for a JWT, a key without scopes, or outside a request.  A name that is
 *	not a scope name is an error: a typo in a policy should not pass
 *	silently as "never".
 */
Datum
hk_sql_has_scope(PG_FUNCTION_ARGS)
{
	text	   *scope = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(scope);
	int			len = VARSIZE_ANY_EXHDR(scope);

	if (!hk_scope_name_valid(s, len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid scope name"),
				 errdetail("A scope name is 1 to %d characters of a-z, 0-9, \"_\", \".\", \":\" and \"-\" with an optional trailing \"*\".",
						   HK_SCOPE_NAME_MAX)));
	if (!have_caller() || !caller.has_key)
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(hk_scopes_grant(caller.scopes, caller.scopes_len, s, len));
}
