/*-------------------------------------------------------------------------
 *
 * commands.h
 *	  The "hokusai auth" commands, run by name.
 *
 * src/bin/hokusai/commands.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_COMMANDS_H
#define HOKUSAI_COMMANDS_H

#include "parse.h"

extern int	run_auth_command(int argc, char **argv, const CommonOptions *common);

#endif							/* HOKUSAI_COMMANDS_H */
