/*-------------------------------------------------------------------------
 *
 * generate.h
 *	  libsodium set-up and fresh keys.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_GENERATE_H
#define HK_GENERATE_H

#include "postgres.h"

#include "common/key_format.h"

extern void hk_key_generate(HkEnvironment env, char *key);

#endif							/* HK_GENERATE_H */
