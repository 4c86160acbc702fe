/*-------------------------------------------------------------------------
 *
 * api_key_service.c
 *	  Key generation, the key format and its checksum, and bcrypt.
 *
 * Randomness comes from libsodium (randombytes_uniform gives unbiased base62
 * digits).  The format and checksum themselves are in common/key_format.c.
 *
 * bcrypt is pgcrypto's: we call its crypt() and gen_salt() through the
 * function manager, so stored hashes are "$2a$" hashes that verify with
 * plain SQL, crypt(key, key_hash) = key_hash.  Comparisons of hashes are
 * constant-time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sodium.h>

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "hokusai_auth.h"
#include "auth/api_key_service.h"

PG_FUNCTION_INFO_V1(hk_sql_new_key);
PG_FUNCTION_INFO_V1(hk_sql_key_is_well_formed);
PG_FUNCTION_INFO_V1(hk_sql_key_prefix);

/* pgcrypto's crypt(text, text) and gen_salt(text, int4), loaded on first use */
static PGFunction pgcrypto_crypt = NULL;
static PGFunction pgcrypto_gen_salt_rounds = NULL;

void
hk_crypto_init(void)
{
	if (sodium_init() < 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libsodium")));
}

/* Fill key[0..HK_KEY_LEN] with a fresh key and its terminating NUL. */
void
hk_key_generate(HkEnvironment env, char *key)
{
	int			i;

	memcpy(key, hk_key_head(env), HK_HEAD_LEN);
	for (i = HK_HEAD_LEN; i < HK_KEY_LEN - HK_CHECKSUM_LEN; i++)
		key[i] = hk_base62_digits[randombytes_uniform(62)];
	hk_key_checksum(key, HK_KEY_LEN - HK_CHECKSUM_LEN,
					key + HK_KEY_LEN - HK_CHECKSUM_LEN);
	key[HK_KEY_LEN] = '\0';
}

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

/*
 * hokusai_auth._new_key(environment text,
 *						 OUT key text, OUT key_prefix text, OUT key_hash text)
 *
 * Internal: a fresh key, its prefix and its bcrypt hash at
 * hokusai_auth.bcrypt_cost.  create_key() and rotate_key() store the hash
 * and prefix and hand the key to the caller once.
 */
Datum
hk_sql_new_key(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	HkEnvironment env;
	char		key[HK_KEY_LEN + 1];
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	char	   *envname;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("environment must not be null")));
	envname = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!hk_environment_from_name(envname, &env))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid environment \"%s\"", envname),
				 errhint("Use \"live\" or \"test\".")));

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	hk_key_generate(env, key);
	values[0] = CStringGetTextDatum(key);
	values[1] = PointerGetDatum(cstring_to_text_with_len(key, HK_PREFIX_LEN));
	values[2] = CStringGetTextDatum(hk_bcrypt_hash(key, hk_bcrypt_cost));
	sodium_memzero(key, sizeof(key));

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * hokusai_auth.key_is_well_formed(key text) returns boolean
 *
 * True when key has the hk_ shape and a correct checksum.  Costs no table
 * or bcrypt work: secret scanners and clients can use it freely.
 */
Datum
hk_sql_key_is_well_formed(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);
	HkEnvironment env;

	PG_RETURN_BOOL(hk_key_parse(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
								&env) == HK_KEY_OK);
}

/*
 * hokusai_auth.key_prefix(key text) returns text
 *
 * The displayable key_prefix of a well-formed key, NULL otherwise.
 */
Datum
hk_sql_key_prefix(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);
	HkEnvironment env;

	if (hk_key_parse(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), &env) != HK_KEY_OK)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text_with_len(VARDATA_ANY(key), HK_PREFIX_LEN));
}
