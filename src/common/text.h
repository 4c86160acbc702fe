/*-------------------------------------------------------------------------
 *
 * text.h
 *	  Small text rules used in more than one place: trimming, what counts
 *	  as a control character, and the shape of a uuid.  Plain C, no server
 *	  headers (see key_format.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_COMMON_TEXT_H
#define HK_COMMON_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Blanks: HTTP's optional whitespace, space and tab. */
#define HK_BLANKS	" \t"
/* White space as isspace() has it in the C locale. */
#define HK_SPACES	" \t\n\v\f\r"

extern void hk_trim(const char **s, size_t *len, const char *set);
extern bool hk_is_control(const char *s, size_t len, bool utf8);
extern bool hk_looks_like_uuid(const char *s);

#endif							/* HK_COMMON_TEXT_H */
