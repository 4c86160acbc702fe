/*-------------------------------------------------------------------------
 *
 * scopes.c
 *	  Scope names and the grant rule (docs/authorization.md).
 *
 * A scope name is 1 to HK_SCOPE_NAME_MAX characters of [a-z0-9_.:-],
 * optionally followed by '*'.  A key's scope g grants a wanted name w when
 * they are equal, or when g ends in '*' and w starts with g without its
 * '*' ("models:*" grants "models:predict", and "models:*" itself; it does
 * not grant "models*").  The same rule says whether one pattern covers
 * another, so it also decides what a key may hand on to a key it creates.
 *
 * Keys' scopes travel packed (scopes.h): one length byte, then the name,
 * for each scope.  That is what the cache keeps inline, and checking a
 * required scope against it is a walk over at most a few dozen bytes with
 * a length comparison and a memcmp per granted scope: no allocation, no
 * catalog access.  Required scopes come as the text[] validate_key() was
 * given, read in place (array_iter): nothing is copied.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

/* array.h's ARR_DATA_OFFSET mixes signedness: quiet -Wsign-compare there. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#include "utils/arrayaccess.h"
#pragma GCC diagnostic pop

#include "validate/scopes.h"

/* Is s[0..len) a scope name, with or without a trailing '*'? */
bool
hk_scope_name_valid(const char *s, int len)
{
	int			n = len;

	if (n > 0 && s[n - 1] == '*')
		n--;
	if (n < 1 || n > HK_SCOPE_NAME_MAX)
		return false;
	for (int i = 0; i < n; i++)
	{
		char		c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  c == '_' || c == '.' || c == ':' || c == '-'))
			return false;
	}
	return true;
}

/* Does the granted pattern cover the wanted name (or pattern)? */
bool
hk_scope_covers(const char *granted, int glen, const char *wanted, int wlen)
{
	if (glen == wlen && memcmp(granted, wanted, glen) == 0)
		return true;
	return glen > 0 && granted[glen - 1] == '*' && wlen >= glen - 1 &&
		memcmp(granted, wanted, glen - 1) == 0;
}

/* Does any scope of the packed list cover wanted? */
bool
hk_scopes_grant(const char *packed, int packed_len, const char *wanted, int wlen)
{
	const char *p = packed;
	const char *end = packed + packed_len;

	while (p < end)
	{
		int			glen = (uint8) *p++;

		if (hk_scope_covers(p, glen, wanted, wlen))
			return true;
		p += glen;
	}
	return false;
}

/*
 * Pack a key's scopes column (text[], checked when it was written) into a
 * palloc'd buffer; *count is the number of scopes.  Elements that could
 * not have been written (nulls, bad names) are skipped: they grant nothing.
 */
int
hk_scopes_pack(ArrayType *arr, char **packed, int *count)
{
	int			nitems = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	char	   *buf = palloc(Max(nitems, 1) * (1 + HK_SCOPE_MAX_LEN));
	int			len = 0;
	array_iter	it;

	*count = 0;
	array_iter_setup(&it, (AnyArrayType *) arr);
	for (int i = 0; i < nitems; i++)
	{
		bool		isnull;
		Datum		d = array_iter_next(&it, &isnull, i, -1, false, TYPALIGN_INT);
		const char *s;
		int			n;

		if (isnull)
			continue;
		s = VARDATA_ANY(DatumGetPointer(d));
		n = VARSIZE_ANY_EXHDR(DatumGetPointer(d));
		if (!hk_scope_name_valid(s, n))
			continue;
		buf[len++] = (char) n;
		memcpy(buf + len, s, n);
		len += n;
		(*count)++;
	}
	*packed = buf;
	return len;
}

/* A packed list as a text[] (empty for none). */
ArrayType *
hk_scopes_to_array(const char *packed, int packed_len)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(packed_len, 1));
	int			n = 0;
	const char *p = packed;
	const char *end = packed + packed_len;

	while (p < end)
	{
		int			len = (uint8) *p++;

		elems[n++] = PointerGetDatum(cstring_to_text_with_len(p, len));
		p += len;
	}
	return construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * Check a list of scopes a caller gave (what names it in messages): a
 * one-dimensional text[] of at most HK_SCOPES_MAX valid names, no nulls.
 * The messages are those of hokusai_auth._check_scopes() and never repeat
 * the value.
 */
void
hk_scopes_check_argument(ArrayType *arr, const char *what)
{
	int			nitems;
	array_iter	it;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array", what)));
	nitems = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	if (nitems > HK_SCOPES_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s has too many entries", what),
				 errdetail("The limit is %d scopes.", HK_SCOPES_MAX)));
	array_iter_setup(&it, (AnyArrayType *) arr);
	for (int i = 0; i < nitems; i++)
	{
		bool		isnull;
		Datum		d = array_iter_next(&it, &isnull, i, -1, false, TYPALIGN_INT);

		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain nulls", what)));
		if (!hk_scope_name_valid(VARDATA_ANY(DatumGetPointer(d)),
								 VARSIZE_ANY_EXHDR(DatumGetPointer(d))))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid scope name in %s", what),
					 errdetail("Element %d is not 1 to %d characters of a-z, 0-9, \"_\", \".\", \":\" and \"-\" with an optional trailing \"*\".",
							   i + 1, HK_SCOPE_NAME_MAX),
					 errhint("For example: keys:read, models:predict, models:*.")));
	}
}

/*
 * The first of the required scopes (a checked text[]) that the packed list
 * does not grant: returns true and points *missing into the array, or
 * returns false when every one is granted.
 */
bool
hk_scopes_first_missing(const char *packed, int packed_len, ArrayType *required,
						const char **missing, int *missing_len)
{
	int			nitems = ArrayGetNItems(ARR_NDIM(required), ARR_DIMS(required));
	array_iter	it;

	array_iter_setup(&it, (AnyArrayType *) required);
	for (int i = 0; i < nitems; i++)
	{
		bool		isnull;
		Datum		d = array_iter_next(&it, &isnull, i, -1, false, TYPALIGN_INT);
		const char *s;
		int			n;

		if (isnull)
			continue;
		s = VARDATA_ANY(DatumGetPointer(d));
		n = VARSIZE_ANY_EXHDR(DatumGetPointer(d));
		if (!hk_scopes_grant(packed, packed_len, s, n))
		{
			*missing = s;
			*missing_len = n;
			return true;
		}
	}
	return false;
}
