/*-------------------------------------------------------------------------
 *
 * call_scan.c
 *	  "Validation Call": a scan node for validate_key() called in FROM.
 *
 * SELECT valid FROM hokusai_auth.validate_key($1) is planned by PostgreSQL
 * as a Function Scan, which is built for set-returning functions.  At every
 * execution it copies the result type's descriptor, opens a tuplestore (a
 * 16 kB array of pointers, allocated and freed), copies the row into it,
 * compares the row's descriptor with the query's, and copies the row out
 * again.  For a function that returns one row, that costs more than
 * validating a key from the cache: callgrind_bench.sh counts about 5,100
 * instructions a call for the benchmarks' do-nothing function under a
 * Function Scan, against about 3,000 for validate_key's own work.
 *
 * Through set_rel_pathlist_hook, this file replaces that Function Scan with
 * a custom scan when
 *	- the FROM item is a single function call, without WITH ORDINALITY, and
 *	  its arguments hold no subquery;
 *	- the function returns one row (not SETOF) of hokusai_auth.validation,
 *	  the extension's own composite type (validate_key(), and the
 *	  benchmarks' do-nothing function, which has its signature);
 *	- the query reads the row's columns, not the whole row (a whole-row
 *	  reference is also how UPDATE ... FROM and FOR UPDATE carry the row
 *	  for a recheck, so this scan never runs under EvalPlanQual);
 *	- hokusai_auth.enable_call_scan is on (the default).
 * The scan sets the call up as a Function Scan does (EXECUTE checked, the
 * function looked up, its arguments' expressions), calls it itself, and
 * hands on the columns the query reads.  Its fcinfo->resultinfo is an
 * HkRowSink (validate/row.h): validate_key() (and the do-nothing function)
 * put their values there instead of forming a row, so no row is formed,
 * copied or taken apart; any other function's returned row is read with
 * heap_getattr().
 *
 * What the query sees is what a Function Scan gives:
 *	- the function is called once per scan.  A rescan (the inner side of a
 *	  nested loop) calls it again only if a parameter of its arguments
 *	  changed (a LATERAL reference); otherwise it hands on the same row, as
 *	  a Function Scan reads its tuplestore again;
 *	- a NULL result is a row of NULLs;
 *	- a row of another type than the plan's raises the same error.
 * The path's estimates are the Function Scan's, copied.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/dependency.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "commands/extension.h"
#include "executor/executor.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "optimizer/paths.h"
#include "optimizer/restrictinfo.h"
#include "parser/parsetree.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "hokusai_auth.h"
#include "validate/call_scan.h"
#include "validate/row.h"

#define CALL_SCAN_NAME	"Validation Call"

/* Pulls the columns (and, to refuse them, anything else) out of a tree. */
#define CALL_SCAN_PVC	(PVC_RECURSE_AGGREGATES | PVC_RECURSE_WINDOWFUNCS | \
						 PVC_INCLUDE_PLACEHOLDERS)

typedef struct CallScanState
{
	CustomScanState css;
	List	   *args;			/* ExprStates of its arguments but constants */
	int		   *argnos;			/* and their positions */
	bool		const_null;		/* a constant argument is NULL */
	FmgrInfo	flinfo;
	FunctionCallInfo fcinfo;	/* resultinfo is &sink */
	HkRowSink	sink;			/* the row, when the function hands it over */
	Bitmapset  *call_params;	/* PARAM_EXEC ids its arguments read */
	bool		params_known;	/* call_params collected (at the first rescan) */
	Oid			rowtype;
	TypeCacheEntry *tce;		/* rowtype's type cache entry (never freed) */
	uint64		tupdesc_id;		/* tce->tupDesc_identifier as checked */
	int			ncols;			/* scan tuple's columns */
	AttrNumber *attnos;			/* scan column i is row attribute attnos[i] */
	Oid		   *atttypes;		/* and has this type */
	bool		have_row;		/* this scan's call was made: */
	bool		row_in_sink;	/* its values are in sink, */
	Datum		row;			/* else this is its row */
	bool		row_isnull;
	bool		emitted;		/* handed on since the last (re)scan */
	bool		called;			/* a call was made in this execution */
	MemoryContext rowcxt;		/* rows of the second and later calls */
} CallScanState;

static set_rel_pathlist_hook_type prev_set_rel_pathlist = NULL;

static void call_scan_paths(PlannerInfo *root, RelOptInfo *rel, Index rti,
							RangeTblEntry *rte);
static Plan *call_plan(PlannerInfo *root, RelOptInfo *rel,
					   CustomPath *best_path, List *tlist, List *clauses,
					   List *custom_plans);
static Node *call_create_state(CustomScan *cscan);
static void call_begin(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *call_exec(CustomScanState *node);
static void call_end(CustomScanState *node);
static void call_rescan(CustomScanState *node);
static void call_explain(CustomScanState *node, List *ancestors,
						 ExplainState *es);

static const CustomPathMethods call_path_methods = {
	.CustomName = CALL_SCAN_NAME,
	.PlanCustomPath = call_plan,
};

static const CustomScanMethods call_scan_methods = {
	.CustomName = CALL_SCAN_NAME,
	.CreateCustomScanState = call_create_state,
};

static const CustomExecMethods call_exec_methods = {
	.CustomName = CALL_SCAN_NAME,
	.BeginCustomScan = call_begin,
	.ExecCustomScan = call_exec,
	.EndCustomScan = call_end,
	.ReScanCustomScan = call_rescan,
	.ExplainCustomScan = call_explain,
};

/* Module load (_PG_init): the plan node's name and the planner hook. */
void
hk_call_scan_init(void)
{
	RegisterCustomScanMethods(&call_scan_methods);
	prev_set_rel_pathlist = set_rel_pathlist_hook;
	set_rel_pathlist_hook = call_scan_paths;
}

/* ---------------------------------------------------------------- planner */

/* Is typid hokusai_auth.validation, the composite type of this extension? */
static bool
is_validation_type(Oid typid)
{
	HeapTuple	tup;
	bool		named;
	Oid			extoid;

	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	if (!HeapTupleIsValid(tup))
		return false;
	named = ((Form_pg_type) GETSTRUCT(tup))->typtype == TYPTYPE_COMPOSITE &&
		strcmp(NameStr(((Form_pg_type) GETSTRUCT(tup))->typname),
			   "validation") == 0;
	ReleaseSysCache(tup);
	if (!named)
		return false;
	extoid = get_extension_oid("hokusai_auth", true);
	return OidIsValid(extoid) &&
		getExtensionOfObject(TypeRelationId, typid) == extoid;
}

/*
 * Does node refer to rel's row only by its columns?  Other relations'
 * columns (in a parameterized path's join clauses) are the planner's to
 * turn into parameters; a whole-row or system column, or a placeholder,
 * keeps the Function Scan.
 */
static bool
columns_only(RelOptInfo *rel, Node *node)
{
	List	   *vars = pull_var_clause(node, CALL_SCAN_PVC);
	ListCell   *lc;
	bool		ok = true;

	foreach(lc, vars)
	{
		Var		   *var = (Var *) lfirst(lc);

		if (!IsA(var, Var) ||
			((Index) var->varno == rel->relid && var->varattno <= 0))
		{
			ok = false;
			break;
		}
	}
	list_free(vars);
	return ok;
}

/* columns_only() for each clause of a list of RestrictInfos. */
static bool
clauses_columns_only(RelOptInfo *rel, List *rinfos)
{
	ListCell   *lc;

	foreach(lc, rinfos)
		if (!columns_only(rel, (Node *) lfirst_node(RestrictInfo, lc)->clause))
			return false;
	return true;
}

/*
 * set_rel_pathlist_hook: a call of a function returning one
 * hokusai_auth.validation row, alone in its FROM item, is scanned by a
 * Validation Call instead of a Function Scan.
 */
static void
call_scan_paths(PlannerInfo *root, RelOptInfo *rel, Index rti,
				RangeTblEntry *rte)
{
	RangeTblFunction *rtfunc;
	FuncExpr   *fexpr;
	Path	   *fscan;
	CustomPath *cpath;

	if (prev_set_rel_pathlist)
		prev_set_rel_pathlist(root, rel, rti, rte);

	if (!hk_enable_call_scan || rte->rtekind != RTE_FUNCTION ||
		rel->reloptkind != RELOPT_BASEREL || rte->funcordinality ||
		list_length(rte->functions) != 1 || list_length(rel->pathlist) != 1)
		return;
	fscan = (Path *) linitial(rel->pathlist);
	if (fscan->pathtype != T_FunctionScan || rel->partial_pathlist != NIL)
		return;
	rtfunc = linitial_node(RangeTblFunction, rte->functions);
	if (!IsA(rtfunc->funcexpr, FuncExpr))
		return;
	fexpr = (FuncExpr *) rtfunc->funcexpr;
	if (fexpr->funcretset || contain_subplans((Node *) fexpr) ||
		!is_validation_type(fexpr->funcresulttype))
		return;

	/* The columns read above the scan and by its own clauses. */
	if (!columns_only(rel, (Node *) rel->reltarget->exprs) ||
		!clauses_columns_only(rel, rel->baserestrictinfo) ||
		(fscan->param_info &&
		 !clauses_columns_only(rel, fscan->param_info->ppi_clauses)))
		return;

	cpath = makeNode(CustomPath);
	cpath->path.pathtype = T_CustomScan;
	cpath->path.parent = rel;
	cpath->path.pathtarget = fscan->pathtarget;
	cpath->path.param_info = fscan->param_info;
	cpath->path.parallel_aware = false;
	cpath->path.parallel_safe = fscan->parallel_safe;
	cpath->path.parallel_workers = 0;
	cpath->path.rows = fscan->rows;
	cpath->path.startup_cost = fscan->startup_cost;
	cpath->path.total_cost = fscan->total_cost;
	cpath->path.pathkeys = fscan->pathkeys;
	cpath->flags = CUSTOMPATH_SUPPORT_PROJECTION;
	cpath->custom_paths = NIL;
	cpath->custom_private = NIL;
	cpath->methods = &call_path_methods;

	/* The only way to scan it: the Function Scan goes. */
	rel->pathlist = list_make1(cpath);
}

/*
 * The scan tuple: each of rel's columns that is read above the scan or by
 * its clauses, once, those read above first.  (tlist is not enough: the
 * planner may plan the scan without one and project later.)
 */
static List *
call_scan_tlist(RelOptInfo *rel, List *quals)
{
	List	   *vars;
	List	   *tlist = NIL;
	Bitmapset  *seen = NULL;
	ListCell   *lc;

	vars = list_concat(pull_var_clause((Node *) rel->reltarget->exprs,
									   CALL_SCAN_PVC),
					   pull_var_clause((Node *) quals, CALL_SCAN_PVC));
	foreach(lc, vars)
	{
		Var		   *var = lfirst_node(Var, lc);

		if ((Index) var->varno != rel->relid || bms_is_member(var->varattno, seen))
			continue;
		seen = bms_add_member(seen, var->varattno);
		tlist = lappend(tlist, makeTargetEntry((Expr *) copyObject(var),
											   list_length(tlist) + 1,
											   NULL, false));
	}
	return tlist;
}

/* PlanCustomPath: the CustomScan; no relation is scanned (scanrelid 0). */
static Plan *
call_plan(PlannerInfo *root, RelOptInfo *rel, CustomPath *best_path,
		  List *tlist, List *clauses, List *custom_plans)
{
	RangeTblEntry *rte = planner_rt_fetch(rel->relid, root);
	RangeTblFunction *rtfunc = linitial_node(RangeTblFunction, rte->functions);
	CustomScan *cscan = makeNode(CustomScan);
	List	   *quals = extract_actual_clauses(clauses, false);

	cscan->scan.plan.targetlist = tlist;
	cscan->scan.plan.qual = quals;
	cscan->scan.scanrelid = 0;
	cscan->flags = best_path->flags;
	cscan->custom_plans = NIL;
	cscan->custom_exprs = list_make1(copyObject(rtfunc->funcexpr));
	cscan->custom_private = NIL;
	cscan->custom_scan_tlist = call_scan_tlist(rel, quals);
	cscan->methods = &call_scan_methods;
	return &cscan->scan.plan;
}

/* --------------------------------------------------------------- executor */

static Node *
call_create_state(CustomScan *cscan)
{
	CallScanState *cs = palloc0(sizeof(CallScanState));

	NodeSetTag(cs, T_CustomScanState);
	cs->css.methods = &call_exec_methods;
	NodeSetTag(&cs->sink, T_ExtensibleNode);
	cs->sink.node.extnodename = "hokusai_auth row sink";
	cs->sink.magic = HK_ROW_SINK_MAGIC;
	return (Node *) cs;
}

/* Collects the PARAM_EXEC parameters an expression reads. */
static bool
collect_params(Node *node, Bitmapset **params)
{
	if (node == NULL)
		return false;
	if (IsA(node, Param) && ((Param *) node)->paramkind == PARAM_EXEC)
		*params = bms_add_member(*params, ((Param *) node)->paramid);
	return expression_tree_walker(node, collect_params, (void *) params);
}

/*
 * Are the scan's columns in desc, with the types the plan gave them?
 * Raises if not: the type changed since the query was planned.
 */
static void
check_columns(CallScanState *cs, TupleDesc desc)
{
	int			i;

	for (i = 0; i < cs->ncols; i++)
	{
		AttrNumber	attno = cs->attnos[i];
		Form_pg_attribute att;

		if (attno > desc->natts ||
			(att = TupleDescAttr(desc, attno - 1))->attisdropped ||
			att->atttypid != cs->atttypes[i])
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("function return row and query-specified return row do not match"),
					 errdetail("Type %s has changed since the query was planned.",
							   format_type_be(cs->rowtype))));
	}
}

/*
 * Load the row type's descriptor into the type cache and check the scan's
 * columns against it.
 */
static void
load_row_desc(CallScanState *cs)
{
	cs->tce = lookup_type_cache(cs->rowtype, TYPECACHE_TUPDESC);
	if (cs->tce->tupDesc == NULL)
		elog(ERROR, "type %s is not composite", format_type_be(cs->rowtype));
	check_columns(cs, cs->tce->tupDesc);
	cs->tupdesc_id = cs->tce->tupDesc_identifier;
}

/*
 * The row type's descriptor, as the type cache has it, without a pin: the
 * type cache clears tupDesc_identifier when it lets a descriptor go (the
 * type was altered, or every cache was reset), so an unchanged identifier
 * means the same live descriptor that load_row_desc() checked.  (Its
 * entries themselves are never freed.)
 */
static inline TupleDesc
row_desc(CallScanState *cs)
{
	if (unlikely(cs->tce->tupDesc_identifier != cs->tupdesc_id ||
				 cs->tce->tupDesc == NULL))
		load_row_desc(cs);
	return cs->tce->tupDesc;
}

static void
call_begin(CustomScanState *node, EState *estate, int eflags)
{
	CallScanState *cs = (CallScanState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	FuncExpr   *fexpr = linitial_node(FuncExpr, cscan->custom_exprs);
	int			nargs = list_length(fexpr->args);
	AclResult	aclresult;
	ListCell   *lc;

	/*
	 * The call, set up as a Function Scan sets up its own (execSRF.c): the
	 * EXECUTE privilege, the function, its arguments.  The scan calls it
	 * itself so that its resultinfo can be the sink.
	 */
	aclresult = pg_proc_aclcheck(fexpr->funcid, GetUserId(), ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(fexpr->funcid));
	InvokeFunctionExecuteHook(fexpr->funcid);
	if (nargs > FUNC_MAX_ARGS)
		elog(ERROR, "too many arguments");
	fmgr_info(fexpr->funcid, &cs->flinfo);
	fmgr_info_set_expr((Node *) fexpr, &cs->flinfo);
	cs->fcinfo = palloc0(SizeForFunctionCallInfo(nargs));
	InitFunctionCallInfoData(*cs->fcinfo, &cs->flinfo, nargs,
							 fexpr->inputcollid, NULL, (Node *) &cs->sink);
	/* Constants (validate_key's defaults) are set once, here. */
	cs->argnos = palloc(sizeof(int) * Max(nargs, 1));
	foreach(lc, fexpr->args)
	{
		Expr	   *arg = (Expr *) lfirst(lc);
		int			argno = foreach_current_index(lc);

		if (IsA(arg, Const))
		{
			cs->fcinfo->args[argno].value = ((Const *) arg)->constvalue;
			cs->fcinfo->args[argno].isnull = ((Const *) arg)->constisnull;
			cs->const_null |= ((Const *) arg)->constisnull;
		}
		else
		{
			cs->argnos[list_length(cs->args)] = argno;
			cs->args = lappend(cs->args, ExecInitExpr(arg, &node->ss.ps));
		}
	}
	cs->rowtype = fexpr->funcresulttype;

	/* Scan column -> row attribute and type, checked by row_desc(). */
	cs->ncols = list_length(cscan->custom_scan_tlist);
	cs->attnos = palloc(sizeof(AttrNumber) * Max(cs->ncols, 1));
	cs->atttypes = palloc(sizeof(Oid) * Max(cs->ncols, 1));
	foreach(lc, cscan->custom_scan_tlist)
	{
		Var		   *var = castNode(Var, lfirst_node(TargetEntry, lc)->expr);

		Assert(var->varattno > 0);
		cs->attnos[foreach_current_index(lc)] = var->varattno;
		cs->atttypes[foreach_current_index(lc)] = var->vartype;
	}
	load_row_desc(cs);
}

/*
 * Were the values in the sink laid out by the descriptor the scan checked?
 * The function's descriptor (row.c) and the scan's come from the type
 * cache; when their identifiers differ (the cache was reset in between),
 * the scan's columns are compared with the function's descriptor.
 */
static void
check_sink(CallScanState *cs)
{
	(void) row_desc(cs);
	if (cs->sink.identifier != cs->tupdesc_id)
		check_columns(cs, cs->sink.tupdesc);
}

/*
 * Call the function.  Its row (or the values it handed over in the sink)
 * lives until the next call.  The first call of an execution allocates in
 * the query's context, as a Function Scan's tuplestore does; later calls
 * (a LATERAL argument that changed) reuse a context of their own.
 */
static void
call_function(CallScanState *cs)
{
	ExprContext *econtext = cs->css.ss.ps.ps_ExprContext;
	FunctionCallInfo fcinfo = cs->fcinfo;
	MemoryContext cxt;
	MemoryContext old;
	Datum		result = (Datum) 0;
	bool		isnull = true;
	bool		any_null = cs->const_null;
	ListCell   *lc;
	int			i = 0;

	if (!cs->called)
		cxt = cs->css.ss.ps.state->es_query_cxt;
	else
	{
		if (cs->rowcxt == NULL)
			cs->rowcxt = AllocSetContextCreate(cs->css.ss.ps.state->es_query_cxt,
											   "hokusai_auth validation call",
											   ALLOCSET_SMALL_SIZES);
		else
			MemoryContextReset(cs->rowcxt);
		cxt = cs->rowcxt;
	}
	cs->have_row = false;
	cs->sink.filled = false;

	old = MemoryContextSwitchTo(cxt);
	foreach(lc, cs->args)
	{
		NullableDatum *arg = &fcinfo->args[cs->argnos[i++]];

		arg->value = ExecEvalExpr((ExprState *) lfirst(lc), econtext, &arg->isnull);
		any_null |= arg->isnull;
	}
	/* A strict function is not called with a NULL argument: a NULL row. */
	if (!(cs->flinfo.fn_strict && any_null))
	{
		fcinfo->isnull = false;
		if (pgstat_track_functions <= cs->flinfo.fn_stats)
			result = FunctionCallInvoke(fcinfo);
		else
		{
			PgStat_FunctionCallUsage fcusage;

			pgstat_init_function_usage(fcinfo, &fcusage);
			result = FunctionCallInvoke(fcinfo);
			pgstat_end_function_usage(&fcusage, true);
		}
		isnull = fcinfo->isnull;
	}
	if (cs->sink.filled)
		check_sink(cs);
	else if (!isnull)
	{
		HeapTupleHeader td = DatumGetHeapTupleHeader(result);

		if (HeapTupleHeaderGetTypeId(td) != cs->rowtype)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("function return row and query-specified return row do not match"),
					 errdetail("Returned type %s, expected %s.",
							   format_type_be(HeapTupleHeaderGetTypeId(td)),
							   format_type_be(cs->rowtype))));
		result = PointerGetDatum(td);
	}
	MemoryContextSwitchTo(old);

	cs->row_in_sink = cs->sink.filled;
	cs->row = result;
	cs->row_isnull = isnull;
	cs->have_row = true;
	cs->called = true;
}

/* ExecScan's access method: the row once per (re)scan, then nothing. */
static TupleTableSlot *
call_next(ScanState *ss)
{
	CallScanState *cs = (CallScanState *) ss;
	TupleTableSlot *slot = ss->ss_ScanTupleSlot;
	int			i;

	ExecClearTuple(slot);
	if (cs->emitted)
		return slot;
	if (!cs->have_row)
		call_function(cs);
	cs->emitted = true;

	if (cs->row_in_sink)
	{
		for (i = 0; i < cs->ncols; i++)
		{
			slot->tts_values[i] = cs->sink.values[cs->attnos[i] - 1];
			slot->tts_isnull[i] = cs->sink.nulls[cs->attnos[i] - 1];
		}
	}
	else if (cs->row_isnull)
		memset(slot->tts_isnull, true, sizeof(bool) * cs->ncols);
	else
	{
		TupleDesc	desc = row_desc(cs);
		HeapTupleData tuple;

		tuple.t_data = (HeapTupleHeader) DatumGetPointer(cs->row);
		tuple.t_len = HeapTupleHeaderGetDatumLength(tuple.t_data);
		ItemPointerSetInvalid(&tuple.t_self);
		tuple.t_tableOid = InvalidOid;
		for (i = 0; i < cs->ncols; i++)
			slot->tts_values[i] = heap_getattr(&tuple, cs->attnos[i], desc,
											   &slot->tts_isnull[i]);
	}
	return ExecStoreVirtualTuple(slot);
}

/* No relation, never under EvalPlanQual (see the file's header). */
static bool
call_recheck(ScanState *ss, TupleTableSlot *slot)
{
	return true;
}

static TupleTableSlot *
call_exec(CustomScanState *node)
{
	return ExecScan(&node->ss, call_next, call_recheck);
}

static void
call_rescan(CustomScanState *node)
{
	CallScanState *cs = (CallScanState *) node;

	/* The arguments' parameters, once: most scans are never rescanned. */
	if (!cs->params_known)
	{
		CustomScan *cscan = (CustomScan *) node->ss.ps.plan;

		(void) collect_params(linitial(cscan->custom_exprs), &cs->call_params);
		cs->params_known = true;
	}
	if (bms_overlap(node->ss.ps.chgParam, cs->call_params))
		cs->have_row = false;
	cs->emitted = false;
	ExecScanReScan(&node->ss);
}

static void
call_end(CustomScanState *node)
{
	CallScanState *cs = (CallScanState *) node;

	if (cs->rowcxt != NULL)
		MemoryContextDelete(cs->rowcxt);
	cs->rowcxt = NULL;
}

/*
 * EXPLAIN: the call.  A Function Scan shows it under VERBOSE only; its
 * header names the function, this node's does not, so it is always shown.
 */
static void
call_explain(CustomScanState *node, List *ancestors, ExplainState *es)
{
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	List	   *context;

	context = set_deparse_context_plan(es->deparse_cxt, &cscan->scan.plan,
									   ancestors);
	ExplainPropertyText("Function Call",
						deparse_expression(linitial(cscan->custom_exprs),
										   context, es->verbose, false),
						es);
}
