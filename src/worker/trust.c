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
	{"lock_timeout", "10s"},
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
