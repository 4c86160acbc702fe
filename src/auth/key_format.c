/*-------------------------------------------------------------------------
 *
 * key_format.c
 *	  The key format and its checksum: pure functions with no server state,
 *	  so the fuzzer (test/fuzz/) runs them outside the server.
 *
 * A key is hk_<env>_ + 8-character lookup id + 32 characters of secret +
 * 6-character checksum.  The checksum is the IEEE CRC-32 (the one zlib
 * computes) of the first 48 characters, written as 6 base62 digits, most
 * significant first, padded with '0'.  The base62 alphabet is 0-9, A-Z,
 * a-z in that order.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/pg_crc.h"

#include "auth/api_key_service.h"

const char hk_base62_digits[] =
"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static inline bool
is_base62(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
		(c >= 'a' && c <= 'z');
}

/* Write the base62 checksum of data[0..len) into out[0..HK_CHECKSUM_LEN). */
void
hk_key_checksum(const char *data, size_t len, char *out)
{
	pg_crc32	crc;
	uint64		v;
	int			i;

	INIT_TRADITIONAL_CRC32(crc);
	COMP_TRADITIONAL_CRC32(crc, data, len);
	FIN_TRADITIONAL_CRC32(crc);

	v = crc;
	for (i = HK_CHECKSUM_LEN - 1; i >= 0; i--)
	{
		out[i] = hk_base62_digits[v % 62];
		v /= 62;
	}
}

bool
hk_environment_from_name(const char *name, HkEnvironment *env)
{
	if (strcmp(name, "live") == 0)
		*env = HK_ENV_LIVE;
	else if (strcmp(name, "test") == 0)
		*env = HK_ENV_TEST;
	else
		return false;
	return true;
}

/*
 * Check a candidate key's shape and checksum.  Does no table or bcrypt
 * work, so it is the first thing every validation does.
 */
HkKeyShape
hk_key_parse(const char *key, size_t len, HkEnvironment *env)
{
	char		expect[HK_CHECKSUM_LEN];
	size_t		i;

	if (len != HK_KEY_LEN)
		return HK_KEY_BAD_LENGTH;
	if (memcmp(key, "hk_live_", HK_HEAD_LEN) == 0)
		*env = HK_ENV_LIVE;
	else if (memcmp(key, "hk_test_", HK_HEAD_LEN) == 0)
		*env = HK_ENV_TEST;
	else
		return HK_KEY_BAD_HEAD;
	for (i = HK_HEAD_LEN; i < HK_KEY_LEN; i++)
		if (!is_base62(key[i]))
			return HK_KEY_BAD_CHARACTER;

	hk_key_checksum(key, HK_KEY_LEN - HK_CHECKSUM_LEN, expect);
	if (memcmp(expect, key + HK_KEY_LEN - HK_CHECKSUM_LEN, HK_CHECKSUM_LEN) != 0)
		return HK_KEY_BAD_CHECKSUM;
	return HK_KEY_OK;
}

