--
-- metering: credits spent by validate_key() (cost), refused as
-- credits_exhausted, given back at abort, added and taken by add_credits(),
-- refilled, shared through rotation; limits shared by a user's keys;
-- burst_limit 0; bad input.  (The exact-log replay of all limits together
-- is in the ratelimit suite; durability across restarts and crashes and
-- parallel clients are TAP tests: test/t/005_metering.pl.)
--
SET hokusai_auth.bcrypt_cost = 4;
\set SHOW_CONTEXT never

-- try(sql): 'ok', or the SQLSTATE and message of the error it raised.
CREATE FUNCTION pg_temp.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(regexp_replace(SQLERRM,
		'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g'),
		'hk_(live|test)_[0-9A-Za-z]{8}', 'hk_\1_<lookup>', 'g');
END $$;
-- credits(key_id): the live balance.
CREATE FUNCTION pg_temp.credits(k uuid) RETURNS bigint LANGUAGE sql AS $$
	SELECT credits_remaining FROM hokusai_auth.rate_limit_status(k)
$$;

SELECT hokusai_auth.create_user('meg') AS meg \gset

-- A key with 10 credits: each call spends its cost; a call that costs more
-- than is left is refused and spends nothing; cost 0 is free.
SELECT * FROM hokusai_auth.create_key(:'meg', 'ten credits', credits => 10,
	burst_limit => 0) \gset c_
SELECT credits_remaining, refill_amount, refill_interval FROM hokusai_auth.list_keys(:'meg');
SELECT i, valid, status, credits_remaining, remaining, retry_after
  FROM (VALUES (1, 1), (2, 4), (3, 6), (4, 5), (5, 0), (6, 5), (7, 1)) AS c(i, cost),
	   LATERAL hokusai_auth.validate_key(left(:'c_key' || i, 54), cost => c.cost) v
 ORDER BY i;
SELECT requests_last_hour, credits_remaining FROM hokusai_auth.rate_limit_status(:'c_id');
-- An unmetered key has no credits_remaining.
SELECT * FROM hokusai_auth.create_key(:'meg', 'unlimited') \gset u_
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'u_key', cost => 1000000);
-- A key refused before its limits says nothing about credits.
SELECT * FROM hokusai_auth.create_key(:'meg', 'office only', credits => 5,
	allowed_ips => '{192.0.2.0/24}') \gset o_
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'o_key', '10.0.0.1');
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'o_key', '192.0.2.1');

-- Credits spent in a transaction that aborts are given back; so are those
-- of a subtransaction that rolls back.  Rate-limit units are not.
SELECT * FROM hokusai_auth.create_key(:'meg', 'transactional', credits => 100,
	burst_limit => 0) \gset t_
BEGIN;
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'t_key', cost => 30);
SELECT pg_temp.credits(:'t_id') AS inside;
ROLLBACK;
SELECT pg_temp.credits(:'t_id') AS after_rollback,
	   requests_last_hour AS units_kept FROM hokusai_auth.rate_limit_status(:'t_id');
BEGIN;
SELECT status FROM hokusai_auth.validate_key(:'t_key', cost => 10);
SAVEPOINT s;
SELECT status FROM hokusai_auth.validate_key(:'t_key', cost => 20);
ROLLBACK TO s;
SAVEPOINT s2;
SELECT status FROM hokusai_auth.validate_key(:'t_key', cost => 5);
RELEASE s2;
COMMIT;
SELECT pg_temp.credits(:'t_id') AS after_commit;
-- An error after validation: the statement's transaction aborts.
SELECT pg_temp.try(format($$SELECT 1 / (v.credits_remaining - v.credits_remaining)
	FROM hokusai_auth.validate_key(%L, cost => 50) v$$, :'t_key')) AS failed_request;
SELECT pg_temp.credits(:'t_id') AS after_failed_request;
-- A transaction that spent credits cannot be prepared.
BEGIN;
SELECT status FROM hokusai_auth.validate_key(:'t_key');
PREPARE TRANSACTION 'metering';
SELECT pg_temp.credits(:'t_id') AS after_refused_prepare;

-- add_credits(): adds, takes away (never below zero), returns the new
-- balance, is transactional and audited.
SELECT hokusai_auth.add_credits(:'c_id', 25) AS added;
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'c_key', cost => 5);
SELECT hokusai_auth.add_credits(:'c_id', -3) AS taken;
SELECT hokusai_auth.add_credits(:'c_id', -1000) AS taken_to_zero;
BEGIN;
SELECT hokusai_auth.add_credits(:'c_id', 500) AS uncommitted;
ROLLBACK;
SELECT pg_temp.credits(:'c_id') AS after_rollback;
SELECT action, details - 'key_prefix' AS details FROM hokusai_auth.audit_log
 WHERE api_key_id = :'c_id' AND action = 'add_credits' ORDER BY id;
-- The table catches up when the worker writes balances back; the worker
-- does not run in this database, so it shows the balance add_credits() wrote.
SELECT credits_remaining FROM hokusai_auth.api_keys WHERE id = :'c_id';

-- Refill: a key created with a refill and no credits starts full; one that
-- was idle across several periods gets one refill, not several (its stored
-- refill time is moved back three days before its balance is first used).
SELECT * FROM hokusai_auth.create_key(:'meg', 'daily', refill_amount => 100,
	refill_interval => 'day', burst_limit => 0) \gset d_
SELECT credits_remaining, refill_amount, refill_interval,
	   credits_refilled_at = date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS refilled_today
  FROM hokusai_auth.api_keys WHERE id = :'d_id';
SELECT * FROM hokusai_auth.create_key(:'meg', 'idle', credits => 3, refill_amount => 40,
	refill_interval => 'week', burst_limit => 0) \gset i_
UPDATE hokusai_auth.api_keys SET credits_refilled_at = credits_refilled_at - interval '3 weeks'
 WHERE id = :'i_id';
SELECT credits_refills AS refills_before FROM hokusai_auth.metering_stats() \gset
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'i_key', cost => 4);
SELECT credits_refills - :refills_before AS refills FROM hokusai_auth.metering_stats();
SELECT credits_remaining, refill_amount, refill_interval,
	   next_refill_at = date_trunc('week', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 week' AS next_monday
  FROM hokusai_auth.rate_limit_status(:'i_id');
-- A balance that is used up and refills: credits_exhausted, retry_after is
-- the wait for the refill; without a refill, 0 (waiting will not help).
SELECT status, credits_remaining, retry_after BETWEEN 1 AND 86400 AS until_midnight
  FROM hokusai_auth.validate_key(:'d_key', cost => 101);
SELECT status, retry_after FROM hokusai_auth.validate_key(:'c_key', cost => 1);
-- update_key(): a refill for an unmetered key gives it a full balance;
-- clearing the refill keeps the balance.
SELECT credits_remaining, refill_amount, refill_interval
  FROM hokusai_auth.update_key(:'u_id', refill_amount => 7, refill_interval => 'month');
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'u_key', cost => 2);
SELECT credits_remaining, refill_amount, refill_interval
  FROM hokusai_auth.update_key(:'u_id', clear_refill => true);
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'u_key', cost => 2);

-- update_key(credits => N) makes an unmetered key metered, or sets a
-- metered key's balance, when the transaction commits;
-- update_key(clear_credits => true) makes a key unmetered (no balance, no
-- refill).  The key is cached each time before the change: the change
-- reaches validation at commit all the same.
SELECT * FROM hokusai_auth.create_key(:'meg', 'toggle', burst_limit => 0) \gset g_
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'g_key', cost => 3);
SELECT credits_remaining, refill_amount, refill_interval
  FROM hokusai_auth.update_key(:'g_id', credits => 4);
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'g_key', cost => 3);
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'g_key', cost => 3);
BEGIN;
SELECT credits_remaining FROM hokusai_auth.update_key(:'g_id', credits => 100);
SELECT status, credits_remaining AS not_yet FROM hokusai_auth.validate_key(:'g_key', cost => 3);
ROLLBACK;
SELECT pg_temp.credits(:'g_id') AS after_rollback;
SELECT credits_remaining FROM hokusai_auth.update_key(:'g_id', credits => 10);
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'g_key', cost => 3);
SELECT credits_remaining, refill_amount, refill_interval
  FROM hokusai_auth.update_key(:'g_id', clear_credits => true);
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'g_key', cost => 3);
SELECT credits_remaining IS NULL AS unmetered_live FROM hokusai_auth.rate_limit_status(:'g_id');
SELECT credits_key_id, credits_initial, credits_refilled_at FROM hokusai_auth.api_keys WHERE id = :'g_id';
-- Metered again through a refill: a full balance, not the 7 it had.
SELECT credits_remaining FROM hokusai_auth.update_key(:'g_id', refill_amount => 20, refill_interval => 'day');
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'g_key', cost => 1);
-- A set keeps the refill and its schedule; clearing the credits ends both.
SELECT credits_remaining, refill_amount, refill_interval
  FROM hokusai_auth.update_key(:'g_id', credits => 5);
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'g_key', cost => 1);
SELECT credits_remaining, refill_amount, refill_interval
  FROM hokusai_auth.update_key(:'g_id', clear_credits => true);
-- Credits and a refill in one call for an unmetered key: the balance is
-- the credits, the refill from the next period on.
SELECT credits_remaining, refill_amount, refill_interval
  FROM hokusai_auth.update_key(:'g_id', credits => 3, refill_amount => 50, refill_interval => 'week');
SELECT credits_refilled_at = date_trunc('week', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS this_week
  FROM hokusai_auth.api_keys WHERE id = :'g_id';
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'g_key', cost => 1);
-- Cleared twice: the second call changes nothing (no audit row).
SELECT credits_remaining FROM hokusai_auth.update_key(:'g_id', clear_credits => true);
SELECT count(*) AS one_row FROM hokusai_auth.update_key(:'g_id', clear_credits => true);
SELECT a.details->'changes' AS changes FROM hokusai_auth.audit_log a
 WHERE a.api_key_id = :'g_id' AND a.action = 'update' ORDER BY a.id;
-- The keys of a rotation share one balance: clearing it on the new key
-- clears it for the old one (in its grace period) too.
SELECT * FROM hokusai_auth.create_key(:'meg', 'chain', credits => 30, burst_limit => 0) \gset h_
SELECT status FROM hokusai_auth.validate_key(:'h_key', cost => 5);
SELECT id AS h2_id, key AS h2_key FROM hokusai_auth.rotate_key(:'h_id', '1 hour') \gset
SELECT credits_remaining FROM hokusai_auth.update_key(:'h2_id', clear_credits => true);
SELECT v.status, v.credits_remaining FROM (VALUES (1, :'h_key'), (2, :'h2_key')) k(i, key),
	   LATERAL hokusai_auth.validate_key(k.key, cost => 100) v ORDER BY k.i;
SELECT count(*) FILTER (WHERE credits_remaining IS NOT NULL OR credits_key_id IS NOT NULL) AS metered_rows
  FROM hokusai_auth.api_keys WHERE id IN (:'h_id', :'h2_id');

-- Rotation hands the live balance on; with a grace period the old and the
-- new key spend one balance; revoking either resurrects nothing.
SELECT * FROM hokusai_auth.create_key(:'meg', 'to rotate', credits => 50,
	burst_limit => 0) \gset r_
SELECT status FROM hokusai_auth.validate_key(:'r_key', cost => 8);
SELECT id AS r2_id, key AS r2_key FROM hokusai_auth.rotate_key(:'r_id', '1 hour') \gset
SELECT credits_remaining, credits_key_id = :'r_id' AS shares_old_balance
  FROM hokusai_auth.api_keys WHERE id = :'r2_id';
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'r2_key', cost => 2);
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'r_key', cost => 10);
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'r2_key', cost => 1);
SELECT hokusai_auth.add_credits(:'r_id', 5) AS added_through_old_key;
SELECT hokusai_auth.revoke_key(:'r_id');
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'r2_key', cost => 1);
SELECT id AS r3_id, key AS r3_key FROM hokusai_auth.rotate_key(:'r2_id') \gset
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'r3_key', cost => 1);
-- Rows show the balance as last written (here: at the rotation); the live
-- balance is rate_limit_status()'s.
SELECT credits_remaining AS row_value FROM hokusai_auth.update_key(:'r3_id', name => 'rotated twice');
SELECT pg_temp.credits(:'r3_id') AS live;

-- Crossings of 10% and of zero are noted, once each, for the worker to
-- write as credits.low and credits.exhausted events (the request-path
-- queue of src/events/event_queue.c; sql/events.sql has what the worker
-- makes of the notes).  This database is not the worker's here: the notes
-- are counted, not written.
CREATE FUNCTION pg_temp.noted() RETURNS TABLE (noted bigint, low bigint, exhausted bigint)
	LANGUAGE sql AS $$
	SELECT q.noted, m.credits_low, m.credits_exhausted
	  FROM hokusai_auth.event_queue_stats() q, hokusai_auth.metering_stats() m
$$;
CREATE TEMP TABLE n0 AS SELECT * FROM pg_temp.noted();
CREATE FUNCTION pg_temp.new_notes() RETURNS TABLE (noted bigint, low bigint, exhausted bigint)
	LANGUAGE sql AS $$
	SELECT n.noted - n0.noted, n.low - n0.low, n.exhausted - n0.exhausted
	  FROM pg_temp.noted() n, n0
$$;
SELECT * FROM hokusai_auth.create_key(:'meg', 'events', credits => 20, burst_limit => 0) \gset e_
-- 20 to 3: above 10% (2), nothing.
SELECT status FROM hokusai_auth.validate_key(:'e_key', cost => 17);
SELECT * FROM pg_temp.new_notes();
-- 3 to 2: credits.low.
SELECT status FROM hokusai_auth.validate_key(:'e_key', cost => 1);
SELECT * FROM pg_temp.new_notes();
-- 2 to 0: credits.exhausted; then a refused call notes nothing more.
SELECT status FROM hokusai_auth.validate_key(:'e_key', cost => 2);
SELECT status FROM hokusai_auth.validate_key(:'e_key', cost => 1);
SELECT * FROM pg_temp.new_notes();
-- A negative add_credits() that crosses both, noted when it commits.
SELECT * FROM hokusai_auth.create_key(:'meg', 'events 2', credits => 100, burst_limit => 0) \gset e2_
BEGIN;
SELECT hokusai_auth.add_credits(:'e2_id', -100);
SELECT * FROM pg_temp.new_notes();
COMMIT;
SELECT * FROM pg_temp.new_notes();
-- Rolled back: the add never happened, nothing is noted.
SELECT hokusai_auth.add_credits(:'e2_id', 50) AS refilled;
BEGIN;
SELECT hokusai_auth.add_credits(:'e2_id', -50);
ROLLBACK;
SELECT * FROM pg_temp.new_notes();

-- Limits shared by a user's keys: 4 an hour for all of the user's keys,
-- each key 3 an hour.  A call the user's limit refuses counts on no key.
SELECT hokusai_auth.create_user('ulla') AS ulla \gset
SELECT * FROM hokusai_auth.create_key(:'ulla', 'one', rate_limit_per_hour => 3) \gset ua_
SELECT * FROM hokusai_auth.create_key(:'ulla', 'two', rate_limit_per_hour => 3, credits => 10) \gset ub_
SELECT hokusai_auth.set_user_limits(:'ulla', 4, NULL);
SELECT k, i, status, remaining, credits_remaining
  FROM (VALUES (1, 'a'), (2, 'a'), (3, 'b'), (4, 'b'), (5, 'b'), (6, 'a')) AS c(i, k),
	   LATERAL hokusai_auth.validate_key(left(CASE k WHEN 'a' THEN :'ua_key' ELSE :'ub_key' END || i, 54)) v
 ORDER BY i;
SELECT requests_last_hour, credits_remaining, user_rate_limit_per_hour, user_burst_limit,
	   user_requests_last_hour, user_remaining
  FROM hokusai_auth.rate_limit_status(:'ub_id');
SELECT rejected_user_hourly >= 2 AS user_refusals, user_entries >= 1 AS users_tracked
  FROM hokusai_auth.metering_stats();
-- A burst limit alone; then none.
SELECT hokusai_auth.set_user_limits(:'ulla', NULL, 1);
SELECT hokusai_auth.rate_limit_reset(:'ua_id'), hokusai_auth.rate_limit_reset(:'ub_id');
SELECT pg_sleep(1.1);
SELECT count(*) FILTER (WHERE v.valid) AS admitted_in_a_second
  FROM generate_series(1, 5) i, LATERAL hokusai_auth.validate_key(left(:'ua_key' || i, 54)) v;
SELECT hokusai_auth.set_user_limits(:'ulla', NULL, NULL);
SELECT user_rate_limit_per_hour, user_burst_limit FROM hokusai_auth.rate_limit_status(:'ua_id');
SELECT details FROM hokusai_auth.audit_log WHERE action = 'set_user_limits' ORDER BY id;

-- burst_limit 0: no burst limit (internal service keys); NULL is the
-- default; a burst limit above 65535 is kept as given.
SELECT * FROM hokusai_auth.create_key(:'meg', 'service', rate_limit_per_hour => 2147483647,
	burst_limit => 0) \gset s_
SELECT count(*) FILTER (WHERE v.valid) AS admitted
  FROM generate_series(1, 200) i, LATERAL hokusai_auth.validate_key(left(:'s_key' || i, 54)) v;
SELECT burst_limit FROM hokusai_auth.rate_limit_status(:'s_id');
SELECT id AS big_id FROM hokusai_auth.create_key(:'meg', 'big burst', burst_limit => 2000000000) \gset
SELECT burst_limit FROM hokusai_auth.rate_limit_status(:'big_id');

-- Bad input: clear errors, no rows.
CREATE TEMP TABLE counts AS
SELECT (SELECT count(*) FROM hokusai_auth.api_keys) AS keys,
       (SELECT count(*) FROM hokusai_auth.audit_log) AS audit;
\set meg_q '''' :meg ''''
SELECT t.what, pg_temp.try(format(t.stmt, :'meg_q')) AS result FROM (VALUES
	('negative credits', $$SELECT hokusai_auth.create_key(%s, 'k', credits => -1)$$),
	('huge credits', $$SELECT hokusai_auth.create_key(%s, 'k', credits => '99999999999999999999')$$),
	('amount alone', $$SELECT hokusai_auth.create_key(%s, 'k', refill_amount => 5)$$),
	('interval alone', $$SELECT hokusai_auth.create_key(%s, 'k', refill_interval => 'day')$$),
	('zero refill', $$SELECT hokusai_auth.create_key(%s, 'k', refill_amount => 0, refill_interval => 'day')$$),
	('bad interval', $$SELECT hokusai_auth.create_key(%s, 'k', refill_amount => 5, refill_interval => 'hour')$$),
	('text credits', $$SELECT hokusai_auth.create_key(%s, 'k', credits => 'lots')$$),
	('negative burst', $$SELECT hokusai_auth.create_key(%s, 'k', burst_limit => -5)$$)
) AS t(what, stmt);
SELECT t.what, pg_temp.try(t.stmt) AS result FROM (VALUES
	('null key', $$SELECT hokusai_auth.add_credits(NULL, 1)$$),
	('null amount', format($$SELECT hokusai_auth.add_credits(%L, NULL)$$, :'c_id')),
	('zero amount', format($$SELECT hokusai_auth.add_credits(%L, 0)$$, :'c_id')),
	('unknown key', $$SELECT hokusai_auth.add_credits('00000000-0000-0000-0000-000000000000', 1)$$),
	('unmetered', format($$SELECT hokusai_auth.add_credits(%L, 1)$$, :'s_id')),
	('revoked', format($$SELECT hokusai_auth.add_credits(%L, 1)$$, :'r_id')),
	('overflow', format($$SELECT hokusai_auth.add_credits(%L, 9223372036854775807)$$, :'t_id')),
	('refill alone', format($$SELECT hokusai_auth.update_key(%L, refill_amount => 5)$$, :'s_id')),
	('bad refill', format($$SELECT hokusai_auth.update_key(%L, refill_amount => -5, refill_interval => 'day')$$, :'s_id')),
	('negative credits', format($$SELECT hokusai_auth.update_key(%L, credits => -1)$$, :'s_id')),
	('credits and clear', format($$SELECT hokusai_auth.update_key(%L, credits => 1, clear_credits => true)$$, :'s_id')),
	('refill and clear', format($$SELECT hokusai_auth.update_key(%L, refill_amount => 5, refill_interval => 'day', clear_credits => true)$$, :'s_id')),
	('null clear_credits', format($$SELECT hokusai_auth.update_key(%L, clear_credits => NULL)$$, :'s_id')),
	('null user', $$SELECT hokusai_auth.set_user_limits(NULL, 1, 1)$$),
	('unknown user', $$SELECT hokusai_auth.set_user_limits('00000000-0000-0000-0000-000000000000', 1, 1)$$),
	('zero hourly', format($$SELECT hokusai_auth.set_user_limits(%L, 0, NULL)$$, :'meg')),
	('negative burst', format($$SELECT hokusai_auth.set_user_limits(%L, NULL, -1)$$, :'meg')),
	('null cost', format($$SELECT hokusai_auth.validate_key(%L, cost => NULL)$$, :'c_key')),
	('negative cost', format($$SELECT hokusai_auth.validate_key(%L, cost => -1)$$, :'c_key'))
) AS t(what, stmt);
SELECT c.keys = (SELECT count(*) FROM hokusai_auth.api_keys) AS keys_same,
       c.audit = (SELECT count(*) FROM hokusai_auth.audit_log) AS audit_same
  FROM counts c;
SELECT pg_temp.credits(:'t_id') AS unchanged_by_overflow;

-- The counters.
SELECT credits_charged > 0 AS charged, credits_spent > 0 AS spent, credits_refused > 0 AS refused,
	   credits_given_back >= 85 AS given_back, credits_added >= 3 AS added,
	   credits_low >= 1 AS low, credits_exhausted >= 1 AS exhausted,
	   credits_loaded > 0 AS loaded, credit_entries > 0 AS in_memory
  FROM hokusai_auth.metering_stats();
SELECT credits_spent > 0 AS in_stats_view FROM hokusai_auth.stats;

-- A crossing is an event only when the spend that made it commits: rolled
-- back (or in a savepoint rolled back), the credits come back and nothing
-- is noted; a committed spend's crossing is noted when it commits.
DELETE FROM n0;
INSERT INTO n0 SELECT * FROM pg_temp.noted();
SELECT * FROM hokusai_auth.create_key(:'meg', 'events 3', credits => 10, burst_limit => 0) \gset e3_
BEGIN;
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'e3_key', cost => 10);
SELECT * FROM pg_temp.new_notes() AS not_before_commit;
ROLLBACK;
SELECT * FROM pg_temp.new_notes() AS none_after_rollback;
SELECT pg_temp.credits(:'e3_id') AS given_back;
BEGIN;
SAVEPOINT s;
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'e3_key', cost => 10);
ROLLBACK TO SAVEPOINT s;
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'e3_key', cost => 9);
SELECT * FROM pg_temp.new_notes() AS not_before_commit;
COMMIT;
SELECT * FROM pg_temp.new_notes() AS low_at_commit;
-- A savepoint that commits hands its crossing to the transaction.
BEGIN;
SAVEPOINT s;
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'e3_key', cost => 1);
RELEASE SAVEPOINT s;
COMMIT;
SELECT * FROM pg_temp.new_notes() AS exhausted_at_commit;
