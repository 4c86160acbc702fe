/*-------------------------------------------------------------------------
 *
 * trust.c
 *	  What the background worker runs in its database, and what a database
 *	  owner cannot change about it: the settings pinned right after it
 *	  connects.
 *
 * Trust.  The worker is the bootstrap superuser in a database whose owner
 * need not be one, and connecting gives it that database's settings (ALTER
 * DATABASE ... SET).  Right after connecting it therefore pins, at
 * PGC_S_OVERRIDE (above database, role, file and session values), the
 * settings that decide what its statements run or whether they can succeed
 * (pinned_settings[]): search_path = pg_catalog, pg_temp first of all.
 * Every statement it runs names its tables, functions and operators with
 * their schema (OPERATOR(pg_catalog.=)), the functions it calls pin their
 * own search_path, and the rest is C that looks objects up by schema and
 * name.  Nothing a database owner can put on a search_path runs here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "worker/trust.h"

/* The worker's bound on any lock wait. */
#define HK_LOCK_TIMEOUT			"10s"
/* The bound of a statement that has a way around a held row. */
#define HK_BRIEF_LOCK_TIMEOUT	"20ms"

/*
 * Settings pinned right after connecting, at PGC_S_OVERRIDE (see the
 * banner): a database owner gives every session of the database its values
 * of these, and the worker must not run with them.
 */
static const struct
{
	const char *name;
	const char *value;
}			pinned_settings[] =
{
	/* What names and operators in the worker's statements resolve to. */
	{"search_path", "pg_catalog, pg_temp"},
	/* Every write would fail. */
	{"default_transaction_read_only", "off"},
	/* Snapshots taken after the locks; no serialization failures. */
	{"default_transaction_isolation", "read committed"},
	/* A batch would fail and be dropped: waits are bounded by lock_timeout. */
	{"statement_timeout", "0"},
	/* Never wait long for a row lock: the queue keeps the events. */
	{"lock_timeout", HK_LOCK_TIMEOUT},
	/*
	 * No JIT: the worker's statements take arrays of a whole batch, and a
	 * plan's compiled code is not kept from one execution to the next, so
	 * a batch whose estimates pass jit_above_cost (a database owner can
	 * lower it) would be compiled again at every cycle, at a cost of tens
	 * to hundreds of milliseconds.  With the default settings the
	 * last_used_at step of 20,000 keys does not reach it
	 * (test/bench/touch_bench.sh, "lock+jit").
	 */
	{"jit", "off"},
};

/* Pin every setting of pinned_settings[] above what the database gives. */
void
hk_worker_pin_settings(void)
{
	int			i;

	for (i = 0; i < (int) lengthof(pinned_settings); i++)
		SetConfigOption(pinned_settings[i].name, pinned_settings[i].value,
						PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * Bound the worker's lock waits to HK_BRIEF_LOCK_TIMEOUT (brief), or back
 * to the pinned HK_LOCK_TIMEOUT: for a statement that need not wait for a
 * row another transaction holds, because its caller has a way around it
 * (housekeeping.c).  The setting is pinned like the others, so it is not
 * undone by the end of a (sub)transaction: the caller sets it back, error
 * or not.
 */
void
hk_worker_brief_lock_waits(bool brief)
{
	SetConfigOption("lock_timeout", brief ? HK_BRIEF_LOCK_TIMEOUT : HK_LOCK_TIMEOUT,
					PGC_SUSET, PGC_S_OVERRIDE);
}
