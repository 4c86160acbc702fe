/*-------------------------------------------------------------------------
 *
 * bcrypt.h
 *	  bcrypt hashing and verification of keys, through pgcrypto.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_BCRYPT_H
#define HK_BCRYPT_H

#include "postgres.h"

extern char *hk_bcrypt_hash(const char *key, int cost);
extern bool hk_bcrypt_verify(const char *key, const char *hash);

#endif							/* HK_BCRYPT_H */
