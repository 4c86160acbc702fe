/*-------------------------------------------------------------------------
 *
 * bcrypt.c
 *	  bcrypt hashes of keys: made when a key is created, checked on a cache
 *	  miss.
 *
 * bcrypt is pgcrypto's: we call its crypt() and gen_salt() through the
 * function manager, so stored hashes are "$2a$" hashes that verify with
 * plain SQL, crypt(key, key_hash) = key_hash.  pgcrypto does not know
 * "$2b$" and would silently fall back to DES crypt for anything but a
 * "$2a$" hash, so nothing else is passed to it.  Comparisons of hashes are
 * constant-time (sodium_memcmp).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sodium.h>

#include "fmgr.h"
#include "utils/builtins.h"

#include "keys/bcrypt.h"

/* pgcrypto's crypt(text, text) and gen_salt(text, int4), loaded on first use */
static PGFunction pgcrypto_crypt = NULL;
static PGFunction pgcrypto_gen_salt_rounds = NULL;

/* Look up pgcrypto's two functions, once per backend. */
static void
load_pgcrypto(void)
{
	if (pgcrypto_crypt != NULL)
		return;
	pgcrypto_gen_salt_rounds = (PGFunction)
		load_external_function("$libdir/pgcrypto", "pg_gen_salt_rounds", true, NULL);
	pgcrypto_crypt = (PGFunction)
		load_external_function("$libdir/pgcrypto", "pg_crypt", true, NULL);
}

/* Is hash[0..len) shaped like the "$2a$" hashes pgcrypto writes? */
static bool
is_bcrypt_hash(const char *hash, size_t len)
{
	/* "$2a$NN$" + 22 characters of salt + 31 of hash */
	return len == 60 && memcmp(hash, "$2a$", 4) == 0 && hash[6] == '$';
}

/* bcrypt hash of key at the given cost, as pgcrypto writes it. */
char *
hk_bcrypt_hash(const char *key, int cost)
{
	Datum		salt;
	text	   *hash;
	char	   *result;

	load_pgcrypto();
	salt = DirectFunctionCall2(pgcrypto_gen_salt_rounds,
							   CStringGetTextDatum("bf"), Int32GetDatum(cost));
	hash = DatumGetTextPP(DirectFunctionCall2(pgcrypto_crypt,
											  CStringGetTextDatum(key), salt));
	result = text_to_cstring(hash);
	if (!is_bcrypt_hash(result, strlen(result)))
		elog(ERROR, "pgcrypto returned a hash that is not bcrypt");
	return result;
}

/* Does key match the stored hash?  Constant-time in the hash comparison. */
bool
hk_bcrypt_verify(const char *key, const char *hash)
{
	size_t		hashlen = strlen(hash);
	text	   *computed;
	bool		match;

	/* Anything but a $2a$ hash would make pgcrypto fall back to DES. */
	if (!is_bcrypt_hash(hash, hashlen))
		return false;

	load_pgcrypto();
	computed = DatumGetTextPP(DirectFunctionCall2(pgcrypto_crypt,
												  CStringGetTextDatum(key),
												  CStringGetTextDatum(hash)));
	match = VARSIZE_ANY_EXHDR(computed) == hashlen &&
		sodium_memcmp(VARDATA_ANY(computed), hash, hashlen) == 0;
	pfree(computed);
	return match;
}
