/*-------------------------------------------------------------------------
 *
 * key_format.h
 *	  The API key format (DESIGN.md section 4): its constants, environment
 *	  names, shape check and checksum.
 *
 * A key is hk_<env>_<body>: env is "live" or "test", body is 46 base62
 * characters: an 8-character lookup id, 32 characters of secret and a
 * 6-character base62 CRC-32 of everything before it.  key_prefix is
 * hk_<env>_ plus the lookup id.
 *
 * Everything in src/common is plain C with no PostgreSQL headers, no
 * allocation and no server state: the extension, the hokusai CLI and the
 * fuzzers (test/fuzz/) compile it as it is.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_COMMON_KEY_FORMAT_H
#define HK_COMMON_KEY_FORMAT_H

#include <stdbool.h>
#include <stddef.h>

#define HK_ENV_LEN			4	/* "live" or "test" */
#define HK_LOOKUP_LEN		8
#define HK_SECRET_LEN		32
#define HK_CHECKSUM_LEN		6
#define HK_HEAD_LEN			(3 + HK_ENV_LEN + 1)	/* "hk_live_" */
#define HK_PREFIX_LEN		(HK_HEAD_LEN + HK_LOOKUP_LEN)	/* 16 */
#define HK_KEY_LEN			(HK_PREFIX_LEN + HK_SECRET_LEN + HK_CHECKSUM_LEN)	/* 54 */

typedef enum HkEnvironment
{
	HK_ENV_LIVE,
	HK_ENV_TEST
} HkEnvironment;

/*
 * Why a candidate key was rejected by hk_key_parse.  Callers report all of
 * these as "malformed"; the distinction is for tests and diagnostics.
 */
typedef enum HkKeyShape
{
	HK_KEY_OK,
	HK_KEY_BAD_LENGTH,
	HK_KEY_BAD_HEAD,
	HK_KEY_BAD_CHARACTER,
	HK_KEY_BAD_CHECKSUM
} HkKeyShape;

/* The base62 alphabet: 0-9, A-Z, a-z in that order. */
extern const char hk_base62_digits[];

/* Each byte's base62 value, HK_NOT_BASE62 for any other byte. */
#define HK_NOT_BASE62		0x80
extern const unsigned char hk_base62_value[256];

/* Is c one of the base62 digits? */
static inline bool
hk_is_base62(char c)
{
	return hk_base62_value[(unsigned char) c] != HK_NOT_BASE62;
}

extern bool hk_environment_from_name(const char *name, HkEnvironment *env);
extern const char *hk_key_head(HkEnvironment env);
extern void hk_key_checksum(const char *data, size_t len, char *out);
extern HkKeyShape hk_key_parse(const char *key, size_t len, HkEnvironment *env);

#endif							/* HK_COMMON_KEY_FORMAT_H */
