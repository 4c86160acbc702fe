--
-- cache: validations are served from shared memory; changes invalidate at
-- commit; wrong secrets are remembered and throttled.
--
SET hokusai_auth.bcrypt_cost = 4;
\set SHOW_CONTEXT never

SELECT hokusai_auth.create_user('kim') AS kim \gset
-- Generous limits: this suite is about the cache, not the rate limiter.
SELECT * FROM hokusai_auth.create_key(:'kim', 'cached',
	rate_limit_per_hour => 1000000, burst_limit => 100000) \gset k_
SELECT hokusai_auth.cache_stats_reset();

-- stats(): the counters that moved since the last call.
CREATE TEMP TABLE last_stats AS SELECT * FROM hokusai_auth.cache_stats;
CREATE FUNCTION pg_temp.moved() RETURNS TABLE (counter text, delta bigint)
LANGUAGE plpgsql AS $$
DECLARE
	now_row record;
	old_row record;
BEGIN
	SELECT * INTO now_row FROM hokusai_auth.cache_stats;
	SELECT * INTO old_row FROM last_stats;
	RETURN QUERY
		SELECT n.key, n.value::bigint - o.value::bigint
		  FROM jsonb_each_text(to_jsonb(now_row)) n
		  JOIN jsonb_each_text(to_jsonb(old_row)) o USING (key)
		 WHERE n.key NOT IN ('entries', 'capacity', 'stats_reset')
		   AND n.value <> o.value
		 ORDER BY 1;
	DELETE FROM last_stats;
	INSERT INTO last_stats SELECT * FROM hokusai_auth.cache_stats;
END $$;

-- First validation: a miss and one bcrypt; then hits, no bcrypt.
SELECT status FROM hokusai_auth.validate_key(:'k_key');
SELECT * FROM pg_temp.moved();
SELECT count(*) FILTER (WHERE status = 'ok') FROM generate_series(1, 100) i,
	LATERAL hokusai_auth.validate_key(left(:'k_key' || i, 54));
SELECT * FROM pg_temp.moved();

-- Malformed keys never reach the cache or bcrypt.
SELECT status FROM hokusai_auth.validate_key('hk_live_short');
SELECT * FROM pg_temp.moved();

-- A wrong secret with a valid checksum: one bcrypt, then a negative hit.
\i test/lib/key_checksum.sql
SELECT hk_with_checksum(left(:'k_key', 16) || repeat('w', 32)) AS wrong \gset
SELECT status FROM hokusai_auth.validate_key(:'wrong');
SELECT status FROM hokusai_auth.validate_key(:'wrong');
SELECT * FROM pg_temp.moved();

-- Throttle: many different wrong secrets for one prefix cost at most
-- max_failures_per_prefix bcrypt runs in a second; the real key, cached,
-- keeps working, and so do other keys.
SELECT * FROM hokusai_auth.create_key(:'kim', 'other') \gset o_
SELECT status FROM hokusai_auth.validate_key(:'o_key');
SELECT * FROM pg_temp.moved();
-- The throttle counts per calendar second: start at the top of one, so
-- that the 40 attempts (a few ms each) fall in the same second.
SELECT pg_sleep(1 - extract(epoch FROM clock_timestamp())::numeric % 1) AS top_of_a_second \gset
SELECT DISTINCT r.status FROM generate_series(1, 40) i,
	LATERAL hokusai_auth.validate_key(hk_with_checksum(
		left(:'k_key', 16) || lpad(i::text, 32, 'q'))) r;
SELECT bcrypt_verifications <= 10 + 1 AS bcrypt_bounded,
       throttled >= 40 - 10 - 1 AS throttled_counted
  FROM (SELECT s.bcrypt_verifications - l.bcrypt_verifications AS bcrypt_verifications,
			   s.throttled - l.throttled AS throttled
		  FROM hokusai_auth.cache_stats s, last_stats l) d;
SELECT status FROM hokusai_auth.validate_key(:'k_key');
SELECT status FROM hokusai_auth.validate_key(:'o_key');
SELECT pg_sleep(1.1);
SELECT * FROM pg_temp.moved() WHERE counter NOT IN ('bcrypt_verifications', 'throttled', 'misses', 'hits');

-- Revocation invalidates at commit; a rolled-back one changes nothing.
BEGIN;
SELECT hokusai_auth.revoke_key(:'k_id');
-- Inside the revoking transaction the cache is bypassed: it sees its change.
SELECT status FROM hokusai_auth.validate_key(:'k_key');
ROLLBACK;
SELECT status FROM hokusai_auth.validate_key(:'k_key');
SELECT hokusai_auth.revoke_key(:'k_id');
SELECT status FROM hokusai_auth.validate_key(:'k_key');
SELECT invalidations > 0 AS invalidated FROM hokusai_auth.cache_stats;

-- A cached key stops the moment it expires.
SELECT * FROM hokusai_auth.create_key(:'kim', 'expiring',
	expires_at => clock_timestamp() + interval '1 second') \gset e_
SELECT status FROM hokusai_auth.validate_key(:'e_key');
SELECT status FROM hokusai_auth.validate_key(:'e_key');
SELECT pg_sleep(1.1);
SELECT status FROM hokusai_auth.validate_key(:'e_key');

-- Changing allowed_ips or limits takes effect on the next call.
SELECT * FROM hokusai_auth.create_key(:'kim', 'movable', burst_limit => 1000) \gset m_
SELECT status FROM hokusai_auth.validate_key(:'m_key', '192.0.2.1');
SELECT allowed_ips FROM hokusai_auth.update_key(:'m_id', allowed_ips => '{198.51.100.0/24}');
SELECT status FROM hokusai_auth.validate_key(:'m_key', '192.0.2.1');
SELECT status FROM hokusai_auth.validate_key(:'m_key', '198.51.100.1');
SELECT rate_limit_per_hour FROM hokusai_auth.update_key(:'m_id', rate_limit_per_hour => 77);
SELECT rate_limit FROM hokusai_auth.validate_key(:'m_key', '198.51.100.1');
SELECT allowed_ips FROM hokusai_auth.update_key(:'m_id', clear_allowed_ips => true);
SELECT status FROM hokusai_auth.validate_key(:'m_key', '192.0.2.1');
-- More CIDRs than a cache entry holds inline still work from the cache.
SELECT cardinality(allowed_ips) FROM hokusai_auth.update_key(:'m_id',
	allowed_ips => '{10.0.0.0/8,10.1.0.0/16,10.2.0.0/16,10.3.0.0/16,2001:db8::/32,203.0.113.0/24}');
SELECT status FROM hokusai_auth.validate_key(:'m_key', '203.0.113.5');
SELECT status FROM hokusai_auth.validate_key(:'m_key', '203.0.113.5');
SELECT status FROM hokusai_auth.validate_key(:'m_key', '192.0.2.1');
-- update_key is audited with what changed.
SELECT action, details->'changes' AS changes FROM hokusai_auth.audit_log
 WHERE api_key_id = :'m_id' AND action = 'update' ORDER BY id;

-- Deactivating the owner invalidates all their cached keys.
SELECT status FROM hokusai_auth.validate_key(:'o_key');
UPDATE hokusai_auth.users SET is_active = false WHERE id = :'kim';
SELECT status FROM hokusai_auth.validate_key(:'o_key');
UPDATE hokusai_auth.users SET is_active = true WHERE id = :'kim';
SELECT status FROM hokusai_auth.validate_key(:'o_key');

-- Touching last_used_at (as the usage worker does) keeps keys cached.
SELECT hokusai_auth.cache_stats_reset();
DELETE FROM last_stats; INSERT INTO last_stats SELECT * FROM hokusai_auth.cache_stats;
UPDATE hokusai_auth.api_keys SET last_used_at = now() WHERE id = :'o_id';
SELECT status FROM hokusai_auth.validate_key(:'o_key');
SELECT * FROM pg_temp.moved();

-- PREPARE TRANSACTION is refused once keys changed in the transaction.
BEGIN;
SELECT hokusai_auth.revoke_key(:'o_id');
PREPARE TRANSACTION 'hk';
SELECT status FROM hokusai_auth.validate_key(:'o_key');

-- What this transaction wrote is not committed, and may never be: a key
-- read from such a row is validated but not cached, so no other session
-- (nor this one, after a rollback) is answered from it.
BEGIN;
SELECT * FROM hokusai_auth.create_key(:'kim', 'never committed',
	rate_limit_per_hour => 1000000, burst_limit => 100000) \gset nc_
SELECT status AS inside_the_transaction FROM hokusai_auth.validate_key(:'nc_key');
SELECT status AS still_inside FROM hokusai_auth.validate_key(:'nc_key');
ROLLBACK;
SELECT status AS after_rollback, key_id IS NULL AS no_key_id
  FROM hokusai_auth.validate_key(:'nc_key');
SELECT count(*) AS rows_of_it FROM hokusai_auth.api_keys WHERE id = :'nc_id';
-- The same for a change to a key (a revocation rolled back) and to its
-- owner (a deactivation rolled back): the committed state is what counts.
SELECT * FROM hokusai_auth.create_key(:'kim', 'changed, then not',
	rate_limit_per_hour => 1000000, burst_limit => 100000) \gset cb_
BEGIN;
SELECT hokusai_auth.revoke_key(:'cb_id') AS revoked_inside;
SELECT status AS inside_the_transaction FROM hokusai_auth.validate_key(:'cb_key');
ROLLBACK;
SELECT status AS after_rollback FROM hokusai_auth.validate_key(:'cb_key');
SELECT hokusai_auth.create_user('kim_deactivated') AS kd \gset
SELECT * FROM hokusai_auth.create_key(:'kd', 'owner deactivated, then not',
	rate_limit_per_hour => 1000000, burst_limit => 100000) \gset kd_
BEGIN;
UPDATE hokusai_auth.users SET is_active = false WHERE id = :'kd';
SELECT status AS inside_the_transaction FROM hokusai_auth.validate_key(:'kd_key');
ROLLBACK;
SELECT status AS after_rollback FROM hokusai_auth.validate_key(:'kd_key');
-- A committed key is cached as before: the second call is a hit.
SELECT hokusai_auth.cache_stats_reset();
DELETE FROM last_stats; INSERT INTO last_stats SELECT * FROM hokusai_auth.cache_stats;
SELECT status FROM hokusai_auth.validate_key(:'kd_key');
SELECT * FROM pg_temp.moved();

-- update_key's bad input.
SELECT hokusai_auth.update_key(NULL);
SELECT hokusai_auth.update_key(:'m_id', rate_limit_per_hour => 0);
SELECT hokusai_auth.update_key(:'m_id', allowed_ips => '{10.0.0.0/8}', clear_allowed_ips => true);
SELECT hokusai_auth.update_key(:'m_id', clear_burst_limit => NULL);
\set VERBOSITY sqlstate
SELECT hokusai_auth.update_key(:'k_id', name => 'revoked keys are frozen');
SELECT hokusai_auth.update_key(:'e_id', clear_expires_at => true);
SELECT * FROM hokusai_auth.rotate_key(:'m_id', grace => '1 hour') \gset m2_
SELECT hokusai_auth.update_key(:'m_id', clear_expires_at => true);
\set VERBOSITY default

-- Capacity follows hokusai_auth.cache_size (rounded up to whole sets).
SELECT capacity >= current_setting('hokusai_auth.cache_size')::bigint AS capacity_ok,
       entries BETWEEN 1 AND capacity AS entries_ok
  FROM hokusai_auth.cache_stats;
SELECT hokusai_auth.cache_stats_reset();
SELECT hits, misses, bcrypt_verifications FROM hokusai_auth.cache_stats;
