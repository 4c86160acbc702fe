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

-- All or nothing: credits, the key's hourly and burst limits and the
-- user's hourly and burst limits decided together (_admission_replay(),
-- the code validate_key() runs).  check_all() replays calls (at, key_no,
-- cost) of one user's keys and compares with an exact log of admitted
-- calls:
--   counters_wrong: calls after which a counter the limiter reports (the
--           key's and the user's hour and second, the credits left) is not
--           the exact log's sum over the same sub-buckets (must be 0: so a
--           refused call counted nothing anywhere);
--   over: admitted calls that took a rolling hour or second (exact, of the
--           key or the user) past its limit, or credits below zero (0);
--   unjustified: calls refused by a limit that had room for them in the
--           exact log, or with credits left for their cost (0).
CREATE FUNCTION pg_temp.check_all(times timestamptz[], keys int[], costs int[],
	kh int, kb int, uh int, ub int, credits bigint,
	OUT calls bigint, OUT ok bigint, OUT no_credits bigint, OUT key_hourly bigint,
	OUT key_burst bigint, OUT user_hourly bigint, OUT user_burst bigint,
	OUT counters_wrong bigint, OUT over bigint, OUT unjustified bigint)
LANGUAGE sql AS $$
WITH r AS (
	SELECT r.i, r.status, r.key_hour, r.key_burst_count, r.user_hour, r.user_burst_count,
		   r.credits_left, c.t, c.k, c.cost,
		   floor(extract(epoch FROM c.t) / 60) AS hb, floor(extract(epoch FROM c.t) * 60) AS sb
	  FROM hokusai_auth._admission_replay(times, keys, costs, kh, kb, uh, ub, credits) r
	  JOIN unnest(times, keys, costs) WITH ORDINALITY AS c(t, k, cost, n) ON c.n = r.i
), e AS (
	SELECT r.*,
		(SELECT coalesce(sum(o.cost), 0) FROM r o WHERE o.status = 'ok' AND o.i < r.i AND o.k = r.k
			AND o.hb BETWEEN r.hb - 60 AND r.hb) AS k_ring_h,
		(SELECT coalesce(sum(o.cost), 0) FROM r o WHERE o.status = 'ok' AND o.i < r.i AND o.k = r.k
			AND o.sb BETWEEN r.sb - 60 AND r.sb) AS k_ring_s,
		(SELECT coalesce(sum(o.cost), 0) FROM r o WHERE o.status = 'ok' AND o.i < r.i
			AND o.hb BETWEEN r.hb - 60 AND r.hb) AS u_ring_h,
		(SELECT coalesce(sum(o.cost), 0) FROM r o WHERE o.status = 'ok' AND o.i < r.i
			AND o.sb BETWEEN r.sb - 60 AND r.sb) AS u_ring_s,
		(SELECT coalesce(sum(o.cost), 0) FROM r o WHERE o.status = 'ok' AND o.i < r.i AND o.k = r.k) AS k_spent,
		(SELECT coalesce(sum(o.cost), 0) FROM r o WHERE o.status = 'ok' AND o.i <= r.i AND o.k = r.k
			AND o.t > r.t - interval '1 hour') AS k_exact_h,
		(SELECT coalesce(sum(o.cost), 0) FROM r o WHERE o.status = 'ok' AND o.i <= r.i AND o.k = r.k
			AND o.t > r.t - interval '1 second') AS k_exact_s,
		(SELECT coalesce(sum(o.cost), 0) FROM r o WHERE o.status = 'ok' AND o.i <= r.i
			AND o.t > r.t - interval '1 hour') AS u_exact_h,
		(SELECT coalesce(sum(o.cost), 0) FROM r o WHERE o.status = 'ok' AND o.i <= r.i
			AND o.t > r.t - interval '1 second') AS u_exact_s
	  FROM r
), d AS (
	SELECT e.*, (CASE WHEN status = 'ok' THEN cost ELSE 0 END) AS add FROM e
)
SELECT count(*), count(*) FILTER (WHERE status = 'ok'),
	   count(*) FILTER (WHERE status = 'credits_exhausted'),
	   count(*) FILTER (WHERE status = 'key_hourly'), count(*) FILTER (WHERE status = 'key_burst'),
	   count(*) FILTER (WHERE status = 'user_hourly'), count(*) FILTER (WHERE status = 'user_burst'),
	   count(*) FILTER (WHERE key_hour <> k_ring_h + add OR key_burst_count <> k_ring_s + add
						OR coalesce(user_hour <> u_ring_h + add, false)
						OR coalesce(user_burst_count <> u_ring_s + add, false)
						OR coalesce(credits_left <> credits - k_spent - add, false)),
	   count(*) FILTER (WHERE status = 'ok' AND (k_exact_h > kh OR (kb > 0 AND k_exact_s > kb)
						OR (uh > 0 AND u_exact_h > uh) OR (ub > 0 AND u_exact_s > ub)
						OR credits - k_spent - cost < 0)),
	   count(*) FILTER (WHERE (status = 'credits_exhausted' AND credits - k_spent >= cost)
						OR (status = 'key_hourly' AND k_ring_h + cost <= kh)
						OR (status = 'key_burst' AND k_ring_s + cost <= kb)
						OR (status = 'user_hourly' AND u_ring_h + cost <= uh)
						OR (status = 'user_burst' AND u_ring_s + cost <= ub))
  FROM d
$$;

-- Credits run out while the hourly limit has room: the refused calls count
-- nowhere.  One key, 50 credits, 100 an hour, costs 1 to 3.
SELECT setseed(0.16);
CREATE TEMP TABLE p1 AS
SELECT '2026-03-01 00:00:00+00'::timestamptz + i * interval '7 s' AS t, 1 AS k,
	   1 + floor(random() * 3)::int AS cost
  FROM generate_series(0, 99) i;
SELECT * FROM pg_temp.check_all(ARRAY(SELECT t FROM p1 ORDER BY t), ARRAY(SELECT k FROM p1 ORDER BY t),
	ARRAY(SELECT cost FROM p1 ORDER BY t), 100, 0, 0, 0, 50);
-- The hourly limit refuses while credits remain: no credit is spent on them.
SELECT * FROM pg_temp.check_all(ARRAY(SELECT t FROM p1 ORDER BY t), ARRAY(SELECT k FROM p1 ORDER BY t),
	ARRAY(SELECT cost FROM p1 ORDER BY t), 60, 0, 0, 0, 1000);
-- The key's burst refuses while credits and the hour have room: three
-- keys, 5 a second each, 30 calls a second between them.
CREATE TEMP TABLE p2 AS
SELECT '2026-03-01 00:00:00+00'::timestamptz + i * interval '33 ms' AS t, 1 + i % 3 AS k, 1 AS cost
  FROM generate_series(0, 299) i;
SELECT * FROM pg_temp.check_all(ARRAY(SELECT t FROM p2 ORDER BY t), ARRAY(SELECT k FROM p2 ORDER BY t),
	ARRAY(SELECT cost FROM p2 ORDER BY t), 1000, 5, 0, 0, 1000);
-- The user's hourly limit refuses while every key has room: four keys of
-- 10 an hour, the user 20 an hour.
CREATE TEMP TABLE p3 AS
SELECT '2026-03-01 00:00:00+00'::timestamptz + i * interval '41 s' AS t, 1 + i % 4 AS k, 1 AS cost
  FROM generate_series(0, 199) i;
SELECT * FROM pg_temp.check_all(ARRAY(SELECT t FROM p3 ORDER BY t), ARRAY(SELECT k FROM p3 ORDER BY t),
	ARRAY(SELECT cost FROM p3 ORDER BY t), 10, 0, 20, 0, NULL);
-- The user's burst refuses while the keys' bursts have room: 3 a second
-- for the user, 10 a second for each key.
SELECT * FROM pg_temp.check_all(ARRAY(SELECT t FROM p2 ORDER BY t), ARRAY(SELECT k FROM p2 ORDER BY t),
	ARRAY(SELECT cost FROM p2 ORDER BY t), 1000, 10, 0, 3, 500);
-- All five at once, random traffic (fixed seed), costs 0 to 3: clumps and gaps.
SELECT setseed(0.77);
CREATE TEMP TABLE p4 AS
SELECT DISTINCT ON (t) t, 1 + floor(random() * 4)::int AS k, floor(random() * 4)::int AS cost
  FROM (SELECT '2026-03-01 00:00:00+00'::timestamptz
			   + (floor(random() * 5400 * 1000) * interval '1 ms') AS t
		  FROM generate_series(1, 900)) x;
SELECT * FROM pg_temp.check_all(ARRAY(SELECT t FROM p4 ORDER BY t), ARRAY(SELECT k FROM p4 ORDER BY t),
	ARRAY(SELECT cost FROM p4 ORDER BY t), 70, 3, 220, 5, 95);
-- A call that costs more than a limit is always refused, and spends nothing.
SELECT status, key_hour, credits_left
  FROM hokusai_auth._admission_replay(ARRAY['2026-03-01 00:00:00+00', '2026-03-01 00:00:01+00']::timestamptz[],
	ARRAY[1, 1], ARRAY[11, 1], 10, 0, 0, 0, 100);
SELECT status, key_hour, credits_left
  FROM hokusai_auth._admission_replay(ARRAY['2026-03-01 00:00:00+00', '2026-03-01 00:00:01+00']::timestamptz[],
	ARRAY[1, 1], ARRAY[101, 1], 1000, 0, 0, 0, 100);
-- Burst limits above 65535 are enforced exactly (1.5 kept 16-bit counts and
-- enforced 65535): 80,000 calls in 0.96 s against a burst of 70,000.
SELECT count(*) FILTER (WHERE status = 'ok') AS admitted_of_80000
  FROM hokusai_auth._admission_replay(ARRAY(
	SELECT '2026-03-01 00:00:00+00'::timestamptz + i * interval '12 us' FROM generate_series(0, 79999) i),
	array_fill(1, ARRAY[80000]), array_fill(1, ARRAY[80000]), 2000000000, 70000, 0, 0, NULL);
-- Refills at the start of each UTC day, week (Monday) or month, one refill
-- however long the key was idle: 5 a day, 7 calls on March 1st, nothing
-- for three days, 7 calls on March 5th.
SET TIME ZONE 'UTC';
SELECT date_trunc('day', t) AS day, count(*) FILTER (WHERE status = 'ok') AS ok,
	   count(*) FILTER (WHERE status = 'credits_exhausted') AS exhausted,
	   max(refills) AS refills_so_far, min(credits_left) AS credits_left
  FROM (SELECT r.*, c.t FROM hokusai_auth._admission_replay(ARRAY(
			SELECT d + i * interval '1 minute' FROM unnest(ARRAY['2026-03-01 10:00:00+00',
				'2026-03-05 10:00:00+00']::timestamptz[]) d, generate_series(0, 6) i ORDER BY 1),
			array_fill(1, ARRAY[14]), array_fill(1, ARRAY[14]), 1000, 0, 0, 0, 5, 5, 'day') r
		  JOIN unnest(ARRAY(SELECT d + i * interval '1 minute' FROM unnest(ARRAY['2026-03-01 10:00:00+00',
				'2026-03-05 10:00:00+00']::timestamptz[]) d, generate_series(0, 6) i ORDER BY 1))
			   WITH ORDINALITY AS c(t, n) ON c.n = r.i) x
 GROUP BY 1 ORDER BY 1;
-- Weeks start on Monday 00:00 UTC (2026-03-02 is a Monday), months on the
-- 1st: the last microsecond of a period still spends the old balance.
SELECT c.t, r.status, r.credits_left, r.refills
  FROM hokusai_auth._admission_replay(ARRAY['2026-02-25 12:00:00+00', '2026-03-01 23:59:59.999999+00',
		'2026-03-02 00:00:00+00', '2026-03-02 00:00:01+00']::timestamptz[],
		ARRAY[1, 1, 1, 1], ARRAY[2, 1, 1, 1], 1000, 0, 0, 0, 2, 3, 'week') r
  JOIN unnest(ARRAY['2026-02-25 12:00:00+00', '2026-03-01 23:59:59.999999+00',
		'2026-03-02 00:00:00+00', '2026-03-02 00:00:01+00']::timestamptz[]) WITH ORDINALITY c(t, n)
	ON c.n = r.i ORDER BY r.i;
SELECT c.t, r.status, r.credits_left, r.refills
  FROM hokusai_auth._admission_replay(ARRAY['2026-01-31 23:59:59.999999+00', '2026-02-01 00:00:00+00',
		'2026-02-28 23:00:00+00', '2026-03-01 00:00:00+00', '2026-12-31 23:59:59+00',
		'2027-01-01 00:00:00+00']::timestamptz[],
		ARRAY[1, 1, 1, 1, 1, 1], ARRAY[1, 10, 1, 4, 1, 1], 1000, 0, 0, 0, 1, 10, 'month') r
  JOIN unnest(ARRAY['2026-01-31 23:59:59.999999+00', '2026-02-01 00:00:00+00',
		'2026-02-28 23:00:00+00', '2026-03-01 00:00:00+00', '2026-12-31 23:59:59+00',
		'2027-01-01 00:00:00+00']::timestamptz[]) WITH ORDINALITY c(t, n)
	ON c.n = r.i ORDER BY r.i;
RESET TIME ZONE;

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
-- A reset frees the key's slot of the limiter, and the next key to be
-- tracked takes it (the free list is last in, first out), while the reset
-- key's cache entry still names that slot: the reset key's next call finds
-- that the slot is no longer its own and starts afresh, and neither key
-- counts on the other's state (src/ratelimit/limiter.c, "Hints").
SELECT * FROM hokusai_auth.create_key(:'lim', 'first of a slot', rate_limit_per_hour => 5) \gset h1_
SELECT * FROM hokusai_auth.create_key(:'lim', 'second of a slot', rate_limit_per_hour => 7) \gset h2_
SELECT i, status, remaining FROM generate_series(1, 2) i,
	LATERAL hokusai_auth.validate_key(left(:'h1_key' || i, 54)) v;
SELECT hokusai_auth.rate_limit_reset(:'h1_id') AS had_state;
SELECT 'second' AS key, status, remaining FROM hokusai_auth.validate_key(:'h2_key');
SELECT 'first' AS key, status, remaining FROM hokusai_auth.validate_key(:'h1_key');
SELECT 'second' AS key, status, remaining FROM hokusai_auth.validate_key(:'h2_key');
SELECT k.name, s.requests_last_hour, s.remaining
  FROM hokusai_auth.api_keys k, LATERAL hokusai_auth.rate_limit_status(k.id) s
 WHERE k.id IN (:'h1_id', :'h2_id') ORDER BY k.name;
-- Burst: NULL burst_limit follows hokusai_auth.default_burst_limit (10).
SELECT * FROM hokusai_auth.create_key(:'lim', 'bursty', rate_limit_per_hour => 1000) \gset b_
SELECT count(*) FILTER (WHERE v.valid) AS admitted, count(*) FILTER (WHERE v.status = 'rate_limited') AS limited,
       min(v.remaining) FILTER (WHERE v.status = 'rate_limited') > 0 AS hourly_quota_left,
       -- At most 2 (docs/ratelimit.md); 1 when the second has nearly passed.
       max(v.retry_after) FILTER (WHERE v.status = 'rate_limited') BETWEEN 1 AND 2 AS retry_within_2s
  FROM generate_series(1, 30) i, LATERAL hokusai_auth.validate_key(left(:'b_key' || i, 54)) v;
SELECT * FROM hokusai_auth.create_key(:'lim', 'burst two', rate_limit_per_hour => 1000, burst_limit => 2) \gset b2_
SELECT count(*) FILTER (WHERE v.valid) AS admitted
  FROM generate_series(1, 10) i, LATERAL hokusai_auth.validate_key(left(:'b2_key' || i, 54)) v;

-- Statistics.
SELECT admitted > 0 AS some_admitted, rejected_hourly > 0 AS some_hourly,
       rejected_burst > 0 AS some_burst, entries >= 4 AS tracking,
       entry_bytes <= 640 AS entry_small
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
SELECT * FROM hokusai_auth._admission_replay('{}', '{1}', '{}', 1, 0, 0, 0, NULL);
SELECT * FROM hokusai_auth._admission_replay('{2026-01-01}', '{0}', '{1}', 1, 0, 0, 0, NULL);
SELECT * FROM hokusai_auth._admission_replay('{2026-01-01}', '{1}', '{-1}', 1, 0, 0, 0, NULL);
SELECT * FROM hokusai_auth._admission_replay('{2026-01-01}', '{1}', '{1}', 0, 0, 0, 0, NULL);
SELECT * FROM hokusai_auth._admission_replay('{2026-01-01}', '{1}', '{1}', 1, 0, 0, 0, -1);
SELECT * FROM hokusai_auth._admission_replay('{2026-01-01}', '{1}', '{1}', 1, 0, 0, 0, 1, 1, 'year');
