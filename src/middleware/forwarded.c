/*-------------------------------------------------------------------------
 *
 * forwarded.c
 *	  Which address is the client?  The right-most X-Forwarded-For entry
 *	  that is not one of hokusai_auth.trusted_proxies.
 *
 * A proxy appends the address it received the request from, so entries
 * left of the last trusted proxy's are whatever the client claimed and
 * cannot be believed; walking from the right and stopping at the first
 * untrusted address gives the address the outermost trusted proxy saw.
 * When a peer address is known and it is not trusted, the header is not
 * believed at all.  An unparsable entry reached before the client gives no
 * answer (NULL): a key with an allow-list is then refused.
 *
 * Entries may be IPv4 or IPv6, bracketed IPv6 ("[2001:db8::1]"), with or
 * without a port ("192.0.2.1:443", "[2001:db8::1]:443").  Parsing uses
 * inet_pton() and no server facilities, so test/fuzz/ runs it as is.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inet.h"

#include "hokusai_auth.h"
#include "middleware/forwarded.h"

PG_FUNCTION_INFO_V1(hk_sql_client_ip);

/* The parsed hokusai_auth.trusted_proxies, kept by the GUC machinery. */
typedef struct HkTrusted
{
	int			n;
	HkCidr		nets[HK_MAX_TRUSTED];
} HkTrusted;

static HkTrusted *trusted = NULL;

static inline bool
is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* Parse one address, tolerating brackets and a port.  No allocation. */
bool
hk_parse_addr(const char *s, size_t len, HkCidr *out)
{
	char		buf[INET6_ADDRSTRLEN + 1];
	const char *colon;
	size_t		i;

	while (len > 0 && is_space(*s))
		s++, len--;
	while (len > 0 && is_space(s[len - 1]))
		len--;
	if (len == 0)
		return false;

	if (s[0] == '[')
	{
		/* [v6] or [v6]:port */
		const char *end = memchr(s, ']', len);

		if (end == NULL)
			return false;
		if ((size_t) (end - s) + 1 < len)
		{
			const char *p = end + 1;

			if (*p != ':' || p + 1 == s + len)
				return false;
			for (p++; p < s + len; p++)
				if (*p < '0' || *p > '9')
					return false;
		}
		len = end - s - 1;
		s++;
	}
	else if ((colon = memchr(s, ':', len)) != NULL &&
			 memchr(colon + 1, ':', len - (colon + 1 - s)) == NULL)
	{
		/* exactly one colon: v4:port */
		const char *p;

		if (colon + 1 == s + len)
			return false;
		for (p = colon + 1; p < s + len; p++)
			if (*p < '0' || *p > '9')
				return false;
		len = colon - s;
	}

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	for (i = 0; i < len; i++)
		if (buf[i] == '%')		/* zone ids are not addresses */
			return false;

	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->addr) == 1)
	{
		out->family = PGSQL_AF_INET;
		out->bits = 32;
	}
	else if (inet_pton(AF_INET6, buf, out->addr) == 1)
	{
		out->family = PGSQL_AF_INET6;
		out->bits = 128;
	}
	else
		return false;
	return true;
}

/* Parse "addr" or "addr/bits" (no brackets, no port). */
bool
hk_parse_cidr(const char *s, size_t len, HkCidr *out)
{
	const char *slash;
	int			bits = -1;

	while (len > 0 && is_space(*s))
		s++, len--;
	while (len > 0 && is_space(s[len - 1]))
		len--;
	slash = memchr(s, '/', len);
	if (slash != NULL)
	{
		const char *p;

		if (slash + 1 == s + len || s + len - (slash + 1) > 3)
			return false;
		bits = 0;
		for (p = slash + 1; p < s + len; p++)
		{
			if (*p < '0' || *p > '9')
				return false;
			bits = bits * 10 + (*p - '0');
		}
		len = slash - s;
	}
	if (len == 0 || s[0] == '[' || !hk_parse_addr(s, len, out))
		return false;
	/* hk_parse_addr accepted "v4:port": not a CIDR. */
	if (memchr(s, ':', len) != NULL && out->family == PGSQL_AF_INET)
		return false;
	if (bits >= 0)
	{
		if (bits > out->bits)
			return false;
		out->bits = (uint8) bits;
	}
	return true;
}

/* Parse a comma-separated CIDR list into out; -1 when any entry is bad. */
int
hk_parse_cidr_list(const char *list, HkCidr *out, int max)
{
	int			n = 0;
	const char *p = list;

	while (*p != '\0')
	{
		const char *end = strchr(p, ',');
		size_t		len = end ? (size_t) (end - p) : strlen(p);
		const char *q = p;
		size_t		l = len;

		while (l > 0 && is_space(*q))
			q++, l--;
		if (l > 0)
		{
			if (n >= max || !hk_parse_cidr(p, len, &out[n]))
				return -1;
			n++;
		}
		if (end == NULL)
			break;
		p = end + 1;
	}
	return n;
}

HkForwarded
hk_forwarded_client(const char *xff, size_t len, const HkCidr *nets, int n,
					HkCidr *client)
{
	size_t		end = len;
	bool		any = false;

	if (len > HK_XFF_MAX_LEN)
		return HK_XFF_INVALID;

	/* Walk the entries from the right. */
	while (end > 0)
	{
		size_t		start = end;
		HkCidr		addr;
		HkCidr		norm;
		const char *e;
		size_t		l;

		while (start > 0 && xff[start - 1] != ',')
			start--;
		e = xff + start;
		l = end - start;
		end = start > 0 ? start - 1 : 0;

		/* Skip empty entries ("a,,b", trailing commas, blanks). */
		while (l > 0 && is_space(*e))
			e++, l--;
		while (l > 0 && is_space(e[l - 1]))
			l--;
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
		/* Trust is decided on the unmapped form of v4-mapped addresses. */
		norm = addr;
		if (norm.family == PGSQL_AF_INET6 &&
			memcmp(norm.addr, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0)
		{
			norm.family = PGSQL_AF_INET;
			norm.bits = 32;
			memmove(norm.addr, norm.addr + 12, 4);
			memset(norm.addr + 4, 0, 12);
		}
		if (!hk_cidrs_allow(nets, n, &norm))
			return HK_XFF_FOUND;
		if (start == 0)
			break;
	}
	/* Every entry was a trusted proxy: the left-most is the best we know. */
	return any ? HK_XFF_FOUND : HK_XFF_EMPTY;
}

bool
hk_trusted_proxies_check(char **newval, void **extra, GucSource source)
{
	/* GUC "extra" must be malloc'd: the GUC machinery frees it. */
	HkTrusted  *t = (HkTrusted *) malloc(sizeof(HkTrusted));

	if (t == NULL)
		return false;
	t->n = hk_parse_cidr_list(*newval ? *newval : "", t->nets, HK_MAX_TRUSTED);
	if (t->n < 0)
	{
		free(t);
		GUC_check_errdetail("List must contain at most %d comma-separated IPv4 or IPv6 addresses or CIDRs.",
							HK_MAX_TRUSTED);
		return false;
	}
	*extra = t;
	return true;
}

void
hk_trusted_proxies_assign(const char *newval, void *extra)
{
	trusted = (HkTrusted *) extra;
}

/*
 * The client address from an X-Forwarded-For value and
 * hokusai_auth.trusted_proxies, with no peer address: what
 * hokusai_auth.client_ip(forwarded_for) returns.  False for NULL.
 */
bool
hk_client_from_forwarded_for(const char *xff, size_t len, HkCidr *client)
{
	int			n = trusted ? trusted->n : 0;
	const HkCidr *nets = trusted ? trusted->nets : NULL;

	return hk_forwarded_client(xff, len, nets, n, client) == HK_XFF_FOUND;
}

Datum
hk_cidr_to_inet_datum(const HkCidr *c)
{
	inet	   *res = (inet *) palloc0(sizeof(inet));

	ip_family(res) = c->family;
	ip_bits(res) = c->bits;
	memcpy(ip_addr(res), c->addr, c->family == PGSQL_AF_INET ? 4 : 16);
	SET_INET_VARSIZE(res);
	return InetPGetDatum(res);
}

/*
 * hokusai_auth.client_ip(forwarded_for text, peer inet DEFAULT NULL)
 *	returns inet
 *
 * The client address for a request that reached the database through
 * proxies: peer when it is given and not a trusted proxy (the header is not
 * believed) or when the header is empty; otherwise the right-most
 * X-Forwarded-For entry outside hokusai_auth.trusted_proxies; NULL when the
 * header is malformed before that entry or longer than 8192 bytes.
 */
Datum
hk_sql_client_ip(PG_FUNCTION_ARGS)
{
	HkCidr		peer;
	HkCidr		client;
	bool		have_peer = !PG_ARGISNULL(1);
	int			n = trusted ? trusted->n : 0;
	const HkCidr *nets = trusted ? trusted->nets : NULL;
	text	   *xff;

	if (have_peer)
	{
		hk_cidr_from_inet(PG_GETARG_INET_PP(1), &peer);
		if (!hk_cidrs_allow(nets, n, &peer))
			PG_RETURN_DATUM(PG_GETARG_DATUM(1));
	}
	if (PG_ARGISNULL(0))
	{
		if (have_peer)
			PG_RETURN_DATUM(PG_GETARG_DATUM(1));
		PG_RETURN_NULL();
	}
	xff = PG_GETARG_TEXT_PP(0);
	switch (hk_forwarded_client(VARDATA_ANY(xff), VARSIZE_ANY_EXHDR(xff), nets, n, &client))
	{
		case HK_XFF_FOUND:
			PG_RETURN_DATUM(hk_cidr_to_inet_datum(&client));
		case HK_XFF_EMPTY:
			if (have_peer)
				PG_RETURN_DATUM(PG_GETARG_DATUM(1));
			PG_RETURN_NULL();
		case HK_XFF_INVALID:
			break;
	}
	PG_RETURN_NULL();
}
