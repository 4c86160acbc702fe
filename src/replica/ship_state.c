/*-------------------------------------------------------------------------
 *
 * ship_state.c
 *	  The shared state of usage shipping (replica/ship.c on a standby,
 *	  replica/receive.c on a primary): the run id and the counters.
 *
 * The run id is drawn at random when shared memory is made; a standby's
 * queue positions start again at 0 with it, so (run id, position) names an
 * event (receive.c).  Locking rules: none needed.  The run id is written
 * once at start-up, before any backend exists; the counters and the
 * reachable flag are atomics.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "port/atomics.h"
#include "storage/shmem.h"

#include "replica/ship.h"

typedef struct HkShipShared
{
	pg_uuid_t	run_id;
	pg_atomic_uint32 reachable;
	pg_atomic_uint64 stats[HK_NUM_SSTATS];
} HkShipShared;

static HkShipShared *ship = NULL;

Size
hk_ship_shmem_size(void)
{
	return sizeof(HkShipShared);
}

void
hk_ship_shmem_request(void)
{
	RequestAddinShmemSpace(hk_ship_shmem_size());
}

/* Called with AddinShmemInitLock held. */
void
hk_ship_shmem_startup(void)
{
	bool		found;
	int			i;

	ship = ShmemInitStruct("hokusai_auth usage shipping", hk_ship_shmem_size(), &found);
	if (found)
		return;
	if (!pg_strong_random(&ship->run_id, sizeof(ship->run_id)))
		elog(ERROR, "could not generate a random run id");
	ship->run_id.data[6] = (ship->run_id.data[6] & 0x0f) | 0x40;	/* version 4 */
	ship->run_id.data[8] = (ship->run_id.data[8] & 0x3f) | 0x80;
	pg_atomic_init_u32(&ship->reachable, 0);
	for (i = 0; i < HK_NUM_SSTATS; i++)
		pg_atomic_init_u64(&ship->stats[i], 0);
}

uint64
hk_ship_stat(HkShipStat which)
{
	return ship == NULL ? 0 : pg_atomic_read_u64(&ship->stats[which]);
}

void
hk_ship_stat_add(HkShipStat which, uint64 n)
{
	if (ship != NULL && n > 0)
		pg_atomic_fetch_add_u64(&ship->stats[which], n);
}

bool
hk_ship_primary_reachable(void)
{
	return ship != NULL && pg_atomic_read_u32(&ship->reachable) != 0;
}


/* This server's run id. */
const pg_uuid_t *
hk_ship_run_id(void)
{
	return &ship->run_id;
}

/* Set a gauge (the time of the last successful call). */
void
hk_ship_stat_set(HkShipStat which, uint64 v)
{
	pg_atomic_write_u64(&ship->stats[which], v);
}

/* Did the last try reach the primary? */
void
hk_ship_set_reachable(bool reachable)
{
	pg_atomic_write_u32(&ship->reachable, reachable ? 1 : 0);
}
