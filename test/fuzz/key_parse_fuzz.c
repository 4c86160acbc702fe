/*-------------------------------------------------------------------------
 *
 * key_parse_fuzz.c
 *	  libFuzzer harness for the key parser and checksum
 *	  (src/common/key_format.c).
 *
 * Properties checked on every input:
 *	- hk_key_parse never reads outside the input and never crashes;
 *	- it accepts an input only if it is exactly 54 bytes of the documented
 *	  shape, and then the checksum recomputed here matches;
 *	- recomputing the checksum of an accepted key's first 48 bytes and
 *	  parsing again accepts it (round trip), and changing any one byte of
 *	  an accepted key makes it rejected.
 *
 * Built and run for a bounded time by test/fuzz/run.sh.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/key_format.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int			LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char		key[HK_KEY_LEN];
	HkEnvironment env;

	/*
	 * The CRC-32 is zlib's: a key whose checksum Python's zlib.crc32
	 * computed (corpus seed00) parses.
	 */
	memcpy(key, "hk_live_Ky9Pf34qY6Nb3wWD25RQ4F5ZR3qa7yEeeby3abP33vCts3", HK_KEY_LEN);
	if (hk_key_parse(key, HK_KEY_LEN, &env) != HK_KEY_OK)
		abort();
	return 0;
}

static int
shape_ok(const char *k, size_t n)
{
	size_t		i;

	if (n != HK_KEY_LEN)
		return 0;
	if (memcmp(k, "hk_live_", 8) != 0 && memcmp(k, "hk_test_", 8) != 0)
		return 0;
	for (i = 8; i < n; i++)
		if (!((k[i] >= '0' && k[i] <= '9') || (k[i] >= 'A' && k[i] <= 'Z') ||
			  (k[i] >= 'a' && k[i] <= 'z')))
			return 0;
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size heap copy, so ASan catches any over-read. */
	char	   *k = malloc(size > 0 ? size : 1);
	HkEnvironment env;
	HkKeyShape	r;

	memcpy(k, data, size);
	r = hk_key_parse(k, size, &env);
	if (r == HK_KEY_OK)
	{
		char		sum[HK_CHECKSUM_LEN];
		size_t		i;

		if (!shape_ok(k, size))
			abort();
		hk_key_checksum(k, HK_KEY_LEN - HK_CHECKSUM_LEN, sum);
		if (memcmp(sum, k + HK_KEY_LEN - HK_CHECKSUM_LEN, HK_CHECKSUM_LEN) != 0)
			abort();
		if (env != (k[3] == 'l' ? HK_ENV_LIVE : HK_ENV_TEST))
			abort();
		/* Any single-byte change is rejected. */
		for (i = 0; i < size; i++)
		{
			char		saved = k[i];

			k[i] = (char) (saved == 'a' ? 'b' : 'a');
			if (hk_key_parse(k, size, &env) == HK_KEY_OK)
				abort();
			k[i] = saved;
		}
	}
	else if (size == HK_KEY_LEN && shape_ok(k, size))
	{
		/* Right shape: fixing the checksum must make it acceptable. */
		hk_key_checksum(k, HK_KEY_LEN - HK_CHECKSUM_LEN, k + HK_KEY_LEN - HK_CHECKSUM_LEN);
		if (hk_key_parse(k, size, &env) != HK_KEY_OK)
			abort();
	}
	free(k);
	return 0;
}
