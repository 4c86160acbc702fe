/*-------------------------------------------------------------------------
 *
 * credits_xact.c
 *	  One charge per committed transaction: credits spent by validations
 *	  are noted per backend and given back if their transaction (or the
 *	  subtransaction that spent them) aborts; add_credits() changes are
 *	  applied to the live balance just before their transaction commits,
 *	  and dropped if it aborts.
 *
 * Spends.  hk_credits_note_spend() records (balance, amount, refill_seq,
 * nesting level), merged per balance and level; the balance by its whole
 * key (database, schema, key), as nothing may look at the catalogs when
 * the transaction ends.  At abort each is given
 * back (metering/credits.c), unless the balance has been refilled since:
 * the refill replaced the balance that was spent from.  A subtransaction
 * that aborts gives back what it spent; one that commits hands its spends
 * to its parent.  A PostgREST request whose statement fails after
 * pre_request() admitted it therefore costs nothing.  Rate-limit units
 * are not given back.  While a transaction has spends, its backend's slot
 * in shared memory says since when (hk_credits_open_spend()): the sweep
 * keeps the balances it may give back to.
 *
 * Adds.  add_credits() pins the balance in memory, writes the new value
 * to the row and notes the change here; at XACT_EVENT_PRE_COMMIT, while
 * the transaction still holds the row's lock, the change is applied to the
 * live balance, so the worker, which must lock the row to write it back,
 * never writes a balance without a committed add.  Should the commit fail
 * after that, the abort takes the change back.  The pin ends with the
 * transaction.
 *
 * Resets.  update_key(credits => N) sets the live balance to N at
 * XACT_EVENT_PRE_COMMIT, while the transaction holds the balance's rows,
 * as for adds (undone if the commit fails after all);
 * update_key(clear_credits => true) removes it at XACT_EVENT_COMMIT, once
 * the rows say "not metered" to every new snapshot.
 *
 * Crossings.  A spend that takes a balance to 10% or to zero is an event
 * (credits.low, credits.exhausted) only if its transaction commits: the
 * crossing is noted here and handed to the event queue at commit.  At
 * abort, once the spends are given back, a crossing the balance is still
 * past (another transaction's spend keeps it there) is noted all the same,
 * so that a crossing is not lost with the spend that happened to make it.
 *
 * PREPARE TRANSACTION is refused for a transaction that spent, added or
 * set credits: its fate would be decided where these callbacks cannot see
 * it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "metering/credits.h"
#include "metering/credits_xact.h"

typedef struct SpendNote
{
	HkCreditKey key;
	int64		amount;
	uint32		seq;
	int			level;
} SpendNote;

/* update_key(credits => N) (metered) or (clear_credits => true) (not). */
typedef struct ResetNote
{
	HkCreditKey key;
	bool		metered;
	int64		balance;
	HkRefill	refill;
	TimestampTz refilled_at;
	int			level;
	bool		applied;
	bool		existed;		/* for an applied set: what was there */
	HkBalance	prev;
} ResetNote;

typedef struct AddNote
{
	HkCreditKey key;
	int64		delta;
	HkRefill	refill;
	int			level;
	bool		applied;
	int64		done;			/* the change applied */
} AddNote;

typedef struct CrossNote
{
	HkCreditKey key;
	HkRefill	refill;
	pg_uuid_t	key_id;
	pg_uuid_t	user_id;
	int64		balance;
	uint8		crossed;		/* HK_CREDIT_EVENT_* */
	int			level;
} CrossNote;

static SpendNote *spends = NULL;
static int	nspends = 0;
static int	maxspends = 0;
static AddNote *adds = NULL;
static int	nadds = 0;
static int	maxadds = 0;
static ResetNote *resets = NULL;
static int	nresets = 0;
static int	maxresets = 0;
static CrossNote *crosses = NULL;
static int	ncrosses = 0;
static int	maxcrosses = 0;
static bool registered = false;

static void credits_xact_callback(XactEvent event, void *arg);
static void credits_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
									 SubTransactionId parentSubid, void *arg);

/* Register the callbacks on first use. */
static void
ensure_registered(void)
{
	if (registered)
		return;
	RegisterXactCallback(credits_xact_callback, NULL);
	RegisterSubXactCallback(credits_subxact_callback, NULL);
	registered = true;
}

/* Room for one more element of an array kept in TopMemoryContext. */
static void *
grow(void *array, int *max, Size elem)
{
	if (array == NULL)
	{
		*max = 8;
		return MemoryContextAlloc(TopMemoryContext, elem * *max);
	}
	*max *= 2;
	return repalloc(array, elem * *max);
}

/* Note credits spent from a balance (at refill_seq seq) in this transaction. */
void
hk_credits_note_spend(const HkCreditKey *key, int64 amount, uint32 seq)
{
	int			level = GetCurrentTransactionNestLevel();
	int			i;

	ensure_registered();
	for (i = 0; i < nspends; i++)
	{
		SpendNote  *n = &spends[i];

		if (n->level == level && n->seq == seq &&
			memcmp(&n->key, key, sizeof(HkCreditKey)) == 0)
		{
			n->amount += amount;
			return;
		}
	}
	if (nspends == maxspends)
		spends = grow(spends, &maxspends, sizeof(SpendNote));
	if (nspends == 0 && nadds == 0)
		hk_credits_open_spend(GetCurrentTransactionStartTimestamp());
	spends[nspends].key = *key;
	spends[nspends].amount = amount;
	spends[nspends].seq = seq;
	spends[nspends].level = level;
	nspends++;
}

/*
 * Note the crossings (HK_CREDIT_EVENT_*) a spend of this transaction made
 * on a balance refilled by r, for key_id (of user_id), leaving balance:
 * events at commit.  Noted before the spend itself.
 */
void
hk_credits_note_crossing(const HkCreditKey *key, const HkRefill *r,
						 uint8 crossed, const pg_uuid_t *key_id,
						 const pg_uuid_t *user_id, int64 balance)
{
	CrossNote  *n;

	ensure_registered();
	if (ncrosses == maxcrosses)
		crosses = grow(crosses, &maxcrosses, sizeof(CrossNote));
	n = &crosses[ncrosses++];
	n->key = *key;
	n->refill = *r;
	n->key_id = *key_id;
	n->user_id = *user_id;
	n->balance = balance;
	n->crossed = crossed;
	n->level = GetCurrentTransactionNestLevel();
}

/*
 * The spends of level >= level were given back: keep the crossings of
 * those levels that the balance is still past, for the parent (level > 1)
 * or as events now (the top level); forget the others.
 */
static void
recheck_crossings_from(int level)
{
	int			keep = 0;
	int			i;

	for (i = 0; i < ncrosses; i++)
	{
		CrossNote  *n = &crosses[i];

		if (n->level >= level)
		{
			n->crossed = hk_credits_crossings_held(&n->key, &n->refill,
												   n->crossed, &n->balance);
			if (n->crossed == 0)
				continue;
			if (level <= 1)
			{
				hk_credits_note_crossings(n->crossed, &n->key_id, &n->user_id,
										  n->balance);
				continue;
			}
			n->level = level - 1;
		}
		crosses[keep++] = *n;
	}
	ncrosses = keep;
}

/* Note an add_credits() change of a pinned balance, applied at commit. */
void
hk_credits_note_add(const HkCreditKey *key, int64 delta, const HkRefill *r)
{
	ensure_registered();
	if (nadds == maxadds)
		adds = grow(adds, &maxadds, sizeof(AddNote));
	if (nspends == 0 && nadds == 0)
		hk_credits_open_spend(GetCurrentTransactionStartTimestamp());
	adds[nadds].key = *key;
	adds[nadds].delta = delta;
	adds[nadds].refill = *r;
	adds[nadds].level = GetCurrentTransactionNestLevel();
	adds[nadds].applied = false;
	adds[nadds].done = 0;
	nadds++;
}

/*
 * Note update_key()'s change of a balance: set to balance (metered), or
 * removed (not metered), when the transaction commits.
 */
void
hk_credits_note_reset(const HkCreditKey *key, bool metered, int64 balance,
					  const HkRefill *r, TimestampTz refilled_at)
{
	ResetNote  *n;

	ensure_registered();
	if (nresets == maxresets)
		resets = grow(resets, &maxresets, sizeof(ResetNote));
	n = &resets[nresets++];
	memset(n, 0, sizeof(*n));
	n->key = *key;
	n->metered = metered;
	n->balance = balance;
	n->refill = *r;
	n->refilled_at = refilled_at;
	n->level = GetCurrentTransactionNestLevel();
}

/* Give back the spends of level >= level and forget them. */
static void
give_back_from(int level)
{
	int			keep = 0;
	int			i;

	for (i = 0; i < nspends; i++)
	{
		if (spends[i].level >= level)
			hk_credits_give_back(&spends[i].key, spends[i].amount, spends[i].seq);
		else
			spends[keep++] = spends[i];
	}
	nspends = keep;
}

/* Undo (if applied) and unpin the adds of level >= level; forget them. */
static void
drop_adds_from(int level)
{
	int			keep = 0;
	int			i;

	for (i = 0; i < nadds; i++)
	{
		AddNote    *n = &adds[i];

		if (n->level >= level)
		{
			if (n->applied && n->done != 0)
				(void) hk_credits_adjust(&n->key, -n->done, &n->refill);
			hk_credits_unpin(&n->key);
		}
		else
			adds[keep++] = *n;
	}
	nadds = keep;
}

/* Undo (if applied, latest first) and forget the resets of level >= level. */
static void
drop_resets_from(int level)
{
	int			keep = 0;
	int			i;

	for (i = nresets - 1; i >= 0; i--)
		if (resets[i].level >= level && resets[i].applied)
			hk_credits_restore(&resets[i].key, &resets[i].prev, resets[i].existed);
	for (i = 0; i < nresets; i++)
		if (resets[i].level < level)
			resets[keep++] = resets[i];
	nresets = keep;
}

/* The transaction is over: nothing noted is open any more. */
static void
forget_all(void)
{
	nspends = 0;
	nadds = 0;
	nresets = 0;
	ncrosses = 0;
	hk_credits_close_spend();
}

static void
credits_xact_callback(XactEvent event, void *arg)
{
	int			i;

	if (nspends == 0 && nadds == 0 && nresets == 0 && ncrosses == 0)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			for (i = 0; i < nadds; i++)
			{
				AddNote    *n = &adds[i];

				if (!n->applied)
				{
					n->done = hk_credits_adjust(&n->key, n->delta, &n->refill);
					n->applied = true;
					hk_credits_stat_add(HK_CSTAT_ADDED, 1);
				}
			}
			/* Sets, in the order made (the last one wins). */
			for (i = 0; i < nresets; i++)
			{
				ResetNote  *n = &resets[i];

				if (n->metered && !n->applied)
				{
					hk_credits_set(&n->key, n->balance, &n->refill, n->refilled_at,
								   &n->prev, &n->existed);
					n->applied = true;
				}
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			for (i = 0; i < nadds; i++)
				hk_credits_unpin(&adds[i].key);
			/* Committed and visible: a load now reads the key unmetered. */
			for (i = 0; i < nresets; i++)
				if (!resets[i].metered)
					hk_credits_remove(&resets[i].key);
			for (i = 0; i < ncrosses; i++)
				hk_credits_note_crossings(crosses[i].crossed, &crosses[i].key_id,
										  &crosses[i].user_id, crosses[i].balance);
			forget_all();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			give_back_from(0);
			drop_adds_from(0);
			drop_resets_from(0);
			recheck_crossings_from(0);
			forget_all();
			break;
		case XACT_EVENT_PRE_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot PREPARE a transaction that has spent, added or set API key credits")));
			break;
		default:
			break;
	}
}

static void
credits_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	int			i;

	if (nspends == 0 && nadds == 0 && nresets == 0 && ncrosses == 0)
		return;
	switch (event)
	{
		case SUBXACT_EVENT_ABORT_SUB:
			give_back_from(level);
			drop_adds_from(level);
			drop_resets_from(level);
			recheck_crossings_from(level);
			break;
		case SUBXACT_EVENT_COMMIT_SUB:
			for (i = 0; i < nspends; i++)
				if (spends[i].level >= level)
					spends[i].level = level - 1;
			for (i = 0; i < nadds; i++)
				if (adds[i].level >= level)
					adds[i].level = level - 1;
			for (i = 0; i < nresets; i++)
				if (resets[i].level >= level)
					resets[i].level = level - 1;
			for (i = 0; i < ncrosses; i++)
				if (crosses[i].level >= level)
					crosses[i].level = level - 1;
			break;
		default:
			break;
	}
}
