/*-------------------------------------------------------------------------
 *
 * text.c
 *	  Small text rules used in more than one place, each written once:
 *	  trimming, the control-character rule, the shape of a uuid.
 *
 * Plain C with no server headers (see key_format.h).
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "common/text.h"

/* Is c one of the characters of set?  Never true for NUL. */
static inline bool
in_set(char c, const char *set)
{
	return c != '\0' && strchr(set, c) != NULL;
}

/* Narrow s[0..*len) to drop leading and trailing characters of set. */
void
hk_trim(const char **s, size_t *len, const char *set)
{
	while (*len > 0 && in_set(**s, set))
		(*s)++, (*len)--;
	while (*len > 0 && in_set((*s)[*len - 1], set))
		(*len)--;
}

/*
 * Does a control character start at s (len > 0 bytes left)?  C0 and DEL
 * always; in UTF-8 also C1 (U+0080 to U+009F, encoded 0xC2 0x80-0x9F).
 */
bool
hk_is_control(const char *s, size_t len, bool utf8)
{
	unsigned char c = (unsigned char) s[0];

	return c < 0x20 || c == 0x7f ||
		(utf8 && c == 0xc2 && len >= 2 && (unsigned char) s[1] < 0xa0);
}

/*
 * Is s (NUL-terminated) a uuid as text: 8-4-4-4-12 hexadecimal digits,
 * either case, and nothing else?
 */
bool
hk_looks_like_uuid(const char *s)
{
	int			i;

	for (i = 0; i < 36; i++)
	{
		char		c = s[i];

		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (c != '-')
				return false;
		}
		else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
				   (c >= 'A' && c <= 'F')))
			return false;
	}
	return s[36] == '\0';
}
