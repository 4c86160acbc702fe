/*-------------------------------------------------------------------------
 *
 * output.h
 *	  What the hokusai tool prints on stdout: tables and records for people,
 *	  JSON for scripts.
 *
 * src/bin/hokusai/output.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_OUTPUT_H
#define HOKUSAI_OUTPUT_H

#include <stdbool.h>

#include "libpq-fe.h"

/* A field of print_json_fields(): a string, or raw JSON text; NULL is null */
typedef struct JsonField
{
	const char *name;
	const char *value;
	bool		raw;
} JsonField;

extern const char *display_value(const PGresult *res, int row, int col);
extern void print_table(const PGresult *res, const int *cols,
						const char *const *headers, int ncols);
extern void print_row(const PGresult *res, bool json);
extern void print_json_object(const PGresult *res, const PGresult *more);
extern void print_json_rows(const PGresult *res);
extern void print_json_fields(const JsonField *fields, int nfields);

#endif							/* HOKUSAI_OUTPUT_H */
