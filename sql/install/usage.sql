
------------------------------------------------------------------------------
-- sql/install/usage.sql: usage analytics.  The request path queues events
-- in shared memory (record_usage(), track_request(): src/usage/); the
-- background worker inserts them (_usage_flush(), _usage_touch()).  Raw
-- events (api_key_usage, schema.sql) are summed per key and UTC hour by
-- rollup_usage(), a pg_cron job (schedule_housekeeping()).  Hours before
-- usage_rollup_state.rolled_until are complete in the rollup tables; the
-- summaries read rollups for them and raw rows for the rest.  The worker
-- adds events that arrive late (older than rolled_until) to the rollups as
-- it inserts them, so the two never disagree.  Then the analytics views,
-- usage_summary() and usage_timeseries().
------------------------------------------------------------------------------

CREATE TABLE hokusai_auth.api_key_usage_hourly (
	api_key_id			uuid NOT NULL REFERENCES hokusai_auth.api_keys (id),
	hour				timestamptz NOT NULL,
	endpoint			text,
	status_code			integer,
	requests			bigint NOT NULL,
	timed_requests		bigint NOT NULL,
	response_ms_sum		bigint NOT NULL,
	max_response_ms		integer,
	CONSTRAINT api_key_usage_hourly_key UNIQUE NULLS NOT DISTINCT
		(api_key_id, hour, endpoint, status_code)
);
COMMENT ON TABLE hokusai_auth.api_key_usage_hourly IS
	'Requests per key, UTC hour, endpoint and status (rolled up from api_key_usage)';

CREATE TABLE hokusai_auth.api_key_latency_hourly (
	api_key_id			uuid NOT NULL REFERENCES hokusai_auth.api_keys (id),
	hour				timestamptz NOT NULL,
	histogram			bigint[] NOT NULL,
	max_response_ms		integer,
	PRIMARY KEY (api_key_id, hour)
);
COMMENT ON TABLE hokusai_auth.api_key_latency_hourly IS
	'Response-time histogram per key and UTC hour (buckets: hokusai_auth._latency_bounds())';

CREATE TABLE hokusai_auth.usage_rollup_state (
	only_row		boolean PRIMARY KEY DEFAULT true CHECK (only_row),
	rolled_until	timestamptz NOT NULL,
	rolled_at		timestamptz
);
INSERT INTO hokusai_auth.usage_rollup_state (rolled_until) VALUES ('-infinity');
COMMENT ON TABLE hokusai_auth.usage_rollup_state IS
	'Hours before rolled_until are complete in the hourly rollup tables';

------------------------------------------------------------------------------
-- Response-time histograms.  Bucket 1 is [0, 1) ms, bucket i+1 is
-- [bounds[i], bounds[i+1]), the last is [60000, infinity): 63 buckets,
-- each at most 25% wide above 10 ms.
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth._latency_bounds()
	RETURNS integer[]
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS $$
	SELECT '{1,2,3,4,5,6,7,8,9,10,12,14,16,18,20,25,30,35,40,45,50,60,70,80,90,
			 100,120,140,160,180,200,250,300,350,400,450,500,600,700,800,900,
			 1000,1200,1400,1600,1800,2000,2500,3000,3500,4000,4500,5000,6000,7000,
			 8000,9000,10000,15000,20000,30000,60000}'::integer[]
$$;

-- A 63-bucket histogram from (bucket, count) pairs.
CREATE FUNCTION hokusai_auth._hist_build(buckets integer[], counts bigint[])
	RETURNS bigint[]
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT array_agg(coalesce(x.c, 0) ORDER BY i)
	  FROM generate_series(1, 63) i
	  LEFT JOIN (SELECT u.b, sum(u.c) AS c FROM unnest(buckets, counts) u(b, c) GROUP BY u.b) x
		ON x.b = i
$$;

CREATE FUNCTION hokusai_auth._hist_add(a bigint[], b bigint[])
	RETURNS bigint[]
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY i)
	  FROM unnest(a, b) WITH ORDINALITY u(x, y, i)
$$;

-- The p-quantile of a histogram, interpolated inside its bucket and never
-- above the largest value seen.
CREATE FUNCTION hokusai_auth._hist_percentile(h bigint[], p double precision, max_ms integer)
	RETURNS numeric
	LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	bounds	integer[] := hokusai_auth._latency_bounds();
	total	numeric := 0;
	cum		numeric := 0;
	rnk		numeric;
	lo		numeric;
	hi		numeric;
	i		integer;
BEGIN
	IF h IS NULL THEN
		RETURN NULL;
	END IF;
	FOR i IN 1 .. cardinality(h) LOOP
		total := total + h[i];
	END LOOP;
	IF total = 0 THEN
		RETURN NULL;
	END IF;
	rnk := p::numeric * total;
	FOR i IN 1 .. cardinality(h) LOOP
		IF h[i] > 0 AND cum + h[i] >= rnk THEN
			lo := CASE WHEN i = 1 THEN 0 ELSE bounds[i - 1] END;
			hi := CASE WHEN i > cardinality(bounds) THEN coalesce(max_ms, lo) ELSE bounds[i] - 1 END;
			IF max_ms IS NOT NULL AND hi > max_ms THEN
				hi := greatest(max_ms, lo);
			END IF;
			RETURN round(lo + (hi - lo) * (rnk - cum) / h[i], 1);
		END IF;
		cum := cum + h[i];
	END LOOP;
	RETURN NULL;
END
$$;

------------------------------------------------------------------------------
-- Called by the background worker (src/worker/flush.c, housekeeping.c).
------------------------------------------------------------------------------

-- Time-ordered ids for usage rows (usage_sql.c).
CREATE FUNCTION hokusai_auth._uuid_v7(at timestamptz)
	RETURNS uuid
	AS 'MODULE_PATHNAME', 'hk_sql_uuid_v7'
	LANGUAGE C VOLATILE STRICT;

-- Insert one batch of queued events; returns how many were inserted (events
-- of keys that no longer exist are skipped).  Events older than
-- rolled_until are also added to the rollups.  The state row's share lock
-- orders this against rollup_usage().
--
-- The batch checks that its keys exist itself (keys are never deleted by
-- normal operations), so it runs with session_replication_role = replica:
-- that skips the per-row foreign-key trigger, a third of the cost of a row.
CREATE FUNCTION hokusai_auth._usage_flush(key_ids uuid[], endpoints text[],
	ats timestamptz[], response_times integer[], status_codes integer[])
	RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	SET session_replication_role = replica
	AS $$
DECLARE
	rolled	timestamptz;
	n		bigint;
BEGIN
	SELECT s.rolled_until INTO rolled FROM hokusai_auth.usage_rollup_state s FOR SHARE;

	INSERT INTO hokusai_auth.api_key_usage
		(id, api_key_id, endpoint, "timestamp", response_time_ms, status_code)
	SELECT hokusai_auth._uuid_v7(u.t), u.k, u.e, u.t, u.r, u.s
	  FROM unnest(key_ids, endpoints, ats, response_times, status_codes) u(k, e, t, r, s)
	 WHERE EXISTS (SELECT FROM hokusai_auth.api_keys a WHERE a.id = u.k);
	GET DIAGNOSTICS n = ROW_COUNT;

	IF EXISTS (SELECT FROM unnest(ats) t WHERE t < rolled) THEN
		INSERT INTO hokusai_auth.api_key_usage_hourly AS h
			(api_key_id, hour, endpoint, status_code, requests, timed_requests,
			 response_ms_sum, max_response_ms)
		SELECT u.k, date_trunc('hour', u.t, 'UTC'), u.e, u.s, count(*), count(u.r),
			   coalesce(sum(u.r), 0), max(u.r)
		  FROM unnest(key_ids, endpoints, ats, response_times, status_codes) u(k, e, t, r, s)
		 WHERE u.t < rolled
		   AND EXISTS (SELECT FROM hokusai_auth.api_keys a WHERE a.id = u.k)
		 GROUP BY 1, 2, 3, 4
		ON CONFLICT (api_key_id, hour, endpoint, status_code) DO UPDATE
		   SET requests = h.requests + excluded.requests,
			   timed_requests = h.timed_requests + excluded.timed_requests,
			   response_ms_sum = h.response_ms_sum + excluded.response_ms_sum,
			   max_response_ms = greatest(h.max_response_ms, excluded.max_response_ms);

		INSERT INTO hokusai_auth.api_key_latency_hourly AS l
			(api_key_id, hour, histogram, max_response_ms)
		SELECT g.k, g.hour, hokusai_auth._hist_build(array_agg(g.b), array_agg(g.c)), max(g.mx)
		  FROM (SELECT u.k, date_trunc('hour', u.t, 'UTC') AS hour,
					   width_bucket(u.r, hokusai_auth._latency_bounds()) + 1 AS b,
					   count(*) AS c, max(u.r) AS mx
				  FROM unnest(key_ids, ats, response_times) u(k, t, r)
				 WHERE u.t < rolled AND u.r IS NOT NULL
				   AND EXISTS (SELECT FROM hokusai_auth.api_keys a WHERE a.id = u.k)
				 GROUP BY 1, 2, 3) g
		 GROUP BY g.k, g.hour
		ON CONFLICT (api_key_id, hour) DO UPDATE
		   SET histogram = hokusai_auth._hist_add(l.histogram, excluded.histogram),
			   max_response_ms = greatest(l.max_response_ms, excluded.max_response_ms);
	END IF;
	RETURN n;
END
$$;

-- last_used_at: one UPDATE per key per flush, never moving it backwards.
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
	   AND (a.last_used_at IS NULL OR a.last_used_at < t.at);
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

------------------------------------------------------------------------------
-- Replicas: usage recorded on hot standbys, shipped here by their workers
-- (src/replica/ship.c) and received once (src/replica/receive.c): per
-- standby run, the queue position below which everything was received.
-- Grant EXECUTE on _receive_usage() to the role the standbys connect as
-- (docs/scaling.md); it needs nothing else.
------------------------------------------------------------------------------

CREATE TABLE hokusai_auth.usage_shipments (
	run_id			uuid PRIMARY KEY,
	received_until	bigint NOT NULL DEFAULT 0,
	first_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	last_at			timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE hokusai_auth.usage_shipments IS
	'Per standby run: the queue position below which its usage has been received';

CREATE FUNCTION hokusai_auth._receive_usage(run_id uuid, upto bigint,
	positions bigint[], key_ids uuid[], endpoints text[], ats bigint[],
	response_times integer[], status_codes integer[],
	touch_keys uuid[], touch_ats bigint[])
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'hk_sql_receive_usage'
	LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION hokusai_auth.replica_stats(
	OUT in_recovery boolean, OUT invalidation_reads bigint,
	OUT invalidations_applied bigint, OUT invalidation_clear_all bigint,
	OUT shipped bigint, OUT touches_shipped bigint, OUT ship_calls bigint,
	OUT ship_failures bigint, OUT last_ship_at timestamptz,
	OUT primary_reachable boolean, OUT received bigint,
	OUT received_duplicates bigint, OUT received_deferred bigint)
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
	OUT last_flush_at timestamptz, OUT worker_pid integer, OUT stats_reset timestamptz)
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

-- Roll up every whole UTC hour before the current one; returns the number
-- of hours rolled up.
CREATE FUNCTION hokusai_auth.rollup_usage()
	RETURNS integer
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	from_hour	timestamptz;
	to_hour		timestamptz := date_trunc('hour', now(), 'UTC');
BEGIN
	-- Waits for a worker batch in flight; holds the worker off meanwhile.
	SELECT s.rolled_until INTO from_hour FROM hokusai_auth.usage_rollup_state s FOR UPDATE;
	IF from_hour = '-infinity' THEN
		SELECT date_trunc('hour', min(u."timestamp"), 'UTC') INTO from_hour
		  FROM hokusai_auth.api_key_usage u;
		from_hour := coalesce(least(from_hour, to_hour), to_hour);
	END IF;
	IF from_hour >= to_hour THEN
		UPDATE hokusai_auth.usage_rollup_state
		   SET rolled_until = greatest(rolled_until, from_hour), rolled_at = now();
		RETURN 0;
	END IF;

	INSERT INTO hokusai_auth.api_key_usage_hourly AS h
		(api_key_id, hour, endpoint, status_code, requests, timed_requests,
		 response_ms_sum, max_response_ms)
	SELECT u.api_key_id, date_trunc('hour', u."timestamp", 'UTC'), u.endpoint, u.status_code,
		   count(*), count(u.response_time_ms), coalesce(sum(u.response_time_ms), 0),
		   max(u.response_time_ms)
	  FROM hokusai_auth.api_key_usage u
	 WHERE u."timestamp" >= from_hour AND u."timestamp" < to_hour
	 GROUP BY 1, 2, 3, 4
	ON CONFLICT (api_key_id, hour, endpoint, status_code) DO UPDATE
	   SET requests = h.requests + excluded.requests,
		   timed_requests = h.timed_requests + excluded.timed_requests,
		   response_ms_sum = h.response_ms_sum + excluded.response_ms_sum,
		   max_response_ms = greatest(h.max_response_ms, excluded.max_response_ms);

	INSERT INTO hokusai_auth.api_key_latency_hourly AS l
		(api_key_id, hour, histogram, max_response_ms)
	SELECT g.api_key_id, g.hour, hokusai_auth._hist_build(array_agg(g.b), array_agg(g.c)), max(g.mx)
	  FROM (SELECT u.api_key_id, date_trunc('hour', u."timestamp", 'UTC') AS hour,
				   width_bucket(u.response_time_ms, hokusai_auth._latency_bounds()) + 1 AS b,
				   count(*) AS c, max(u.response_time_ms) AS mx
			  FROM hokusai_auth.api_key_usage u
			 WHERE u."timestamp" >= from_hour AND u."timestamp" < to_hour
			   AND u.response_time_ms IS NOT NULL
			 GROUP BY 1, 2, 3) g
	 GROUP BY g.api_key_id, g.hour
	ON CONFLICT (api_key_id, hour) DO UPDATE
	   SET histogram = hokusai_auth._hist_add(l.histogram, excluded.histogram),
		   max_response_ms = greatest(l.max_response_ms, excluded.max_response_ms);

	UPDATE hokusai_auth.usage_rollup_state SET rolled_until = to_hour, rolled_at = now();
	RETURN extract(epoch FROM to_hour - from_hour)::integer / 3600;
END
$$;
COMMENT ON FUNCTION hokusai_auth.rollup_usage() IS
	'Roll raw usage up into hourly tables for every whole UTC hour not yet rolled up; returns the hours done';

-- Delete raw events older than retention (rolling them up first, so the
-- summaries keep counting them); returns the number of rows deleted.
CREATE FUNCTION hokusai_auth.prune_usage(retention interval DEFAULT '30 days')
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	cutoff	timestamptz;
	n		bigint;
BEGIN
	IF retention IS NULL OR retention < interval '1 hour' THEN
		RAISE EXCEPTION 'retention must be at least 1 hour'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM hokusai_auth.rollup_usage();
	SELECT least(now() - retention, s.rolled_until) INTO cutoff
	  FROM hokusai_auth.usage_rollup_state s;
	DELETE FROM hokusai_auth.api_key_usage u WHERE u."timestamp" < cutoff;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION hokusai_auth.prune_usage(interval) IS
	'Delete raw usage events older than retention (after rolling them up); returns rows deleted';

-- Install (or replace) the pg_cron jobs.  pg_cron must be installed in
-- this database (cron.database_name).  The job bodies are schema-qualified:
-- nothing in them is resolved through the search_path of whoever runs them.
CREATE FUNCTION hokusai_auth.schedule_housekeeping(retention interval DEFAULT '30 days',
	rollup_schedule text DEFAULT '*/5 * * * *',
	prune_schedule text DEFAULT '17 3 * * *')
	RETURNS TABLE (jobid bigint, jobname text, schedule text, command text)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	rollup_cmd	text := 'SELECT hokusai_auth.rollup_usage()';
	prune_cmd	text;
BEGIN
	IF retention IS NULL OR retention OPERATOR(pg_catalog.<) interval '1 hour' THEN
		RAISE EXCEPTION 'retention must be at least 1 hour'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM hokusai_auth._check_text(rollup_schedule, 'rollup_schedule', 100);
	PERFORM hokusai_auth._check_text(prune_schedule, 'prune_schedule', 100);
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e
					WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron') THEN
		RAISE EXCEPTION 'pg_cron is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart, and run CREATE EXTENSION pg_cron.';
	END IF;
	prune_cmd := pg_catalog.format('SELECT hokusai_auth.prune_usage(CAST(%L AS pg_catalog.interval))',
								   retention::text);
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
	EXECUTE 'SELECT cron.schedule($1, $2, $3)'
		USING 'hokusai_auth.rollup', rollup_schedule, rollup_cmd;
	EXECUTE 'SELECT cron.schedule($1, $2, $3)'
		USING 'hokusai_auth.prune', prune_schedule, prune_cmd;
	RETURN QUERY EXECUTE
		'SELECT j.jobid, j.jobname::text, j.schedule::text, j.command::text FROM cron.job j
		  WHERE j.jobname IN (''hokusai_auth.rollup'', ''hokusai_auth.prune'')
		  ORDER BY j.jobname';
END
$$;
COMMENT ON FUNCTION hokusai_auth.schedule_housekeeping(interval, text, text) IS
	'Install the pg_cron jobs hokusai_auth.rollup and hokusai_auth.prune (raw usage kept for retention)';

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
-- Analytics
------------------------------------------------------------------------------

-- Requests per key, UTC hour, endpoint and status: rollups for the hours
-- rolled up, raw events for the rest.
CREATE VIEW hokusai_auth.usage_hourly AS
	SELECT h.api_key_id, h.hour, h.endpoint, h.status_code, h.requests,
		   CASE WHEN h.status_code >= 400 THEN h.requests ELSE 0 END AS errors,
		   h.timed_requests, h.response_ms_sum,
		   round(h.response_ms_sum::numeric / nullif(h.timed_requests, 0), 1) AS avg_response_ms,
		   h.max_response_ms
	  FROM hokusai_auth.api_key_usage_hourly h
	UNION ALL
	SELECT u.api_key_id, date_trunc('hour', u."timestamp", 'UTC'), u.endpoint, u.status_code,
		   count(*),
		   CASE WHEN u.status_code >= 400 THEN count(*) ELSE 0 END,
		   count(u.response_time_ms), coalesce(sum(u.response_time_ms), 0),
		   round(avg(u.response_time_ms), 1), max(u.response_time_ms)
	  FROM hokusai_auth.api_key_usage u
	 WHERE u."timestamp" >= (SELECT s.rolled_until FROM hokusai_auth.usage_rollup_state s)
	 GROUP BY u.api_key_id, date_trunc('hour', u."timestamp", 'UTC'), u.endpoint, u.status_code;
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
	SELECT u.api_key_id, date_trunc('minute', u."timestamp") AS minute,
		   count(*) AS requests, count(*) FILTER (WHERE u.status_code >= 400) AS errors,
		   round(avg(u.response_time_ms), 1) AS avg_response_ms,
		   max(u.response_time_ms) AS max_response_ms
	  FROM hokusai_auth.api_key_usage u
	 GROUP BY u.api_key_id, date_trunc('minute', u."timestamp");
COMMENT ON VIEW hokusai_auth.usage_per_minute IS
	'Requests per key and minute, from raw events (as far back as the retention keeps them)';

-- The whole-hour part of [lo, hi) that the rollups cover, as [r_lo, r_hi);
-- empty (r_lo = r_hi = lo) when there is none.
CREATE FUNCTION hokusai_auth._rollup_span(lo timestamptz, hi timestamptz,
	OUT r_lo timestamptz, OUT r_hi timestamptz)
	RETURNS record
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	rolled	timestamptz;
BEGIN
	SELECT s.rolled_until INTO rolled FROM hokusai_auth.usage_rollup_state s;
	r_lo := CASE WHEN lo = '-infinity' OR date_trunc('hour', lo, 'UTC') = lo THEN lo
				 ELSE date_trunc('hour', lo, 'UTC') + interval '1 hour' END;
	r_hi := least(hi, rolled);
	IF isfinite(r_hi) THEN
		r_hi := date_trunc('hour', r_hi, 'UTC');
	END IF;
	IF r_hi <= r_lo THEN
		r_lo := lo;
		r_hi := lo;
	END IF;
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
	lo		timestamptz := coalesce(since, '-infinity');
	hi		timestamptz := coalesce(until, now());
	span	record;
	hist	bigint[];
BEGIN
	PERFORM hokusai_auth._check_range(key_id, since, until);
	span := hokusai_auth._rollup_span(lo, hi);

	WITH raw AS (
		SELECT u.endpoint, u.status_code,
			   width_bucket(u.response_time_ms, hokusai_auth._latency_bounds()) + 1 AS b,
			   count(*) AS n, count(u.response_time_ms) AS timed,
			   coalesce(sum(u.response_time_ms), 0) AS ms, max(u.response_time_ms) AS mx
		  FROM hokusai_auth.api_key_usage u
		 WHERE u.api_key_id = usage_summary.key_id
		   AND ((u."timestamp" >= lo AND u."timestamp" < span.r_lo)
				OR (u."timestamp" >= span.r_hi AND u."timestamp" < hi))
		 GROUP BY 1, 2, 3
	), g AS (
		-- Grouped at once: a few rows per endpoint and status, however long the range.
		SELECT h.endpoint, h.status_code, sum(h.requests) AS n, sum(h.timed_requests) AS timed,
			   sum(h.response_ms_sum) AS ms, max(h.max_response_ms) AS mx
		  FROM hokusai_auth.api_key_usage_hourly h
		 WHERE h.api_key_id = usage_summary.key_id
		   AND h.hour >= span.r_lo AND h.hour < span.r_hi
		 GROUP BY 1, 2
		UNION ALL
		SELECT r.endpoint, r.status_code, r.n, r.timed, r.ms, r.mx FROM raw r
	), hb AS (
		SELECT x.i::integer AS b, x.c
		  FROM hokusai_auth.api_key_latency_hourly l,
			   unnest(l.histogram) WITH ORDINALITY x(c, i)
		 WHERE l.api_key_id = usage_summary.key_id
		   AND l.hour >= span.r_lo AND l.hour < span.r_hi AND x.c > 0
		UNION ALL
		SELECT r.b, r.n FROM raw r WHERE r.b IS NOT NULL
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
		   (SELECT hokusai_auth._hist_build(array_agg(hb.b), array_agg(hb.c)) FROM hb)
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
				   avg_response_ms numeric, max_response_ms integer)
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	lo		timestamptz := coalesce(since, '-infinity');
	hi		timestamptz := coalesce(until, now());
	span	record;
BEGIN
	PERFORM hokusai_auth._check_range(key_id, since, until);
	IF period IS NULL OR period NOT IN ('minute', 'hour', 'day') THEN
		RAISE EXCEPTION 'invalid period'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use "minute", "hour" or "day".';
	END IF;
	IF period = 'minute' THEN
		span := hokusai_auth._rollup_span(lo, lo);	-- raw events only
	ELSE
		span := hokusai_auth._rollup_span(lo, hi);
	END IF;

	RETURN QUERY
	WITH g AS (
		SELECT h.hour AS t, h.status_code, h.requests AS n, h.timed_requests AS timed,
			   h.response_ms_sum AS ms, h.max_response_ms AS mx
		  FROM hokusai_auth.api_key_usage_hourly h
		 WHERE h.api_key_id = usage_timeseries.key_id
		   AND h.hour >= span.r_lo AND h.hour < span.r_hi
		UNION ALL
		SELECT u."timestamp", u.status_code, 1, (u.response_time_ms IS NOT NULL)::integer,
			   coalesce(u.response_time_ms, 0), u.response_time_ms
		  FROM hokusai_auth.api_key_usage u
		 WHERE u.api_key_id = usage_timeseries.key_id
		   AND ((u."timestamp" >= lo AND u."timestamp" < span.r_lo)
				OR (u."timestamp" >= span.r_hi AND u."timestamp" < hi))
	)
	SELECT CASE period WHEN 'hour' THEN date_trunc('hour', g.t, 'UTC')
					   ELSE date_trunc(period, g.t) END AS p,
		   sum(g.n)::bigint, coalesce(sum(g.n) FILTER (WHERE g.status_code >= 400), 0)::bigint,
		   round(sum(g.ms)::numeric / nullif(sum(g.timed), 0), 1), max(g.mx)
	  FROM g
	 GROUP BY 1
	 ORDER BY 1;
END
$$;
COMMENT ON FUNCTION hokusai_auth.usage_timeseries(uuid, text, timestamptz, timestamptz) IS
	'One key''s requests, errors and response times per minute, hour or day in [since, until)';
