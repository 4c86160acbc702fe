/*-------------------------------------------------------------------------
 *
 * forwarded.c
 *	  Which address is the client?  The right-most X-Forwarded-For entry
 *	  that is not a trusted proxy.
 *
 * A proxy appends the address it received the request from, so entries
 * left of the last trusted proxy's are whatever the client claimed and
 * cannot be believed; walking from the right and stopping at the first
 * untrusted address gives the address the outermost trusted proxy saw.
 * An unparsable entry reached before the client gives no answer: a key
 * with an allow-list is then refused.  What to do with the peer address
 * and where the trusted list comes from (hokusai_auth.trusted_proxies) is
 * http/client_ip.c's business.
 *
 * Entries may be IPv4 or IPv6, bracketed IPv6 ("[2001:db8::1]"), with or
 * without a port ("192.0.2.1:443", "[2001:db8::1]:443"): hk_parse_addr.
 * Plain C with no server headers (see key_format.h), so test/fuzz/ runs it
 * as is.
 *
 *-------------------------------------------------------------------------
 */
#include "common/forwarded.h"
#include "common/text.h"

/*
 * Walk xff[0..len) from the right over trusted[0..ntrusted).  Trust is
 * decided on the IPv4 form of IPv4-mapped entries (hk_cidrs_allow); the
 * client is returned as written.  When every entry is trusted, the
 * left-most is the best answer there is.
 */
HkForwarded
hk_forwarded_client(const char *xff, size_t len, const HkCidr *trusted,
					int ntrusted, HkCidr *client)
{
	size_t		end = len;
	bool		any = false;

	if (len > HK_XFF_MAX_LEN)
		return HK_XFF_INVALID;

	while (end > 0)
	{
		size_t		start = end;
		HkCidr		addr;
		const char *e;
		size_t		l;

		while (start > 0 && xff[start - 1] != ',')
			start--;
		e = xff + start;
		l = end - start;
		end = start > 0 ? start - 1 : 0;

		/* Skip empty entries ("a,,b", trailing commas, blanks). */
		hk_trim(&e, &l, HK_BLANKS);
		if (l == 0)
		{
			if (start == 0)
				break;
			continue;
		}

		if (!hk_parse_addr(e, l, &addr))
			return HK_XFF_INVALID;
		any = true;
		*client = addr;
		if (!hk_cidrs_allow(trusted, ntrusted, &addr))
			return HK_XFF_FOUND;
		if (start == 0)
			break;
	}
	return any ? HK_XFF_FOUND : HK_XFF_EMPTY;
}
