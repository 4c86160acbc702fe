/*-------------------------------------------------------------------------
 *
 * api_key_service.h
 *	  Key generation and bcrypt hashing.  The key format itself is
 *	  common/key_format.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef API_KEY_SERVICE_H
#define API_KEY_SERVICE_H

#include "postgres.h"

#include "common/key_format.h"

extern void hk_key_generate(HkEnvironment env, char *key);
extern char *hk_bcrypt_hash(const char *key, int cost);
extern bool hk_bcrypt_verify(const char *key, const char *hash);

#endif							/* API_KEY_SERVICE_H */
