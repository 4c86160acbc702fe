/*-------------------------------------------------------------------------
 *
 * keys_sql.c
 *	  The SQL functions of keys themselves: _new_key() (for create_key()
 *	  and rotate_key()), key_is_well_formed() and key_prefix().
 *
 * Generation is keys/generate.c, hashing keys/bcrypt.c, the format
 * common/key_format.c.  The plaintext key leaves _new_key() once and is
 * wiped from this function's memory.
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
#include "common/key_format.h"
#include "keys/bcrypt.h"
#include "keys/generate.h"

PG_FUNCTION_INFO_V1(hk_sql_new_key);
PG_FUNCTION_INFO_V1(hk_sql_key_is_well_formed);
PG_FUNCTION_INFO_V1(hk_sql_key_prefix);

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
