/*-------------------------------------------------------------------------
 *
 * partition.c
 *	  Which partition of a usage table (api_key_usage, _minutely, _hourly,
 *	  each partitioned by range of one timestamptz column) holds a time,
 *	  and every partition with its range: for the worker, which routes
 *	  events to partitions itself and must know, without an error, when a
 *	  late event's partition has been dropped; and for SQL
 *	  (_usage_partition(), _usage_partition_bounds()).
 *
 * Both read the parent's partition descriptor, as tuple routing does
 * (execPartition.c's get_partition_for_tuple()), leaving out partitions
 * being detached.  A default partition, which the extension never makes,
 * takes what no range holds.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "partitioning/partbounds.h"
#include "partitioning/partdesc.h"
#include "storage/lmgr.h"
#include "utils/partcache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "usage/partition.h"

PG_FUNCTION_INFO_V1(hk_sql_usage_partition);
PG_FUNCTION_INFO_V1(hk_sql_usage_partition_bounds);

/* parent's descriptor; an error unless it is partitioned by one timestamptz */
static PartitionDesc
usage_partdesc(Relation parent)
{
	PartitionKey key;

	if (parent->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a partitioned table", RelationGetRelationName(parent))));
	key = RelationGetPartitionKey(parent);
	if (key->strategy != PARTITION_STRATEGY_RANGE || key->partnatts != 1 ||
		key->parttypid[0] != TIMESTAMPTZOID)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not partitioned by a range of timestamptz",
						RelationGetRelationName(parent))));
	return RelationGetPartitionDesc(parent, true);
}

/* A range bound as a timestamptz (MINVALUE and MAXVALUE are infinities). */
static TimestampTz
bound_value(PartitionBoundInfo bi, int i)
{
	switch (bi->kind[i][0])
	{
		case PARTITION_RANGE_DATUM_MINVALUE:
			return DT_NOBEGIN;
		case PARTITION_RANGE_DATUM_MAXVALUE:
			return DT_NOEND;
		default:
			return DatumGetTimestampTz(bi->datums[i][0]);
	}
}

/* The partition of parent whose range holds t; InvalidOid when none. */
Oid
hk_usage_partition_for(Relation parent, TimestampTz t, TimestampTz *lo, TimestampTz *hi)
{
	PartitionDesc pd = usage_partdesc(parent);
	PartitionKey key = RelationGetPartitionKey(parent);
	PartitionBoundInfo bi = pd->boundinfo;
	Datum		value = TimestampTzGetDatum(t);
	bool		equal;
	int			offset;
	int			part = -1;

	if (lo != NULL)
	{
		*lo = DT_NOBEGIN;
		*hi = DT_NOEND;
	}
	if (pd->nparts == 0)
		return InvalidOid;
	if (bi->ndatums > 0)
	{
		offset = partition_range_datum_bsearch(key->partsupfunc, key->partcollation,
											   bi, 1, &value, &equal);
		/* the bound at offset is <= t: offset + 1 is the range's upper bound */
		part = bi->indexes[offset + 1];
		if (part >= 0 && lo != NULL)
		{
			*lo = bound_value(bi, offset);
			*hi = bound_value(bi, offset + 1);
		}
	}
	if (part < 0)
		part = bi->default_index;
	return part < 0 ? InvalidOid : pd->oids[part];
}

/* The end of parent's last range (DT_NOBEGIN: no partitions). */
TimestampTz
hk_usage_partitions_end(Relation parent)
{
	PartitionDesc pd = usage_partdesc(parent);
	PartitionBoundInfo bi = pd->boundinfo;

	if (pd->nparts == 0 || bi == NULL || bi->ndatums == 0)
		return DT_NOBEGIN;
	return bound_value(bi, bi->ndatums - 1);
}

/* Open a parent named by SQL, which must be one of the extension's tables. */
static Relation
open_parent(Oid relid)
{
	return relation_open(relid, AccessShareLock);
}

/*
 * hokusai_auth._usage_partition(parent regclass, at timestamptz)
 *		returns regclass
 */
Datum
hk_sql_usage_partition(PG_FUNCTION_ARGS)
{
	Relation	parent = open_parent(PG_GETARG_OID(0));
	Oid			part = hk_usage_partition_for(parent, PG_GETARG_TIMESTAMPTZ(1), NULL, NULL);

	relation_close(parent, AccessShareLock);
	if (!OidIsValid(part))
		PG_RETURN_NULL();
	PG_RETURN_OID(part);
}

/*
 * hokusai_auth._usage_partition_bounds(parent regclass, OUT partition
 *		regclass, OUT from_time timestamptz, OUT until_time timestamptz)
 *		returns setof record
 *
 * Every range partition, oldest first (a default partition is not listed).
 */
Datum
hk_sql_usage_partition_bounds(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Relation	parent;
	PartitionDesc pd;
	PartitionBoundInfo bi;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	parent = open_parent(PG_GETARG_OID(0));
	pd = usage_partdesc(parent);
	bi = pd->boundinfo;
	/* the range [datums[i], datums[i + 1]) is partition indexes[i + 1] */
	for (i = 0; bi != NULL && i + 1 < bi->ndatums; i++)
	{
		int			part = bi->indexes[i + 1];
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		if (part < 0)
			continue;
		values[0] = ObjectIdGetDatum(pd->oids[part]);
		values[1] = TimestampTzGetDatum(bound_value(bi, i));
		values[2] = TimestampTzGetDatum(bound_value(bi, i + 1));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	relation_close(parent, AccessShareLock);
	return (Datum) 0;
}
