/*-------------------------------------------------------------------------
 *
 * inval_log.c
 *	  The primary's half of cache invalidation through the WAL: the log of
 *	  what each transaction changed, and the relcache invalidation that
 *	  tells standbys to read it.
 *
 * On a primary, the invalidation trigger (validate/invalidate.c) clears the
 * shared cache when the changing transaction commits.  A hot standby runs
 * no triggers, so the same transaction also, here:
 *
 *	- appends one row per changed key or user (or one "everything" row) to
 *	  hokusai_auth.cache_invalidations, with the transaction's full
 *	  (64-bit) id: a WAL-logged insert, replayed on every standby;
 *	- registers a relcache invalidation of that table.  PostgreSQL carries
 *	  the transaction's invalidation messages in its commit record, and a
 *	  standby's startup process sends them to the standby's backends when
 *	  it replays the commit, after the commit has been made visible
 *	  (xact_redo_commit: commit in pg_xact, KnownAssignedXids expired, then
 *	  ProcessCommittedInvalidationMessages).  Each standby backend's relcache
 *	  callback (replica/walinval.c) then knows that rows it can now see may
 *	  be new, and reads them before its next use of the cache.
 *
 * A row is appended once per key or user per subtransaction: a change
 * repeated after its subtransaction rolled back (taking the row with it)
 * is logged again (invalidate.c keeps track).  The worker prunes old rows
 * (_prune_replica_state()); walinval.c explains how a standby notices rows
 * pruned before it read them.
 *
 * The rows are written as the owner of the hokusai_auth schema, whoever
 * changed the key, with search_path pinned.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/xid8.h"

#include "hokusai_auth.h"
#include "replica/inval_log.h"

/* The log table's OID in this database, InvalidOid when there is none. */
Oid
hk_inval_log_relid(void)
{
	Oid			nsp = get_namespace_oid(HK_SCHEMA, true);

	if (!OidIsValid(nsp))
		return InvalidOid;
	return get_relname_relid(HK_INVAL_LOG_TABLE, nsp);
}

/* The role that owns the hokusai_auth schema. */
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

/*
 * Run fn(arg) connected to SPI as the owner of the hokusai_auth schema,
 * restricted, with search_path pinned; on an error the transaction's abort
 * restores the user id and the setting, as for a SECURITY DEFINER function
 * with a SET clause.
 */
void
hk_spi_as_schema_owner(void (*fn) (void *arg), void *arg)
{
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(schema_owner(),
						   save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	PG_TRY();
	{
		(void) set_config_option("search_path", "pg_catalog, pg_temp",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		fn(arg);
		SPI_finish();
		AtEOXact_GUC(true, save_nestlevel);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
}

/* One row to append. */
typedef struct LogRow
{
	char		kind;
	const pg_uuid_t *id;
} LogRow;

/* hk_spi_as_schema_owner callback: the INSERT. */
static void
insert_row(void *arg)
{
	static SPIPlanPtr plan = NULL;
	LogRow	   *row = (LogRow *) arg;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	int			ret;

	if (plan == NULL)
	{
		Oid			types[3] = {XID8OID, CHAROID, UUIDOID};
		SPIPlanPtr	p = SPI_prepare("INSERT INTO " HK_SCHEMA "." HK_INVAL_LOG_TABLE
									" (xid, kind, id) VALUES ($1, $2, $3)", 3, types);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		plan = p;
	}
	values[0] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	values[1] = CharGetDatum(row->kind);
	if (row->id != NULL)
		values[2] = UUIDPGetDatum(row->id);
	else
		nulls[2] = 'n';
	ret = SPI_execute_plan(plan, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not append to %s.%s: %s", HK_SCHEMA, HK_INVAL_LOG_TABLE,
			 SPI_result_code_string(ret));
}

/* Append (scope, id) to the log and have standbys told at commit. */
void
hk_inval_log_append(HkCacheScope scope, const pg_uuid_t *id)
{
	Oid			relid = hk_inval_log_relid();
	LogRow		row;

	if (!OidIsValid(relid))
		return;
	row.kind = scope == HK_SCOPE_KEY ? 'k' : scope == HK_SCOPE_USER ? 'u' : 'a';
	row.id = scope == HK_SCOPE_ALL ? NULL : id;
	hk_spi_as_schema_owner(insert_row, &row);
	CacheInvalidateRelcacheByRelid(relid);
}

/*
 * The worker, in its housekeeping transaction (connected to SPI, its locks
 * taken): prune the invalidation log and the shipping state, when the
 * extension has _prune_replica_state() (1.6 and later).
 */
void
hk_inval_log_prune(void)
{
	Oid			argtypes[1] = {INTERVALOID};
	List	   *name = list_make2(makeString(pstrdup(HK_SCHEMA)),
								  makeString(pstrdup("_prune_replica_state")));
	int			ret;

	if (!OidIsValid(LookupFuncName(name, 1, argtypes, true)))
		return;
	ret = SPI_execute("SELECT " HK_SCHEMA "._prune_replica_state()", false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "_prune_replica_state failed: %s", SPI_result_code_string(ret));
}
