/*-------------------------------------------------------------------------
 *
 * endpoint.c
 *	  The endpoint text of a usage event.
 *
 * An endpoint given to record_usage() or track_request() must be at most
 * HK_ENDPOINT_MAX_CHARS characters with no control characters (the rule is
 * common/text.c's hk_is_control: C0, DEL and, in UTF-8, C1).  What the
 * queue keeps is at most HK_USAGE_ENDPOINT_LEN - 1 bytes of whole
 * characters; an endpoint that reaches the queue without that check
 * (validate_key()'s) has its control characters replaced by '?'.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "common/text.h"
#include "usage/endpoint.h"
#include "usage/usage_queue.h"

/*
 * Check an endpoint argument and copy what the queue keeps of it into buf
 * (HK_USAGE_ENDPOINT_LEN bytes).  Returns its length in bytes.
 */
int
hk_usage_endpoint_arg(const text *t, char *buf)
{
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;
	int			i;

	if (pg_mbstrlen_with_len(s, len) > HK_ENDPOINT_MAX_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("endpoint is too long"),
				 errdetail("The limit is %d characters.", HK_ENDPOINT_MAX_CHARS)));
	for (i = 0; i < len; i++)
		if (hk_is_control(s + i, len - i, utf8))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("endpoint must not contain control characters")));
	return hk_usage_clean_endpoint(s, len, buf);
}

/*
 * Copy at most HK_USAGE_ENDPOINT_LEN - 1 bytes of whole characters;
 * control characters become '?'.  Returns the length written; buf is
 * NUL-terminated.
 */
int
hk_usage_clean_endpoint(const char *src, int len, char *buf)
{
	int			ascii = Min(len, HK_USAGE_ENDPOINT_LEN - 1);
	int			in = 0;
	int			out;
	bool		utf8;

	/*
	 * Printable ASCII (0x20 .. 0x7e), what endpoints usually are, is copied
	 * in one go: in every server encoding a byte below 0x80 is a character
	 * of its own.  The first other byte goes to the loop below.
	 */
	while (in < ascii && (unsigned char) (src[in] - 0x20) < 0x5f)
		in++;
	memcpy(buf, src, in);
	out = in;
	if (in == len || out == HK_USAGE_ENDPOINT_LEN - 1)
	{
		buf[out] = '\0';
		return out;
	}

	utf8 = GetDatabaseEncoding() == PG_UTF8;
	while (in < len)
	{
		int			clen = pg_mblen(src + in);

		if (clen > len - in)
			break;
		if (hk_is_control(src + in, len - in, utf8))
		{
			if (out + 1 > HK_USAGE_ENDPOINT_LEN - 1)
				break;
			buf[out++] = '?';
		}
		else
		{
			if (out + clen > HK_USAGE_ENDPOINT_LEN - 1)
				break;
			memcpy(buf + out, src + in, clen);
			out += clen;
		}
		in += clen;
	}
	buf[out] = '\0';
	return out;
}
