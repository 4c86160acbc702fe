/*-------------------------------------------------------------------------
 *
 * row.h
 *	  The result row of validate_key(), built from a template (row.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_VALIDATE_ROW_H
#define HK_VALIDATE_ROW_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "fmgr.h"

#define HK_ROW_MAX_ATTS		16
#define HK_ROW_MAX_SHAPES	16

/*
 * One shape of row: which columns are NULL and the varlena values (by
 * pointer), the row as heap_form_tuple() made it, and where each
 * fixed-length column's value sits in it.
 */
typedef struct HkRowTemplate
{
	bool		ready;			/* the fields below describe a row */
	bool		usable;			/* offsets verified: patch copies of it */
	bool		nulls[HK_ROW_MAX_ATTS];
	Datum		varlenas[HK_ROW_MAX_ATTS];	/* varlena columns' Datums */
	int16		off[HK_ROW_MAX_ATTS];	/* fixed-length: offset in data */
	HeapTupleHeader data;		/* the row, in the template's context */
	uint32		len;
} HkRowTemplate;

/*
 * A function's result row type, its descriptor and its templates (one per
 * shape: the caller numbers them), as hk_row_type() keeps them.
 */
typedef struct HkRowType
{
	Oid			typid;			/* named composite; InvalidOid: per call site */
	uint64		identifier;		/* the type cache's tupDesc_identifier */
	TupleDesc	tupdesc;
	MemoryContext cxt;			/* where tupdesc and the templates live */
	HkRowTemplate rows[HK_ROW_MAX_SHAPES];
} HkRowType;

extern HkRowType *hk_row_type(FunctionCallInfo fcinfo, HkRowType *backend);
extern Datum hk_row_form(TupleDesc tupdesc, HkRowTemplate *tmpl,
						 MemoryContext tmpl_cxt, const Datum *values,
						 const bool *nulls);

#endif							/* HK_VALIDATE_ROW_H */
