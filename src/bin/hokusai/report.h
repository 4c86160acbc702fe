/*-------------------------------------------------------------------------
 *
 * report.h
 *	  How the hokusai tool speaks to the operator on stderr and ends: the
 *	  exit codes, fail(), note() and confirm().
 *
 * src/bin/hokusai/report.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_REPORT_H
#define HOKUSAI_REPORT_H

#include <stdbool.h>

/* Exit codes (documented in docs/cli.md; scripts rely on them) */
#define EXIT_OK				0	/* success */
#define EXIT_SERVER			1	/* the server refused for another reason */
#define EXIT_USAGE			2	/* bad command line: nothing was sent */
#define EXIT_CONNECT		3	/* cannot connect, or the connection was lost */
#define EXIT_PERMISSION		4	/* permission denied (SQLSTATE 42501) */
#define EXIT_NOT_FOUND		5	/* unknown user or key (P0002) */
#define EXIT_INVALID		6	/* the server rejected a value (22xxx, 23xxx) */
#define EXIT_CANCELLED		7	/* the operator declined the confirmation */
#define EXIT_AUDIT_BROKEN	8	/* audit --verify: the hash chain is broken */

#define NORETURN __attribute__((noreturn))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

extern void fail(int code, const char *fmt,...) PRINTF_LIKE(2, 3) NORETURN;
extern void note(const char *fmt,...) PRINTF_LIKE(1, 2);
extern bool confirm(const char *question);
extern char *redact_secrets(const char *s);

#endif							/* HOKUSAI_REPORT_H */
