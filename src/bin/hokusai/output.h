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

#include "libpq-fe.h"

extern const char *display_value(const PGresult *res, int row, int col);
extern void print_table(const PGresult *res, const int *cols,
						const char *const *headers, int ncols);
extern void print_record(const PGresult *res, int row);
extern void json_object_begin(void);
extern void json_result_fields(const PGresult *res, int row);
extern void json_string_field(const char *name, const char *value);
extern void json_raw_field(const char *name, const char *raw);
extern void json_object_end(void);
extern void json_rows(const PGresult *res);

#endif							/* HOKUSAI_OUTPUT_H */
