--
-- usage: record_usage() and track_request() check their input; the
-- analytics (usage_summary, usage_timeseries, the views) agree with the raw
-- events before and after the hourly rollup; expire_keys() and retention.
-- The queue and the worker themselves are tested by test/t/030_usage_worker.pl
-- (the worker of this instance serves another database).
--
SET hokusai_auth.bcrypt_cost = 4;
SET TimeZone = 'UTC';
\set SHOW_CONTEXT never

CREATE FUNCTION pg_temp.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT hokusai_auth.create_user('uma') AS uma \gset
SELECT * FROM hokusai_auth.create_key(:'uma', 'usage') \gset k_
SELECT * FROM hokusai_auth.create_key(:'uma', 'other') \gset o_

-- record_usage and track_request: bad input.
SELECT t.what, pg_temp.try(format(t.stmt, :'k_id')) AS result FROM (VALUES
	('null key_id', $$SELECT hokusai_auth.record_usage(NULL, '/a', 1, 200)$$),
	('negative time', $$SELECT hokusai_auth.record_usage(%L, '/a', -1, 200)$$),
	('status 99', $$SELECT hokusai_auth.record_usage(%L, '/a', 1, 99)$$),
	('status 600', $$SELECT hokusai_auth.record_usage(%L, '/a', 1, 600)$$),
	('endpoint 2049 chars', $$SELECT hokusai_auth.record_usage(%L, repeat('a', 2049), 1, 200)$$),
	('endpoint newline', $$SELECT hokusai_auth.record_usage(%L, E'/a\nb', 1, 200)$$),
	('endpoint C1 control', $$SELECT hokusai_auth.record_usage(%L, E'/a\u0085', 1, 200)$$),
	('endpoint 2048 chars', $$SELECT hokusai_auth.record_usage(%L, repeat('é', 2048), 1, 200)$$),
	('nulls allowed', $$SELECT hokusai_auth.record_usage(%L, NULL, NULL, NULL)$$),
	('status 100', $$SELECT hokusai_auth.record_usage(%L, '/a', 0, 100)$$),
	('status 599', $$SELECT hokusai_auth.record_usage(%L, '/a', 2147483647, 599)$$),
	('track null key', $$SELECT hokusai_auth.track_request(NULL, '/a')$$),
	('track tab', $$SELECT hokusai_auth.track_request(%L, E'/a\tb')$$),
	('track too long', $$SELECT hokusai_auth.track_request(%L, repeat('/', 3000))$$),
	('track ok', $$SELECT hokusai_auth.track_request(%L, '/rpc/x')$$)
) t(what, stmt);

-- Neither writes a table: both work in a read-only transaction.
BEGIN READ ONLY;
SELECT pg_typeof(hokusai_auth.record_usage(:'k_id', '/ro', 5, 200));
SELECT hokusai_auth.track_request(:'k_id', '/ro');
COMMIT;
SELECT count(*) AS rows_written FROM hokusai_auth.api_key_usage;

-- The analytics, over raw events inserted here directly: 30 requests per
-- hour for 6 hours ending at :t0, on two endpoints, 10% errors.
SELECT date_trunc('hour', now()) - interval '2 hours' AS t0 \gset
INSERT INTO hokusai_auth.api_key_usage
	(api_key_id, endpoint, "timestamp", response_time_ms, status_code)
SELECT :'k_id', CASE WHEN i % 3 = 0 THEN '/b' ELSE '/a' END,
	   :'t0'::timestamptz - interval '6 hours' + i * interval '12 minutes' / 1,
	   i % 10, CASE WHEN i % 10 = 0 THEN 503 WHEN i % 10 = 5 THEN 404 ELSE 200 END
  FROM generate_series(0, 29) i;
INSERT INTO hokusai_auth.api_key_usage
	(api_key_id, endpoint, "timestamp", response_time_ms, status_code)
SELECT :'k_id', NULL, :'t0'::timestamptz - interval '6 hours' + i * interval '2 minutes',
	   NULL, NULL
  FROM generate_series(0, 179) i;
-- Another key's events are not counted.
INSERT INTO hokusai_auth.api_key_usage (api_key_id, endpoint, "timestamp", response_time_ms, status_code)
VALUES (:'o_id', '/a', :'t0'::timestamptz - interval '1 hour', 1000, 200);

CREATE TEMP TABLE raw_summary AS
SELECT * FROM hokusai_auth.usage_summary(:'k_id', :'t0'::timestamptz - interval '5 hours 30 minutes', :'t0');
SELECT requests, errors, client_errors, server_errors, avg_response_ms,
	   p50_response_ms, p95_response_ms, p99_response_ms, max_response_ms
  FROM raw_summary;
SELECT jsonb_pretty(by_status) AS by_status, jsonb_pretty(by_endpoint) AS by_endpoint
  FROM raw_summary;
-- The same figures by hand.
SELECT count(*) AS requests,
	   percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY response_time_ms) AS exact_percentiles
  FROM hokusai_auth.api_key_usage
 WHERE api_key_id = :'k_id'
   AND "timestamp" >= :'t0'::timestamptz - interval '5 hours 30 minutes' AND "timestamp" < :'t0';

SELECT period_start - :'t0'::timestamptz AS hour_offset, requests, errors, avg_response_ms, max_response_ms
  FROM hokusai_auth.usage_timeseries(:'k_id', 'hour', :'t0'::timestamptz - interval '6 hours', :'t0');

-- Roll up: the summaries read rollups for whole hours and raw rows for the
-- edges, and give the same answer.
SELECT hokusai_auth.rollup_usage() > 0 AS rolled;
SELECT rolled_until = date_trunc('hour', now(), 'UTC') AS rolled_to_this_hour
  FROM hokusai_auth.usage_rollup_state;
SELECT count(*) AS rollup_rows, sum(requests) AS rollup_requests
  FROM hokusai_auth.api_key_usage_hourly WHERE api_key_id = :'k_id';
SELECT (SELECT row(s.*)::text FROM hokusai_auth.usage_summary(:'k_id',
			:'t0'::timestamptz - interval '5 hours 30 minutes', :'t0') s)
	 = (SELECT row(r.*)::text FROM raw_summary r) AS same_after_rollup;
SELECT hokusai_auth.rollup_usage() AS nothing_more_to_roll;

-- Rolled-up hours are read from the rollups, not from raw rows: change raw
-- rows and neither the summary over whole hours nor the hourly view moves.
UPDATE hokusai_auth.api_key_usage SET status_code = 200
 WHERE api_key_id = :'k_id' AND status_code = 503;
SELECT errors AS errors_from_rollups
  FROM hokusai_auth.usage_summary(:'k_id', :'t0'::timestamptz - interval '6 hours', :'t0');
SELECT sum(errors) AS view_errors FROM hokusai_auth.usage_hourly WHERE api_key_id = :'k_id';

-- Events that arrive for an hour already rolled up go into the rollups too
-- (the worker inserts through _usage_flush).
SELECT hokusai_auth._usage_flush(ARRAY[:'k_id', :'k_id', gen_random_uuid()]::uuid[],
	ARRAY['/late', '/late', '/gone'], ARRAY[:'t0'::timestamptz - interval '3 hours',
	:'t0'::timestamptz - interval '3 hours', :'t0'::timestamptz]::timestamptz[],
	ARRAY[7, NULL, 1], ARRAY[200, 201, 200]) AS inserted;
SELECT endpoint, status_code, requests, timed_requests, response_ms_sum
  FROM hokusai_auth.api_key_usage_hourly WHERE endpoint = '/late' ORDER BY status_code;
SELECT requests FROM hokusai_auth.usage_summary(:'k_id', :'t0'::timestamptz - interval '6 hours', :'t0');

-- The views.
SELECT sum(requests) AS requests, sum(errors) AS errors
  FROM hokusai_auth.usage_daily WHERE api_key_id = :'k_id';
SELECT endpoint, requests, errors, avg_response_ms, max_response_ms
  FROM hokusai_auth.usage_by_endpoint WHERE api_key_id = :'k_id' ORDER BY endpoint NULLS LAST;
SELECT status_code, requests FROM hokusai_auth.usage_by_status
 WHERE api_key_id = :'k_id' ORDER BY status_code NULLS LAST;
SELECT sum(requests) AS per_minute_total FROM hokusai_auth.usage_per_minute WHERE api_key_id = :'k_id';

-- Minutes come from raw rows.
SELECT count(*) AS minutes, sum(requests) AS requests
  FROM hokusai_auth.usage_timeseries(:'k_id', 'minute', :'t0'::timestamptz - interval '1 hour', :'t0');

-- An empty range and bad arguments.
SELECT requests, avg_response_ms, p50_response_ms, by_status, by_endpoint
  FROM hokusai_auth.usage_summary(:'k_id', now() + interval '1 day', now() + interval '2 days');
SELECT t.what, pg_temp.try(format(t.stmt, :'k_id')) AS result FROM (VALUES
	('summary null key', $$SELECT hokusai_auth.usage_summary(NULL)$$),
	('summary reversed', $$SELECT hokusai_auth.usage_summary(%L, now(), now() - interval '1 day')$$),
	('timeseries week', $$SELECT hokusai_auth.usage_timeseries(%L, 'week')$$),
	('prune 1 minute', $$SELECT hokusai_auth.prune_usage('1 minute')$$),
	('schedule without pg_cron', $$SELECT hokusai_auth.schedule_housekeeping()$$),
	('unschedule without pg_cron', $$SELECT hokusai_auth.unschedule_housekeeping()$$)
) t(what, stmt);

-- Retention: raw rows older than it go, the rollups keep counting them.
SELECT hokusai_auth.prune_usage(retention => '3 hours') > 0 AS pruned;
SELECT count(*) AS raw_left FROM hokusai_auth.api_key_usage
 WHERE "timestamp" < now() - interval '3 hours';
SELECT requests FROM hokusai_auth.usage_summary(:'k_id', :'t0'::timestamptz - interval '6 hours', :'t0');

-- Percentiles come from a response-time histogram: exact below 10 ms,
-- within the bucket above.
SELECT hokusai_auth._hist_percentile(hokusai_auth._hist_build('{1,11,63}', '{10,80,10}'), p, 70000) AS estimate
  FROM unnest(ARRAY[0.05, 0.5, 0.95, 0.995]) p;

-- expire_keys(): deactivates keys past expires_at, one audit row each.
SELECT hokusai_auth.expire_keys() >= 0 AS earlier_tests_keys_expired;
SELECT * FROM hokusai_auth.create_key(:'uma', 'short',
	expires_at => clock_timestamp() + interval '1 second') \gset e_
SELECT hokusai_auth.expire_keys() AS expired_too_early;
SELECT pg_sleep(1.1);
SELECT hokusai_auth.expire_keys() AS expired;
SELECT hokusai_auth.expire_keys() AS expired_again;
SELECT is_active, revoked_at IS NULL AS not_revoked FROM hokusai_auth.api_keys WHERE id = :'e_id';
SELECT action, details ? 'key_prefix' AS has_prefix, details ? 'expires_at' AS has_expiry
  FROM hokusai_auth.audit_log WHERE api_key_id = :'e_id' ORDER BY id;
SELECT hokusai_auth.seal_audit_log() > 0 AS sealed;
SELECT a.prev_hash = p.row_hash AS chained
  FROM hokusai_auth.audit_log a
  JOIN hokusai_auth.audit_log p ON p.seq = (SELECT max(seq) FROM hokusai_auth.audit_log WHERE seq < a.seq)
 WHERE a.api_key_id = :'e_id' AND a.action = 'expire';

-- _usage_touch moves last_used_at forward only.
SELECT hokusai_auth._usage_touch(ARRAY[:'k_id', :'k_id']::uuid[],
	ARRAY['2030-01-01', '2030-01-02']::timestamptz[]) AS touched;
SELECT hokusai_auth._usage_touch(ARRAY[:'k_id']::uuid[], ARRAY['2029-01-01']::timestamptz[]) AS touched_backwards;
SELECT last_used_at FROM hokusai_auth.api_keys WHERE id = :'k_id';

-- The queue counters exist (and the worker of this instance is not ours).
SELECT capacity = current_setting('hokusai_auth.usage_queue_size')::bigint AS capacity_ok,
	   dropped >= 0 AS has_dropped
  FROM hokusai_auth.usage_queue_stats;
SELECT hokusai_auth.usage_queue_stats_reset();
SELECT enqueued, dropped FROM hokusai_auth.usage_queue_stats;
