/*-------------------------------------------------------------------------
 *
 * conn.h
 *	  The connection to the database and the statements sent on it.
 *
 * src/bin/hokusai/conn.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_CONN_H
#define HOKUSAI_CONN_H

#include "libpq-fe.h"

#include <stdbool.h>

extern PGconn *connect_db(const char *host, const char *port, const char *user,
						  const char *dbname, bool never_prompt,
						  bool always_prompt);
extern PGresult *run_query(PGconn *conn, const char *sql, int nparams,
						   const char *const *values);
extern PGresult *run_query_or_lost(PGconn *conn, const char *sql, int nparams,
								   const char *const *values);
extern void run_command(PGconn *conn, const char *sql);
extern bool reconnect_db(void);
extern void disconnect_db(void);

#endif							/* HOKUSAI_CONN_H */
