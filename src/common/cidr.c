/*-------------------------------------------------------------------------
 *
 * cidr.c
 *	  Parsing addresses and CIDRs, and matching an address against
 *	  networks: the allow-lists of keys and hokusai_auth.trusted_proxies.
 *
 * Addresses are compared as bit prefixes.  An address that arrives
 * IPv4-mapped (::ffff:a.b.c.d) is matched as the IPv4 address it carries,
 * so a key allowed 203.0.113.0/24 works for clients seen either way; the
 * unwrapping is hk_cidr_unmap_v4, done by hk_cidrs_allow on the address
 * and by validate/cidr_datum.c on every inet or cidr it converts.
 *
 * Parsing uses inet_pton() and no server facilities (see key_format.h),
 * so test/fuzz/ runs it as is.
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "common/cidr.h"
#include "common/text.h"

static const uint8_t v4_mapped_head[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Does s[0..len) consist of one or more decimal digits? */
static bool
all_digits(const char *s, size_t len)
{
	size_t		i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/*
 * Parse one address (len bytes, not NUL-terminated), tolerating blanks
 * around it, brackets around IPv6 and a port: "192.0.2.1",
 * "192.0.2.1:443", "2001:db8::1", "[2001:db8::1]:443".  Sets a /32 or
 * /128.  No allocation.
 */
bool
hk_parse_addr(const char *s, size_t len, HkCidr *out)
{
	char		buf[INET6_ADDRSTRLEN + 1];
	const char *colon;

	hk_trim(&s, &len, HK_BLANKS);
	if (len == 0)
		return false;

	if (s[0] == '[')
	{
		/* [v6] or [v6]:port */
		const char *end = memchr(s, ']', len);
		size_t		after;

		if (end == NULL)
			return false;
		after = len - (size_t) (end - s) - 1;
		if (after > 0 && (end[1] != ':' || !all_digits(end + 2, after - 1)))
			return false;
		len = end - s - 1;
		s++;
	}
	else if ((colon = memchr(s, ':', len)) != NULL &&
			 memchr(colon + 1, ':', len - (colon + 1 - s)) == NULL)
	{
		/* exactly one colon: v4:port */
		if (!all_digits(colon + 1, len - (colon + 1 - s)))
			return false;
		len = colon - s;
	}

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (memchr(buf, '%', len) != NULL)	/* zone ids are not addresses */
		return false;

	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->addr) == 1)
	{
		out->family = HK_AF_INET;
		out->bits = 32;
	}
	else if (inet_pton(AF_INET6, buf, out->addr) == 1)
	{
		out->family = HK_AF_INET6;
		out->bits = 128;
	}
	else
		return false;
	return true;
}

/* Parse "addr" or "addr/bits" (blanks around it, no brackets, no port). */
bool
hk_parse_cidr(const char *s, size_t len, HkCidr *out)
{
	const char *slash;
	int			bits = -1;

	hk_trim(&s, &len, HK_BLANKS);
	slash = memchr(s, '/', len);
	if (slash != NULL)
	{
		const char *p = slash + 1;
		size_t		ndigits = s + len - p;

		if (ndigits > 3 || !all_digits(p, ndigits))
			return false;
		bits = 0;
		for (; p < s + len; p++)
			bits = bits * 10 + (*p - '0');
		len = slash - s;
	}
	if (len == 0 || s[0] == '[' || !hk_parse_addr(s, len, out))
		return false;
	/* hk_parse_addr accepted "v4:port": not a CIDR. */
	if (memchr(s, ':', len) != NULL && out->family == HK_AF_INET)
		return false;
	if (bits >= 0)
	{
		if (bits > out->bits)
			return false;
		out->bits = (uint8_t) bits;
	}
	return true;
}

/*
 * Parse a comma-separated list of CIDRs (NUL-terminated) into out, at most
 * max of them; blank entries are skipped.  Returns the count, or -1 when
 * an entry is bad or there are too many.
 */
int
hk_parse_cidr_list(const char *list, HkCidr *out, int max)
{
	int			n = 0;
	const char *p = list;

	while (*p != '\0')
	{
		const char *end = strchr(p, ',');
		const char *q = p;
		size_t		len = end ? (size_t) (end - p) : strlen(p);

		hk_trim(&q, &len, HK_BLANKS);
		if (len > 0)
		{
			if (n >= max || !hk_parse_cidr(q, len, &out[n]))
				return -1;
			n++;
		}
		if (end == NULL)
			break;
		p = end + 1;
	}
	return n;
}

/*
 * An IPv4-mapped IPv6 address or network (::ffff:0:0/96 and longer
 * prefixes) becomes the IPv4 one it carries; anything else is left alone.
 */
void
hk_cidr_unmap_v4(HkCidr *c)
{
	if (c->family == HK_AF_INET6 && c->bits >= 96 &&
		memcmp(c->addr, v4_mapped_head, sizeof(v4_mapped_head)) == 0)
	{
		c->family = HK_AF_INET;
		c->bits -= 96;
		memmove(c->addr, c->addr + 12, 4);
		memset(c->addr + 4, 0, 12);
	}
}

/* Does the network net contain the address (or network) addr, as given? */
bool
hk_cidr_contains(const HkCidr *net, const HkCidr *addr)
{
	int			whole = net->bits / 8;
	int			rest = net->bits % 8;

	if (net->family != addr->family || addr->bits < net->bits)
		return false;
	if (memcmp(net->addr, addr->addr, whole) != 0)
		return false;
	if (rest != 0)
	{
		uint8_t		mask = (uint8_t) (0xff << (8 - rest));

		if ((net->addr[whole] & mask) != (addr->addr[whole] & mask))
			return false;
	}
	return true;
}

/* Is addr, IPv4-mapped or not, inside one of nets[0..n)? */
bool
hk_cidrs_allow(const HkCidr *nets, int n, const HkCidr *addr)
{
	HkCidr		a = *addr;
	int			i;

	hk_cidr_unmap_v4(&a);
	for (i = 0; i < n; i++)
		if (hk_cidr_contains(&nets[i], &a))
			return true;
	return false;
}
