/*-------------------------------------------------------------------------
 *
 * route_scopes.c
 *	  The scopes pre_request() demands per route (docs/authorization.md):
 *	  the rows of hokusai_auth.route_scopes that require_scope() writes,
 *	  and the key-management routes' own (builtin), kept by each backend.
 *
 * A row says: a request whose method is method ('*': any; HEAD counts as
 * GET) and whose PostgREST path (request.path, e.g. /rpc/create_key) is
 * path_pattern, or starts with it when it ends in '*', needs scope.  Every
 * matching row's scope is demanded; a builtin row's only of keys that have
 * scopes (pipeline.c, scope_check).
 *
 * Each backend reads the table once, as the schema's owner with search_path
 * pinned (as key_store.c reads keys), and keeps it until the table changes:
 * a statement trigger on it (hk_sql_route_scopes_changed) sends a relcache
 * invalidation for it, which every backend applies at the start of its
 * next transaction (and this backend at its next command), and the
 * callback below marks the copy stale.  The copy is replaced only by the
 * next lookup, never while a request uses it.  A database still at 1.5
 * (no table) has no route scopes: its absence is not cached, so the table
 * is found once ALTER EXTENSION UPDATE makes it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "hokusai_auth.h"
#include "http/route_scopes.h"

PG_FUNCTION_INFO_V1(hk_sql_route_scopes_changed);

/* One row of hokusai_auth.route_scopes. */
typedef struct RouteRow
{
	char	   *method;			/* "*", "GET", ... */
	char	   *pattern;
	int			pattern_len;	/* without the trailing '*' of a prefix */
	bool		prefix;
	HkRouteScope scope;
} RouteRow;

static MemoryContext routes_cxt = NULL;
static RouteRow *routes = NULL;
static int	nroutes = 0;
static bool routes_valid = false;
static Oid	routes_relid = InvalidOid;

/* Relcache callback: the table (or every relation) changed. */
static void
routes_inval_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == routes_relid)
		routes_valid = false;
}

/* The role that owns the hokusai_auth schema. */
static Oid
schema_owner(Oid nsp)
{
	HeapTuple	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for schema %u", nsp);
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	return owner;
}

/* Copy the query's rows into routes (in routes_cxt). */
static void
keep_rows(void)
{
	MemoryContext old = MemoryContextSwitchTo(routes_cxt);

	nroutes = 0;
	routes = palloc0(sizeof(RouteRow) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		RouteRow   *r = &routes[nroutes];
		bool		isnull;
		char	   *scope;

		r->method = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
		r->pattern = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		scope = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
		r->scope.restricted_only = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		r->pattern_len = strlen(r->pattern);
		r->prefix = r->pattern_len > 0 && r->pattern[r->pattern_len - 1] == '*';
		if (r->prefix)
			r->pattern_len--;
		r->scope.name = scope;
		r->scope.len = strlen(scope);
		/* The table's checks admit only scope names; skip anything else. */
		if (hk_scope_name_valid(scope, r->scope.len))
			nroutes++;
	}
	MemoryContextSwitchTo(old);
}

/*
 * Read the table as the schema's owner, with the latest snapshot and
 * search_path pinned to pg_catalog, pg_temp, read-only (see key_store.c).
 */
static void
load_routes(Oid nsp)
{
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(schema_owner(nsp),
						   save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	PG_TRY();
	{
		SPIPlanPtr	plan;
		int			ret;

		(void) set_config_option("search_path", "pg_catalog, pg_temp",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		plan = SPI_prepare("SELECT r.method, r.path_pattern, r.scope, r.builtin"
						   "  FROM " HK_SCHEMA ".route_scopes r", 0, NULL);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		ret = SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(),
								   InvalidSnapshot, true, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute_snapshot failed: %s", SPI_result_code_string(ret));
		keep_rows();
		SPI_freeplan(plan);
		SPI_finish();
		AtEOXact_GUC(true, save_nestlevel);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
}

/* Make the copy current: read the table again if it changed. */
static void
refresh_routes(void)
{
	static bool registered = false;
	Oid			nsp;

	if (!registered)
	{
		CacheRegisterRelcacheCallback(routes_inval_callback, (Datum) 0);
		registered = true;
	}
	if (routes_valid)
		return;

	if (routes_cxt == NULL)
		routes_cxt = AllocSetContextCreate(CacheMemoryContext,
										   "hokusai_auth route scopes",
										   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(routes_cxt);
	routes = NULL;
	nroutes = 0;
	nsp = get_namespace_oid(HK_SCHEMA, false);
	routes_relid = get_relname_relid("route_scopes", nsp);
	if (!OidIsValid(routes_relid))
		return;					/* 1.5: none, and look again next time */
	/* Valid from now: an invalidation during the read marks it stale again. */
	routes_valid = true;
	PG_TRY();
	{
		load_routes(nsp);
	}
	PG_CATCH();
	{
		routes_valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* Does the row match the request? */
static bool
route_matches(const RouteRow *r, const char *method, const char *path, int path_len)
{
	if (!(r->method[0] == '*' || strcmp(r->method, method) == 0 ||
		  (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0)))
		return false;
	if (r->prefix)
		return path_len >= r->pattern_len && memcmp(path, r->pattern, r->pattern_len) == 0;
	return path_len == r->pattern_len && memcmp(path, r->pattern, path_len) == 0;
}

/*
 * The scopes a request of method on path demands: returns how many, and
 * *out a palloc'd array of them (names copied: the table may be read again
 * before the caller is done).  NULL method or path demand nothing.
 */
int
hk_route_scopes_for(const char *method, const char *path, HkRouteScope **out)
{
	int			n = 0;
	int			path_len;

	*out = NULL;
	if (method == NULL || path == NULL)
		return 0;
	refresh_routes();
	if (nroutes == 0)
		return 0;
	path_len = strlen(path);
	for (int i = 0; i < nroutes; i++)
	{
		const RouteRow *r = &routes[i];

		if (!route_matches(r, method, path, path_len))
			continue;
		if (*out == NULL)
			*out = palloc(sizeof(HkRouteScope) * nroutes);
		(*out)[n].name = pnstrdup(r->scope.name, r->scope.len);
		(*out)[n].len = r->scope.len;
		(*out)[n].restricted_only = r->scope.restricted_only;
		n++;
	}
	return n;
}

/*
 * Statement trigger on hokusai_auth.route_scopes (INSERT, UPDATE, DELETE,
 * TRUNCATE): every backend reads the table again before its next request.
 */
Datum
hk_sql_route_scopes_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "not called by trigger manager");
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
