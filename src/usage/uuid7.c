/*-------------------------------------------------------------------------
 *
 * uuid7.c
 *	  Time-ordered UUIDs (RFC 9562 version 7) for the worker's usage rows.
 *
 * Layout: 48 bits of Unix milliseconds, the version (7), 12 bits of
 * sub-millisecond fraction (RFC 9562 section 6.2, method 3), the variant,
 * then 62 bits from a pseudo-random generator.  Within one process the ids
 * only grow: when an id would not be greater than the previous one (events
 * of two backends a few microseconds out of order, or a clock step back),
 * the previous id plus a random step is used instead.  So one worker's
 * rows append to the right edge of the primary key's index.
 *
 * These ids identify rows; they are not secrets and need no unpredictability
 * beyond avoiding collisions between processes.  The generator is seeded
 * once per process from pg_strong_random(), so making an id costs no system
 * call (a getrandom() per row was a fifth of the worker's time).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

#include "usage/uuid7.h"

/* Unix milliseconds, sub-millisecond fraction and random bits of an id. */
typedef struct Uuid7Parts
{
	uint64		ms;				/* 48 bits */
	uint32		sub;			/* 12 bits */
	uint64		rand;			/* 62 bits */
} Uuid7Parts;

#define RAND_BITS	62
#define RAND_MASK	((UINT64CONST(1) << RAND_BITS) - 1)

static pg_prng_state prng;
static bool prng_seeded = false;
static bool have_last = false;
static Uuid7Parts last;

/* Is id a greater than id b, in the order the uuids sort? */
static bool
parts_greater(const Uuid7Parts *a, const Uuid7Parts *b)
{
	if (a->ms != b->ms)
		return a->ms > b->ms;
	if (a->sub != b->sub)
		return a->sub > b->sub;
	return a->rand > b->rand;
}

/* A version 7 uuid for time at, greater than any this process made before. */
void
hk_uuid_v7(TimestampTz at, pg_uuid_t *out)
{
	Uuid7Parts p;
	int64		unix_us;
	int			i;

	if (!prng_seeded)
	{
		if (!pg_prng_strong_seed(&prng))
			pg_prng_seed(&prng, (uint64) MyProcPid ^ (uint64) GetCurrentTimestamp());
		prng_seeded = true;
	}

	/* TimestampTz counts microseconds from 2000-01-01; version 7 from 1970. */
	unix_us = at + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
	if (unix_us < 0)
		unix_us = 0;
	p.ms = (uint64) (unix_us / 1000) & ((UINT64CONST(1) << 48) - 1);
	p.sub = (uint32) ((unix_us % 1000) * 4096 / 1000);
	p.rand = pg_prng_uint64(&prng) & RAND_MASK;

	if (have_last && !parts_greater(&p, &last))
	{
		/* Step past the previous id, carrying into sub and ms. */
		uint64		step = 1 + (pg_prng_uint64(&prng) & 0xffffffff);

		p = last;
		p.rand += step;
		if (p.rand > RAND_MASK)
		{
			p.rand &= RAND_MASK;
			if (++p.sub == 4096)
			{
				p.sub = 0;
				p.ms++;
			}
		}
	}
	last = p;
	have_last = true;

	for (i = 0; i < 6; i++)
		out->data[i] = (uint8) (p.ms >> (8 * (5 - i)));
	out->data[6] = (uint8) (0x70 | (p.sub >> 8));	/* version 7 */
	out->data[7] = (uint8) (p.sub & 0xff);
	out->data[8] = (uint8) (0x80 | ((p.rand >> 56) & 0x3f));	/* variant */
	for (i = 9; i < 16; i++)
		out->data[i] = (uint8) (p.rand >> (8 * (15 - i)));
}
