/*-------------------------------------------------------------------------
 *
 * generate.c
 *	  Randomness: libsodium's set-up for the whole module, and fresh keys.
 *
 * A key's lookup id and secret are base62 digits drawn with
 * randombytes_uniform, which gives unbiased digits; the checksum and the
 * rest of the format are common/key_format.c's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sodium.h>

#include "hokusai_auth.h"
#include "keys/generate.h"

/* From _PG_init: libsodium must be initialised before any of its calls. */
void
hk_crypto_init(void)
{
	if (sodium_init() < 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libsodium")));
}

/* Fill key[0..HK_KEY_LEN] with a fresh key and its terminating NUL. */
void
hk_key_generate(HkEnvironment env, char *key)
{
	int			i;

	memcpy(key, hk_key_head(env), HK_HEAD_LEN);
	for (i = HK_HEAD_LEN; i < HK_KEY_LEN - HK_CHECKSUM_LEN; i++)
		key[i] = hk_base62_digits[randombytes_uniform(62)];
	hk_key_checksum(key, HK_KEY_LEN - HK_CHECKSUM_LEN,
					key + HK_KEY_LEN - HK_CHECKSUM_LEN);
	key[HK_KEY_LEN] = '\0';
}
