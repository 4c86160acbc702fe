
------------------------------------------------------------------------------
-- sql/install/usage.sql: usage analytics.  The request path queues events
-- in shared memory (record_usage(), track_request(): src/usage/); the
-- background worker counts every event in per-minute and per-hour
-- aggregates (api_key_usage_minutely, api_key_usage_hourly) and writes the
-- share hokusai_auth.usage_raw_sample keeps as raw rows (api_key_usage,
-- schema.sql), all in one transaction per batch (src/worker/flush.c, or
-- _usage_flush() here).  The three tables are partitioned by time: one
-- partition per UTC day (raw, minutes) or month (hours), made ahead by the
-- worker (create_usage_partitions()) and dropped by prune_usage().  The
-- worker keeps per-day aggregates too (api_key_usage_daily, one partition
-- a year).  The summaries, time series and views read the aggregates only.
------------------------------------------------------------------------------

-- Per key, UTC minute, endpoint and status code: requests, those with a
-- response time, their sum and maximum, and their histogram (pairs of
-- bucket and count, see _hist_percentile()).  Errors are the requests of
-- status 400 and above.
CREATE TABLE hokusai_auth.api_key_usage_minutely (
	api_key_id			uuid NOT NULL,
	minute				timestamptz NOT NULL,
	endpoint			text,
	status_code			integer,
	requests			bigint NOT NULL,
	timed_requests		bigint NOT NULL,
	response_ms_sum		bigint NOT NULL,
	max_response_ms		integer,
	latency_hist		bigint[]
) PARTITION BY RANGE (minute);
COMMENT ON TABLE hokusai_auth.api_key_usage_minutely IS
	'Requests per key, UTC minute, endpoint and status code, with a response-time histogram (every request counted)';

-- The same per UTC hour; partitioned by month.
CREATE TABLE hokusai_auth.api_key_usage_hourly (
	api_key_id			uuid NOT NULL,
	hour				timestamptz NOT NULL,
	endpoint			text,
	status_code			integer,
	requests			bigint NOT NULL,
	timed_requests		bigint NOT NULL,
	response_ms_sum		bigint NOT NULL,
	max_response_ms		integer,
	latency_hist		bigint[]
) PARTITION BY RANGE (hour);
COMMENT ON TABLE hokusai_auth.api_key_usage_hourly IS
	'Requests per key, UTC hour, endpoint and status code, with a response-time histogram (every request counted)';

-- The same per UTC day; partitioned by year.  Summaries read it for the
-- whole days of a range.
CREATE TABLE hokusai_auth.api_key_usage_daily (
	api_key_id			uuid NOT NULL,
	day					timestamptz NOT NULL,
	endpoint			text,
	status_code			integer,
	requests			bigint NOT NULL,
	timed_requests		bigint NOT NULL,
	response_ms_sum		bigint NOT NULL,
	max_response_ms		integer,
	latency_hist		bigint[]
) PARTITION BY RANGE (day);
COMMENT ON TABLE hokusai_auth.api_key_usage_daily IS
	'Requests per key, UTC day, endpoint and status code, with a response-time histogram (every request counted)';

-- One group of any of the three, as the worker hands them over.
CREATE TYPE hokusai_auth._usage_group AS (
	t					timestamptz,
	api_key_id			uuid,
	endpoint			text,
	status_code			integer,
	requests			bigint,
	timed_requests		bigint,
	response_ms_sum		bigint,
	max_response_ms		integer,
	latency_hist		bigint[]
);

------------------------------------------------------------------------------
-- Response-time histograms (src/usage/histogram.c).  Bucket b holds the
-- response times v with: v = b below 32 ms; above, 16 buckets per power of
-- two, each 1/16 of its lower bound wide at most.  A histogram is a
-- bigint[] of (bucket, count) pairs, buckets ascending, empty buckets left
-- out; NULL when no request had a response time.
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth._hist_merge(a bigint[], b bigint[])
	RETURNS bigint[]
	AS 'MODULE_PATHNAME', 'hk_sql_hist_merge'
	LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION hokusai_auth._hist_sum_step(state internal, h bigint[])
	RETURNS internal
	AS 'MODULE_PATHNAME', 'hk_sql_hist_sum_step'
	LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION hokusai_auth._hist_of_step(state internal, response_time_ms integer)
	RETURNS internal
	AS 'MODULE_PATHNAME', 'hk_sql_hist_of_step'
	LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION hokusai_auth._hist_final(state internal)
	RETURNS bigint[]
	AS 'MODULE_PATHNAME', 'hk_sql_hist_final'
	LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- The sum of histograms.
CREATE AGGREGATE hokusai_auth._hist_sum(bigint[]) (
	SFUNC = hokusai_auth._hist_sum_step,
	STYPE = internal,
	FINALFUNC = hokusai_auth._hist_final
);

-- The histogram of response times (NULLs left out).
CREATE AGGREGATE hokusai_auth._hist_of(integer) (
	SFUNC = hokusai_auth._hist_of_step,
	STYPE = internal,
	FINALFUNC = hokusai_auth._hist_final
);

-- The p-quantile of a histogram: interpolated inside the bucket that holds
-- the nearest-rank value, never above the largest value seen.  Exact below
-- 32 ms, less than 1/16 (6.25%) off above.
CREATE FUNCTION hokusai_auth._hist_percentile(h bigint[], p double precision, max_ms integer)
	RETURNS numeric
	AS 'MODULE_PATHNAME', 'hk_sql_hist_percentile'
	LANGUAGE C IMMUTABLE PARALLEL SAFE;

------------------------------------------------------------------------------
-- Partitions.  Made only at run time, never by the install script: pg_dump
-- dumps them (they are not members of the extension) with their rows, and
-- a restore re-creates and attaches them after CREATE EXTENSION made the
-- parents.  Made ahead by the worker every hour (create_usage_partitions()),
-- dropped by prune_usage().  Every lock on a parent is taken NOWAIT: an idle
-- transaction that read a usage table never makes anyone queue behind us.
------------------------------------------------------------------------------

-- The partition of parent that holds time "at"; NULL when there is none.
CREATE FUNCTION hokusai_auth._usage_partition(parent regclass, at timestamptz)
	RETURNS regclass
	AS 'MODULE_PATHNAME', 'hk_sql_usage_partition'
	LANGUAGE C STABLE STRICT;

-- Every partition of parent with its bounds, oldest first.
CREATE FUNCTION hokusai_auth._usage_partition_bounds(parent regclass,
	OUT partition regclass, OUT from_time timestamptz, OUT until_time timestamptz)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'hk_sql_usage_partition_bounds'
	LANGUAGE C STABLE STRICT;

-- The partitions of the three usage tables.
CREATE VIEW hokusai_auth.usage_partitions AS
	SELECT t.t::regclass AS table_name, b.partition, b.from_time, b.until_time,
		   pg_catalog.pg_total_relation_size(b.partition) AS total_bytes
	  FROM unnest(ARRAY['hokusai_auth.api_key_usage', 'hokusai_auth.api_key_usage_minutely',
						'hokusai_auth.api_key_usage_hourly', 'hokusai_auth.api_key_usage_daily']) t,
		   LATERAL hokusai_auth._usage_partition_bounds(t.t::regclass) b;
COMMENT ON VIEW hokusai_auth.usage_partitions IS
	'Partitions of the raw and aggregate usage tables, with their time ranges and sizes';

-- Make the partition of parent that holds time "at" (a UTC day; a UTC
-- month for the hourly table, a year for the daily one), unless there is
-- one.  Returns it, or NULL
-- when the parent's lock was not available at once (try again later).
CREATE FUNCTION hokusai_auth._usage_make_partition(parent regclass, at timestamptz)
	RETURNS regclass
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	unit	text := CASE WHEN parent OPERATOR(pg_catalog.=) 'hokusai_auth.api_key_usage_hourly'::regclass
						 THEN 'month'
						 WHEN parent OPERATOR(pg_catalog.=) 'hokusai_auth.api_key_usage_daily'::regclass
						 THEN 'year' ELSE 'day' END;
	step	interval := pg_catalog.concat('1 ', unit)::interval;
	lo		timestamp;
	part	regclass := hokusai_auth._usage_partition(parent, at);
	name	text;
	owner	name;
BEGIN
	IF part IS NOT NULL THEN
		RETURN part;
	END IF;
	lo := pg_catalog.date_trunc(unit, at, 'UTC') AT TIME ZONE 'UTC';
	name := pg_catalog.format('%s_p%s', c.relname,
		pg_catalog.to_char(lo, CASE WHEN unit OPERATOR(pg_catalog.=) 'day' THEN 'YYYYMMDD'
									WHEN unit OPERATOR(pg_catalog.=) 'month' THEN 'YYYYMM' ELSE 'YYYY' END))
	  FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) parent;
	SELECT r.rolname INTO owner FROM pg_catalog.pg_class c, pg_catalog.pg_roles r
	 WHERE c.oid OPERATOR(pg_catalog.=) parent AND r.oid OPERATOR(pg_catalog.=) c.relowner;
	BEGIN
		-- ATTACH takes SHARE UPDATE EXCLUSIVE, which readers and writers do
		-- not conflict with; never wait for it.
		EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE UPDATE EXCLUSIVE MODE NOWAIT', parent);
	EXCEPTION WHEN lock_not_available THEN
		RETURN NULL;
	END;
	EXECUTE pg_catalog.format('CREATE TABLE hokusai_auth.%I (LIKE %s INCLUDING DEFAULTS)',
							  name, parent);
	part := pg_catalog.format('hokusai_auth.%I', name)::regclass;
	IF parent OPERATOR(pg_catalog.=) 'hokusai_auth.api_key_usage'::regclass THEN
		EXECUTE pg_catalog.format('CREATE INDEX %I ON %s (api_key_id)',
								  pg_catalog.concat(name, '_key_idx'), part);
		EXECUTE pg_catalog.format('CREATE INDEX %I ON %s USING brin ("timestamp")',
								  pg_catalog.concat(name, '_time_brin'), part);
	ELSE
		EXECUTE pg_catalog.format('CREATE UNIQUE INDEX %I ON %s (api_key_id, %I, endpoint, status_code) NULLS NOT DISTINCT',
								  pg_catalog.concat(name, '_key'), part,
								  CASE WHEN unit OPERATOR(pg_catalog.=) 'day' THEN 'minute'
									   WHEN unit OPERATOR(pg_catalog.=) 'month' THEN 'hour' ELSE 'day' END);
	END IF;
	EXECUTE pg_catalog.format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)',
							  parent, part, (lo AT TIME ZONE 'UTC')::text,
							  ((lo OPERATOR(pg_catalog.+) step) AT TIME ZONE 'UTC')::text);
	IF owner OPERATOR(pg_catalog.<>) current_user THEN
		EXECUTE pg_catalog.format('ALTER TABLE %s OWNER TO %I', part, owner);
	END IF;
	RETURN part;
END
$$;

-- Make the partitions for today and the next days_ahead UTC days (and
-- their months and years) that do not exist yet; returns how many were
-- made.  The
-- worker calls it every hour, prune_usage() too.
CREATE FUNCTION hokusai_auth.create_usage_partitions(days_ahead integer DEFAULT 2)
	RETURNS integer
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	t		timestamptz;
	parent	regclass;
	made	integer := 0;
	missed	integer := 0;
BEGIN
	IF days_ahead IS NULL OR days_ahead OPERATOR(pg_catalog.<) 0
	   OR days_ahead OPERATOR(pg_catalog.>) 366 THEN
		RAISE EXCEPTION 'days_ahead must be between 0 and 366'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR t IN SELECT pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(days => d)
			   FROM pg_catalog.generate_series(0, days_ahead) d
	LOOP
		FOREACH parent IN ARRAY ARRAY['hokusai_auth.api_key_usage', 'hokusai_auth.api_key_usage_minutely',
									  'hokusai_auth.api_key_usage_hourly',
									  'hokusai_auth.api_key_usage_daily']::regclass[]
		LOOP
			IF hokusai_auth._usage_partition(parent, t) IS NULL THEN
				IF hokusai_auth._usage_make_partition(parent, t) IS NULL THEN
					missed := missed OPERATOR(pg_catalog.+) 1;
				ELSE
					made := made OPERATOR(pg_catalog.+) 1;
				END IF;
			END IF;
		END LOOP;
	END LOOP;
	IF missed OPERATOR(pg_catalog.>) 0 THEN
		RAISE WARNING 'could not make % usage partitions now: a usage table is locked', missed
			USING HINT = 'They are made at the next try (the worker tries every minute until it succeeds).';
	END IF;
	RETURN made;
END
$$;
COMMENT ON FUNCTION hokusai_auth.create_usage_partitions(integer) IS
	'Make the usage partitions for today and the next days_ahead days that do not exist yet; returns how many';

-- Drop the partitions of parent that end at or before "before"; returns
-- how many.  Both locks are taken NOWAIT (tried ten times in a second):
-- when a session holds the parent (an open transaction that read it),
-- nothing more is dropped now, with a WARNING, and the next run drops it.
-- The lock is held for the drops only, until this transaction commits.
CREATE FUNCTION hokusai_auth._usage_drop_partitions(parent regclass, before timestamptz)
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	p		regclass;
	n		integer := 0;
	try		integer;
	locked	boolean;
BEGIN
	FOR p IN SELECT b.partition FROM hokusai_auth._usage_partition_bounds(parent) b
			  WHERE b.until_time OPERATOR(pg_catalog.<=) before ORDER BY b.from_time
	LOOP
		-- A few tries 0.1 s apart (the worker holds its locks for a moment
		-- each batch), never a wait in the lock queue.
		FOR try IN 1 .. 10 LOOP
			BEGIN
				EXECUTE pg_catalog.format('LOCK TABLE %s, %s IN ACCESS EXCLUSIVE MODE NOWAIT', parent, p);
				locked := true;
			EXCEPTION WHEN lock_not_available THEN
				locked := false;
			END;
			EXIT WHEN locked;
			PERFORM pg_catalog.pg_sleep(0.1);
		END LOOP;
		IF NOT locked THEN
			RAISE WARNING 'could not drop usage partition %: the table is in use', p
				USING DETAIL = pg_catalog.format('Another transaction holds a lock on %s or %s.', parent, p),
					  HINT = 'The next prune_usage() drops it.';
			RETURN n;
		END IF;
		EXECUTE pg_catalog.format('DROP TABLE %s', p);
		n := n OPERATOR(pg_catalog.+) 1;
	END LOOP;
	RETURN n;
END
$$;

------------------------------------------------------------------------------
-- Called by the background worker (src/worker/flush.c, aggregate.c,
-- housekeeping.c).
------------------------------------------------------------------------------

-- Time-ordered ids for usage rows (usage_sql.c).
CREATE FUNCTION hokusai_auth._uuid_v7(at timestamptz)
	RETURNS uuid
	AS 'MODULE_PATHNAME', 'hk_sql_uuid_v7'
	LANGUAGE C VOLATILE STRICT;

-- Add groups (their t is a UTC minute, hour or day) to
-- api_key_usage_minutely, _hourly or _daily, each into the partition of its
-- time, an upsert per partition.  Groups whose time has no partition are left out.
-- Returns the requests added.
CREATE FUNCTION hokusai_auth._usage_add(tbl regclass, groups hokusai_auth._usage_group[])
	RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	col		text := CASE WHEN tbl OPERATOR(pg_catalog.=) 'hokusai_auth.api_key_usage_minutely'::regclass
						 THEN 'minute'
						 WHEN tbl OPERATOR(pg_catalog.=) 'hokusai_auth.api_key_usage_hourly'::regclass
						 THEN 'hour'
						 WHEN tbl OPERATOR(pg_catalog.=) 'hokusai_auth.api_key_usage_daily'::regclass
						 THEN 'day' END;
	part	regclass;
	added	bigint := 0;
	n		bigint;
BEGIN
	IF col IS NULL THEN
		RAISE EXCEPTION '_usage_add() is not for table %', tbl;
	END IF;
	FOR part IN SELECT DISTINCT hokusai_auth._usage_partition(tbl, g.t) FROM pg_catalog.unnest(groups) g
	LOOP
		CONTINUE WHEN part IS NULL;
		EXECUTE pg_catalog.format(
			'INSERT INTO %1$s AS a (api_key_id, %2$I, endpoint, status_code, requests, timed_requests,
					response_ms_sum, max_response_ms, latency_hist)
			 SELECT g.api_key_id, g.t, g.endpoint, g.status_code, g.requests, g.timed_requests,
					g.response_ms_sum, g.max_response_ms, g.latency_hist
			   FROM pg_catalog.unnest($1) g
			  WHERE hokusai_auth._usage_partition($2, g.t) OPERATOR(pg_catalog.=) $3
			 ON CONFLICT (api_key_id, %2$I, endpoint, status_code) DO UPDATE
			   SET requests = a.requests OPERATOR(pg_catalog.+) excluded.requests,
				   timed_requests = a.timed_requests OPERATOR(pg_catalog.+) excluded.timed_requests,
				   response_ms_sum = a.response_ms_sum OPERATOR(pg_catalog.+) excluded.response_ms_sum,
				   max_response_ms = GREATEST(a.max_response_ms, excluded.max_response_ms),
				   latency_hist = hokusai_auth._hist_merge(a.latency_hist, excluded.latency_hist)',
			part, col)
		USING groups, tbl, part;
		SELECT pg_catalog.sum(g.requests) INTO n FROM pg_catalog.unnest(groups) g
		 WHERE hokusai_auth._usage_partition(tbl, g.t) OPERATOR(pg_catalog.=) part;
		added := added OPERATOR(pg_catalog.+) n;
	END LOOP;
	RETURN added;
END
$$;

-- Groups summed again per UTC hour or day.
CREATE FUNCTION hokusai_auth._usage_groups_per(groups hokusai_auth._usage_group[], unit text)
	RETURNS hokusai_auth._usage_group[]
	LANGUAGE sql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT pg_catalog.array_agg(ROW(g.t, g.k, g.e, g.s, g.n, g.tn, g.ms, g.mx, g.h)::hokusai_auth._usage_group)
	  FROM (SELECT pg_catalog.date_trunc(unit, m.t, 'UTC') AS t, m.api_key_id AS k,
				   m.endpoint AS e, m.status_code AS s, pg_catalog.sum(m.requests)::bigint AS n,
				   pg_catalog.sum(m.timed_requests)::bigint AS tn,
				   pg_catalog.sum(m.response_ms_sum)::bigint AS ms,
				   pg_catalog.max(m.max_response_ms) AS mx, hokusai_auth._hist_sum(m.latency_hist) AS h
			  FROM pg_catalog.unnest(groups) m GROUP BY 1, 2, 3, 4) g
$$;

-- Insert raw rows (events already sampled, of keys that exist) into
-- api_key_usage, leaving out those whose day has no partition; returns the
-- rows inserted.  The worker writes in bulk (src/worker/usage_writer.c) and
-- comes here when someone altered the table (a trigger, a constraint, a
-- column): an INSERT, run with session_replication_role = replica, so
-- that ENABLE ALWAYS and ENABLE REPLICA triggers fire, defaults apply and
-- constraints hold.
CREATE FUNCTION hokusai_auth._usage_insert_raw(key_ids uuid[], endpoints text[],
	ats timestamptz[], response_times integer[], status_codes integer[])
	RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	SET session_replication_role = replica
	AS $$
DECLARE
	n		bigint;
BEGIN
	INSERT INTO hokusai_auth.api_key_usage
		(id, api_key_id, endpoint, "timestamp", response_time_ms, status_code)
	SELECT hokusai_auth._uuid_v7(u.t), u.k, u.e, u.t, u.r, u.s
	  FROM unnest(key_ids, endpoints, ats, response_times, status_codes) u(k, e, t, r, s)
	 WHERE hokusai_auth._usage_partition('hokusai_auth.api_key_usage', u.t) IS NOT NULL;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

-- Write one batch of queued events: the step the worker does in C
-- (src/worker/flush.c), in SQL, for callers that have the events as arrays
-- (a standby's worker shipping its queue, tests).  Events of keys that do
-- not exist are left out.  Every other event is counted in the minute, hour
-- and day aggregates when its minute's partition exists (a late event for a
-- dropped partition is left out, never an error; for an event after the
-- last partition, the partitions ahead are made first), and the share
-- usage_raw_sample says (drawn per event) becomes a raw row.  Returns the
-- events counted.
CREATE FUNCTION hokusai_auth._usage_flush(key_ids uuid[], endpoints text[],
	ats timestamptz[], response_times integer[], status_codes integer[])
	RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	sample	double precision := coalesce(NULLIF(pg_catalog.current_setting(
				'hokusai_auth.usage_raw_sample', true), '')::double precision, 1);
	ev		record;
	minutes	hokusai_auth._usage_group[];
	hours	hokusai_auth._usage_group[];
	raw		record;
	counted	bigint;
BEGIN
	-- An event after the last partition is not late: its partition is not
	-- made yet.
	IF EXISTS (SELECT FROM pg_catalog.unnest(ats) t
				WHERE t OPERATOR(pg_catalog.>=) coalesce(
						(SELECT pg_catalog.max(b.until_time)
						   FROM hokusai_auth._usage_partition_bounds('hokusai_auth.api_key_usage_minutely') b),
						'-infinity')) THEN
		PERFORM hokusai_auth.create_usage_partitions();
	END IF;
	SELECT pg_catalog.array_agg(u.k) AS k, pg_catalog.array_agg(u.e) AS e, pg_catalog.array_agg(u.t) AS t,
		   pg_catalog.array_agg(u.r) AS r, pg_catalog.array_agg(u.s) AS s
	  INTO ev
	  FROM unnest(key_ids, endpoints, ats, response_times, status_codes) u(k, e, t, r, s)
	 WHERE EXISTS (SELECT FROM hokusai_auth.api_keys a WHERE a.id OPERATOR(pg_catalog.=) u.k)
	   AND hokusai_auth._usage_partition('hokusai_auth.api_key_usage_minutely', u.t) IS NOT NULL;
	IF ev.k IS NULL THEN
		RETURN 0;
	END IF;

	SELECT pg_catalog.array_agg(ROW(g.m, g.k, g.e, g.s, g.n, g.tn, g.ms, g.mx, g.h)::hokusai_auth._usage_group)
	  INTO minutes
	  FROM (SELECT pg_catalog.date_trunc('minute', x.t, 'UTC') AS m, x.k, x.e, x.s,
				   pg_catalog.count(*) AS n, pg_catalog.count(x.r) AS tn,
				   coalesce(pg_catalog.sum(x.r), 0) AS ms, pg_catalog.max(x.r) AS mx,
				   hokusai_auth._hist_of(x.r) AS h
			  FROM unnest(ev.k, ev.e, ev.t, ev.r, ev.s) x(k, e, t, r, s)
			 GROUP BY 1, 2, 3, 4) g;
	counted := hokusai_auth._usage_add('hokusai_auth.api_key_usage_minutely', minutes);
	hours := hokusai_auth._usage_groups_per(minutes, 'hour');
	PERFORM hokusai_auth._usage_add('hokusai_auth.api_key_usage_hourly', hours);
	PERFORM hokusai_auth._usage_add('hokusai_auth.api_key_usage_daily',
									hokusai_auth._usage_groups_per(hours, 'day'));

	-- Raw rows: each event kept with probability usage_raw_sample.
	SELECT pg_catalog.array_agg(x.k) AS k, pg_catalog.array_agg(x.e) AS e, pg_catalog.array_agg(x.t) AS t,
		   pg_catalog.array_agg(x.r) AS r, pg_catalog.array_agg(x.s) AS s
	  INTO raw
	  FROM unnest(ev.k, ev.e, ev.t, ev.r, ev.s) x(k, e, t, r, s)
	 WHERE sample OPERATOR(pg_catalog.>=) 1 OR pg_catalog.random() OPERATOR(pg_catalog.<) sample;
	IF raw.k IS NOT NULL THEN
		PERFORM hokusai_auth._usage_insert_raw(raw.k, raw.e, raw.t, raw.r, raw.s);
	END IF;
	RETURN counted;
END
$$;
-- last_used_at: one UPDATE per key per flush, never moving it backwards,
-- and only when it moves on by a minute or more: last_used_at is accurate
-- to about a minute (docs/usage.md), and a key used with an endpoint (an
-- event each time) is written once a minute, not at every flush.
-- The cache invalidation triggers ignore last_used_at.
CREATE FUNCTION hokusai_auth._usage_touch(key_ids uuid[], ats timestamptz[])
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	n	integer;
BEGIN
	UPDATE hokusai_auth.api_keys a
	   SET last_used_at = t.at
	  FROM (SELECT u.k, max(u.t) AS at FROM unnest(key_ids, ats) u(k, t) GROUP BY u.k) t
	 WHERE a.id = t.k
	   AND (a.last_used_at IS NULL
			OR a.last_used_at < t.at - interval '1 minute');
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

------------------------------------------------------------------------------
-- Replicas: usage recorded on hot standbys, shipped here by their workers
-- (src/replica/ship.c) and received once (src/replica/receive.c): per
-- standby run, the queue position below which everything was received.
-- Grant EXECUTE on _receive_usage() and _receive_events() to the role the
-- standbys connect as (docs/scaling.md); it needs nothing else.
------------------------------------------------------------------------------

CREATE TABLE hokusai_auth.usage_shipments (
	run_id			uuid PRIMARY KEY,
	received_until	bigint NOT NULL DEFAULT 0,
	first_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	last_at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	events_received_until bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE hokusai_auth.usage_shipments IS
	'Per standby run: the queue positions below which its usage and its noted events have been received';

CREATE FUNCTION hokusai_auth._receive_usage(run_id uuid, upto bigint,
	positions bigint[], key_ids uuid[], endpoints text[], ats bigint[],
	response_times integer[], status_codes integer[],
	touch_keys uuid[], touch_ats bigint[])
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'hk_sql_receive_usage'
	LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;

-- The events a standby noted on the request path (rate_limit.exceeded,
-- credits.low, credits.exhausted; src/replica/ship_events.c), written here
-- once: per standby run, the event queue position below which everything
-- was received, moved in the transaction that writes them.  The kinds are
-- those three only: the shipping role cannot make up other events.
CREATE FUNCTION hokusai_auth._receive_events(run_id uuid, upto bigint,
	positions bigint[], kinds text[], key_ids uuid[], vals bigint[], ats bigint[])
	RETURNS bigint
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	done	bigint;
	n		integer := coalesce(pg_catalog.cardinality(positions), 0);
	k		text[];
	ks		uuid[];
	vs		bigint[];
	ts		timestamptz[];
BEGIN
	IF pg_catalog.pg_is_in_recovery() THEN
		RAISE EXCEPTION 'cannot receive events on a server in recovery'
			USING ERRCODE = 'read_only_sql_transaction',
				  HINT = 'Ship events to the primary: set hokusai_auth.primary_conninfo on the standby.';
	END IF;
	IF run_id IS NULL OR upto IS NULL THEN
		RAISE EXCEPTION 'run_id and upto must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF coalesce(pg_catalog.cardinality(kinds), 0) OPERATOR(pg_catalog.<>) n
	   OR coalesce(pg_catalog.cardinality(key_ids), 0) OPERATOR(pg_catalog.<>) n
	   OR coalesce(pg_catalog.cardinality(vals), 0) OPERATOR(pg_catalog.<>) n
	   OR coalesce(pg_catalog.cardinality(ats), 0) OPERATOR(pg_catalog.<>) n THEN
		RAISE EXCEPTION 'the event arrays must have the same length' USING ERRCODE = 'array_subscript_error';
	END IF;
	IF n OPERATOR(pg_catalog.>) 0 AND (
		   pg_catalog.array_position(positions, NULL) IS NOT NULL
		OR pg_catalog.array_position(key_ids, NULL) IS NOT NULL
		OR pg_catalog.array_position(vals, NULL) IS NOT NULL
		OR pg_catalog.array_position(ats, NULL) IS NOT NULL) THEN
		RAISE EXCEPTION 'positions, key ids, values and times must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT kinds OPERATOR(pg_catalog.<@)
		   '{rate_limit.exceeded,credits.low,credits.exhausted}'::text[] THEN
		RAISE EXCEPTION 'a standby ships rate_limit.exceeded, credits.low and credits.exhausted only'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO hokusai_auth.usage_shipments (run_id) VALUES (_receive_events.run_id)
		ON CONFLICT ON CONSTRAINT usage_shipments_pkey DO NOTHING;
	SELECT s.events_received_until INTO done FROM hokusai_auth.usage_shipments s
	 WHERE s.run_id OPERATOR(pg_catalog.=) _receive_events.run_id FOR UPDATE;
	SELECT pg_catalog.array_agg(kinds[i] ORDER BY i), pg_catalog.array_agg(key_ids[i] ORDER BY i),
		   pg_catalog.array_agg(vals[i] ORDER BY i),
		   pg_catalog.array_agg('2000-01-01 00:00:00+00'::timestamptz OPERATOR(pg_catalog.+)
								(ats[i] OPERATOR(pg_catalog.*) interval '1 microsecond') ORDER BY i)
	  INTO k, ks, vs, ts
	  FROM pg_catalog.generate_subscripts(positions, 1) AS g(i)
	 WHERE positions[i] OPERATOR(pg_catalog.>=) done;
	IF k IS NOT NULL THEN
		PERFORM hokusai_auth._events_from_notes(k, ks, vs, ts);
	END IF;
	IF upto OPERATOR(pg_catalog.>) done THEN
		UPDATE hokusai_auth.usage_shipments s
		   SET events_received_until = upto, last_at = pg_catalog.now()
		 WHERE s.run_id OPERATOR(pg_catalog.=) _receive_events.run_id;
		done := upto;
	END IF;
	RETURN done;
END
$$;

CREATE FUNCTION hokusai_auth.replica_stats(
	OUT in_recovery boolean, OUT invalidation_reads bigint,
	OUT invalidations_applied bigint, OUT invalidation_clear_all bigint,
	OUT shipped bigint, OUT touches_shipped bigint, OUT ship_calls bigint,
	OUT ship_failures bigint, OUT last_ship_at timestamptz,
	OUT primary_reachable boolean, OUT received bigint,
	OUT received_duplicates bigint, OUT received_deferred bigint,
	OUT events_shipped bigint)
	RETURNS record
	AS 'MODULE_PATHNAME', 'hk_sql_replica_stats'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.replica_stats() IS
	'This server''s side of replication: invalidations read from the WAL, usage shipped (standby) or received (primary)';

CREATE VIEW hokusai_auth.replica_stats AS SELECT * FROM hokusai_auth.replica_stats();
COMMENT ON VIEW hokusai_auth.replica_stats IS 'Replication counters (hokusai_auth.replica_stats())';

------------------------------------------------------------------------------
-- The request path: queue events in shared memory, never write a table.
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth.record_usage(key_id uuid, endpoint text,
	response_time_ms integer, status_code integer)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'hk_sql_record_usage'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.record_usage(uuid, text, integer, integer) IS
	'Queue one usage event for the worker; false when the queue was full and it was dropped';

CREATE FUNCTION hokusai_auth.track_request(key_id uuid, endpoint text)
	RETURNS void
	AS 'MODULE_PATHNAME', 'hk_sql_track_request'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.track_request(uuid, text) IS
	'Queue one usage event when this transaction ends: elapsed time, and response.status or 200 (commit) / 500 (abort)';

CREATE FUNCTION hokusai_auth.usage_queue_stats(
	OUT capacity bigint, OUT queued bigint, OUT enqueued bigint, OUT dropped bigint,
	OUT other_database bigint, OUT touches_dropped bigint, OUT flushed bigint,
	OUT discarded bigint, OUT failed bigint, OUT flushes bigint,
	OUT keys_touched bigint, OUT keys_expired bigint,
	OUT last_flush_lag_ms double precision, OUT max_flush_lag_ms double precision,
	OUT last_flush_at timestamptz, OUT worker_pid integer, OUT stats_reset timestamptz,
	OUT aggregated bigint, OUT late_discarded bigint)
	RETURNS record
	AS 'MODULE_PATHNAME', 'hk_sql_usage_queue_stats'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.usage_queue_stats() IS
	'Usage queue and worker counters since the last reset';

CREATE VIEW hokusai_auth.usage_queue_stats AS SELECT * FROM hokusai_auth.usage_queue_stats();
COMMENT ON VIEW hokusai_auth.usage_queue_stats IS 'Usage queue and worker counters (hokusai_auth.usage_queue_stats())';

CREATE FUNCTION hokusai_auth.usage_queue_stats_reset()
	RETURNS void
	AS 'MODULE_PATHNAME', 'hk_sql_usage_queue_stats_reset'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.usage_queue_stats_reset() IS 'Zero the usage queue counters';

------------------------------------------------------------------------------
-- Housekeeping (run by pg_cron: schedule_housekeeping()).
------------------------------------------------------------------------------

-- Before 1.6, rolled raw rows up into hourly tables.  The worker now keeps
-- the hourly aggregates itself, with every batch: nothing is left to roll
-- up.  Kept so that existing calls and pg_cron jobs do not fail.
CREATE FUNCTION hokusai_auth.rollup_usage()
	RETURNS integer
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT 0 $$;
COMMENT ON FUNCTION hokusai_auth.rollup_usage() IS
	'Does nothing since 1.6 (the worker keeps the hourly aggregates); returns 0';

-- Retention by dropping whole partitions: raw rows older than retention,
-- minute aggregates older than minute_retention, hour aggregates older than
-- hour_retention (NULL: kept).  A partition goes when all of it is older.
-- The daily aggregates (a few rows per key and day) are kept.
-- Makes the partitions ahead too.  Returns the partitions dropped.
CREATE FUNCTION hokusai_auth.prune_usage(retention interval DEFAULT '30 days',
	minute_retention interval DEFAULT '30 days', hour_retention interval DEFAULT NULL)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	n		bigint := 0;
BEGIN
	IF retention IS NULL OR retention OPERATOR(pg_catalog.<) interval '1 hour'
	   OR minute_retention IS NULL OR minute_retention OPERATOR(pg_catalog.<) interval '1 hour' THEN
		RAISE EXCEPTION 'retention must be at least 1 hour'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF hour_retention OPERATOR(pg_catalog.<) minute_retention THEN
		RAISE EXCEPTION 'hour_retention must not be shorter than minute_retention'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM hokusai_auth.create_usage_partitions();
	n := hokusai_auth._usage_drop_partitions('hokusai_auth.api_key_usage',
			pg_catalog.now() OPERATOR(pg_catalog.-) retention);
	n := n OPERATOR(pg_catalog.+) hokusai_auth._usage_drop_partitions('hokusai_auth.api_key_usage_minutely',
			pg_catalog.now() OPERATOR(pg_catalog.-) minute_retention);
	IF hour_retention IS NOT NULL THEN
		n := n OPERATOR(pg_catalog.+) hokusai_auth._usage_drop_partitions('hokusai_auth.api_key_usage_hourly',
				pg_catalog.now() OPERATOR(pg_catalog.-) hour_retention);
	END IF;
	RETURN n;
END
$$;
COMMENT ON FUNCTION hokusai_auth.prune_usage(interval, interval, interval) IS
	'Drop the usage partitions older than their retention (raw rows, minute and hour aggregates); returns how many';

-- Install (or replace) the pg_cron job.  pg_cron must be installed in this
-- database (cron.database_name).  The job body is schema-qualified: nothing
-- in it is resolved through the search_path of whoever runs it.  The
-- hokusai_auth.rollup job of earlier versions is removed (rollup_schedule
-- is no longer used).
CREATE FUNCTION hokusai_auth.schedule_housekeeping(retention interval DEFAULT '30 days',
	rollup_schedule text DEFAULT '*/5 * * * *',
	prune_schedule text DEFAULT '17 3 * * *',
	minute_retention interval DEFAULT '30 days',
	hour_retention interval DEFAULT NULL)
	RETURNS TABLE (jobid bigint, jobname text, schedule text, command text)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	prune_cmd	text;
BEGIN
	IF retention IS NULL OR retention OPERATOR(pg_catalog.<) interval '1 hour'
	   OR minute_retention IS NULL OR minute_retention OPERATOR(pg_catalog.<) interval '1 hour' THEN
		RAISE EXCEPTION 'retention must be at least 1 hour'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF hour_retention OPERATOR(pg_catalog.<) minute_retention THEN
		RAISE EXCEPTION 'hour_retention must not be shorter than minute_retention'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM hokusai_auth._check_text(prune_schedule, 'prune_schedule', 100);
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e
					WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron') THEN
		RAISE EXCEPTION 'pg_cron is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart, and run CREATE EXTENSION pg_cron.';
	END IF;
	prune_cmd := pg_catalog.format('SELECT hokusai_auth.prune_usage(CAST(%L AS pg_catalog.interval), '
								   'CAST(%L AS pg_catalog.interval), CAST(%L AS pg_catalog.interval))',
								   retention::text, minute_retention::text, hour_retention::text);
	-- Without background workers pg_cron runs each job over a libpq
	-- connection to cron.host: over TCP that needs a password the server's
	-- OS user can find, or every job fails with "connection failed".
	IF coalesce(pg_catalog.current_setting('cron.use_background_workers', true), 'off')
		   OPERATOR(pg_catalog.<>) 'on'
	   AND pg_catalog.left(coalesce(pg_catalog.current_setting('cron.host', true), 'localhost'), 1)
		   OPERATOR(pg_catalog.<>) '/' THEN
		RAISE WARNING 'pg_cron will run these jobs over a TCP connection to %',
			coalesce(pg_catalog.current_setting('cron.host', true), 'localhost')
			USING DETAIL = pg_catalog.format('cron.use_background_workers is off, so each job connects as %s with libpq; unless pg_hba.conf lets that in without a password, or the server''s OS user has it in ~/.pgpass, every job fails with "connection failed" (see cron.job_run_details).', current_user),
				  HINT = 'Set cron.use_background_workers = on (and raise max_worker_processes), or cron.host to the socket directory (for example /var/run/postgresql), and restart.';
	END IF;
	IF EXISTS (SELECT FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron') THEN
		EXECUTE 'SELECT cron.unschedule(j.jobid) FROM cron.job j
				  WHERE j.jobname OPERATOR(pg_catalog.=) ''hokusai_auth.rollup''';
	END IF;
	EXECUTE 'SELECT cron.schedule($1, $2, $3)'
		USING 'hokusai_auth.prune', prune_schedule, prune_cmd;
	RETURN QUERY EXECUTE
		'SELECT j.jobid, j.jobname::text, j.schedule::text, j.command::text FROM cron.job j
		  WHERE j.jobname OPERATOR(pg_catalog.=) ''hokusai_auth.prune''
		  ORDER BY j.jobname';
END
$$;
COMMENT ON FUNCTION hokusai_auth.schedule_housekeeping(interval, text, text, interval, interval) IS
	'Install the pg_cron job hokusai_auth.prune (usage partitions kept for their retention)';

CREATE FUNCTION hokusai_auth.unschedule_housekeeping()
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	n	integer := 0;
	j	text;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_extension e WHERE e.extname = 'pg_cron') THEN
		RETURN 0;
	END IF;
	FOR j IN EXECUTE 'SELECT jobname FROM cron.job
					   WHERE jobname IN (''hokusai_auth.rollup'', ''hokusai_auth.prune'')'
	LOOP
		EXECUTE 'SELECT cron.unschedule($1)' USING j;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION hokusai_auth.unschedule_housekeeping() IS
	'Remove the pg_cron jobs schedule_housekeeping() installed; returns how many';

------------------------------------------------------------------------------
-- Analytics: aggregates only.  A minute counts in [since, until) when it
-- starts there; whole UTC days are read from the daily table, whole hours
-- from the hourly one, the minutes at the edges from the minute table.
------------------------------------------------------------------------------

CREATE VIEW hokusai_auth.usage_hourly AS
	SELECT h.api_key_id, h.hour, h.endpoint, h.status_code, h.requests,
		   CASE WHEN h.status_code >= 400 THEN h.requests ELSE 0 END AS errors,
		   h.timed_requests, h.response_ms_sum,
		   round(h.response_ms_sum::numeric / nullif(h.timed_requests, 0), 1) AS avg_response_ms,
		   h.max_response_ms
	  FROM hokusai_auth.api_key_usage_hourly h;
COMMENT ON VIEW hokusai_auth.usage_hourly IS
	'Requests per key, UTC hour, endpoint and status code; errors are status >= 400';

CREATE VIEW hokusai_auth.usage_daily AS
	SELECT h.api_key_id, date_trunc('day', h.hour) AS day,
		   sum(h.requests)::bigint AS requests, sum(h.errors)::bigint AS errors,
		   round(sum(h.response_ms_sum)::numeric / nullif(sum(h.timed_requests), 0), 1) AS avg_response_ms,
		   max(h.max_response_ms) AS max_response_ms
	  FROM hokusai_auth.usage_hourly h
	 GROUP BY h.api_key_id, date_trunc('day', h.hour);
COMMENT ON VIEW hokusai_auth.usage_daily IS 'Requests per key and day (days in the session time zone)';

CREATE VIEW hokusai_auth.usage_by_endpoint AS
	SELECT h.api_key_id, h.endpoint,
		   sum(h.requests)::bigint AS requests, sum(h.errors)::bigint AS errors,
		   round(sum(h.response_ms_sum)::numeric / nullif(sum(h.timed_requests), 0), 1) AS avg_response_ms,
		   max(h.max_response_ms) AS max_response_ms,
		   max(h.hour) AS last_hour
	  FROM hokusai_auth.usage_hourly h
	 GROUP BY h.api_key_id, h.endpoint;
COMMENT ON VIEW hokusai_auth.usage_by_endpoint IS 'Requests per key and endpoint, all time';

CREATE VIEW hokusai_auth.usage_by_status AS
	SELECT h.api_key_id, h.status_code, sum(h.requests)::bigint AS requests
	  FROM hokusai_auth.usage_hourly h
	 GROUP BY h.api_key_id, h.status_code;
COMMENT ON VIEW hokusai_auth.usage_by_status IS 'Requests per key and status code, all time';

CREATE VIEW hokusai_auth.usage_per_minute AS
	SELECT m.api_key_id, m.minute,
		   sum(m.requests)::bigint AS requests,
		   coalesce(sum(m.requests) FILTER (WHERE m.status_code >= 400), 0)::bigint AS errors,
		   round(sum(m.response_ms_sum)::numeric / nullif(sum(m.timed_requests), 0), 1) AS avg_response_ms,
		   max(m.max_response_ms) AS max_response_ms
	  FROM hokusai_auth.api_key_usage_minutely m
	 GROUP BY m.api_key_id, m.minute;
COMMENT ON VIEW hokusai_auth.usage_per_minute IS
	'Requests per key and minute, from the minute aggregates (as far back as their retention keeps them)';

-- One key's aggregate rows for the minutes that start in [lo, hi): whole
-- UTC days from api_key_usage_daily (unless coarsest is 'hour'), whole UTC
-- hours from api_key_usage_hourly, the minutes at either edge from
-- api_key_usage_minutely; t is the day, hour or minute.
CREATE FUNCTION hokusai_auth._usage_rows(key_id uuid, lo timestamptz, hi timestamptz,
	coarsest text DEFAULT 'day')
	RETURNS SETOF hokusai_auth._usage_group
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	-- minutes m with l <= m < h: the bounds rounded up to whole minutes
	l	timestamptz := CASE WHEN date_trunc('minute', lo) = lo THEN lo
							ELSE date_trunc('minute', lo) + interval '1 minute' END;
	h	timestamptz := CASE WHEN date_trunc('minute', hi) = hi THEN hi
							ELSE date_trunc('minute', hi) + interval '1 minute' END;
	-- whole hours in [l, h): [hl, hh); whole days in [hl, hh): [dl, dh)
	hl	timestamptz := CASE WHEN date_trunc('hour', l, 'UTC') = l THEN l
							ELSE date_trunc('hour', l, 'UTC') + interval '1 hour' END;
	hh	timestamptz := date_trunc('hour', h, 'UTC');
	dl	timestamptz;
	dh	timestamptz;
BEGIN
	IF hl >= hh THEN
		hl := l;
		hh := l;
	END IF;
	dl := CASE WHEN date_trunc('day', hl, 'UTC') = hl THEN hl
			   ELSE date_trunc('day', hl, 'UTC') + interval '1 day' END;
	dh := date_trunc('day', hh, 'UTC');
	IF dl >= dh OR coarsest = 'hour' THEN
		dl := hl;
		dh := hl;
	END IF;
	RETURN QUERY
	SELECT d.day, d.api_key_id, d.endpoint, d.status_code, d.requests, d.timed_requests,
		   d.response_ms_sum, d.max_response_ms, d.latency_hist
	  FROM hokusai_auth.api_key_usage_daily d
	 WHERE d.api_key_id = _usage_rows.key_id AND d.day >= dl AND d.day < dh
	UNION ALL
	SELECT a.hour, a.api_key_id, a.endpoint, a.status_code, a.requests, a.timed_requests,
		   a.response_ms_sum, a.max_response_ms, a.latency_hist
	  FROM hokusai_auth.api_key_usage_hourly a
	 WHERE a.api_key_id = _usage_rows.key_id
	   AND ((a.hour >= hl AND a.hour < dl) OR (a.hour >= dh AND a.hour < hh))
	UNION ALL
	SELECT m.minute, m.api_key_id, m.endpoint, m.status_code, m.requests, m.timed_requests,
		   m.response_ms_sum, m.max_response_ms, m.latency_hist
	  FROM hokusai_auth.api_key_usage_minutely m
	 WHERE m.api_key_id = _usage_rows.key_id
	   AND ((m.minute >= l AND m.minute < hl) OR (m.minute >= hh AND m.minute < h));
END
$$;

CREATE FUNCTION hokusai_auth._check_range(key_id uuid, since timestamptz, until timestamptz)
	RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	PERFORM hokusai_auth._check_not_null(key_id, 'key_id');
	IF since IS NOT NULL AND until IS NOT NULL AND since > until THEN
		RAISE EXCEPTION 'since must not be later than until'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;

-- One statement, planned at each call with the range's bounds as constants
-- (plpgsql's custom plans), so that only the partitions holding them are
-- opened: whole UTC days from api_key_usage_daily, whole UTC hours from
-- api_key_usage_hourly, the minutes at either edge from
-- api_key_usage_minutely (the bounds as _usage_rows() computes them, read
-- here without it: a set-returning function would copy every row into a
-- tuplestore twice, and its own plan and compilation would add to a new
-- session's first call).
CREATE FUNCTION hokusai_auth.usage_summary(key_id uuid,
	since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL,
	OUT requests bigint, OUT errors bigint, OUT client_errors bigint,
	OUT server_errors bigint, OUT avg_response_ms numeric,
	OUT p50_response_ms numeric, OUT p95_response_ms numeric,
	OUT p99_response_ms numeric, OUT max_response_ms integer,
	OUT by_status jsonb, OUT by_endpoint jsonb)
	RETURNS record
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	hist	bigint[];
	lo		timestamptz := coalesce(since, '-infinity');
	hi		timestamptz := coalesce(until, now());
	-- minutes m with l <= m < h: the bounds rounded up to whole minutes
	l		timestamptz := CASE WHEN date_trunc('minute', lo) = lo THEN lo
								ELSE date_trunc('minute', lo) + interval '1 minute' END;
	h		timestamptz := CASE WHEN date_trunc('minute', hi) = hi THEN hi
								ELSE date_trunc('minute', hi) + interval '1 minute' END;
	-- whole hours in [l, h): [hl, hh); whole days in [hl, hh): [dl, dh)
	hl		timestamptz := CASE WHEN date_trunc('hour', l, 'UTC') = l THEN l
								ELSE date_trunc('hour', l, 'UTC') + interval '1 hour' END;
	hh		timestamptz := date_trunc('hour', h, 'UTC');
	dl		timestamptz;
	dh		timestamptz;
BEGIN
	IF key_id IS NULL THEN
		RAISE EXCEPTION 'key_id must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF since > until THEN
		RAISE EXCEPTION 'since must not be later than until'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF hl >= hh THEN
		hl := l;
		hh := l;
	END IF;
	dl := CASE WHEN date_trunc('day', hl, 'UTC') = hl THEN hl
			   ELSE date_trunc('day', hl, 'UTC') + interval '1 day' END;
	dh := date_trunc('day', hh, 'UTC');
	IF dl >= dh THEN
		dl := hl;
		dh := hl;
	END IF;

	WITH g AS (
		-- Grouped at once: a few rows per endpoint and status, however long the range.
		SELECT r.endpoint, r.status_code, sum(r.requests) AS n, sum(r.timed_requests) AS timed,
			   sum(r.response_ms_sum) AS ms, max(r.max_response_ms) AS mx,
			   hokusai_auth._hist_sum(r.latency_hist) AS h
		  FROM (SELECT d.endpoint, d.status_code, d.requests, d.timed_requests,
					   d.response_ms_sum, d.max_response_ms, d.latency_hist
				  FROM hokusai_auth.api_key_usage_daily d
				 WHERE d.api_key_id = usage_summary.key_id AND d.day >= dl AND d.day < dh
				UNION ALL
				SELECT a.endpoint, a.status_code, a.requests, a.timed_requests,
					   a.response_ms_sum, a.max_response_ms, a.latency_hist
				  FROM hokusai_auth.api_key_usage_hourly a
				 WHERE a.api_key_id = usage_summary.key_id
				   AND ((a.hour >= hl AND a.hour < dl) OR (a.hour >= dh AND a.hour < hh))
				UNION ALL
				SELECT m.endpoint, m.status_code, m.requests, m.timed_requests,
					   m.response_ms_sum, m.max_response_ms, m.latency_hist
				  FROM hokusai_auth.api_key_usage_minutely m
				 WHERE m.api_key_id = usage_summary.key_id
				   AND ((m.minute >= l AND m.minute < hl) OR (m.minute >= hh AND m.minute < h))) r
		 GROUP BY 1, 2
	), st AS (
		SELECT g.status_code, sum(g.n)::bigint AS n FROM g GROUP BY 1
	), ep AS (
		SELECT g.endpoint, sum(g.n)::bigint AS n,
			   sum(g.n) FILTER (WHERE g.status_code >= 400)::bigint AS e,
			   round(sum(g.ms)::numeric / nullif(sum(g.timed), 0), 1) AS avg_ms
		  FROM g GROUP BY 1
	)
	SELECT coalesce(sum(g.n), 0)::bigint,
		   coalesce(sum(g.n) FILTER (WHERE g.status_code >= 400), 0)::bigint,
		   coalesce(sum(g.n) FILTER (WHERE g.status_code BETWEEN 400 AND 499), 0)::bigint,
		   coalesce(sum(g.n) FILTER (WHERE g.status_code >= 500), 0)::bigint,
		   round(sum(g.ms)::numeric / nullif(sum(g.timed), 0), 1),
		   max(g.mx),
		   coalesce((SELECT jsonb_agg(jsonb_build_object('status_code', st.status_code,
														 'requests', st.n)
									  ORDER BY st.status_code NULLS LAST) FROM st), '[]'),
		   coalesce((SELECT jsonb_agg(jsonb_build_object('endpoint', ep.endpoint,
														 'requests', ep.n,
														 'errors', coalesce(ep.e, 0),
														 'avg_response_ms', ep.avg_ms)
									  ORDER BY ep.n DESC, ep.endpoint NULLS LAST) FROM ep), '[]'),
		   hokusai_auth._hist_sum(g.h)
	  INTO requests, errors, client_errors, server_errors, avg_response_ms,
		   max_response_ms, by_status, by_endpoint, hist
	  FROM g;

	p50_response_ms := hokusai_auth._hist_percentile(hist, 0.50, max_response_ms);
	p95_response_ms := hokusai_auth._hist_percentile(hist, 0.95, max_response_ms);
	p99_response_ms := hokusai_auth._hist_percentile(hist, 0.99, max_response_ms);
END
$$;
COMMENT ON FUNCTION hokusai_auth.usage_summary(uuid, timestamptz, timestamptz) IS
	'One key''s requests, errors, response times (average, p50, p95, p99, max) and breakdowns by status and endpoint in [since, until)';

-- Requests per minute, hour or day for one key in [since, until).
CREATE FUNCTION hokusai_auth.usage_timeseries(key_id uuid, period text DEFAULT 'hour',
	since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
	RETURNS TABLE (period_start timestamptz, requests bigint, errors bigint,
				   avg_response_ms numeric, max_response_ms integer,
				   p50_response_ms numeric, p95_response_ms numeric, p99_response_ms numeric)
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	lo		timestamptz := coalesce(since, '-infinity');
	hi		timestamptz := coalesce(until, now());
BEGIN
	PERFORM hokusai_auth._check_range(key_id, since, until);
	IF period IS NULL OR period NOT IN ('minute', 'hour', 'day') THEN
		RAISE EXCEPTION 'invalid period'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use "minute", "hour" or "day".';
	END IF;

	RETURN QUERY
	SELECT x.p, x.n, x.e, x.avg_ms, x.mx,
		   hokusai_auth._hist_percentile(x.h, 0.50, x.mx),
		   hokusai_auth._hist_percentile(x.h, 0.95, x.mx),
		   hokusai_auth._hist_percentile(x.h, 0.99, x.mx)
	  FROM (SELECT CASE period WHEN 'minute' THEN g.t
							   WHEN 'hour' THEN date_trunc('hour', g.t, 'UTC')
							   ELSE date_trunc('day', g.t) END AS p,
				   sum(g.requests)::bigint AS n,
				   coalesce(sum(g.requests) FILTER (WHERE g.status_code >= 400), 0)::bigint AS e,
				   round(sum(g.response_ms_sum)::numeric / nullif(sum(g.timed_requests), 0), 1) AS avg_ms,
				   max(g.max_response_ms) AS mx, hokusai_auth._hist_sum(g.latency_hist) AS h
			  FROM (SELECT m.minute AS t, m.status_code, m.requests, m.timed_requests,
						   m.response_ms_sum, m.max_response_ms, m.latency_hist
					  FROM hokusai_auth.api_key_usage_minutely m
					 WHERE period = 'minute' AND m.api_key_id = usage_timeseries.key_id
					   AND m.minute >= lo AND m.minute < hi
					UNION ALL
					SELECT r.t, r.status_code, r.requests, r.timed_requests,
						   r.response_ms_sum, r.max_response_ms, r.latency_hist
					  FROM hokusai_auth._usage_rows(key_id, lo, hi, 'hour') r
					 WHERE period <> 'minute') g
			 GROUP BY 1) x
	 ORDER BY 1;
END
$$;
COMMENT ON FUNCTION hokusai_auth.usage_timeseries(uuid, text, timestamptz, timestamptz) IS
	'One key''s requests, errors and response times (average, max, p50, p95, p99) per minute, hour or day in [since, until)';
