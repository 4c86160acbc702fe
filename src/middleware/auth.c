/*-------------------------------------------------------------------------
 *
 * auth.c
 *	  hokusai_auth.validate_key(): the request-path check of an API key.
 *
 * Order of checks, cheapest first, and nothing about a key is revealed
 * before its secret has been proven:
 *
 *	1. shape and checksum (no table or bcrypt work): "malformed";
 *	2. the shared-memory cache (key_cache.c), by a keyed digest of the whole
 *	   key: a hit proves the secret; a negative hit is "unknown";
 *	3. on a miss, the per-prefix failure throttle, then the row by key_prefix
 *	   and a bcrypt verification: "unknown" when either fails.  The result,
 *	   good or bad, goes into the cache;
 *	4. active flag, revocation and the owner's active flag: "revoked";
 *	5. expiry, against the wall clock on every call: "expired";
 *	6. client address against allowed_ips: "ip_denied".  A key with an
 *	   allow-list is denied when the caller gives no address;
 *	7. the key's rate limits (rate_limiter.c): "rate_limited".  Only a call
 *	   that gets this far counts against the key's quota, and only if it is
 *	   admitted.
 *
 * The row is read as the owner of the hokusai_auth schema, so callers need
 * EXECUTE on validate_key and no privileges on the tables.  It is read with
 * the latest snapshot, not the caller's, so a long REPEATABLE READ
 * transaction cannot see (or cache) a key as it was before a revocation.
 * Nothing here writes a table: validation works inside PostgREST's
 * read-only transactions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sodium.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "keys/bcrypt.h"
#include "middleware/auth.h"
#include "middleware/key_cache.h"
#include "middleware/rate_limiter.h"
#include "usage/usage_queue.h"
#include "validate/cidr_datum.h"

PG_FUNCTION_INFO_V1(hk_sql_validate_key);

const char *const hk_status_names[] = {
	[HK_STATUS_OK] = "ok",
	[HK_STATUS_MALFORMED] = "malformed",
	[HK_STATUS_UNKNOWN] = "unknown",
	[HK_STATUS_REVOKED] = "revoked",
	[HK_STATUS_EXPIRED] = "expired",
	[HK_STATUS_IP_DENIED] = "ip_denied",
	[HK_STATUS_RATE_LIMITED] = "rate_limited",
};

#define VALIDATE_NATTS 8

static SPIPlanPtr lookup_plan = NULL;

/*
 * Every object and operator is schema-qualified, and the query runs with
 * search_path pinned (read_row_as_owner): nothing the caller can put on
 * search_path runs with the owner's rights.  The rows' xmin tell whether
 * this transaction wrote them (see key_lookup).
 */
static const char lookup_query[] =
"SELECT k.id, k.user_id, k.key_hash,"
"       k.is_active AND k.revoked_at IS NULL AND u.is_active,"
"       k.expires_at, k.rate_limit_per_hour, k.burst_limit, k.allowed_ips,"
"       k.revoked_at IS NOT NULL OR NOT u.is_active,"
"       k.xmin, u.xmin"
"  FROM " HK_SCHEMA ".api_keys k"
"  JOIN " HK_SCHEMA ".users u ON u.id OPERATOR(pg_catalog.=) k.user_id"
" WHERE k.key_prefix OPERATOR(pg_catalog.=) $1";

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
	volatile bool found = false;

	int			save_nestlevel;

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

/* What key_lookup reads: the key's state and its hash. */
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
}

/*
 * Read the key's row by prefix.  Returns its bcrypt hash, or NULL when there
 * is no such row; *st then describes the key, allocated in the caller's
 * memory context.
 *
 * *own_write is set when this transaction inserted or updated the key's
 * row or its user's: such a row is not committed (and may never be), so
 * what it says must not reach the shared cache, where other sessions would
 * see it; a rolled-back create_key() would otherwise leave a key that
 * validates and exists nowhere.
 */
static char *
key_lookup(const char *key, HkKeyState *st, bool *own_write)
{
	KeyRow		row = {st, NULL, false};
	Datum		arg = PointerGetDatum(cstring_to_text_with_len(key, HK_PREFIX_LEN));

	*own_write = false;
	if (!read_row_as_owner(&lookup_plan, lookup_query, TEXTOID, arg,
						   read_key_row, &row))
		return NULL;
	*own_write = row.own_write;
	return row.hash;
}

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
static void
key_allowed_ips(HkKeyState *st)
{
	static SPIPlanPtr plan = NULL;

	st->n_allowed = 0;
	(void) read_row_as_owner(&plan,
							 "SELECT allowed_ips FROM " HK_SCHEMA ".api_keys"
							 " WHERE id OPERATOR(pg_catalog.=) $1",
							 UUIDOID, UUIDPGetDatum(&st->key_id),
							 read_allowed_ips, st);
}

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
 * Steps 2 and 3 of the banner: is this the secret of one of our keys?  On
 * true, *st describes the key, and *touch_due says whether this use should
 * be noted for last_used_at (always after a cache miss; after a hit, once
 * per HK_TOUCH_INTERVAL per key).
 */
static bool
key_authenticate(const char *key, HkKeyState *st, bool *touch_due)
{
	uint8		digest[HK_DIGEST_LEN];
	bool		use_cache = hk_cache_usable();
	bool		ips_overflow = false;
	uint64		generation = 0;
	char	   *hash;
	bool		verified;
	bool		own_write;

	hk_key_digest(key, HK_KEY_LEN, digest);
	if (use_cache)
	{
		*touch_due = false;
		switch (hk_cache_lookup(digest, st, &ips_overflow, touch_due))
		{
			case HK_CACHE_HIT:
				if (ips_overflow)
					key_allowed_ips(st);
				return true;
			case HK_CACHE_NEGATIVE:
				return false;
			case HK_CACHE_MISS:
				break;
		}
		/* Read before the row's snapshot is taken: see key_cache.c. */
		generation = hk_cache_generation();
	}

	if (!hk_throttle_admit(key))
		return false;
	*touch_due = true;
	hash = key_lookup(key, st, &own_write);
	if (hash == NULL)
	{
		hk_throttle_release(key);
		return false;
	}
	hk_stat_add(HK_STAT_BCRYPT);
	verified = hk_bcrypt_verify(key, hash);
	if (verified)
		hk_throttle_release(key);
	if (use_cache && !own_write)
	{
		if (verified)
			hk_cache_insert(digest, st, generation);
		else
			hk_cache_insert_negative(digest, generation);
	}
	return verified;
}

/* Steps 3 to 5 of the banner, for a key whose secret has been proven. */
static HkStatus
key_check(const HkKeyState *st, const inet *client_ip)
{
	if (st->revoked)
		return HK_STATUS_REVOKED;
	/* Expired before inactive: the worker deactivates keys that expire. */
	if (st->has_expiry && st->expires_at <= GetCurrentTimestamp())
		return HK_STATUS_EXPIRED;
	if (!st->active)
		return HK_STATUS_REVOKED;
	if (st->has_allowed_ips)
	{
		HkCidr		client;

		if (client_ip == NULL)
			return HK_STATUS_IP_DENIED;
		hk_cidr_from_inet(client_ip, &client);
		if (!hk_cidrs_allow(st->allowed, st->n_allowed, &client))
			return HK_STATUS_IP_DENIED;
	}
	return HK_STATUS_OK;
}

/*
 * Validate a key (key_len bytes, not NUL-terminated; NULL for none) for a
 * client address (NULL when unknown): the checks of the banner, in order.
 * When the key is admitted, notes its use and, when endpoint is not NULL,
 * queues a usage event for it.  Never raises for a bad key: every
 * rejection is a status in *res.
 */
void
hk_validate(const char *key_text, size_t key_len, const inet *client_ip,
			const text *endpoint, HkValidation *res)
{
	HkStatus	status;
	HkKeyState	st;
	HkLimiterDecision limit;
	bool		known = false;
	bool		touch_due = false;

	hk_require_preload();

	memset(res, 0, sizeof(*res));
	if (key_text == NULL)
		status = HK_STATUS_MALFORMED;
	else
	{
		HkEnvironment env;

		if (hk_key_parse(key_text, key_len, &env) != HK_KEY_OK)
			status = HK_STATUS_MALFORMED;
		else
		{
			char		key[HK_KEY_LEN + 1];

			memcpy(res->prefix, key_text, HK_PREFIX_LEN);
			res->prefix[HK_PREFIX_LEN] = '\0';
			memcpy(key, key_text, HK_KEY_LEN);
			key[HK_KEY_LEN] = '\0';
			known = key_authenticate(key, &st, &touch_due);
			sodium_memzero(key, sizeof(key));
			if (!known)
				status = HK_STATUS_UNKNOWN;
			else
				status = key_check(&st, client_ip);
			if (status == HK_STATUS_OK)
			{
				int32		burst = st.burst_limit > 0 ? st.burst_limit : hk_default_burst_limit;

				hk_limiter_admit(&st.key_id, st.rate_limit_per_hour, burst, &limit);
				if (!limit.admitted)
					status = HK_STATUS_RATE_LIMITED;
			}
		}
	}

	if (status == HK_STATUS_MALFORMED)
		hk_stat_add(HK_STAT_MALFORMED);
	else if (status == HK_STATUS_OK && (endpoint != NULL || touch_due))
		hk_usage_note_valid(&st.key_id, endpoint);

	res->status = status;
	res->known = known;
	if (known)
	{
		res->key_id = st.key_id;
		res->user_id = st.user_id;
		res->rate_limit = st.rate_limit_per_hour;
	}
	res->has_limits = (status == HK_STATUS_OK || status == HK_STATUS_RATE_LIMITED);
	if (res->has_limits)
	{
		res->remaining = limit.remaining;
		res->reset_seconds = limit.reset_seconds;
		res->retry_after = limit.retry_after;
	}
}

/*
 * hokusai_auth.validate_key(key text, client_ip inet, endpoint text)
 *	returns (valid, status, key_id, user_id, rate_limit, remaining,
 *			 reset_seconds, retry_after)
 *
 * Never raises for a bad key: every rejection is a status.
 */
Datum
hk_sql_validate_key(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc = (TupleDesc) fcinfo->flinfo->fn_extra;
	HkValidation res;
	Datum		values[VALIDATE_NATTS];
	bool		nulls[VALIDATE_NATTS];

	hk_require_preload();

	/* The blessed result descriptor, built once per call site. */
	if (tupdesc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		tupdesc = BlessTupleDesc(CreateTupleDescCopy(tupdesc));
		fcinfo->flinfo->fn_extra = tupdesc;
		MemoryContextSwitchTo(old);
	}

	if (PG_ARGISNULL(0))
		hk_validate(NULL, 0, NULL, NULL, &res);
	else
	{
		text	   *arg = PG_GETARG_TEXT_PP(0);

		hk_validate(VARDATA_ANY(arg), VARSIZE_ANY_EXHDR(arg),
					PG_ARGISNULL(1) ? NULL : PG_GETARG_INET_PP(1),
					PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2), &res);
	}

	memset(nulls, true, sizeof(nulls));
	values[0] = BoolGetDatum(res.status == HK_STATUS_OK);
	nulls[0] = false;
	values[1] = CStringGetTextDatum(hk_status_names[res.status]);
	nulls[1] = false;
	if (res.known)
	{
		values[2] = UUIDPGetDatum(&res.key_id);
		nulls[2] = false;
		values[3] = UUIDPGetDatum(&res.user_id);
		nulls[3] = false;
		values[4] = Int32GetDatum(res.rate_limit);
		nulls[4] = false;
	}
	if (res.has_limits)
	{
		values[5] = Int32GetDatum(res.remaining);
		nulls[5] = false;
		values[6] = Int32GetDatum(res.reset_seconds);
		nulls[6] = false;
		values[7] = Int32GetDatum(res.retry_after);
		nulls[7] = false;
	}

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
