/*-------------------------------------------------------------------------
 *
 * key_store.c
 *	  Reading key and user rows for validation, as the owner of the
 *	  hokusai_auth schema: a key's row by key_prefix, its allowed_ips or its
 *	  scopes by id, and whether a user is active.
 *
 * Callers need EXECUTE on validate_key() (or to be PostgREST's roles in
 * pre_request()) and no privileges on the tables: every read here runs as
 * the schema's owner.  Borrowing those rights is safe only if nothing the
 * caller controls runs with them (DESIGN.md section 11), so each query is
 * planned and run with search_path pinned to pg_catalog, pg_temp, names
 * every object and operator with its schema, and runs read-only under
 * SECURITY_RESTRICTED_OPERATION.
 *
 * Rows are read with the latest snapshot, not the caller's, so a long
 * REPEATABLE READ transaction cannot see (or cache) a key as it was before
 * a revocation.  Nothing here writes a table: validation works inside
 * PostgREST's read-only transactions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "hokusai_auth.h"
#include "common/key_format.h"
#include "metering/balance.h"
#include "validate/cidr_datum.h"
#include "validate/key_store.h"

static SPIPlanPtr lookup_plan = NULL;
static SPIPlanPtr lookup_plan_15 = NULL;

/*
 * Every object and operator is schema-qualified, and the query runs with
 * search_path pinned (read_row_as_owner): nothing the caller can put on
 * search_path runs with the owner's rights.  The rows' xmin tell whether
 * this transaction wrote them (see hk_key_store_lookup).
 */
#define LOOKUP_COLUMNS \
"SELECT k.id, k.user_id, k.key_hash," \
"       k.is_active AND k.revoked_at IS NULL AND u.is_active," \
"       k.expires_at, k.rate_limit_per_hour, k.burst_limit, k.allowed_ips," \
"       k.revoked_at IS NOT NULL OR NOT u.is_active," \
"       k.xmin, u.xmin"
#define LOOKUP_FROM \
"  FROM " HK_SCHEMA ".api_keys k" \
"  JOIN " HK_SCHEMA ".users u ON u.id OPERATOR(pg_catalog.=) k.user_id" \
" WHERE k.key_prefix OPERATOR(pg_catalog.=) $1"

static const char lookup_query[] =
LOOKUP_COLUMNS ", k.disabled_at IS NOT NULL, k.scopes,"
"       k.credits_remaining IS NOT NULL, coalesce(k.credits_key_id, k.id),"
"       k.refill_amount, k.refill_interval, u.rate_limit_per_hour, u.burst_limit"
LOOKUP_FROM;

/*
 * A database not yet updated to 1.6 has none of authorization's and
 * metering's columns: there every key is enabled, unrestricted and
 * unmetered, and no user has limits.  The 1.6 library answers
 * validate_key() there until ALTER EXTENSION UPDATE.
 */
static const char lookup_query_15[] = LOOKUP_COLUMNS LOOKUP_FROM;

/*
 * Has api_keys the 1.6 columns?  Asked on every read of a key's row (a few
 * catalog cache lookups): ALTER EXTENSION UPDATE may add them at any time.
 * The update adds authorization's and metering's together.
 */
static bool
have_16_columns(void)
{
	Oid			rel = get_relname_relid("api_keys", get_namespace_oid(HK_SCHEMA, false));

	return OidIsValid(rel) && get_attnum(rel, "scopes") != InvalidAttrNumber;
}

/* The role that owns the hokusai_auth schema: key rows are read as it. */
static Oid
schema_owner(void)
{
	Oid			nsp = get_namespace_oid(HK_SCHEMA, false);
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for schema %u", nsp);
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	return owner;
}

/* Reads one row of a query's result into the caller's structures. */
typedef void (*RowReader) (HeapTuple tup, TupleDesc desc, void *arg);

/*
 * Run a one-parameter query as the owner of the hokusai_auth schema, with
 * the latest snapshot and read-only, and hand its first row (if any) to
 * read, in the caller's memory context.  The plan is prepared on first use
 * and kept in *plan.  Returns whether there was a row.
 *
 * search_path is pinned to pg_catalog, pg_temp while the query is planned
 * and run (DESIGN.md section 11), and restored afterwards; on an error the
 * transaction's abort restores it and the user id, as for a SECURITY
 * DEFINER function with a SET clause.
 */
static bool
read_row_as_owner(SPIPlanPtr *plan, const char *query, Oid argtype, Datum arg,
				  RowReader read, void *read_arg)
{
	MemoryContext callercxt = CurrentMemoryContext;
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;
	volatile bool found = false;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(schema_owner(),
						   save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	PG_TRY();
	{
		int			ret;

		(void) set_config_option("search_path", "pg_catalog, pg_temp",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (*plan == NULL)
		{
			SPIPlanPtr	p = SPI_prepare(query, 1, &argtype);

			if (p == NULL)
				elog(ERROR, "SPI_prepare failed: %s",
					 SPI_result_code_string(SPI_result));
			SPI_keepplan(p);
			*plan = p;
		}
		ret = SPI_execute_snapshot(*plan, &arg, NULL, GetLatestSnapshot(),
								   InvalidSnapshot, true, false, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute_snapshot failed: %s",
				 SPI_result_code_string(ret));
		if (SPI_processed == 1)
		{
			MemoryContext spicxt = MemoryContextSwitchTo(callercxt);

			read(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, read_arg);
			MemoryContextSwitchTo(spicxt);
			found = true;
		}
		SPI_finish();
		AtEOXact_GUC(true, save_nestlevel);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
	return found;
}

/* What hk_key_store_lookup reads: the key's state and its hash. */
typedef struct KeyRow
{
	HkKeyState *st;
	char	   *hash;
	bool		own_write;		/* this transaction wrote the key or its user */
} KeyRow;

/* Did this transaction (or one of its subtransactions) write the row? */
static bool
xmin_is_ours(HeapTuple tup, TupleDesc desc, int attno)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, attno, &isnull);

	return !isnull && TransactionIdIsCurrentTransactionId(DatumGetTransactionId(d));
}

/* A key's scopes column (attno of tup), packed into *st. */
static void
read_scopes(HeapTuple tup, TupleDesc desc, int attno, HkKeyState *st)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, attno, &isnull);

	st->scopes_unread = false;
	st->n_scopes = 0;
	st->scopes_len = 0;
	st->scopes = NULL;
	if (!isnull)
		st->scopes_len = hk_scopes_pack(DatumGetArrayTypeP(d), &st->scopes,
										&st->n_scopes);
}

/* RowReader for lookup_query: fill a KeyRow. */
static void
read_key_row(HeapTuple tup, TupleDesc desc, void *arg)
{
	KeyRow	   *row = (KeyRow *) arg;
	HkKeyState *st = row->st;
	bool		isnull;
	Datum		d;

	memcpy(&st->key_id, DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull)),
		   sizeof(pg_uuid_t));
	memcpy(&st->user_id, DatumGetUUIDP(SPI_getbinval(tup, desc, 2, &isnull)),
		   sizeof(pg_uuid_t));
	row->hash = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
	d = SPI_getbinval(tup, desc, 4, &isnull);
	st->active = !isnull && DatumGetBool(d);
	d = SPI_getbinval(tup, desc, 5, &isnull);
	st->has_expiry = !isnull;
	st->expires_at = isnull ? 0 : DatumGetTimestampTz(d);
	d = SPI_getbinval(tup, desc, 6, &isnull);
	st->rate_limit_per_hour = isnull ? hk_default_rate_limit_per_hour : DatumGetInt32(d);
	d = SPI_getbinval(tup, desc, 7, &isnull);
	st->burst_limit = isnull ? -1 : DatumGetInt32(d);
	d = SPI_getbinval(tup, desc, 8, &isnull);
	st->has_allowed_ips = !isnull;
	st->n_allowed = isnull ? 0 :
		hk_cidrs_from_array(DatumGetArrayTypeP(d), &st->allowed);
	d = SPI_getbinval(tup, desc, 9, &isnull);
	st->revoked = !isnull && DatumGetBool(d);
	row->own_write = xmin_is_ours(tup, desc, 10) || xmin_is_ours(tup, desc, 11);
	st->disabled = false;
	st->scopes_unread = false;
	st->n_scopes = 0;
	st->scopes_len = 0;
	st->scopes = NULL;
	st->has_credits = false;
	st->credits_key = st->key_id;
	st->refill_amount = 0;
	st->refill_interval = HK_REFILL_NONE;
	st->user_rate_limit_per_hour = 0;
	st->user_burst_limit = 0;
	st->limiter_hint = 0;
	st->limiter_hint_at = NULL;
	if (desc->natts < 19)
		return;
	/* authorization */
	d = SPI_getbinval(tup, desc, 12, &isnull);
	st->disabled = !isnull && DatumGetBool(d);
	read_scopes(tup, desc, 13, st);
	/* metering */
	d = SPI_getbinval(tup, desc, 14, &isnull);
	st->has_credits = !isnull && DatumGetBool(d);
	memcpy(&st->credits_key, DatumGetUUIDP(SPI_getbinval(tup, desc, 15, &isnull)),
		   sizeof(pg_uuid_t));
	d = SPI_getbinval(tup, desc, 16, &isnull);
	st->refill_amount = isnull ? 0 : DatumGetInt64(d);
	d = SPI_getbinval(tup, desc, 17, &isnull);
	if (!isnull)
	{
		HkRefillInterval iv;

		if (hk_refill_parse(TextDatumGetCString(d), &iv))
			st->refill_interval = (uint8) iv;
	}
	if (st->refill_amount <= 0)
		st->refill_interval = HK_REFILL_NONE;
	d = SPI_getbinval(tup, desc, 18, &isnull);
	st->user_rate_limit_per_hour = isnull ? 0 : Max(DatumGetInt32(d), 0);
	d = SPI_getbinval(tup, desc, 19, &isnull);
	st->user_burst_limit = isnull ? 0 : Max(DatumGetInt32(d), 0);
}

/*
 * Read the row of a key (its first HK_PREFIX_LEN bytes are its key_prefix).
 * Returns its bcrypt hash, or NULL when there is no such row; *st then
 * describes the key, allocated in the caller's memory context.
 *
 * *own_write is set when this transaction inserted or updated the key's
 * row or its user's: such a row is not committed (and may never be), so
 * what it says must not reach the shared cache, where other sessions would
 * see it; a rolled-back create_key() would otherwise leave a key that
 * validates and exists nowhere.
 */
char *
hk_key_store_lookup(const char *key, HkKeyState *st, bool *own_write)
{
	KeyRow		row = {st, NULL, false};
	Datum		arg = PointerGetDatum(cstring_to_text_with_len(key, HK_PREFIX_LEN));
	bool		v16 = have_16_columns();

	*own_write = false;
	if (!read_row_as_owner(v16 ? &lookup_plan : &lookup_plan_15,
						   v16 ? lookup_query : lookup_query_15, TEXTOID, arg,
						   read_key_row, &row))
		return NULL;
	*own_write = row.own_write;
	return row.hash;
}

/* RowReader for a key's allowed_ips alone. */
static void
read_allowed_ips(HeapTuple tup, TupleDesc desc, void *arg)
{
	HkKeyState *st = (HkKeyState *) arg;
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, 1, &isnull);

	if (!isnull)
		st->n_allowed = hk_cidrs_from_array(DatumGetArrayTypeP(d), &st->allowed);
}

/*
 * A cached key with more allowed CIDRs than fit in a cache entry: read
 * just allowed_ips by key id.
 */
void
hk_key_store_allowed_ips(HkKeyState *st)
{
	static SPIPlanPtr plan = NULL;

	st->n_allowed = 0;
	(void) read_row_as_owner(&plan,
							 "SELECT allowed_ips FROM " HK_SCHEMA ".api_keys"
							 " WHERE id OPERATOR(pg_catalog.=) $1",
							 UUIDOID, UUIDPGetDatum(&st->key_id),
							 read_allowed_ips, st);
}

/* RowReader for a key's scopes alone. */
static void
read_scopes_row(HeapTuple tup, TupleDesc desc, void *arg)
{
	read_scopes(tup, desc, 1, (HkKeyState *) arg);
}

/*
 * A cached key whose scopes did not fit in its cache entry: read just
 * scopes by key id.  A key whose row is gone grants nothing (and stays a
 * restricted key).
 */
void
hk_key_store_scopes(HkKeyState *st)
{
	static SPIPlanPtr plan = NULL;
	int			cached_count = st->n_scopes;

	if (!read_row_as_owner(&plan,
						   "SELECT scopes FROM " HK_SCHEMA ".api_keys"
						   " WHERE id OPERATOR(pg_catalog.=) $1",
						   UUIDOID, UUIDPGetDatum(&st->key_id),
						   read_scopes_row, st))
	{
		/* The row is gone: still restricted, granting nothing. */
		st->scopes_unread = false;
		st->n_scopes = cached_count;
		st->scopes_len = 0;
	}
}

/* RowReader for a user's is_active. */
static void
read_is_active(HeapTuple tup, TupleDesc desc, void *arg)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, 1, &isnull);

	*(bool *) arg = !isnull && DatumGetBool(d);
}

/*
 * Is there an active user with this id?  Read as the owner, with the latest
 * snapshot, like a key's row: pre_request() runs as PostgREST's role, which
 * cannot read the users table.
 */
bool
hk_user_is_active(const pg_uuid_t *user_id)
{
	static SPIPlanPtr plan = NULL;
	bool		active = false;

	(void) read_row_as_owner(&plan,
							 "SELECT u.is_active FROM " HK_SCHEMA ".users u"
							 " WHERE u.id OPERATOR(pg_catalog.=) $1",
							 UUIDOID, UUIDPGetDatum(user_id),
							 read_is_active, &active);
	return active;
}

/*
 * RowReader for a balance: credits_remaining, credits_initial,
 * credits_refilled_at, refill_interval.
 */
static void
read_credits(HeapTuple tup, TupleDesc desc, void *arg)
{
	HkCreditRow *row = (HkCreditRow *) arg;
	bool		isnull;
	Datum		d;

	d = SPI_getbinval(tup, desc, 1, &isnull);
	row->balance = isnull ? -1 : DatumGetInt64(d);
	d = SPI_getbinval(tup, desc, 2, &isnull);
	row->initial = isnull ? row->balance : DatumGetInt64(d);
	d = SPI_getbinval(tup, desc, 3, &isnull);
	row->refilled_at = isnull ? 0 : DatumGetTimestampTz(d);
	d = SPI_getbinval(tup, desc, 4, &isnull);
	row->refill_interval = HK_REFILL_NONE;
	if (!isnull)
	{
		HkRefillInterval iv;

		if (hk_refill_parse(TextDatumGetCString(d), &iv))
			row->refill_interval = (uint8) iv;
	}
}

/*
 * The credit balance of the key whose id is key_id, as its row has it (read
 * as the owner, with the latest snapshot, like a key's row).  False when
 * there is no such row or it has no balance (credits_remaining NULL).
 */
bool
hk_key_store_credits(const pg_uuid_t *key_id, HkCreditRow *row)
{
	static SPIPlanPtr plan = NULL;

	row->balance = -1;
	if (!read_row_as_owner(&plan,
						   "SELECT k.credits_remaining, k.credits_initial, k.credits_refilled_at,"
						   "       k.refill_interval"
						   "  FROM " HK_SCHEMA ".api_keys k"
						   " WHERE k.id OPERATOR(pg_catalog.=) $1",
						   UUIDOID, UUIDPGetDatum(key_id),
						   read_credits, row))
		return false;
	return row->balance >= 0;
}
