--
-- usage: record_usage() and track_request() check their input; the
-- partitions; the analytics (usage_summary, usage_timeseries, the views)
-- read the aggregates only and answer what the raw log does when nothing
-- is sampled; sampling; retention by dropping partitions and late events;
-- the histogram's error bound; expire_keys().
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

-- The partitions: made ahead (the worker does this every hour; here the
-- worker serves another database), none by the install script.
SELECT count(*) AS partitions_at_install FROM hokusai_auth.usage_partitions;
-- three days of raw and minute partitions, the month and the year of each
-- (two when the days cross into the next month or year)
SELECT hokusai_auth.create_usage_partitions(2) BETWEEN 8 AND 10 AS made;
SELECT hokusai_auth.create_usage_partitions(2) AS made_again;
SELECT table_name, CASE WHEN table_name::text ~ '(hourly|daily)$' THEN count(*) IN (1, 2)
						ELSE count(*) = 3 END AS partitions,
	   bool_and(from_time = date_trunc(CASE WHEN table_name::text LIKE '%hourly' THEN 'month'
											WHEN table_name::text LIKE '%daily' THEN 'year' ELSE 'day' END,
									   from_time, 'UTC')) AS aligned
  FROM hokusai_auth.usage_partitions GROUP BY 1 ORDER BY 1;
SELECT pg_temp.try($$SELECT hokusai_auth.create_usage_partitions(-1)$$) AS negative_days;

-- The analytics, over events written through _usage_flush() (the worker's
-- write step in SQL) with every request kept raw: 30 requests per hour for
-- 6 hours ending at :t0 on two endpoints, 10% errors, and 180 without
-- endpoint, time or status; one of another key.
SELECT date_trunc('hour', now()) - interval '2 hours' AS t0 \gset
SELECT count(hokusai_auth._usage_make_partition(p, t)) AS made_for_the_past
  FROM unnest(ARRAY['hokusai_auth.api_key_usage', 'hokusai_auth.api_key_usage_minutely',
					'hokusai_auth.api_key_usage_hourly']::regclass[]) p,
	   (VALUES (:'t0'::timestamptz - interval '7 hours'), (:'t0'::timestamptz)) v(t);
CREATE TEMP TABLE ev AS
SELECT :'k_id'::uuid AS k, CASE WHEN i % 3 = 0 THEN '/b' ELSE '/a' END AS e,
	   :'t0'::timestamptz - interval '6 hours' + i * interval '12 minutes' / 1 AS t,
	   i % 10 AS r, CASE WHEN i % 10 = 0 THEN 503 WHEN i % 10 = 5 THEN 404 ELSE 200 END AS s
  FROM generate_series(0, 29) i
UNION ALL
SELECT :'k_id', NULL, :'t0'::timestamptz - interval '6 hours' + i * interval '2 minutes' + interval '17 seconds',
	   NULL, NULL
  FROM generate_series(0, 179) i
UNION ALL
SELECT :'o_id', '/a', :'t0'::timestamptz - interval '1 hour', 1000, 200;
SELECT current_setting('hokusai_auth.usage_raw_sample') AS raw_sample;
SELECT hokusai_auth._usage_flush(array_agg(k), array_agg(e), array_agg(t), array_agg(r), array_agg(s)) AS counted
  FROM ev;

-- Nothing sampled: the raw log is every event, and the aggregates answer
-- what the raw log does (a minute counts when it starts in [since, until)).
SELECT (SELECT count(*) FROM hokusai_auth.api_key_usage) AS raw_rows,
	   (SELECT sum(requests) FROM hokusai_auth.api_key_usage_minutely) AS minute_requests,
	   (SELECT sum(requests) FROM hokusai_auth.api_key_usage_hourly) AS hour_requests;
CREATE FUNCTION pg_temp.raw_summary(key_id uuid, lo timestamptz, hi timestamptz)
	RETURNS TABLE (requests bigint, errors bigint, client_errors bigint, server_errors bigint,
				   avg_response_ms numeric, max_response_ms integer, by_status jsonb, by_endpoint jsonb)
	LANGUAGE sql AS $$
	WITH u AS (SELECT * FROM hokusai_auth.api_key_usage u
				WHERE u.api_key_id = key_id
				  AND date_trunc('minute', u."timestamp") >= lo AND date_trunc('minute', u."timestamp") < hi)
	SELECT count(*), count(*) FILTER (WHERE status_code >= 400),
		   count(*) FILTER (WHERE status_code BETWEEN 400 AND 499), count(*) FILTER (WHERE status_code >= 500),
		   round(avg(response_time_ms), 1), max(response_time_ms),
		   (SELECT jsonb_agg(jsonb_build_object('status_code', s, 'requests', n) ORDER BY s NULLS LAST)
			  FROM (SELECT status_code s, count(*) n FROM u GROUP BY 1) x),
		   (SELECT jsonb_agg(jsonb_build_object('endpoint', e, 'requests', n, 'errors', er, 'avg_response_ms', a)
							 ORDER BY n DESC, e NULLS LAST)
			  FROM (SELECT endpoint e, count(*) n, count(*) FILTER (WHERE status_code >= 400) er,
						   round(avg(response_time_ms), 1) a FROM u GROUP BY 1) y)
	  FROM u
$$;
SELECT r.what,
	   (s.requests, s.errors, s.client_errors, s.server_errors, s.avg_response_ms, s.max_response_ms,
		s.by_status, s.by_endpoint)::text
	   = (w.requests, w.errors, w.client_errors, w.server_errors, w.avg_response_ms, w.max_response_ms,
		  coalesce(w.by_status, '[]'), coalesce(w.by_endpoint, '[]'))::text AS same_as_raw,
	   s.requests
  FROM (VALUES ('6 whole hours', :'t0'::timestamptz - interval '6 hours', :'t0'::timestamptz),
			   ('from a half hour', :'t0'::timestamptz - interval '5 hours 30 minutes', :'t0'::timestamptz),
			   ('inside minutes', :'t0'::timestamptz - interval '5 hours 29 minutes 59 seconds',
				:'t0'::timestamptz - interval '61 minutes 30 seconds'),
			   ('one minute', :'t0'::timestamptz - interval '200 minutes', :'t0'::timestamptz - interval '199 minutes'),
			   ('all time', '-infinity'::timestamptz, 'infinity'::timestamptz)) r(what, lo, hi),
	   LATERAL hokusai_auth.usage_summary(:'k_id', r.lo, r.hi) s,
	   LATERAL pg_temp.raw_summary(:'k_id',
			CASE WHEN date_trunc('minute', r.lo) = r.lo THEN r.lo ELSE date_trunc('minute', r.lo) + interval '1 minute' END,
			CASE WHEN date_trunc('minute', r.hi) = r.hi THEN r.hi ELSE date_trunc('minute', r.hi) + interval '1 minute' END) w
 ORDER BY s.requests DESC;
-- The time series: every period's requests, errors, average and maximum
-- as the raw log's.
SELECT p.period,
	   (SELECT count(*) FROM hokusai_auth.usage_timeseries(:'k_id', p.period,
			:'t0'::timestamptz - interval '6 hours', :'t0'))
		 = CASE p.period WHEN 'minute' THEN 180 WHEN 'hour' THEN 6
			  ELSE 1 + (date_trunc('day', :'t0'::timestamptz - interval '6 hours') < date_trunc('day', :'t0'::timestamptz - interval '1 minute'))::int END
		 AS periods,
	   NOT EXISTS (
		(SELECT period_start, requests, errors, avg_response_ms, max_response_ms
		   FROM hokusai_auth.usage_timeseries(:'k_id', p.period, :'t0'::timestamptz - interval '6 hours', :'t0')
		 EXCEPT
		 SELECT date_trunc(p.period, u."timestamp", 'UTC'), count(*), count(*) FILTER (WHERE status_code >= 400),
				round(avg(response_time_ms), 1), max(response_time_ms)
		   FROM hokusai_auth.api_key_usage u
		  WHERE u.api_key_id = :'k_id' AND u."timestamp" >= :'t0'::timestamptz - interval '6 hours'
			AND u."timestamp" < :'t0'
		  GROUP BY 1)) AS same_as_raw
  FROM (VALUES ('minute'), ('hour'), ('day')) p(period);
SELECT period_start - :'t0'::timestamptz AS hour_offset, requests, errors, avg_response_ms, max_response_ms,
	   p50_response_ms, p95_response_ms, p99_response_ms
  FROM hokusai_auth.usage_timeseries(:'k_id', 'hour', :'t0'::timestamptz - interval '6 hours', :'t0');
SELECT requests, errors, client_errors, server_errors, avg_response_ms,
	   p50_response_ms, p95_response_ms, p99_response_ms, max_response_ms
  FROM hokusai_auth.usage_summary(:'k_id', :'t0'::timestamptz - interval '5 hours 30 minutes', :'t0');
SELECT jsonb_pretty(by_status) AS by_status, jsonb_pretty(by_endpoint) AS by_endpoint
  FROM hokusai_auth.usage_summary(:'k_id', :'t0'::timestamptz - interval '5 hours 30 minutes', :'t0');
SELECT percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY response_time_ms) AS exact_percentiles
  FROM hokusai_auth.api_key_usage
 WHERE api_key_id = :'k_id'
   AND "timestamp" >= :'t0'::timestamptz - interval '5 hours 30 minutes' AND "timestamp" < :'t0';

-- Over days: a third key with a request every 7 minutes 13 seconds for 70
-- hours; whole UTC days come from the daily aggregates.
SELECT hokusai_auth.create_user('multi') AS multi \gset
SELECT id AS m_id FROM hokusai_auth.create_key(:'multi', 'days') \gset
SELECT count(hokusai_auth._usage_make_partition(p, :'t0'::timestamptz - d * interval '1 day'))
		AS made_for_days
  FROM unnest(ARRAY['hokusai_auth.api_key_usage', 'hokusai_auth.api_key_usage_minutely',
					'hokusai_auth.api_key_usage_hourly', 'hokusai_auth.api_key_usage_daily']::regclass[]) p,
	   generate_series(0, 3) d;
SELECT hokusai_auth._usage_flush(array_agg(:'m_id'::uuid), array_agg('/d' || (i % 4)),
	array_agg(:'t0'::timestamptz - i * interval '433 seconds'), array_agg((i * 37) % 3000),
	array_agg(CASE WHEN i % 9 = 0 THEN 500 WHEN i % 7 = 0 THEN 429 ELSE 200 END)) AS counted
  FROM generate_series(1, 70 * 3600 / 433) i;
SELECT r.what,
	   (s.requests, s.errors, s.client_errors, s.server_errors, s.avg_response_ms, s.max_response_ms,
		s.by_status, s.by_endpoint)::text
	   = (w.requests, w.errors, w.client_errors, w.server_errors, w.avg_response_ms, w.max_response_ms,
		  coalesce(w.by_status, '[]'), coalesce(w.by_endpoint, '[]'))::text AS same_as_raw,
	   s.requests > 0 AS some
  FROM (VALUES ('70 hours', :'t0'::timestamptz - interval '70 hours', :'t0'::timestamptz),
			   ('two days and odd minutes', :'t0'::timestamptz - interval '2 days 17 hours 23 minutes 5 seconds',
				:'t0'::timestamptz - interval '3 minutes 1 second')) r(what, lo, hi),
	   LATERAL hokusai_auth.usage_summary(:'m_id', r.lo, r.hi) s,
	   LATERAL pg_temp.raw_summary(:'m_id',
			CASE WHEN date_trunc('minute', r.lo) = r.lo THEN r.lo ELSE date_trunc('minute', r.lo) + interval '1 minute' END,
			CASE WHEN date_trunc('minute', r.hi) = r.hi THEN r.hi ELSE date_trunc('minute', r.hi) + interval '1 minute' END) w
 ORDER BY 1;
SELECT p.period,
	   NOT EXISTS (
		(SELECT period_start, requests, errors, avg_response_ms, max_response_ms
		   FROM hokusai_auth.usage_timeseries(:'m_id', p.period, :'t0'::timestamptz - interval '70 hours', :'t0')
		 EXCEPT
		 SELECT date_trunc(p.period, u."timestamp", 'UTC'), count(*), count(*) FILTER (WHERE status_code >= 400),
				round(avg(response_time_ms), 1), max(response_time_ms)
		   FROM hokusai_auth.api_key_usage u
		  WHERE u.api_key_id = :'m_id' AND u."timestamp" >= :'t0'::timestamptz - interval '70 hours'
			AND u."timestamp" < :'t0'
		  GROUP BY 1)) AS same_as_raw
  FROM (VALUES ('hour'), ('day')) p(period);
-- Percentiles over days: within 1/16 of the raw log's.
SELECT abs(s.p50_response_ms - x.p[1]) <= x.p[1] / 16.0 AS p50, abs(s.p95_response_ms - x.p[2]) <= x.p[2] / 16.0 AS p95,
	   abs(s.p99_response_ms - x.p[3]) <= x.p[3] / 16.0 AS p99
  FROM hokusai_auth.usage_summary(:'m_id', :'t0'::timestamptz - interval '70 hours', :'t0') s,
	   (SELECT percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY response_time_ms) AS p
		  FROM hokusai_auth.api_key_usage WHERE api_key_id = :'m_id') x;

-- The summaries read the aggregates only: with the raw rows gone, they
-- answer as before.
CREATE TEMP TABLE summary_before AS
SELECT * FROM hokusai_auth.usage_summary(:'k_id', :'t0'::timestamptz - interval '6 hours', :'t0');
DELETE FROM hokusai_auth.api_key_usage;
SELECT (SELECT row(s.*)::text FROM hokusai_auth.usage_summary(:'k_id', :'t0'::timestamptz - interval '6 hours', :'t0') s)
	 = (SELECT row(b.*)::text FROM summary_before b) AS same_without_raw_rows;

-- The views.
SELECT sum(requests) AS requests, sum(errors) AS errors
  FROM hokusai_auth.usage_daily WHERE api_key_id = :'k_id';
SELECT endpoint, requests, errors, avg_response_ms, max_response_ms
  FROM hokusai_auth.usage_by_endpoint WHERE api_key_id = :'k_id' ORDER BY endpoint NULLS LAST;
SELECT status_code, requests FROM hokusai_auth.usage_by_status
 WHERE api_key_id = :'k_id' ORDER BY status_code NULLS LAST;
SELECT sum(requests) AS per_minute_total, count(*) AS minutes
  FROM hokusai_auth.usage_per_minute WHERE api_key_id = :'k_id';
SELECT sum(requests) AS hourly_total FROM hokusai_auth.usage_hourly WHERE api_key_id = :'k_id';

-- Sampling: usage_raw_sample keeps that share of requests as raw rows,
-- drawn per request; the aggregates count them all.
ALTER SYSTEM SET hokusai_auth.usage_raw_sample = 0.25;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
SELECT current_setting('hokusai_auth.usage_raw_sample') AS raw_sample;
SELECT hokusai_auth._usage_flush(array_fill(:'k_id'::uuid, ARRAY[4000]),
	array_fill('/sampled'::text, ARRAY[4000]), array_fill(now(), ARRAY[4000]),
	array_fill(1, ARRAY[4000]), array_fill(200, ARRAY[4000])) AS counted;
SELECT (SELECT sum(requests) FROM hokusai_auth.api_key_usage_minutely WHERE endpoint = '/sampled') AS aggregated,
	   (SELECT count(*) FROM hokusai_auth.api_key_usage WHERE endpoint = '/sampled') BETWEEN 850 AND 1150
		 AS about_a_quarter_raw;
ALTER SYSTEM SET hokusai_auth.usage_raw_sample = 0;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
SELECT hokusai_auth._usage_flush(ARRAY[:'k_id']::uuid[], ARRAY['/not-sampled'], ARRAY[now()],
	ARRAY[1], ARRAY[200]) AS counted;
SELECT (SELECT sum(requests) FROM hokusai_auth.api_key_usage_minutely WHERE endpoint = '/not-sampled') AS aggregated,
	   (SELECT count(*) FROM hokusai_auth.api_key_usage WHERE endpoint = '/not-sampled') AS raw_rows;
ALTER SYSTEM RESET hokusai_auth.usage_raw_sample;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);

-- Retention drops whole partitions: the raw day and minute day 7 hours
-- before :t0 go when older than the retention; the hourly aggregates keep
-- counting them.  A late event for a dropped day is left out (counted 0),
-- never an error; an event of a key that does not exist too.
SELECT hokusai_auth.prune_usage(retention => '1 hour', minute_retention => '1 hour') >= 0 AS pruned;
SELECT count(*) FILTER (WHERE until_time <= now() - interval '1 hour') AS old_partitions_left
  FROM hokusai_auth.usage_partitions WHERE table_name::text NOT LIKE '%hourly';
SELECT hokusai_auth._usage_flush(ARRAY[:'k_id', gen_random_uuid()]::uuid[], ARRAY['/late', '/nokey'],
	ARRAY[now() - interval '3 days', now()]::timestamptz[], ARRAY[1, 1], ARRAY[200, 200]) AS counted;
SELECT requests = (SELECT requests FROM summary_before) AS hours_still_count
  FROM hokusai_auth.usage_summary(:'k_id', :'t0'::timestamptz - interval '6 hours', :'t0');

-- An empty range and bad arguments.
SELECT requests, avg_response_ms, p50_response_ms, by_status, by_endpoint
  FROM hokusai_auth.usage_summary(:'k_id', now() + interval '1 day', now() + interval '2 days');
SELECT t.what, pg_temp.try(format(t.stmt, :'k_id')) AS result FROM (VALUES
	('summary null key', $$SELECT hokusai_auth.usage_summary(NULL)$$),
	('summary reversed', $$SELECT hokusai_auth.usage_summary(%L, now(), now() - interval '1 day')$$),
	('timeseries week', $$SELECT hokusai_auth.usage_timeseries(%L, 'week')$$),
	('prune 1 minute', $$SELECT hokusai_auth.prune_usage('1 minute')$$),
	('prune hours before minutes', $$SELECT hokusai_auth.prune_usage('1 day', '30 days', '1 day')$$),
	('rollup (does nothing)', $$SELECT hokusai_auth.rollup_usage()$$),
	('schedule without pg_cron', $$SELECT hokusai_auth.schedule_housekeeping()$$),
	('unschedule without pg_cron', $$SELECT hokusai_auth.unschedule_housekeeping()$$)
) t(what, stmt);

-- Percentiles come from a response-time histogram: exact below 32 ms,
-- less than 1/16 (6.25%) off above.  Checked against percentile_disc()
-- over 20000 response times spread from 0 to 100 s on a log scale.
SELECT setseed(0.17);
CREATE TEMP TABLE lat AS
SELECT floor(exp(random() * ln(100000)))::integer AS ms FROM generate_series(1, 20000);
SELECT count(*) AS percentiles,
	   count(*) FILTER (WHERE x.exact < 32 AND x.estimate <> x.exact) AS wrong_below_32,
	   max(abs(x.estimate - x.exact) / greatest(x.exact, 1)) < 1.0 / 16 AS within_one_sixteenth,
	   round(max(abs(x.estimate - x.exact) / greatest(x.exact, 1)), 4) AS worst
  FROM (SELECT ps.p, hokusai_auth._hist_percentile(h.h, ps.p, h.mx) AS estimate, e.exact
		  FROM (SELECT hokusai_auth._hist_of(ms) AS h, max(ms) AS mx,
					   percentile_disc(ARRAY(SELECT generate_series(1, 99) / 100.0::float8))
						 WITHIN GROUP (ORDER BY ms) AS exact
				  FROM lat) h,
			   unnest(h.exact) WITH ORDINALITY e(exact, i),
			   LATERAL (SELECT e.i / 100.0::float8 AS p) ps) x;
SELECT hokusai_auth._hist_percentile(hokusai_auth._hist_of(v), 0.5, max(v)) AS median_of_one
  FROM (VALUES (7)) t(v);
SELECT hokusai_auth._hist_merge('{3,1,40,2}', '{3,4,400,1}') AS merged,
	   hokusai_auth._hist_merge(NULL, NULL) AS empty;
SELECT pg_temp.try($$SELECT hokusai_auth._hist_merge('{3}', NULL)$$) AS odd,
	   pg_temp.try($$SELECT hokusai_auth._hist_merge('{448,1}', NULL)$$) AS out_of_range;

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
