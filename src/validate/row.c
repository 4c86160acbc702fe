/*-------------------------------------------------------------------------
 *
 * row.c
 *	  validate_key()'s result row, built from a template.
 *
 * heap_form_tuple() works out, on every call, the size, the alignment
 * and the null bitmap of every column: for validate_key()'s nine columns
 * that is more work than a cache lookup.  But a status's rows all have the
 * same shape: the same NULL columns, the same status text, fixed-length
 * values in the same places.  So the first row of a shape is made by
 * heap_form_tuple() and kept as a template, with the offset of each
 * fixed-length column's value in it; the next rows of that shape are a
 * copy of the template with those values written in.
 *
 * The offsets are read off the template the way heap_deform_tuple() walks
 * a row, then checked against PostgreSQL's own reading of it (heap_getattr()
 * gives the address of each by-reference value and each by-value one's
 * value), and the template's last column must end where the row does.  A
 * template that fails a check is not used: that shape's rows are made by
 * heap_form_tuple() as before.
 *
 * The caller passes its varlena values as Datums that stay the same for
 * the same text (the status texts made once per backend): a varlena Datum
 * that differs from the template's makes a new template.
 *
 * Where descriptor and templates are kept (hk_row_type()).  pgbench -M
 * prepared, like any client's statement, starts a new call site (a new
 * fn_extra) on every execution: what is kept per call site is made again
 * per statement.  So for a function declared to return a named composite
 * type (validate_key() since 1.6) they are kept per backend, in the
 * caller's static HkRowType, with the type cache's identifier of the
 * type's descriptor: when the type changes, so does the identifier, and
 * everything kept is made again.  A call site remembers the HkRowType it
 * checked, so that its next calls skip the type cache.  Any other result
 * type (1.5's OUT parameters: a record) is kept per call site as before.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/tupmacs.h"
#include "funcapi.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "validate/row.h"

/* Forget the descriptor and the templates of *rt. */
static void
forget_type(HkRowType *rt)
{
	int			i;

	for (i = 0; i < HK_ROW_MAX_SHAPES; i++)
		if (rt->rows[i].data != NULL)
			pfree(rt->rows[i].data);
	if (rt->tupdesc != NULL)
		FreeTupleDesc(rt->tupdesc);
	memset(rt, 0, sizeof(*rt));
}

/*
 * The result row type of fcinfo's function: *backend (the caller's static
 * HkRowType) for a named composite type, made again when the type changed;
 * else one kept in the call site's fn_extra.  Either way fn_extra points
 * to it after the first call.
 */
HkRowType *
hk_row_type(FunctionCallInfo fcinfo, HkRowType *backend)
{
	FmgrInfo   *flinfo = fcinfo->flinfo;
	HkRowType  *rt = (HkRowType *) flinfo->fn_extra;
	Oid			typid;
	MemoryContext old;

	if (rt != NULL)
		return rt;

	typid = get_fn_expr_rettype(flinfo);
	if (OidIsValid(typid) && typid != RECORDOID)
	{
		TypeCacheEntry *tce = lookup_type_cache(typid, TYPECACHE_TUPDESC);

		if (tce->tupDesc == NULL)
			elog(ERROR, "return type must be a row type");
		if (backend->typid != typid || backend->identifier != tce->tupDesc_identifier)
		{
			forget_type(backend);
			backend->cxt = TopMemoryContext;
			old = MemoryContextSwitchTo(TopMemoryContext);
			backend->tupdesc = CreateTupleDescCopy(tce->tupDesc);
			MemoryContextSwitchTo(old);
			backend->tupdesc->tdtypeid = typid;
			backend->tupdesc->tdtypmod = -1;
			backend->identifier = tce->tupDesc_identifier;
			backend->typid = typid;
		}
		flinfo->fn_extra = backend;
		return backend;
	}

	old = MemoryContextSwitchTo(flinfo->fn_mcxt);
	{
		TupleDesc	tupdesc;

		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		rt = palloc0(sizeof(HkRowType));
		rt->tupdesc = BlessTupleDesc(CreateTupleDescCopy(tupdesc));
		rt->cxt = flinfo->fn_mcxt;
	}
	MemoryContextSwitchTo(old);
	flinfo->fn_extra = rt;
	return rt;
}

/* Does this call's row have the template's shape? */
static bool
same_shape(TupleDesc tupdesc, const HkRowTemplate *tmpl, const Datum *values,
		   const bool *nulls)
{
	int			i;

	if (!tmpl->ready || memcmp(tmpl->nulls, nulls, tupdesc->natts * sizeof(bool)) != 0)
		return false;
	for (i = 0; i < tupdesc->natts; i++)
		if (!nulls[i] && TupleDescAttr(tupdesc, i)->attlen == -1 &&
			values[i] != tmpl->varlenas[i])
			return false;
	return true;
}

/*
 * Find each fixed-length column's offset in the template's data and check
 * it against heap_getattr().  Returns false when anything does not agree.
 */
static bool
find_offsets(TupleDesc tupdesc, HkRowTemplate *tmpl, HeapTuple tuple,
			 const Datum *values)
{
	char	   *tp = (char *) tuple->t_data + tuple->t_data->t_hoff;
	uint32		datalen = tuple->t_len - tuple->t_data->t_hoff;
	uint32		off = 0;
	int			i;

	if (HeapTupleHasExternal(tuple))
		return false;
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		Datum		got;
		bool		isnull;

		tmpl->off[i] = -1;
		if (tmpl->nulls[i])
			continue;
		if (att->attlen == -1)
			off = att_align_pointer(off, att->attalign, -1, tp + off);
		else if (att->attlen > 0)
			off = att_align_nominal(off, att->attalign);
		else
			return false;		/* cstring: not in our rows */
		got = heap_getattr(tuple, i + 1, tupdesc, &isnull);
		if (isnull)
			return false;
		if (att->attlen > 0)
		{
			if (att->attbyval ? got != values[i] :
				DatumGetPointer(got) != tp + off)
				return false;
			if (off > PG_INT16_MAX)
				return false;
			tmpl->off[i] = (int16) off;
		}
		else if (DatumGetPointer(got) != tp + off)
			return false;
		off = att_addlength_pointer(off, att->attlen, tp + off);
	}
	return off == datalen;
}

/* Make *tmpl the template of this call's shape, from its row. */
static void
make_template(TupleDesc tupdesc, HkRowTemplate *tmpl, MemoryContext cxt,
			  HeapTuple tuple, const Datum *values, const bool *nulls)
{
	if (tmpl->data != NULL)
		pfree(tmpl->data);
	memset(tmpl, 0, sizeof(*tmpl));
	memcpy(tmpl->nulls, nulls, tupdesc->natts * sizeof(bool));
	memcpy(tmpl->varlenas, values, tupdesc->natts * sizeof(Datum));
	tmpl->len = tuple->t_len;
	tmpl->data = MemoryContextAlloc(cxt, tuple->t_len);
	memcpy(tmpl->data, tuple->t_data, tuple->t_len);
	tmpl->usable = find_offsets(tupdesc, tmpl, tuple, values);
	tmpl->ready = true;
}

/*
 * The row (a composite Datum, allocated in the current memory context) of
 * values/nulls, for tupdesc (blessed; at most HK_ROW_MAX_ATTS columns),
 * using and keeping *tmpl, whose memory is in tmpl_cxt.
 */
Datum
hk_row_form(TupleDesc tupdesc, HkRowTemplate *tmpl, MemoryContext tmpl_cxt,
			const Datum *values, const bool *nulls)
{
	HeapTupleHeader td;
	char	   *tp;
	int			i;

	if (tupdesc->natts > HK_ROW_MAX_ATTS)
		return HeapTupleGetDatum(heap_form_tuple(tupdesc, (Datum *) values,
												 (bool *) nulls));
	if (!same_shape(tupdesc, tmpl, values, nulls))
	{
		HeapTuple	tuple = heap_form_tuple(tupdesc, (Datum *) values, (bool *) nulls);

		make_template(tupdesc, tmpl, tmpl_cxt, tuple, values, nulls);
		return HeapTupleGetDatum(tuple);
	}
	if (!tmpl->usable)
		return HeapTupleGetDatum(heap_form_tuple(tupdesc, (Datum *) values,
												 (bool *) nulls));

	td = palloc(tmpl->len);
	memcpy(td, tmpl->data, tmpl->len);
	tp = (char *) td + td->t_hoff;
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att;

		if (tmpl->off[i] < 0)
			continue;
		att = TupleDescAttr(tupdesc, i);
		if (att->attbyval)
			store_att_byval(tp + tmpl->off[i], values[i], att->attlen);
		else
			memcpy(tp + tmpl->off[i], DatumGetPointer(values[i]), att->attlen);
	}
	/* No external values (checked when the template was made). */
	return PointerGetDatum(td);
}

/*
 * Return the row of values/nulls from fcinfo's function: into the caller's
 * HkRowSink when it passed one (validate/call_scan.c) and the row fits it,
 * else formed from *tmpl as hk_row_form() does.  rt is the function's
 * hk_row_type().
 */
Datum
hk_row_return(FunctionCallInfo fcinfo, HkRowType *rt, HkRowTemplate *tmpl,
			  const Datum *values, const bool *nulls)
{
	HkRowSink  *sink = (HkRowSink *) fcinfo->resultinfo;
	TupleDesc	tupdesc = rt->tupdesc;
	int			i;

	if (sink == NULL || !IsA(sink, ExtensibleNode) ||
		sink->magic != HK_ROW_SINK_MAGIC || !OidIsValid(rt->typid) ||
		tupdesc->natts > HK_ROW_MAX_ATTS)
		return hk_row_form(tupdesc, tmpl, rt->cxt, values, nulls);

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		sink->nulls[i] = nulls[i];
		sink->values[i] = values[i];
		if (nulls[i] || att->attbyval || att->attlen == -1)
			continue;
		if (att->attlen < 0 || att->attlen > HK_ROW_SINK_FIXED)
			return hk_row_form(tupdesc, tmpl, rt->cxt, values, nulls);
		memcpy(sink->fixed[i], DatumGetPointer(values[i]), att->attlen);
		sink->values[i] = PointerGetDatum(sink->fixed[i]);
	}
	sink->natts = tupdesc->natts;
	sink->identifier = rt->identifier;
	sink->tupdesc = tupdesc;
	sink->filled = true;
	return (Datum) 0;
}
