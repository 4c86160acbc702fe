/*-------------------------------------------------------------------------
 *
 * route_scopes.h
 *	  The scopes pre_request() demands per route: hokusai_auth.route_scopes,
 *	  kept by each backend.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_ROUTE_SCOPES_H
#define HK_ROUTE_SCOPES_H

#include "postgres.h"

#include "validate/scopes.h"

extern int	hk_route_scopes_for(const char *method, const char *path,
								HkRouteScope **out);

#endif							/* HK_ROUTE_SCOPES_H */
