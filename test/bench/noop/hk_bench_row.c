/*
 * hk_bench_row.c
 *	  validate_key's row builder (src/validate/row.c), compiled into the
 *	  benchmarks' do-nothing function so that it builds its row the same way.
 */
#include "validate/row.c"
