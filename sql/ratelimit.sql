--
-- ratelimit: sliding-window limits, checked against an exact log.
--
SET hokusai_auth.bcrypt_cost = 4;
\set SHOW_CONTEXT never

-- check(times, per_hour, burst): replays the requests through the limiter
-- and compares each decision with the exact log of admitted requests:
--   over_*: admitted although the exact log already had the limit in the
--           rolling window ending at that request (must be 0);
--   unjustified: refused although even a window one sub-bucket longer
--           (60 s for the hour, 1/60 s for the burst) held fewer than the
--           limit (must be 0).
-- Request times must be distinct.
CREATE FUNCTION pg_temp.check(times timestamptz[], per_hour int, burst int,
	OUT requests bigint, OUT admitted bigint, OUT over_hour bigint,
	OUT over_burst bigint, OUT unjustified bigint)
LANGUAGE sql AS $$
WITH d AS (
	SELECT t, ok FROM unnest(times, hokusai_auth._rate_limit_replay(times, per_hour, burst)) AS x(t, ok)
), w AS (
	SELECT t, ok,
		count(*) FILTER (WHERE ok) OVER (ORDER BY t RANGE BETWEEN interval '3599.999999 s' PRECEDING AND CURRENT ROW) AS in_hour,
		count(*) FILTER (WHERE ok) OVER (ORDER BY t RANGE BETWEEN interval '0.999999 s' PRECEDING AND CURRENT ROW) AS in_second,
		count(*) FILTER (WHERE ok) OVER (ORDER BY t RANGE BETWEEN interval '3660 s' PRECEDING AND CURRENT ROW) AS in_hour_plus,
		count(*) FILTER (WHERE ok) OVER (ORDER BY t RANGE BETWEEN interval '1.016667 s' PRECEDING AND CURRENT ROW) AS in_second_plus
	  FROM d
)
SELECT count(*), count(*) FILTER (WHERE ok),
	   count(*) FILTER (WHERE ok AND in_hour > per_hour),
	   count(*) FILTER (WHERE ok AND burst > 0 AND in_second > burst),
	   count(*) FILTER (WHERE NOT ok AND in_hour_plus < per_hour
						AND (burst = 0 OR in_second_plus < burst))
  FROM w
$$;

-- Steady at the limit: 60 an hour, one a minute, for three hours.
SELECT * FROM pg_temp.check(ARRAY(
	SELECT '2026-01-01 00:00:00+00'::timestamptz + i * interval '60 s' + interval '1 ms'
	  FROM generate_series(0, 179) i), 60, 0);
-- Steady just above the limit: 100 an hour, one every 30 s.
SELECT * FROM pg_temp.check(ARRAY(
	SELECT '2026-01-01 00:00:00+00'::timestamptz + i * interval '30 s'
	  FROM generate_series(0, 719) i), 100, 0);
-- Bursts at the window edge: 100 in the last second of an hour, 100 in
-- the first second of the next.  A fixed-window counter admits all 200
-- within two seconds; a sliding window admits 100.
SELECT * FROM pg_temp.check(ARRAY(
	SELECT '2026-01-01 00:59:59+00'::timestamptz + i * interval '9 ms' FROM generate_series(0, 99) i
	UNION ALL
	SELECT '2026-01-01 01:00:00.001+00'::timestamptz + i * interval '9 ms' FROM generate_series(0, 99) i
	ORDER BY 1), 100, 0);
SELECT count(*) FILTER (WHERE ok) AS admitted_of_200
  FROM unnest(hokusai_auth._rate_limit_replay(ARRAY(
	SELECT '2026-01-01 00:59:59+00'::timestamptz + i * interval '9 ms' FROM generate_series(0, 99) i
	UNION ALL
	SELECT '2026-01-01 01:00:00.001+00'::timestamptz + i * interval '9 ms' FROM generate_series(0, 99) i
	ORDER BY 1), 100, 0)) ok;
-- The two-window pattern across an hour: 50 early in one window-aligned
-- hour, 100 at its end, 100 just after.
SELECT * FROM pg_temp.check(ARRAY(
	SELECT '2026-01-01 00:00:30+00'::timestamptz + i * interval '1 s' FROM generate_series(0, 49) i
	UNION ALL
	SELECT '2026-01-01 00:59:00+00'::timestamptz + i * interval '500 ms' FROM generate_series(0, 99) i
	UNION ALL
	SELECT '2026-01-01 01:00:01+00'::timestamptz + i * interval '500 ms' FROM generate_series(0, 99) i
	ORDER BY 1), 120, 0);
-- Idle for a day, then a flood: the first `limit` get through.
SELECT * FROM pg_temp.check(ARRAY(
	SELECT '2026-01-01 00:00:00+00'::timestamptz + i * interval '1 ms' FROM generate_series(0, 9) i
	UNION ALL
	SELECT '2026-01-02 00:00:00+00'::timestamptz + i * interval '1 ms' FROM generate_series(0, 999) i
	ORDER BY 1), 500, 0);
-- Bursts: at most 5 in any rolling second, under a large hourly quota.
SELECT * FROM pg_temp.check(ARRAY(
	SELECT '2026-01-01 00:00:00+00'::timestamptz + i * interval '37 ms'
	  FROM generate_series(0, 999) i), 100000, 5);
-- Both limits at once, random traffic (fixed seed): clumps and gaps.
SELECT setseed(0.42);
CREATE TEMP TABLE rnd AS
SELECT DISTINCT '2026-01-01 00:00:00+00'::timestamptz
	   + (floor(random() * 7200 * 1000) * interval '1 ms') AS t
  FROM generate_series(1, 3000);
SELECT * FROM pg_temp.check(ARRAY(SELECT t FROM rnd ORDER BY t), 400, 3);
SELECT * FROM pg_temp.check(ARRAY(SELECT t FROM rnd ORDER BY t), 1000, 0);
-- Microsecond-spaced floods: the burst windows' sub-bucket boundaries.
SELECT * FROM pg_temp.check(ARRAY(
	SELECT '2026-01-01 00:00:00+00'::timestamptz + i * interval '1234 us'
	  FROM generate_series(0, 4999) i), 100000, 50);

-- The live limiter through validate_key: the 4th request in an hour is
-- refused with the figures filled in; refused requests cost nothing.
SELECT hokusai_auth.create_user('lim') AS lim \gset
SELECT * FROM hokusai_auth.create_key(:'lim', 'three an hour', rate_limit_per_hour => 3) \gset k_
SELECT i, valid, status, rate_limit, remaining, reset_seconds > 0 AS must_wait,
       reset_seconds <= 3660 AS within_hour, retry_after > 0 AS retry_set
  FROM generate_series(1, 5) i, LATERAL hokusai_auth.validate_key(left(:'k_key' || i, 54)) v;
SELECT requests_last_hour, remaining, reset_seconds BETWEEN 3540 AND 3660 AS reset_ok, tracked
  FROM hokusai_auth.rate_limit_status(:'k_id');
-- Rejections other than rate_limited do not count.
SELECT * FROM hokusai_auth.create_key(:'lim', 'office', rate_limit_per_hour => 2,
	allowed_ips => '{192.0.2.0/24}') \gset o_
SELECT v.status FROM generate_series(1, 5) i, LATERAL hokusai_auth.validate_key(left(:'o_key' || i, 54), '10.0.0.1') v;
SELECT requests_last_hour, remaining FROM hokusai_auth.rate_limit_status(:'o_id');
SELECT v.status, v.remaining FROM generate_series(1, 3) i,
	LATERAL hokusai_auth.validate_key(left(:'o_key' || i, 54), '192.0.2.1') v;
-- Raising the limit takes effect on the next call; so does a reset.
SELECT rate_limit_per_hour FROM hokusai_auth.update_key(:'k_id', rate_limit_per_hour => 4);
SELECT status, remaining FROM hokusai_auth.validate_key(:'k_key');
SELECT status, remaining FROM hokusai_auth.validate_key(:'k_key');
SELECT hokusai_auth.rate_limit_reset(:'k_id') AS had_state;
SELECT status, remaining FROM hokusai_auth.validate_key(:'k_key');
SELECT details->'changes' FROM hokusai_auth.audit_log
 WHERE api_key_id = :'k_id' ORDER BY id DESC LIMIT 1;
-- Burst: NULL burst_limit follows hokusai_auth.default_burst_limit (10).
SELECT * FROM hokusai_auth.create_key(:'lim', 'bursty', rate_limit_per_hour => 1000) \gset b_
SELECT count(*) FILTER (WHERE v.valid) AS admitted, count(*) FILTER (WHERE v.status = 'rate_limited') AS limited,
       min(v.remaining) FILTER (WHERE v.status = 'rate_limited') > 0 AS hourly_quota_left,
       max(v.retry_after) FILTER (WHERE v.status = 'rate_limited') AS retry_after
  FROM generate_series(1, 30) i, LATERAL hokusai_auth.validate_key(left(:'b_key' || i, 54)) v;
SELECT * FROM hokusai_auth.create_key(:'lim', 'burst two', rate_limit_per_hour => 1000, burst_limit => 2) \gset b2_
SELECT count(*) FILTER (WHERE v.valid) AS admitted
  FROM generate_series(1, 10) i, LATERAL hokusai_auth.validate_key(left(:'b2_key' || i, 54)) v;

-- Statistics.
SELECT admitted > 0 AS some_admitted, rejected_hourly > 0 AS some_hourly,
       rejected_burst > 0 AS some_burst, entries >= 4 AS tracking,
       entry_bytes <= 512 AS entry_small
  FROM hokusai_auth.rate_limit_stats();
SELECT rate_rejected_burst > 0 AS in_stats_view FROM hokusai_auth.stats;

-- Bad input.
SELECT hokusai_auth.rate_limit_status(NULL);
SELECT hokusai_auth.rate_limit_status('00000000-0000-0000-0000-000000000000');
SELECT hokusai_auth.rate_limit_reset(NULL);
SELECT hokusai_auth._rate_limit_replay(NULL, 1, 0);
SELECT hokusai_auth._rate_limit_replay('{}', 0, 0);
SELECT hokusai_auth._rate_limit_replay('{}', 1, -1);
SELECT hokusai_auth._rate_limit_replay('{NULL}', 1, 0);
SELECT hokusai_auth._rate_limit_replay('{}', 1, 0);
