/*-------------------------------------------------------------------------
 *
 * usage_queue.c
 *	  Placeholder until the usage queue lands: validation calls into it,
 *	  it records nothing yet.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "usage/usage_queue.h"

Size
hk_usage_shmem_size(void)
{
	return 0;
}

void
hk_usage_shmem_request(void)
{
}

void
hk_usage_shmem_startup(void)
{
}

void
hk_usage_note_valid(const pg_uuid_t *key_id, const text *endpoint)
{
}
