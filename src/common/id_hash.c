/*-------------------------------------------------------------------------
 *
 * id_hash.c
 *	  Hash and compare functions for the dshash tables keyed by a small
 *	  fixed struct of OIDs and a UUID: the rate limiter's entries
 *	  (ratelimit/limiter.c) and the credit balances (metering/credits.c).
 *
 * Every admission looks up one to three such entries, and dshash's
 * general-purpose functions (tag_hash() and memcmp() through a pointer)
 * were a tenth of a metered call's instructions.  These read the key 8 (or
 * 4) bytes at a time: the hash multiplies each word into the state and
 * ends with a 64-bit finalizer, so every bit of the key reaches the bits
 * dshash uses for the partition and the bucket, whether the ids are random
 * (gen_random_uuid()) or chosen, say sequential.
 *
 * A key's size must be a multiple of 4, with no padding bytes (the
 * callers zero their keys anyway).  The functions are the same in every
 * backend: the library is preloaded, so all of them run the postmaster's
 * copy.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/id_hash.h"
#include "utils/uuid.h"

#define HK_HASH_MUL		UINT64CONST(0x9E3779B97F4A7C15)

/* The 64-bit finalizer of MurmurHash3: every input bit moves every output bit. */
static inline uint64
fmix64(uint64 h)
{
	h ^= h >> 33;
	h *= UINT64CONST(0xff51afd7ed558ccd);
	h ^= h >> 33;
	h *= UINT64CONST(0xc4ceb9fe1a85ec53);
	h ^= h >> 33;
	return h;
}

/*
 * The hash of a key of size bytes.  Inlined into hk_id_hash() for the sizes
 * in use, so that the compiler unrolls the loop.
 */
static pg_attribute_always_inline dshash_hash
id_hash(const char *p, size_t size)
{
	uint64		h = size;

	for (; size >= 8; p += 8, size -= 8)
	{
		uint64		w;

		memcpy(&w, p, 8);
		h = (h ^ w) * HK_HASH_MUL;
		h ^= h >> 29;
	}
	if (size >= 4)
	{
		uint32		w;

		memcpy(&w, p, 4);
		h = (h ^ w) * HK_HASH_MUL;
	}
	return (dshash_hash) fmix64(h);
}

/* 0 when the keys are equal, not 0 otherwise (dshash asks no order). */
static pg_attribute_always_inline int
id_compare(const char *p, const char *q, size_t size)
{
	for (; size >= 8; p += 8, q += 8, size -= 8)
	{
		uint64		x;
		uint64		y;

		memcpy(&x, p, 8);
		memcpy(&y, q, 8);
		if (x != y)
			return 1;
	}
	if (size >= 4)
	{
		uint32		x;
		uint32		y;

		memcpy(&x, p, 4);
		memcpy(&y, q, 4);
		if (x != y)
			return 1;
	}
	return 0;
}

/* The sizes of the keys in use: an OID and a UUID; two OIDs and a UUID. */
#define ID_KEY_SMALL	(sizeof(Oid) + sizeof(pg_uuid_t))
#define ID_KEY_LARGE	(2 * sizeof(Oid) + sizeof(pg_uuid_t))

dshash_hash
hk_id_hash(const void *key, size_t size, void *arg)
{
	Assert(size % 4 == 0);
	if (size == ID_KEY_SMALL)
		return id_hash(key, ID_KEY_SMALL);
	if (size == ID_KEY_LARGE)
		return id_hash(key, ID_KEY_LARGE);
	return id_hash(key, size);
}

int
hk_id_compare(const void *a, const void *b, size_t size, void *arg)
{
	Assert(size % 4 == 0);
	if (size == ID_KEY_SMALL)
		return id_compare(a, b, ID_KEY_SMALL);
	if (size == ID_KEY_LARGE)
		return id_compare(a, b, ID_KEY_LARGE);
	return id_compare(a, b, size);
}
