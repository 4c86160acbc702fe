/*-------------------------------------------------------------------------
 *
 * metering.h
 *	  The "hokusai auth" commands and options of metering: credits and
 *	  refills, add-credits, set-user-limits.
 *
 * src/bin/hokusai/metering.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_METERING_H
#define HOKUSAI_METERING_H

#include "parse.h"

/* A --refill N/day|week|month, split: amount and interval (NULLs without). */
typedef struct RefillParam
{
	char	   *amount;
	const char *interval;
} RefillParam;

extern const char *credits_param(const CommandLine *cl, bool allow_negative);
extern RefillParam refill_param(const CommandLine *cl);
extern void add_credits(const CommandLine *cl);
extern void set_user_limits(const CommandLine *cl);

#endif							/* HOKUSAI_METERING_H */
