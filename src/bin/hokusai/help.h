/*-------------------------------------------------------------------------
 *
 * help.h
 *	  The --help texts of the hokusai tool.
 *
 * src/bin/hokusai/help.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_HELP_H
#define HOKUSAI_HELP_H

#include <stdbool.h>

extern void print_main_help(void);
extern void print_auth_help(void);
extern bool print_command_help(const char *command);

#endif							/* HOKUSAI_HELP_H */
