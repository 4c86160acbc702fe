/*
 * Stand-ins for the server functions that forwarded.c and ip_check.c call
 * from their SQL-callable and GUC entry points.  The fuzz harnesses only
 * call the pure parsers, so reaching any of these is a harness bug.
 */
#include <stdlib.h>

char	   *GUC_check_errdetail_string;

#define STUB(name) void name(void); void name(void) { abort(); }
STUB(deconstruct_array)
STUB(format_elog_string)
STUB(get_typlenbyvalalign)
STUB(palloc0)
STUB(pg_detoast_datum_packed)
STUB(pre_format_elog_string)
