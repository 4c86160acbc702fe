/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Every hokusai_auth.* configuration variable, in one place.
 *
 * Settings that size shared memory (cache_size, usage_queue_size) and the
 * worker's database can change only at server start.  Settings every
 * backend must agree on (TTL, limits applied at validation time, flush
 * cadence, proxies) change on reload.  bcrypt_cost and the default hourly
 * limit apply when a key is created and may be set by a superuser per
 * session.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "hokusai_auth.h"
#include "http/client_ip.h"

int			hk_bcrypt_cost = 10;
int			hk_cache_size = 16384;
int			hk_cache_ttl = 300;
int			hk_max_failures_per_prefix = 10;
int			hk_default_rate_limit_per_hour = 1000;
int			hk_default_burst_limit = 10;
int			hk_flush_interval = 1000;
int			hk_usage_queue_size = 65536;
int			hk_events_retention = 30 * 86400;
double		hk_usage_raw_sample = 1.0;
bool		hk_require_https = true;
bool		hk_enable_call_scan = true;
char	   *hk_trusted_proxies = NULL;
char	   *hk_database = NULL;
char	   *hk_primary_conninfo = NULL;

/* events_retention: 0 (keep everything) or at least 7 days. */
static bool
hk_events_retention_check(int *newval, void **extra, GucSource source)
{
	if (*newval == 0 || *newval >= 7 * 86400)
		return true;
	GUC_check_errdetail("Use 0 to keep every event, or at least 7 days.");
	return false;
}

/* Define every setting, from _PG_init. */
void
hk_define_gucs(void)
{
	DefineCustomIntVariable("hokusai_auth.bcrypt_cost",
							"bcrypt cost factor (log2 rounds) for new key hashes.",
							"Each step doubles the time to hash and to verify on a cache miss.",
							&hk_bcrypt_cost,
							10, 4, 31,
							PGC_SUSET, 0,
							NULL, NULL, NULL);


	DefineCustomIntVariable("hokusai_auth.cache_ttl",
							"How long a validated key stays in the cache.",
							"After this the key's row is read and its hash verified again.",
							&hk_cache_ttl,
							300, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("hokusai_auth.max_failures_per_prefix",
							"Failed key verifications allowed per key prefix per second.",
							"Beyond this, uncached keys with that prefix are refused without bcrypt work for the rest of the second.",
							&hk_max_failures_per_prefix,
							10, 1, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("hokusai_auth.default_rate_limit_per_hour",
							"Hourly request limit given to keys created without one.",
							NULL,
							&hk_default_rate_limit_per_hour,
							1000, 1, 1000000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("hokusai_auth.default_burst_limit",
							"Per-second request limit for keys whose burst_limit is NULL.",
							"Zero means such keys have no per-second limit.",
							&hk_default_burst_limit,
							10, 0, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("hokusai_auth.flush_interval",
							"How often the background worker writes queued usage, expires keys and seals the audit log.",
							NULL,
							&hk_flush_interval,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomRealVariable("hokusai_auth.usage_raw_sample",
							 "Fraction of recorded requests the worker also writes as raw rows to api_key_usage.",
							 "Drawn per request. The per-minute and per-hour aggregates count every request whatever this is.",
							 &hk_usage_raw_sample,
							 1.0, 0.0, 1.0,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("hokusai_auth.require_https",
							 "Refuse HTTP requests that did not arrive over HTTPS.",
							 "Checked by hokusai_auth.pre_request() from X-Forwarded-Proto set by a trusted proxy.",
							 &hk_require_https,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("hokusai_auth.enable_call_scan",
							 "Plans validate_key() called in FROM as a Validation Call scan.",
							 "Off: as a Function Scan, which puts its one row through a tuplestore (src/validate/call_scan.c).",
							 &hk_enable_call_scan,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("hokusai_auth.trusted_proxies",
							   "Comma-separated CIDRs of proxies whose X-Forwarded-For is believed.",
							   NULL,
							   &hk_trusted_proxies,
							   "127.0.0.1/32,::1/128",
							   PGC_SIGHUP, 0,
							   hk_trusted_proxies_check, hk_trusted_proxies_assign, NULL);

	DefineCustomIntVariable("hokusai_auth.events_retention",
							"How long the background worker keeps events.",
							"Older events are deleted; 0 keeps them all.  At least 7 days, so that each key.expiring event is given once.",
							&hk_events_retention,
							30 * 86400, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							hk_events_retention_check, NULL, NULL);

	/*
	 * Holds a password when one is written into it: only superusers see it,
	 * and hokusai_auth never logs it (PostgreSQL logs a new value read at a
	 * reload: keep passwords in a password file, docs/scaling.md).
	 */
	DefineCustomStringVariable("hokusai_auth.primary_conninfo",
							   "Connection string a hot standby's worker ships usage to the primary with.",
							   "Empty: the standby's primary_conninfo.  The database is hokusai_auth.database.",
							   &hk_primary_conninfo,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	/*
	 * Settings fixed at server start exist only when the library is
	 * preloaded: PostgreSQL refuses to create them later.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomStringVariable("hokusai_auth.database",
								   "Database the background worker connects to.",
								   NULL,
								   &hk_database,
								   "postgres",
								   PGC_POSTMASTER, 0,
								   NULL, NULL, NULL);

		DefineCustomIntVariable("hokusai_auth.usage_queue_size",
								"Number of usage events the shared-memory queue holds between flushes.",
								"When the queue is full new events are dropped and counted.",
								&hk_usage_queue_size,
								65536, 1024, 16 * 1024 * 1024,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);

		DefineCustomIntVariable("hokusai_auth.cache_size",
								"Number of validated keys the shared-memory cache holds.",
								NULL,
								&hk_cache_size,
								16384, 128, 16 * 1024 * 1024,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
	}

	MarkGUCPrefixReserved("hokusai_auth");
}

PG_FUNCTION_INFO_V1(hk_sql_default_rate_limit);

/*
 * hokusai_auth._default_rate_limit_per_hour() returns integer
 *
 * For create_key(): calling into the library first makes sure the setting
 * exists even in a session that has not loaded hokusai_auth yet.
 */
Datum
hk_sql_default_rate_limit(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(hk_default_rate_limit_per_hour);
}
