/*-------------------------------------------------------------------------
 *
 * invalidate.c
 *	  Invalidation of the key cache at commit, and the trigger that asks
 *	  for it.
 *
 * Changes to api_keys and users register, through the trigger below, what
 * they touched (a key, a user, or everything).  Nothing happens to the
 * cache until the transaction commits; then, in the commit callback, this
 * backend first advances the cache's generation and then clears every
 * matching entry (validate/cache.c).  A backend filling the cache reads
 * the generation before it takes the snapshot it reads the key's row with,
 * and inserts only if the generation is unchanged when it holds the
 * partition lock.  So a fill that read the row before a concurrent change
 * became visible is either refused (the change's increment came first) or
 * cleared (the change's clearing comes after the insert).  The commit
 * callback runs before the client is told the commit succeeded, so once
 * revoke_key() has committed no session can find the key in the cache.
 *
 * A transaction with pending invalidations neither reads nor fills the
 * cache (hk_cache_usable): what it sees is not yet what others see.
 * PREPARE TRANSACTION is refused for such a transaction, as the commit
 * would then happen where our callback cannot see it.
 *
 * Pending invalidations are per backend: at most HK_PENDING_MAX ids, after
 * which the transaction invalidates everything of its database instead.
 *
 * Hot standbys run no triggers: each change registered here is also
 * appended to the invalidation log, which travels to them in the WAL
 * (replica/inval_log.c), once per subtransaction: a change repeated after
 * its subtransaction rolled back the log row is logged again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"

#include "hokusai_auth.h"
#include "replica/inval_log.h"
#include "validate/cache.h"
#include "validate/invalidate.h"
#include "validate/stats.h"

PG_FUNCTION_INFO_V1(hk_sql_invalidate_trigger);

/* Per-backend invalidations waiting for commit. */
#define HK_PENDING_MAX 256
typedef struct HkPending
{
	HkCacheScope scope;			/* HK_SCOPE_KEY or HK_SCOPE_USER */
	pg_uuid_t	id;
	SubTransactionId logged_in; /* where its invalidation log row was written */
} HkPending;
static HkPending pending[HK_PENDING_MAX];
static int	npending = 0;
static bool pending_all = false;
static SubTransactionId all_logged_in = InvalidSubTransactionId;

/*
 * May this backend use the cache now?  Not while its transaction has
 * changed keys or users that others cannot see yet.
 */
bool
hk_cache_usable(void)
{
	return npending == 0 && !pending_all;
}

/* Forget what this transaction registered. */
static void
reset_pending(void)
{
	npending = 0;
	pending_all = false;
	all_logged_in = InvalidSubTransactionId;
}

/* At commit, apply what was registered; at abort, drop it; refuse PREPARE. */
static void
invalidate_xact_callback(XactEvent event, void *arg)
{
	int			i;

	if (npending == 0 && !pending_all)
		return;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			/* First the generation, then the clearing: see the banner. */
			hk_cache_advance_generation();
			if (pending_all || npending >= HK_PENDING_MAX)
				hk_cache_clear(HK_SCOPE_ALL, NULL);
			else
				for (i = 0; i < npending; i++)
					hk_cache_clear(pending[i].scope, &pending[i].id);
			hk_stat_add(HK_STAT_INVALIDATIONS);
			reset_pending();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			reset_pending();
			break;
		case XACT_EVENT_PRE_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot PREPARE a transaction that has changed API keys or their users")));
			break;
		default:
			break;
	}
}

/* Per-backend set-up, from _PG_init. */
void
hk_invalidate_init(void)
{
	static bool registered = false;

	if (!registered)
	{
		RegisterXactCallback(invalidate_xact_callback, NULL);
		registered = true;
	}
}

/* "Everything", in this transaction and in the invalidation log. */
static void
add_pending_all(void)
{
	SubTransactionId sub = GetCurrentSubTransactionId();

	pending_all = true;
	if (all_logged_in != sub)
	{
		hk_inval_log_append(HK_SCOPE_ALL, NULL);
		all_logged_in = sub;
	}
}

/* Register one id; too many of them become "everything". */
static void
add_pending(HkCacheScope scope, const pg_uuid_t *id)
{
	SubTransactionId sub;
	int			i;

	if (!hk_shmem_ready())
		return;
	if (pending_all)
	{
		add_pending_all();
		return;
	}
	sub = GetCurrentSubTransactionId();
	for (i = 0; i < npending; i++)
		if (pending[i].scope == scope && memcmp(&pending[i].id, id, sizeof(*id)) == 0)
		{
			if (pending[i].logged_in != sub)
			{
				hk_inval_log_append(scope, id);
				pending[i].logged_in = sub;
			}
			return;
		}
	if (npending >= HK_PENDING_MAX)
	{
		add_pending_all();
		return;
	}
	hk_inval_log_append(scope, id);
	pending[npending].scope = scope;
	pending[npending].id = *id;
	pending[npending].logged_in = sub;
	npending++;
}

/* Forget this key when the transaction commits. */
void
hk_invalidate_key_at_commit(const pg_uuid_t *key_id)
{
	add_pending(HK_SCOPE_KEY, key_id);
}

/* Forget all of this user's keys when the transaction commits. */
void
hk_invalidate_user_at_commit(const pg_uuid_t *user_id)
{
	add_pending(HK_SCOPE_USER, user_id);
}

/* Forget every key of this database when the transaction commits. */
void
hk_invalidate_all_at_commit(void)
{
	if (hk_shmem_ready())
		add_pending_all();
}

/*
 * Trigger on api_keys (argument 'key') and users (argument 'user'): after
 * UPDATE or DELETE of a row, forget that key, or all keys of that user,
 * when the transaction commits; after TRUNCATE, forget everything.  The
 * trigger definitions carry WHEN clauses so that updates of columns
 * validation does not read (last_used_at, name, metadata) do not fire it.
 */
Datum
hk_sql_invalidate_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	bool		is_user;
	int			attno;
	bool		isnull;
	Datum		id;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "not called by trigger manager");
	if (trigdata->tg_trigger->tgnargs != 1)
		elog(ERROR, "hokusai_auth invalidation trigger needs one argument");
	is_user = strcmp(trigdata->tg_trigger->tgargs[0], "user") == 0;

	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
	{
		hk_invalidate_all_at_commit();
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "hokusai_auth invalidation trigger must be FOR EACH ROW or TRUNCATE");

	attno = SPI_fnumber(trigdata->tg_relation->rd_att, "id");
	if (attno <= 0)
		elog(ERROR, "relation has no \"id\" column");
	id = heap_getattr(trigdata->tg_trigtuple, attno, trigdata->tg_relation->rd_att, &isnull);
	if (!isnull)
	{
		if (is_user)
			hk_invalidate_user_at_commit(DatumGetUUIDP(id));
		else
			hk_invalidate_key_at_commit(DatumGetUUIDP(id));
	}
	return PointerGetDatum(NULL);
}
