/*-------------------------------------------------------------------------
 *
 * hokusai.h
 *	  The hokusai command-line tool: shared declarations.
 *
 * The tool is a thin libpq client of the hokusai_auth SQL interface.  Every
 * value travels as a PQexecParams parameter, every operation is one
 * statement or one transaction, and every failure ends the program with one
 * line on stderr and one of the exit codes below (docs/cli.md).
 *
 * src/bin/hokusai/hokusai.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_CLI_H
#define HOKUSAI_CLI_H

#include <stdbool.h>

#include "libpq-fe.h"
#include "report.h"

/* Options every command accepts */
typedef struct CommonOptions
{
	const char *dsn;			/* --dsn, or NULL for the libpq environment */
	bool		json;			/* --json */
} CommonOptions;

/* help.c */
extern void print_main_help(void);
extern void print_auth_help(void);
extern bool print_command_help(const char *command);

/* parse.c */
typedef enum KeyRefKind
{
	KEYREF_ID,					/* a uuid */
	KEYREF_PREFIX				/* a 16-character key_prefix */
} KeyRefKind;

extern bool looks_like_uuid(const char *s);
extern KeyRefKind parse_key_ref(const char *command, const char *arg);
extern bool parse_duration(const char *s, long long *seconds);
extern long long duration_option(const char *option, const char *value,
								 bool allow_zero);
extern char *interval_param(long long seconds);
extern int	positive_int_option(const char *option, const char *value);
extern void append_array_element(char **array, const char *element);

/* conn.c */
extern PGconn *connect_db(const CommonOptions *common);
extern PGresult *run_query(PGconn *conn, const char *sql, int nparams,
						   const char *const *values);
extern void run_command(PGconn *conn, const char *sql);
extern void disconnect_db(void);

/* output.c */
extern void print_table(const PGresult *res, const int *cols,
						const char *const *headers, int ncols);
extern void print_record(const PGresult *res, int row);
extern const char *display_value(const PGresult *res, int row, int col);
extern void json_object_begin(void);
extern void json_result_fields(const PGresult *res, int row);
extern void json_string_field(const char *name, const char *value);
extern void json_raw_field(const char *name, const char *raw);
extern void json_object_end(void);
extern void json_rows(const PGresult *res);

/* commands.c */
extern int	cmd_create_user(int argc, char **argv, CommonOptions *common);
extern int	cmd_create_key(int argc, char **argv, CommonOptions *common);
extern int	cmd_list_keys(int argc, char **argv, CommonOptions *common);
extern int	cmd_show_key(int argc, char **argv, CommonOptions *common);
extern int	cmd_revoke_key(int argc, char **argv, CommonOptions *common);
extern int	cmd_rotate_key(int argc, char **argv, CommonOptions *common);
extern int	cmd_usage(int argc, char **argv, CommonOptions *common);

#endif							/* HOKUSAI_CLI_H */
