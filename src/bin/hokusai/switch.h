/*-------------------------------------------------------------------------
 *
 * switch.h
 *	  The "hokusai auth" commands that switch a key off and on again:
 *	  disable-key, enable-key.
 *
 * src/bin/hokusai/switch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_SWITCH_H
#define HOKUSAI_SWITCH_H

#include "parse.h"

extern void disable_key(const CommandLine *cl);
extern void enable_key(const CommandLine *cl);

#endif							/* HOKUSAI_SWITCH_H */
