/*-------------------------------------------------------------------------
 *
 * events.h
 *	  The "hokusai auth" commands on events: events (print, follow) and
 *	  webhook (deliver, signed).
 *
 * src/bin/hokusai/events.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_EVENTS_H
#define HOKUSAI_EVENTS_H

#include "parse.h"

extern void events(const CommandLine *cl);
extern void webhook(const CommandLine *cl);

#endif							/* HOKUSAI_EVENTS_H */
