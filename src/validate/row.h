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
#include "nodes/extensible.h"

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

/*
 * A scan that calls the function itself (validate/call_scan.c) passes one
 * of these as fcinfo->resultinfo; hk_row_return() then hands the row's
 * values over in it instead of forming the row, and the scan reads them
 * from there.  By-reference values of fixed length (the UUIDs) are copied
 * into fixed[]; varlena values must outlive the call, as a returned row's
 * would (they are static or allocated in the caller's context).
 */
#define HK_ROW_SINK_MAGIC	0x484b524f	/* "HKRO" */
#define HK_ROW_SINK_FIXED	16			/* longest by-reference copy */

typedef struct HkRowSink
{
	ExtensibleNode node;		/* T_ExtensibleNode, so IsA() tells it apart */
	uint32		magic;			/* HK_ROW_SINK_MAGIC */
	bool		filled;			/* the function handed its row over */
	uint64		identifier;		/* the type cache's tupDesc_identifier */
	TupleDesc	tupdesc;		/* the function's descriptor (row.c) */
	int			natts;
	Datum		values[HK_ROW_MAX_ATTS];
	bool		nulls[HK_ROW_MAX_ATTS];
	char		fixed[HK_ROW_MAX_ATTS][HK_ROW_SINK_FIXED];
} HkRowSink;

extern HkRowType *hk_row_type(FunctionCallInfo fcinfo, HkRowType *backend);
extern Datum hk_row_return(FunctionCallInfo fcinfo, HkRowType *rt,
						   HkRowTemplate *tmpl, const Datum *values,
						   const bool *nulls);
extern Datum hk_row_form(TupleDesc tupdesc, HkRowTemplate *tmpl,
						 MemoryContext tmpl_cxt, const Datum *values,
						 const bool *nulls);

#endif							/* HK_VALIDATE_ROW_H */
