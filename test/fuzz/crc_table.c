/*
 * pg_crc32_table lives in the server binary, not in a library the fuzzer
 * can link.  This file provides the same table (the reflected CRC-32
 * polynomial 0xEDB88320), filled before the first input by
 * LLVMFuzzerInitialize.  It deliberately does not include pg_crc.h, which
 * declares the table const.
 */
#include <stdint.h>

uint32_t	pg_crc32_table[256];
void		hk_fuzz_fill_crc_table(void);

void
hk_fuzz_fill_crc_table(void)
{
	for (uint32_t i = 0; i < 256; i++)
	{
		uint32_t	c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
		pg_crc32_table[i] = c;
	}
}
