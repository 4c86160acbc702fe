/*-------------------------------------------------------------------------
 *
 * key_format.c
 *	  The key format and its checksum: the shape check every validation
 *	  starts with, and the checksum key generation writes.
 *
 * A key is hk_<env>_ + 8-character lookup id + 32 characters of secret +
 * 6-character checksum.  The checksum is the IEEE CRC-32 (crc32.c) of the
 * first 48 characters, written as 6 base62 digits, most significant first,
 * padded with '0'.
 *
 * Pure functions, plain C (see key_format.h): the fuzzer
 * (test/fuzz/key_parse_fuzz.c) runs them as the server does.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "common/crc32.h"
#include "common/key_format.h"

const char hk_base62_digits[] =
"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* Each environment's name and the head of its keys, by HkEnvironment. */
static const char *const env_names[] = {
	[HK_ENV_LIVE] = "live",
	[HK_ENV_TEST] = "test",
};
static const char *const env_heads[] = {
	[HK_ENV_LIVE] = "hk_live_",
	[HK_ENV_TEST] = "hk_test_",
};

#define NUM_ENVS	((int) (sizeof(env_names) / sizeof(env_names[0])))

/* The environment called name ("live" or "test"); false for any other. */
bool
hk_environment_from_name(const char *name, HkEnvironment *env)
{
	int			i;

	for (i = 0; i < NUM_ENVS; i++)
		if (strcmp(name, env_names[i]) == 0)
		{
			*env = (HkEnvironment) i;
			return true;
		}
	return false;
}

/* "hk_<env>_": the first HK_HEAD_LEN characters of env's keys. */
const char *
hk_key_head(HkEnvironment env)
{
	return env_heads[env];
}

/* Write the base62 checksum of data[0..len) into out[0..HK_CHECKSUM_LEN). */
void
hk_key_checksum(const char *data, size_t len, char *out)
{
	unsigned long long v = hk_crc32(data, len);
	int			i;

	for (i = HK_CHECKSUM_LEN - 1; i >= 0; i--)
	{
		out[i] = hk_base62_digits[v % 62];
		v /= 62;
	}
}

/*
 * Check a candidate key (len bytes, not NUL-terminated): shape, then
 * checksum.  Does no table or bcrypt work, so it is the first thing every
 * validation does.  Sets *env when the head is right.
 */
HkKeyShape
hk_key_parse(const char *key, size_t len, HkEnvironment *env)
{
	char		expect[HK_CHECKSUM_LEN];
	size_t		i;
	int			e;

	if (len != HK_KEY_LEN)
		return HK_KEY_BAD_LENGTH;
	for (e = 0; e < NUM_ENVS; e++)
		if (memcmp(key, env_heads[e], HK_HEAD_LEN) == 0)
			break;
	if (e == NUM_ENVS)
		return HK_KEY_BAD_HEAD;
	*env = (HkEnvironment) e;
	for (i = HK_HEAD_LEN; i < HK_KEY_LEN; i++)
		if (!hk_is_base62(key[i]))
			return HK_KEY_BAD_CHARACTER;

	hk_key_checksum(key, HK_KEY_LEN - HK_CHECKSUM_LEN, expect);
	if (memcmp(expect, key + HK_KEY_LEN - HK_CHECKSUM_LEN, HK_CHECKSUM_LEN) != 0)
		return HK_KEY_BAD_CHECKSUM;
	return HK_KEY_OK;
}
