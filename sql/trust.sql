--
-- trust: planted look-alike operators, functions, types and relations never
-- run (DESIGN.md section 11).  How it works: after \else below.  This file
-- includes itself once per pass; trust_pass is set then.  (ECHO none
-- keeps the branch that \if skips out of the output.)
--
\set ECHO none
\if :{?trust_pass}
\set ECHO all
--------------------------------------------------------------------------
-- One pass (the file includes itself, see below): every public function
-- of hokusai_auth and hokusai_api, and the views, as :trust_caller with
-- the search_path the pass chose.  Users and keys are new in every pass,
-- so the first validation of each key misses the cache.  No statement of
-- this part resolves an operator or a function through search_path.
--------------------------------------------------------------------------
\set u trust_ :trust_pass
\set u_email :u @example.com
SHOW search_path;
SET ROLE :"trust_caller";

-- create_user
SELECT hokusai_auth.create_user(:'u', :'u_email') AS uid \gset
SELECT hokusai_auth.create_user(:'u');
SELECT hokusai_auth.create_user('not valid');
SELECT hokusai_auth.create_user('trust_x', 'not an email');
SELECT hokusai_auth.create_user(NULL);

-- create_key: every option, and its error branches
SELECT id AS k_plain, key AS k_plain_key
  FROM hokusai_auth.create_key(:'uid', 'plain', burst_limit => 1000) \gset
SELECT id AS k_ips4, key AS k_ips4_key
  FROM hokusai_auth.create_key(:'uid', 'four networks', burst_limit => 1000,
	allowed_ips => '{203.0.113.0/24, 198.51.100.7/32, 2001:db8::/32, 10.0.0.0/8}') \gset
SELECT id AS k_ips6, key AS k_ips6_key
  FROM hokusai_auth.create_key(:'uid', 'six networks', burst_limit => 1000,
	allowed_ips => '{203.0.113.0/24, 198.51.100.7/32, 2001:db8::/32, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16}') \gset
SELECT id AS k_meta, key AS k_meta_key
  FROM hokusai_auth.create_key(:'uid', 'test environment', environment => 'test',
	expires_at => '2999-01-01 00:00:00+00', rate_limit_per_hour => 100, burst_limit => 100,
	metadata => '{"team": "trust", "n": 1}') \gset
SELECT id AS k_rl, key AS k_rl_key
  FROM hokusai_auth.create_key(:'uid', 'one an hour', rate_limit_per_hour => 1) \gset
SELECT id AS k_exp, key AS k_exp_key
  FROM hokusai_auth.create_key(:'uid', 'expires', expires_at => '2999-01-01 00:00:00+00',
	burst_limit => 1000) \gset
SELECT id AS k_rev, key AS k_rev_key
  FROM hokusai_auth.create_key(:'uid', 'to revoke', burst_limit => 1000) \gset
SELECT id AS k_rot, key AS k_rot_key
  FROM hokusai_auth.create_key(:'uid', 'to rotate', burst_limit => 1000,
	expires_at => '2999-01-01 00:00:00+00', metadata => '{"rotate": true}',
	allowed_ips => '{203.0.113.0/24, 198.51.100.7/32, 2001:db8::/32, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16}') \gset
SELECT id AS k_upd, key AS k_upd_key
  FROM hokusai_auth.create_key(:'uid', 'to update', burst_limit => 1000) \gset
SELECT expires_at FROM hokusai_auth.create_key(:'uid', 'past', expires_at => '2000-01-01 00:00:00+00');
SELECT expires_at FROM hokusai_auth.create_key(:'uid', 'no network', allowed_ips => '{}');
SELECT expires_at FROM hokusai_auth.create_key(:'uid', 'production', environment => 'prod');
SELECT expires_at FROM hokusai_auth.create_key(:'uid', 'array', metadata => '[1, 2]');
SELECT expires_at FROM hokusai_auth.create_key(:'uid', 'zero', rate_limit_per_hour => 0);
SELECT expires_at FROM hokusai_auth.create_key(:'uid', '');
SELECT expires_at FROM hokusai_auth.create_key('00000000-0000-0000-0000-000000000000', 'nobody''s');

-- validate_key: a miss, then hits
SELECT valid, status FROM hokusai_auth.validate_key(:'k_plain_key');
SELECT valid, status FROM hokusai_auth.validate_key(:'k_plain_key', '198.51.100.1', '/trust/plain');
-- four networks (kept in the cache entry): miss, hit, denied, no address
SELECT status FROM hokusai_auth.validate_key(:'k_ips4_key', '203.0.113.9');
SELECT status FROM hokusai_auth.validate_key(:'k_ips4_key', '10.1.2.3');
SELECT status FROM hokusai_auth.validate_key(:'k_ips4_key', '192.0.2.1');
SELECT status FROM hokusai_auth.validate_key(:'k_ips4_key');
-- six networks: on a cache hit allowed_ips is read again, by key id
SELECT status FROM hokusai_auth.validate_key(:'k_ips6_key', '203.0.113.9');
SELECT status FROM hokusai_auth.validate_key(:'k_ips6_key', '192.168.1.1');
SELECT status FROM hokusai_auth.validate_key(:'k_ips6_key', '2001:db8::1');
SELECT status FROM hokusai_auth.validate_key(:'k_ips6_key', '192.0.2.1');
-- a wrong secret for a real prefix (a miss, then the negative cache), and
-- an unknown prefix (one per pass: failures are throttled per prefix)
SELECT trust_lib.hk_with_checksum(pg_catalog.concat(pg_catalog.left(:'k_plain_key', 16),
	pg_catalog.repeat('a', 32))) AS wrong_key \gset
SELECT status FROM hokusai_auth.validate_key(:'wrong_key');
SELECT status FROM hokusai_auth.validate_key(:'wrong_key');
SELECT status FROM hokusai_auth.validate_key(trust_lib.hk_with_checksum(
	pg_catalog.concat('hk_live_ZZZZZZZ', :'trust_pass', pg_catalog.repeat('b', 32))));
-- malformed: no lookup at all
SELECT status FROM hokusai_auth.validate_key('hk_live_short');
SELECT status FROM hokusai_auth.validate_key(NULL);
-- rate limited
SELECT status FROM hokusai_auth.validate_key(:'k_rl_key');
SELECT status, valid, retry_after IS NOT NULL AS has_retry_after
  FROM hokusai_auth.validate_key(:'k_rl_key');
-- a test-environment key with metadata
SELECT status, rate_limit FROM hokusai_auth.validate_key(:'k_meta_key', NULL, '/trust/meta');
-- expired: the row's expiry moved into the past by the owner
SELECT status FROM hokusai_auth.validate_key(:'k_exp_key');
RESET ROLE;
UPDATE hokusai_auth.api_keys SET expires_at = '2000-01-01 00:00:00+00'
 WHERE id OPERATOR(pg_catalog.=) :'k_exp';
SET ROLE :"trust_caller";
SELECT status FROM hokusai_auth.validate_key(:'k_exp_key');

-- revoke_key
SELECT status FROM hokusai_auth.validate_key(:'k_rev_key');
SELECT hokusai_auth.revoke_key(:'k_rev', 'trust suite');
SELECT hokusai_auth.revoke_key(:'k_rev');
SELECT status FROM hokusai_auth.validate_key(:'k_rev_key');
SELECT hokusai_auth.revoke_key('00000000-0000-0000-0000-000000000000');
SELECT hokusai_auth.revoke_key(:'k_rev', ' ');
SELECT hokusai_auth.revoke_key(NULL);

-- rotate_key: with a grace period (the old key works until it ends), then
-- without one; the error branches
SELECT id AS k_new, key AS k_new_key FROM hokusai_auth.rotate_key(:'k_rot', '1 hour') \gset
SELECT status FROM hokusai_auth.validate_key(:'k_new_key', '192.168.0.1');
SELECT status FROM hokusai_auth.validate_key(:'k_new_key', '192.168.0.1');
SELECT status FROM hokusai_auth.validate_key(:'k_rot_key', '172.16.0.1');
\set VERBOSITY sqlstate
SELECT key_prefix IS NOT NULL AS rotated FROM hokusai_auth.rotate_key(:'k_rot');
SELECT key_prefix IS NOT NULL AS rotated FROM hokusai_auth.rotate_key(:'k_rev');
SELECT key_prefix IS NOT NULL AS rotated FROM hokusai_auth.rotate_key(:'k_exp');
\set VERBOSITY terse
SELECT key_prefix IS NOT NULL AS rotated FROM hokusai_auth.rotate_key(:'k_new', '-1 hour');
SELECT key_prefix IS NOT NULL AS rotated FROM hokusai_auth.rotate_key(:'k_new', '31 days');
SELECT key_prefix IS NOT NULL AS rotated FROM hokusai_auth.rotate_key('00000000-0000-0000-0000-000000000000');
SELECT key_prefix IS NOT NULL AS rotated, expires_at IS NOT NULL AS expires
  FROM hokusai_auth.rotate_key(:'k_new');
SELECT status FROM hokusai_auth.validate_key(:'k_new_key', '192.168.0.1');

-- update_key: every setting, clearing them, no change, and the error branches
SELECT name, rate_limit_per_hour, burst_limit, pg_catalog.cardinality(allowed_ips) AS networks,
	   metadata, expires_at IS NOT NULL AS expires, status
  FROM hokusai_auth.update_key(:'k_upd', name => 'updated', expires_at => '2998-01-01 00:00:00+00',
	rate_limit_per_hour => 50, burst_limit => 5, metadata => '{"updated": true}',
	allowed_ips => '{203.0.113.0/24, 198.51.100.7/32, 2001:db8::/32, 10.0.0.0/8, 172.16.0.0/12}');
SELECT status FROM hokusai_auth.validate_key(:'k_upd_key', '172.16.5.5');
SELECT status FROM hokusai_auth.validate_key(:'k_upd_key', '172.16.5.5');
SELECT name, burst_limit, allowed_ips IS NULL AS any_address, expires_at IS NULL AS no_expiry
  FROM hokusai_auth.update_key(:'k_upd', clear_expires_at => true, clear_burst_limit => true,
	clear_allowed_ips => true);
SELECT name, expires_at IS NULL AS no_expiry
  FROM hokusai_auth.update_key(:'k_upd', expires_at => '2997-01-01 00:00:00+00');
SELECT name, expires_at IS NULL AS no_expiry
  FROM hokusai_auth.update_key(:'k_upd', expires_at => 'infinity');
SELECT name FROM hokusai_auth.update_key(:'k_upd');
SELECT name FROM hokusai_auth.update_key(:'k_upd', burst_limit => 5, clear_burst_limit => true);
SELECT name FROM hokusai_auth.update_key(:'k_upd', allowed_ips => '{}');
SELECT name FROM hokusai_auth.update_key('00000000-0000-0000-0000-000000000000', name => 'x');
\set VERBOSITY sqlstate
SELECT name FROM hokusai_auth.update_key(:'k_rev', name => 'x');
SELECT name FROM hokusai_auth.update_key(:'k_exp', name => 'x');
SELECT name FROM hokusai_auth.update_key(:'k_rot', name => 'x');
\set VERBOSITY terse
SELECT status FROM hokusai_auth.validate_key(:'k_upd_key', '192.0.2.1');

-- list_keys and the keys view
SELECT name, environment, status, rate_limit_per_hour, burst_limit,
	   pg_catalog.cardinality(allowed_ips) AS networks, metadata,
	   rotated_from IS NOT NULL AS rotated_from
  FROM hokusai_auth.list_keys(:'uid');
SELECT hokusai_auth.list_keys('00000000-0000-0000-0000-000000000000');
SELECT hokusai_auth.list_keys(NULL);
SELECT status, pg_catalog.count(*) FROM hokusai_auth.keys
 WHERE user_id OPERATOR(pg_catalog.=) :'uid' GROUP BY status ORDER BY status;

-- rate limits
SELECT rate_limit_per_hour, burst_limit, requests_last_hour, tracked
  FROM hokusai_auth.rate_limit_status(:'k_rl');
SELECT hokusai_auth.rate_limit_reset(:'k_rl');
SELECT status FROM hokusai_auth.validate_key(:'k_rl_key');
SELECT tracked FROM hokusai_auth.rate_limit_status('00000000-0000-0000-0000-000000000000');
SELECT hokusai_auth.rate_limit_reset('00000000-0000-0000-0000-000000000000');
SELECT hokusai_auth.rate_limit_reset(NULL);
SELECT admitted IS NOT NULL AS rate_limit_stats FROM hokusai_auth.rate_limit_stats();

-- metering: credits and refills, the cost of a call, giving back at abort,
-- add_credits(), a refill for a key without credits, the rotation of a
-- metered key, the limits a user's keys share, and their errors
SELECT id AS k_cr, key AS k_cr_key
  FROM hokusai_auth.create_key(:'uid', 'metered', burst_limit => 1000, credits => 5,
	refill_amount => 10, refill_interval => 'week') \gset
SELECT id AS k_cr1, key AS k_cr1_key
  FROM hokusai_auth.create_key(:'uid', 'one credit', burst_limit => 1000, credits => 1) \gset
SELECT id AS k_ref FROM hokusai_auth.create_key(:'uid', 'refill later', burst_limit => 1000) \gset
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'k_cr_key', cost => 2);
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'k_cr_key', cost => 2);
SELECT status, credits_remaining, retry_after OPERATOR(pg_catalog.>) 0 AS waits_for_refill
  FROM hokusai_auth.validate_key(:'k_cr_key', cost => 2);
BEGIN;
SELECT status FROM hokusai_auth.validate_key(:'k_cr_key', cost => 1);
ROLLBACK;
SELECT hokusai_auth.add_credits(:'k_cr', 3);
SELECT hokusai_auth.add_credits(:'k_cr', -100);
SELECT hokusai_auth.add_credits(:'k_cr', 7);
SELECT hokusai_auth.add_credits(:'k_cr', 0);
\set VERBOSITY sqlstate
SELECT hokusai_auth.add_credits(:'k_plain', 1);
\set VERBOSITY terse
SELECT hokusai_auth.add_credits('00000000-0000-0000-0000-000000000000', 1);
SELECT credits_remaining, refill_amount, refill_interval
  FROM hokusai_auth.update_key(:'k_ref', refill_amount => 5, refill_interval => 'month');
SELECT credits_remaining FROM hokusai_auth.update_key(:'k_ref', refill_amount => 5);
SELECT credits_remaining, refill_interval
  FROM hokusai_auth.update_key(:'k_cr', refill_amount => 20, refill_interval => 'day');
SELECT id AS k_cr2, key AS k_cr2_key FROM hokusai_auth.rotate_key(:'k_cr', '1 minute') \gset
SELECT status, credits_remaining FROM hokusai_auth.validate_key(:'k_cr2_key', cost => 1);
SELECT credits_remaining FROM hokusai_auth.update_key(:'k_cr2', refill_amount => 30, refill_interval => 'week');
SELECT hokusai_auth.set_user_limits(:'uid', 100000, 1000);
SELECT status FROM hokusai_auth.validate_key(:'k_cr2_key');
SELECT credits_remaining IS NOT NULL AS has_credits, next_refill_at IS NOT NULL AS refills,
	   user_rate_limit_per_hour, user_burst_limit,
	   user_requests_last_hour OPERATOR(pg_catalog.>) 0 AS user_counted
  FROM hokusai_auth.rate_limit_status(:'k_cr2');
SELECT hokusai_auth.set_user_limits(:'uid', 0, NULL);
SELECT hokusai_auth.set_user_limits(:'uid', NULL, NULL);
SELECT hokusai_auth.set_user_limits('00000000-0000-0000-0000-000000000000', NULL, NULL);
SELECT credits_spent IS NOT NULL AS metering_stats FROM hokusai_auth.metering_stats();

-- usage: the request path (record_usage, track_request), the summaries
SELECT hokusai_auth.record_usage(:'k_plain', '/trust/recorded', 12, 200) IS NOT NULL AS recorded;
SELECT hokusai_auth.track_request(:'k_plain', '/trust/tracked');
SELECT requests IS NOT NULL AS summarized, pg_catalog.jsonb_typeof(by_status) AS by_status,
	   pg_catalog.jsonb_typeof(by_endpoint) AS by_endpoint
  FROM hokusai_auth.usage_summary(:'k_plain');
SELECT requests IS NOT NULL AS summarized
  FROM hokusai_auth.usage_summary(:'k_plain', '2000-01-01 00:00:00+00', '2999-01-01 00:00:00+00');
SELECT requests FROM hokusai_auth.usage_summary(:'k_plain', '2999-01-01 00:00:00+00', '2000-01-01 00:00:00+00');
SELECT requests FROM hokusai_auth.usage_summary(NULL);
SELECT pg_catalog.count(*) IS NOT NULL AS counted FROM hokusai_auth.usage_timeseries(:'k_plain');
SELECT pg_catalog.count(*) IS NOT NULL AS counted FROM hokusai_auth.usage_timeseries(:'k_plain', 'minute');
SELECT pg_catalog.count(*) IS NOT NULL AS counted
  FROM hokusai_auth.usage_timeseries(:'k_plain', 'day', '2000-01-01 00:00:00+00', '2999-01-01 00:00:00+00');
SELECT requests FROM hokusai_auth.usage_timeseries(:'k_plain', 'week');
SELECT capacity IS NOT NULL AS usage_queue_stats FROM hokusai_auth.usage_queue_stats();
SELECT hokusai_auth.usage_queue_stats_reset();
SELECT in_recovery IS NOT NULL AS replica_stats FROM hokusai_auth.replica_stats();
SELECT pg_catalog.count(*) AS replica_stats_view FROM hokusai_auth.replica_stats;

-- housekeeping
SELECT hokusai_auth.expire_keys() IS NOT NULL AS expired;
SELECT status FROM hokusai_auth.validate_key(:'k_exp_key');
SELECT hokusai_auth.rollup_usage() IS NOT NULL AS rolled_up;
SELECT hokusai_auth.prune_usage() IS NOT NULL AS pruned;
SELECT hokusai_auth.prune_usage('1 minute');
SELECT hokusai_auth.create_usage_partitions() IS NOT NULL AS partitions_made;
SELECT hokusai_auth.create_usage_partitions(-1);
SELECT jobid FROM hokusai_auth.schedule_housekeeping();
SELECT hokusai_auth.unschedule_housekeeping();

-- events: the outbox, read in order, key.expiring, retention, the
-- request-path queue, webhook cursors
SELECT id AS k_soon FROM hokusai_auth.create_key(:'uid', 'expires soon', burst_limit => 1000,
	expires_at => pg_catalog.now() OPERATOR(pg_catalog.+) interval '3 days') \gset
SELECT hokusai_auth.note_expiring_keys() IS NOT NULL AS noted;
SELECT kind, pg_catalog.count(*) FROM hokusai_auth.events
 WHERE user_id OPERATOR(pg_catalog.=) :'uid' GROUP BY kind ORDER BY kind COLLATE pg_catalog."C";
SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 AS in_order FROM hokusai_auth.events_after(0, 10000);
SELECT hokusai_auth.prune_events() IS NOT NULL AS pruned;
SELECT hokusai_auth.prune_events('1 day');
SELECT capacity FROM hokusai_auth.event_queue_stats();
SELECT hokusai_auth.set_webhook_cursor(pg_catalog.concat('https://hooks.example.com/', :'u'), 7);
SELECT hokusai_auth.webhook_cursor(pg_catalog.concat('https://hooks.example.com/', :'u')) AS cursor;
SELECT hokusai_auth.set_webhook_cursor('ftp://example.com/', 7);

-- the audit trail: one row per operation of this pass, the chain intact
SELECT action, pg_catalog.count(*) FROM hokusai_auth.audit_log
 WHERE user_id OPERATOR(pg_catalog.=) :'uid' GROUP BY action ORDER BY action;
SELECT pg_catalog.int4ge(hokusai_auth.seal_audit_log(), 0) AS sealed;
SELECT pg_catalog.int8eq(coalesce(hokusai_auth.verify_audit_chain(), 0), :chain_before) AS chain_unchanged;

-- the helpers in C, the counters, the views
SELECT hokusai_auth.key_is_well_formed(:'k_plain_key') AS well_formed,
	   hokusai_auth.key_is_well_formed('hk_live_short') AS short_is_well_formed,
	   hokusai_auth.key_prefix(:'k_plain_key') IS NOT NULL AS has_prefix,
	   hokusai_auth.key_prefix('hk_live_short') IS NULL AS short_has_none;
SELECT hokusai_auth.client_ip('198.51.100.1, 203.0.113.9') AS client,
	   hokusai_auth.client_ip('', '192.0.2.7') AS peer,
	   hokusai_auth.client_ip('not an address') AS malformed;
SELECT hits IS NOT NULL AS cache_stats FROM hokusai_auth.cache_stats();
SELECT hokusai_auth.cache_stats_reset();
SELECT (SELECT pg_catalog.count(*) FROM hokusai_auth.cache_stats) AS cache_stats,
	   (SELECT pg_catalog.count(*) FROM hokusai_auth.stats) AS stats,
	   (SELECT pg_catalog.count(*) FROM hokusai_auth.usage_queue_stats) AS usage_queue_stats,
	   (SELECT pg_catalog.count(*) IS NOT NULL FROM hokusai_auth.usage_hourly) AS usage_hourly,
	   (SELECT pg_catalog.count(*) IS NOT NULL FROM hokusai_auth.usage_daily) AS usage_daily,
	   (SELECT pg_catalog.count(*) IS NOT NULL FROM hokusai_auth.usage_by_endpoint) AS usage_by_endpoint,
	   (SELECT pg_catalog.count(*) IS NOT NULL FROM hokusai_auth.usage_by_status) AS usage_by_status,
	   (SELECT pg_catalog.count(*) IS NOT NULL FROM hokusai_auth.usage_per_minute) AS usage_per_minute;

-- authorization: scopes at validation (kept in the cache entry, and too
-- long to keep), their errors, update_key of scopes, disable_key and
-- enable_key, require_scope and unrequire_scope, the caller functions
-- outside a request
SELECT id AS k_sc, key AS k_sc_key FROM hokusai_auth.create_key(:'uid', 'scoped',
	burst_limit => 1000, scopes => '{trust:*, keys:read}') \gset
SELECT id AS k_sl, key AS k_sl_key FROM hokusai_auth.create_key(:'uid', 'many scopes',
	burst_limit => 1000,
	scopes => '{alpha:read, beta:read, gamma:read, delta:read, epsilon:read, trust:read}') \gset
SELECT status FROM hokusai_auth.validate_key(:'k_sc_key', required_scopes => '{trust:read}');
SELECT status FROM hokusai_auth.validate_key(:'k_sc_key', required_scopes => '{trust:read}');
SELECT status FROM hokusai_auth.validate_key(:'k_sc_key', required_scopes => '{other}');
SELECT status FROM hokusai_auth.validate_key(:'k_sl_key', required_scopes => '{trust:read}');
SELECT status FROM hokusai_auth.validate_key(:'k_sl_key', required_scopes => '{trust:read}');
SELECT status FROM hokusai_auth.validate_key(:'k_sl_key', required_scopes => '{Bad}');
SELECT expires_at FROM hokusai_auth.create_key(:'uid', 'bad scope', scopes => '{Bad}');
SELECT expires_at FROM hokusai_auth.create_key(:'uid', 'null scope', scopes => '{a, NULL}');
SELECT scopes FROM hokusai_auth.update_key(:'k_sc', scopes => '{trust:read, keys:*}');
SELECT status FROM hokusai_auth.validate_key(:'k_sc_key', required_scopes => '{keys:write}');
SELECT hokusai_auth.disable_key(:'k_sc', 'trust suite') AS disabled;
SELECT hokusai_auth.disable_key(:'k_sc') AS disabled;
SELECT status FROM hokusai_auth.validate_key(:'k_sc_key');
SELECT hokusai_auth.enable_key(:'k_sc') AS enabled;
SELECT hokusai_auth.enable_key(:'k_sc') AS enabled;
SELECT status FROM hokusai_auth.validate_key(:'k_sc_key');
\set VERBOSITY sqlstate
SELECT hokusai_auth.enable_key(:'k_rev');
SELECT hokusai_auth.disable_key(:'k_exp');
\set VERBOSITY terse
SELECT hokusai_auth.disable_key('00000000-0000-0000-0000-000000000000');
SELECT hokusai_auth.require_scope('get', pg_catalog.concat('/trust_', :'trust_pass'), 'trust:read') AS required;
SELECT hokusai_auth.require_scope('GET', pg_catalog.concat('/trust_', :'trust_pass'), 'trust:read') AS required;
SELECT hokusai_auth.require_scope('*', pg_catalog.concat('/trust_', :'trust_pass', '_gone*'), 'gone') AS required;
SELECT hokusai_auth.unrequire_scope('*', pg_catalog.concat('/trust_', :'trust_pass', '_gone*'), 'gone') AS unrequired;
SELECT hokusai_auth.require_scope('GET', '/trust', 'Bad');
SELECT hokusai_auth.require_scope('FETCH', '/trust', 'trust:read');
SELECT hokusai_auth.unrequire_scope('*', '/keys', 'keys:read');
SELECT hokusai_auth.current_key_id() AS key_id, hokusai_auth.current_user_id() AS user_id,
	   hokusai_auth.current_scopes() AS scopes, hokusai_auth.has_scope('trust:read') AS has_scope;

-- HTTP: requests as PostgREST makes them (trust_lib.http(): the request.*
-- settings, the role, then hokusai_auth.pre_request()), then the route's
-- statement.  The search_path is the pass's, as when PostgREST's
-- db-extra-search-path names the planted schema.
RESET ROLE;
-- JWT: POST /rpc/create_key, six networks
BEGIN;
SELECT trust_lib.http('POST', '/rpc/create_key', trust_lib.headers(NULL),
	trust_lib.claims(:'uid'), 'regress_hk_trust_api') AS http;
SELECT r OPERATOR(pg_catalog.->>) 'key' AS h_key, r OPERATOR(pg_catalog.->>) 'id' AS h_kid
  FROM hokusai_api.create_key('{"name": "over http", "environment": "test",
	"expires_at": "2999-01-01T00:00:00Z", "rate_limit_per_hour": 100, "burst_limit": 100,
	"metadata": {"via": "http"}, "credits": 1000, "refill_amount": 1000, "refill_interval": "day",
	"allowed_ips": ["203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}') r \gset
SELECT current_user;
COMMIT;
-- its errors
BEGIN;
SELECT trust_lib.http('POST', '/rpc/create_key', trust_lib.headers(NULL),
	trust_lib.claims(:'uid'), 'regress_hk_trust_api') AS http;
SELECT hokusai_api.create_key('[]');
ROLLBACK;
BEGIN;
SELECT trust_lib.http('POST', '/rpc/create_key', trust_lib.headers(NULL),
	trust_lib.claims(:'uid'), 'regress_hk_trust_api') AS http;
SELECT hokusai_api.create_key('{"name": "x", "allowed_ips": ["10.0.0.1/8"]}');
ROLLBACK;
BEGIN;
SELECT trust_lib.http('POST', '/rpc/create_key', trust_lib.headers(NULL),
	trust_lib.claims(:'uid'), 'regress_hk_trust_api') AS http;
SELECT hokusai_api.create_key('{"name": "x", "expires_at": "yesterday"}');
ROLLBACK;
BEGIN;
SELECT trust_lib.http('POST', '/rpc/create_key', trust_lib.headers(NULL),
	trust_lib.claims(:'uid'), 'regress_hk_trust_api') AS http;
SELECT hokusai_api.create_key('{"name": "x", "credits": -1}');
ROLLBACK;
BEGIN;
SELECT trust_lib.http('POST', '/rpc/create_key', trust_lib.headers(NULL),
	trust_lib.claims(:'uid'), 'regress_hk_trust_api') AS http;
SELECT hokusai_api.create_key('{"name": "x", "refill_amount": 5, "refill_interval": "hour"}');
ROLLBACK;
-- GET /keys with the new key: a cache miss, then hits that read allowed_ips again
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/keys', trust_lib.headers(:'h_key', '203.0.113.9')) AS http;
SELECT name, status, pg_catalog.cardinality(allowed_ips) AS networks FROM hokusai_api.keys
 ORDER BY name COLLATE pg_catalog."C", status COLLATE pg_catalog."C";
COMMIT;
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/keys', trust_lib.headers(:'h_key', '192.168.7.7')) AS http;
COMMIT;
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/keys', trust_lib.headers(:'h_key', '192.0.2.1')) AS http;
ROLLBACK;
-- refused: unknown, malformed, revoked, rate limited, no credentials, not HTTPS
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/keys', trust_lib.headers(:'wrong_key')) AS http;
ROLLBACK;
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/keys', trust_lib.headers('hk_live_short')) AS http;
ROLLBACK;
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/keys', trust_lib.headers(:'k_rev_key')) AS http;
ROLLBACK;
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/keys', trust_lib.headers(:'k_rl_key')) AS http;
ROLLBACK;
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/keys', trust_lib.headers(NULL)) AS http;
ROLLBACK;
-- a metered key: its credit, then 402
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/keys', trust_lib.headers(:'k_cr1_key')) AS http;
COMMIT;
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/keys', trust_lib.headers(:'k_cr1_key')) AS http;
ROLLBACK;
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/keys', trust_lib.headers(:'k_plain_key', '203.0.113.9', 'http')) AS http;
ROLLBACK;
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/keys', trust_lib.headers(NULL),
	trust_lib.claims('00000000-0000-0000-0000-000000000000'), 'regress_hk_trust_api') AS http;
ROLLBACK;
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/', trust_lib.headers(NULL)) AS http;
ROLLBACK;
-- GET /keys/{id}/usage (JWT), and its error
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/rpc/key_usage', trust_lib.headers(NULL),
	trust_lib.claims(:'uid'), 'regress_hk_trust_api') AS http;
SELECT k FROM pg_catalog.jsonb_object_keys(hokusai_api.key_usage(:'h_kid')) k ORDER BY k;
COMMIT;
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/rpc/key_usage', trust_lib.headers(NULL),
	trust_lib.claims(:'uid'), 'regress_hk_trust_api') AS http;
SELECT hokusai_api.key_usage(:'h_kid', '2999-01-01T00:00:00Z', '2000-01-01T00:00:00Z');
ROLLBACK;
-- GET /events (JWT): the caller's own events
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/rpc/events', trust_lib.headers(NULL),
	trust_lib.claims(:'uid'), 'regress_hk_trust_api') AS http;
SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 AS own_events,
	   pg_catalog.bool_and(user_id OPERATOR(pg_catalog.=) :'uid') AS only_own
  FROM hokusai_api.events(0);
COMMIT;
-- POST /keys/{id}/rotate with an API key (the anonymous role, moved to the API role)
BEGIN;
SELECT trust_lib.http('POST', '/rpc/rotate_key', trust_lib.headers(:'k_plain_key', '203.0.113.9')) AS http;
SELECT r OPERATOR(pg_catalog.->>) 'key' AS h_new_key, r OPERATOR(pg_catalog.->>) 'id' AS h_new_kid
  FROM hokusai_api.rotate_key(pg_catalog.jsonb_build_object('key_id', :'h_kid', 'grace_seconds', 60)) r \gset
COMMIT;
BEGIN;
SELECT trust_lib.http('POST', '/rpc/rotate_key', trust_lib.headers(:'k_plain_key', '203.0.113.9')) AS http;
\set VERBOSITY sqlstate
SELECT hokusai_api.rotate_key(pg_catalog.jsonb_build_object('key_id', :'h_kid'));
\set VERBOSITY terse
ROLLBACK;
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/keys', trust_lib.headers(:'h_new_key', '10.9.8.7')) AS http;
COMMIT;
-- DELETE /keys/{id} (a POST to /rpc/revoke_key)
BEGIN;
SELECT trust_lib.http('POST', '/rpc/revoke_key', trust_lib.headers(:'h_new_key', '10.9.8.7')) AS http;
SELECT r OPERATOR(pg_catalog.->) 'revoked' AS revoked
  FROM hokusai_api.revoke_key(pg_catalog.jsonb_build_object('key_id', :'h_new_kid', 'reason', 'over http')) r;
COMMIT;
BEGIN;
SELECT trust_lib.http('POST', '/rpc/revoke_key', trust_lib.headers(:'k_plain_key', '203.0.113.9')) AS http;
SELECT hokusai_api.revoke_key(pg_catalog.jsonb_build_object('key_id', '00000000-0000-0000-0000-000000000000'));
ROLLBACK;
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/keys', trust_lib.headers(:'h_new_key', '10.9.8.7')) AS http;
ROLLBACK;
-- PATCH /keys/{id} (a POST to /rpc/update_key) with a key that has
-- scopes: settings, scopes it may grant, disabled; then its errors
BEGIN;
SELECT trust_lib.http('POST', '/rpc/update_key', trust_lib.headers(:'k_sc_key', '203.0.113.9')) AS http;
SELECT r OPERATOR(pg_catalog.->>) 'name' AS name, r OPERATOR(pg_catalog.->) 'scopes' AS scopes,
	   r OPERATOR(pg_catalog.->>) 'status' AS status,
	   r OPERATOR(pg_catalog.->) 'allowed_ips' AS allowed_ips
  FROM hokusai_api.update_key(pg_catalog.jsonb_build_object('key_id', :'k_sl', 'name', 'patched',
	'scopes', pg_catalog.jsonb_build_array('trust:read'), 'rate_limit_per_hour', 10,
	'burst_limit', NULL, 'expires_at', '2999-01-01T00:00:00Z',
	'allowed_ips', pg_catalog.jsonb_build_array('10.0.0.0/8'), 'metadata', '{"patched": true}'::pg_catalog.jsonb,
	'disabled', true, 'reason', 'over http')) r;
COMMIT;
BEGIN;
SELECT trust_lib.http('POST', '/rpc/update_key', trust_lib.headers(:'k_sc_key', '203.0.113.9')) AS http;
SELECT hokusai_api.update_key(pg_catalog.jsonb_build_object('key_id', :'k_sl',
	'scopes', pg_catalog.jsonb_build_array('other')));
ROLLBACK;
BEGIN;
SELECT trust_lib.http('POST', '/rpc/update_key', trust_lib.headers(:'k_sc_key', '203.0.113.9')) AS http;
\set VERBOSITY sqlstate
SELECT hokusai_api.update_key(pg_catalog.jsonb_build_object('key_id', :'k_rev', 'disabled', false));
\set VERBOSITY terse
ROLLBACK;
BEGIN;
SELECT trust_lib.http('POST', '/rpc/update_key', trust_lib.headers(:'k_sc_key', '203.0.113.9')) AS http;
SELECT hokusai_api.update_key(pg_catalog.jsonb_build_object('key_id', :'k_sl', 'scopes', 'x'));
ROLLBACK;
-- POST /keys with scopes, by a key with scopes: only scopes it has
BEGIN;
SELECT trust_lib.http('POST', '/rpc/create_key', trust_lib.headers(:'k_sc_key', '203.0.113.9')) AS http;
SELECT r OPERATOR(pg_catalog.->) 'scopes' AS h_sc_scopes, r OPERATOR(pg_catalog.->>) 'key' AS h_sc_key
  FROM hokusai_api.create_key('{"name": "scoped over http", "scopes": ["trust:read"]}') r \gset
COMMIT;
SELECT :'h_sc_scopes' AS scopes;
BEGIN;
SELECT trust_lib.http('POST', '/rpc/create_key', trust_lib.headers(:'k_sc_key', '203.0.113.9')) AS http;
SELECT hokusai_api.create_key('{"name": "wider", "scopes": ["trust:*"]}');
ROLLBACK;
-- route scopes: refused without the scope (a key without scopes, a disabled
-- key, one lacking keys:write), admitted with it, the caller in the request
BEGIN READ ONLY;
SELECT trust_lib.http('GET', pg_catalog.concat('/trust_', :'trust_pass'), trust_lib.headers(:'k_plain_key', '203.0.113.9')) AS http;
ROLLBACK;
BEGIN READ ONLY;
SELECT trust_lib.http('GET', '/keys', trust_lib.headers(:'k_sl_key', '10.1.1.1')) AS http;
ROLLBACK;
BEGIN READ ONLY;
SELECT trust_lib.http('POST', '/rpc/revoke_key', trust_lib.headers(:'h_sc_key', '203.0.113.9')) AS http;
ROLLBACK;
BEGIN READ ONLY;
SELECT trust_lib.http('GET', pg_catalog.concat('/trust_', :'trust_pass'), trust_lib.headers(:'k_sc_key', '203.0.113.9')) AS http;
SELECT hokusai_auth.current_key_id() OPERATOR(pg_catalog.=) :'k_sc' AS key_id,
	   hokusai_auth.current_user_id() OPERATOR(pg_catalog.=) :'uid' AS user_id,
	   hokusai_auth.current_scopes() AS scopes, hokusai_auth.has_scope('trust:read') AS has_scope;
COMMIT;
\set ECHO none
\elif :{?trust_plant}
\set ECHO all
--------------------------------------------------------------------------
-- The planted objects, created by regress_hk_evil in its schema evil of
-- the current database (included by the main part, see below).
--------------------------------------------------------------------------
SET ROLE regress_hk_evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;

-- What every planted object does when it runs (reported once per object,
-- role and transaction: a planted = runs for every row it filters).
CREATE FUNCTION evil.hk_ran(what text)
	RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	outcome	text := 'ALTER ROLE regress_hk_evil SUPERUSER succeeded';
	seen	text := format('evil.ran_%s', md5(format('%s %s', what, current_user)));
BEGIN
	IF current_setting(seen, true) = 'yes' THEN
		RETURN;
	END IF;
	PERFORM set_config(seen, 'yes', true);
	BEGIN
		ALTER ROLE regress_hk_evil SUPERUSER;
	EXCEPTION WHEN OTHERS THEN
		outcome := format('ALTER ROLE failed: %s', SQLERRM);
	END;
	RAISE WARNING 'planted % ran as % (%)', what, current_user, outcome;
END
$$;
CREATE FUNCTION evil.hk_ran_check(what text)
	RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM evil.hk_ran(what);
	RETURN true;
END
$$;

-- op(l, r) in evil: reports, then returns l OPERATOR(pg_catalog.op) r.
CREATE FUNCTION evil.hk_plant_operator(op text, l text, r text)
	RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $plant$
DECLARE
	result	regtype;
	fn		text := format('hk_op_%s', md5(format('%s %s %s', op, l, r)));
BEGIN
	EXECUTE format('SELECT pg_typeof(NULL::%s OPERATOR(pg_catalog.%s) NULL::%s)', l, op, r)
		INTO result;
	EXECUTE format($f$CREATE FUNCTION evil.%I(%s, %s) RETURNS %s
		LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $b$
BEGIN
	PERFORM evil.hk_ran(%L);
	RETURN $1 OPERATOR(pg_catalog.%s) $2;
END
$b$$f$, fn, l, r, result, format('operator %s(%s, %s)', op, l, r), op);
	EXECUTE format('CREATE OPERATOR evil.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.%I)',
		op, l, r, fn);
END
$plant$;

-- name(args) in evil: reports, then returns schema.name(args) (all its
-- rows when set_returning).
CREATE FUNCTION evil.hk_plant_function(name text, args text, result text,
	set_returning boolean DEFAULT false, schema text DEFAULT 'pg_catalog')
	RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $plant$
DECLARE
	n		integer := coalesce(array_length(string_to_array(nullif(args, ''), ','), 1), 0);
	params	text := (SELECT coalesce(string_agg(format('$%s', i), ', '), '') FROM generate_series(1, n) i);
	what	text := format('function %s(%s)', name, args);
BEGIN
	IF set_returning THEN
		EXECUTE format($f$CREATE FUNCTION evil.%I(%s) RETURNS SETOF %s
			LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $b$
BEGIN
	PERFORM evil.hk_ran(%L);
	RETURN QUERY SELECT * FROM %I.%I(%s);
END
$b$$f$, name, args, result, what, schema, name, params);
	ELSE
		EXECUTE format($f$CREATE FUNCTION evil.%I(%s) RETURNS %s
			LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $b$
BEGIN
	PERFORM evil.hk_ran(%L);
	RETURN %I.%I(%s);
END
$b$$f$, name, args, result, what, schema, name, params);
	END IF;
END
$plant$;

-- Operators.  Comparisons for every type the extension compares, in its
-- SQL, its C (read_row_as_owner: =(text, text), =(uuid, uuid)) or the CLI;
-- cidr, cidr[], (numeric, integer) and the like match better than the
-- built-in they imitate (which needs a coercion or is polymorphic).
DO $$
BEGIN
	PERFORM evil.hk_plant_operator(o, t, t)
	   FROM unnest(ARRAY['=', '<>', '<', '<=', '>', '>=']) o,
			unnest(ARRAY['text', 'uuid', 'inet', 'cidr', 'timestamptz', 'timestamp',
						 'bigint', 'integer', 'numeric', 'boolean', 'jsonb', 'interval',
						 'bytea', 'name', 'text[]', 'uuid[]', 'cidr[]']) t;
	PERFORM evil.hk_plant_operator(o, l, r)
	   FROM unnest(ARRAY['=', '<>', '<', '<=', '>', '>=']) o,
			(VALUES ('bigint', 'integer'), ('integer', 'bigint'), ('numeric', 'integer'),
					('numeric', 'bigint'), ('name', 'text'), ('text', 'name'),
					('inet', 'cidr'), ('cidr', 'inet')) v(l, r);
	PERFORM evil.hk_plant_operator(o, l, r)
	   FROM (VALUES
			-- text
			('~', 'text', 'text'), ('~*', 'text', 'text'), ('!~', 'text', 'text'),
			('!~*', 'text', 'text'), ('~~', 'text', 'text'), ('~~*', 'text', 'text'),
			('!~~', 'text', 'text'), ('!~~*', 'text', 'text'), ('||', 'text', 'text'),
			('||', 'text', 'uuid'), ('||', 'text', 'integer'), ('||', 'bytea', 'bytea'),
			-- networks
			('<<', 'inet', 'inet'), ('<<=', 'inet', 'inet'), ('>>', 'inet', 'inet'),
			('>>=', 'inet', 'inet'), ('&&', 'inet', 'inet'),
			('<<', 'cidr', 'cidr'), ('<<=', 'cidr', 'cidr'), ('>>', 'cidr', 'cidr'),
			('>>=', 'cidr', 'cidr'), ('&&', 'cidr', 'cidr'),
			('<<=', 'inet', 'cidr'), ('>>=', 'cidr', 'inet'),
			-- jsonb and json
			('->', 'jsonb', 'text'), ('->', 'jsonb', 'integer'), ('->>', 'jsonb', 'text'),
			('->>', 'jsonb', 'integer'), ('#>', 'jsonb', 'text[]'), ('#>>', 'jsonb', 'text[]'),
			('?', 'jsonb', 'text'), ('?|', 'jsonb', 'text[]'), ('?&', 'jsonb', 'text[]'),
			('@>', 'jsonb', 'jsonb'), ('<@', 'jsonb', 'jsonb'), ('||', 'jsonb', 'jsonb'),
			('-', 'jsonb', 'text'), ('->', 'json', 'text'), ('->>', 'json', 'text'),
			-- arrays
			('||', 'cidr[]', 'cidr'), ('||', 'text[]', 'text'), ('||', 'uuid[]', 'uuid'),
			('@>', 'cidr[]', 'cidr[]'), ('<@', 'cidr[]', 'cidr[]'), ('&&', 'cidr[]', 'cidr[]'),
			('@>', 'text[]', 'text[]'), ('&&', 'text[]', 'text[]'),
			-- arithmetic
			('+', 'bigint', 'bigint'), ('-', 'bigint', 'bigint'), ('*', 'bigint', 'bigint'),
			('/', 'bigint', 'bigint'), ('%', 'bigint', 'bigint'),
			('+', 'integer', 'integer'), ('-', 'integer', 'integer'), ('*', 'integer', 'integer'),
			('/', 'integer', 'integer'), ('%', 'integer', 'integer'),
			('+', 'bigint', 'integer'), ('-', 'bigint', 'integer'), ('/', 'bigint', 'integer'),
			('+', 'numeric', 'numeric'), ('-', 'numeric', 'numeric'), ('*', 'numeric', 'numeric'),
			('/', 'numeric', 'numeric'), ('/', 'numeric', 'bigint'), ('*', 'numeric', 'bigint'),
			('+', 'timestamptz', 'interval'), ('-', 'timestamptz', 'interval'),
			('-', 'timestamptz', 'timestamptz'), ('+', 'interval', 'interval'),
			('*', 'interval', 'double precision')
			) v(o, l, r);
END
$$;

-- Functions: every built-in the extension's SQL, C and CLI call by name,
-- with the built-in's signature or one that matches a call better
-- (format(text, text), jsonb_build_object(text, text), cardinality(cidr[]),
-- to_jsonb(timestamptz), width_bucket(integer, integer[]) ... against
-- polymorphic and VARIADIC "any" built-ins).  coalesce, nullif, greatest,
-- least and the SQL-standard forms (substring(... FROM ...), extract,
-- trim, position, overlay) are syntax, resolved to pg_catalog by the
-- parser: they cannot be planted (nullif and IN use =, which is).
DO $$
BEGIN
	PERFORM evil.hk_plant_function(name, args, result)
	   FROM (VALUES
			('now', '', 'timestamptz'), ('clock_timestamp', '', 'timestamptz'),
			('statement_timestamp', '', 'timestamptz'), ('gen_random_uuid', '', 'uuid'),
			('inet_client_addr', '', 'inet'),
			('btrim', 'text', 'text'), ('length', 'text', 'integer'), ('lower', 'text', 'text'),
			('upper', 'text', 'text'), ('octet_length', 'text', 'integer'),
			('left', 'text, integer', 'text'), ('substr', 'text, integer', 'text'),
			('substr', 'text, integer, integer', 'text'), ('repeat', 'text, integer', 'text'),
			('concat', 'text, text', 'text'), ('replace', 'text, text, text', 'text'),
			('format', 'text', 'text'), ('format', 'text, text', 'text'),
			('format', 'text, integer', 'text'), ('format', 'text, text, text', 'text'),
			('host', 'inet', 'text'), ('host', 'cidr', 'text'),
			('set_config', 'text, text, boolean', 'text'),
			('current_setting', 'text', 'text'), ('current_setting', 'text, boolean', 'text'),
			('has_schema_privilege', 'text, text', 'boolean'),
			('has_schema_privilege', 'name, text', 'boolean'),
			('jsonb_typeof', 'jsonb', 'text'), ('jsonb_strip_nulls', 'jsonb', 'jsonb'),
			('jsonb_array_length', 'jsonb', 'integer'),
			('jsonb_build_object', 'text, text', 'jsonb'),
			('jsonb_build_object', 'text, uuid', 'jsonb'),
			('jsonb_build_object', 'text, boolean', 'jsonb'),
			('jsonb_build_object', 'text, integer', 'jsonb'),
			('jsonb_build_object', 'text, text, text, text', 'jsonb'),
			('json_build_object', 'text, text', 'json'),
			('json_build_object', 'text, text, text, text', 'json'),
			('to_jsonb', 'text', 'jsonb'), ('to_jsonb', 'integer', 'jsonb'),
			('to_jsonb', 'timestamptz', 'jsonb'), ('to_jsonb', 'cidr[]', 'jsonb'),
			('to_json', 'cidr[]', 'json'), ('to_json', 'text', 'json'),
			('cardinality', 'cidr[]', 'integer'), ('cardinality', 'text[]', 'integer'),
			('array_ndims', 'cidr[]', 'integer'), ('array_length', 'cidr[], integer', 'integer'),
			('array_position', 'cidr[], cidr', 'integer'),
			('array_to_string', 'text[], text', 'text'),
			('sha256', 'bytea', 'bytea'), ('convert_to', 'text, name', 'bytea'),
			('date_trunc', 'text, timestamptz', 'timestamptz'),
			('date_trunc', 'text, timestamptz, text', 'timestamptz'),
			('isfinite', 'timestamptz', 'boolean'),
			('to_char', 'timestamp, text', 'text'), ('to_char', 'timestamptz, text', 'text'),
			('nextval', 'regclass', 'bigint'),
			('width_bucket', 'integer, integer[]', 'integer'),
			('trunc', 'numeric', 'numeric'), ('round', 'numeric', 'numeric'),
			('round', 'numeric, integer', 'numeric'),
			('to_regprocedure', 'text', 'regprocedure'),
			('pg_typeof', 'text', 'regtype'),
			-- events
			('pg_try_advisory_xact_lock', 'bigint', 'boolean'),
			('regexp_replace', 'text, text, text', 'text'), ('substring', 'text, text', 'text'),
			('jsonb_build_object', 'text, text, text, bigint', 'jsonb'),
			('jsonb_build_object', 'text, text, text, text, text, timestamptz, text, integer', 'jsonb'),
			('to_jsonb', 'bigint', 'jsonb'), ('cardinality', 'uuid[]', 'integer')
			) v(name, args, result);
	-- pgcrypto's, wherever CREATE EXTENSION ... CASCADE put it
	PERFORM evil.hk_plant_function(name, args, result, false, e.extnamespace::regnamespace::text)
	   FROM (VALUES ('crypt', 'text, text', 'text'), ('gen_salt', 'text, integer', 'text'),
					('gen_salt', 'text', 'text'), ('digest', 'text, text', 'bytea')) v(name, args, result),
			pg_extension e
	  WHERE e.extname = 'pgcrypto';
	-- set-returning
	PERFORM evil.hk_plant_function(name, args, result, true)
	   FROM (VALUES
			('unnest', 'uuid[]', 'uuid'), ('unnest', 'cidr[]', 'cidr'),
			('unnest', 'text[]', 'text'), ('unnest', 'integer[]', 'integer'),
			('unnest', 'timestamptz[]', 'timestamptz'), ('unnest', 'bigint[]', 'bigint'),
			('generate_series', 'integer, integer', 'integer'),
			('jsonb_object_keys', 'jsonb', 'text'), ('jsonb_array_elements', 'jsonb', 'jsonb')
			) v(name, args, result);
END
$$;
CREATE FUNCTION evil.jsonb_each(jsonb, OUT key text, OUT value jsonb)
	RETURNS SETOF record LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM evil.hk_ran('function jsonb_each(jsonb)');
	RETURN QUERY SELECT * FROM pg_catalog.jsonb_each($1);
END
$$;

-- Aggregates, with transition functions that report.
CREATE FUNCTION evil.hk_count_star(bigint)
	RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM evil.hk_ran('aggregate count(*)');
	RETURN $1 OPERATOR(pg_catalog.+) 1;
END
$$;
CREATE AGGREGATE evil.count(*) (SFUNC = evil.hk_count_star, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION evil.hk_count_any(bigint, anyelement)
	RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM evil.hk_ran(format('aggregate count(%s)', pg_typeof($2)));
	RETURN CASE WHEN $2 IS NULL THEN $1 ELSE $1 OPERATOR(pg_catalog.+) 1 END;
END
$$;
CREATE AGGREGATE evil.count(uuid) (SFUNC = evil.hk_count_any, STYPE = bigint, INITCOND = '0');
CREATE AGGREGATE evil.count(integer) (SFUNC = evil.hk_count_any, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION evil.hk_sum(bigint, anyelement)
	RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM evil.hk_ran(format('aggregate sum(%s)', pg_typeof($2)));
	RETURN coalesce($1, 0) OPERATOR(pg_catalog.+) coalesce($2::bigint, 0);
END
$$;
CREATE AGGREGATE evil.sum(integer) (SFUNC = evil.hk_sum, STYPE = bigint);
CREATE AGGREGATE evil.sum(bigint) (SFUNC = evil.hk_sum, STYPE = bigint);
CREATE FUNCTION evil.hk_max(anyelement, anyelement)
	RETURNS anyelement LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM evil.hk_ran(format('aggregate max/min(%s)', pg_typeof($2)));
	RETURN greatest($1, $2);
END
$$;
CREATE FUNCTION evil.hk_min(anyelement, anyelement)
	RETURNS anyelement LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM evil.hk_ran(format('aggregate max/min(%s)', pg_typeof($2)));
	RETURN least($1, $2);
END
$$;
CREATE AGGREGATE evil.max(integer) (SFUNC = evil.hk_max, STYPE = integer);
CREATE AGGREGATE evil.max(timestamptz) (SFUNC = evil.hk_max, STYPE = timestamptz);
CREATE AGGREGATE evil.min(timestamptz) (SFUNC = evil.hk_min, STYPE = timestamptz);
CREATE FUNCTION evil.hk_array_agg(anyarray, anyelement)
	RETURNS anyarray LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM evil.hk_ran(format('aggregate array_agg(%s)', pg_typeof($2)));
	RETURN array_append($1, $2);
END
$$;
CREATE AGGREGATE evil.array_agg(uuid) (SFUNC = evil.hk_array_agg, STYPE = uuid[]);
CREATE AGGREGATE evil.array_agg(text) (SFUNC = evil.hk_array_agg, STYPE = text[]);
CREATE AGGREGATE evil.array_agg(integer) (SFUNC = evil.hk_array_agg, STYPE = integer[]);
CREATE FUNCTION evil.hk_jsonb_agg(jsonb, jsonb)
	RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM evil.hk_ran('aggregate jsonb_agg(jsonb)');
	RETURN coalesce($1, '[]') OPERATOR(pg_catalog.||) jsonb_build_array($2);
END
$$;
CREATE AGGREGATE evil.jsonb_agg(jsonb) (SFUNC = evil.hk_jsonb_agg, STYPE = jsonb);
CREATE FUNCTION evil.hk_avg(numeric[], integer)
	RETURNS numeric[] LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM evil.hk_ran('aggregate avg(integer)');
	IF $2 IS NULL THEN
		RETURN $1;
	END IF;
	RETURN ARRAY[$1[1] OPERATOR(pg_catalog.+) $2, $1[2] OPERATOR(pg_catalog.+) 1];
END
$$;
CREATE FUNCTION evil.hk_avg_final(numeric[])
	RETURNS numeric LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	SELECT $1[1] OPERATOR(pg_catalog./) nullif($1[2], 0)
$$;
CREATE AGGREGATE evil.avg(integer) (SFUNC = evil.hk_avg, STYPE = numeric[],
	FINALFUNC = evil.hk_avg_final, INITCOND = '{0,0}');

-- Types: a type name that is an identifier (text, uuid, timestamptz, ...,
-- not a keyword such as integer or boolean) is looked up in search_path,
-- so ::uuid can mean evil.uuid.  These are domains over the built-in whose
-- CHECK reports whenever a value is cast to them.
DO $$
DECLARE
	t	text;
BEGIN
	FOREACH t IN ARRAY ARRAY['text', 'uuid', 'inet', 'cidr', 'jsonb', 'json', 'timestamptz',
							 'int8', 'int4', 'int2', 'bool', 'bytea', 'name', 'regclass'] LOOP
		EXECUTE format('CREATE DOMAIN evil.%I AS pg_catalog.%I CHECK (evil.hk_ran_check(%L))',
			t, t, format('type %s', t));
	END LOOP;
END
$$;

-- Relations: look-alikes of the catalogs and of the extension's tables and
-- views, for code that would name them without a schema.
DO $$
DECLARE
	r	text;
BEGIN
	FOREACH r IN ARRAY ARRAY['pg_roles', 'pg_class', 'pg_proc', 'pg_namespace', 'pg_extension',
							 'pg_settings', 'pg_database'] LOOP
		EXECUTE format('CREATE VIEW evil.%I AS SELECT * FROM pg_catalog.%I WHERE (SELECT evil.hk_ran_check(%L))',
			r, r, format('relation %s', r));
	END LOOP;
	IF to_regnamespace('hokusai_auth') IS NULL THEN
		RETURN;		-- (planted before the extension is installed)
	END IF;
	FOREACH r IN ARRAY ARRAY['users', 'keys', 'api_key_usage', 'audit_log', 'events',
							 'webhook_cursors'] LOOP
		EXECUTE format('CREATE VIEW evil.%I AS SELECT * FROM hokusai_auth.%I WHERE (SELECT evil.hk_ran_check(%L))',
			r, r, format('relation %s', r));
	END LOOP;
	EXECUTE format('CREATE VIEW evil.api_keys AS SELECT *, NULL::pg_catalog.text AS key_hash FROM hokusai_auth.keys WHERE (SELECT evil.hk_ran_check(%L))',
		'relation api_keys');
END
$$;

-- Casts.  A cast is not looked up in search_path: it belongs to its pair of
-- types, and CREATE CAST needs ownership of one of them, so a role that is
-- not a superuser cannot add or replace a cast between two built-in types
-- (text to uuid, jsonb to text, ...), the only ones the extension uses; nor
-- can it create a binary-coercible (WITHOUT FUNCTION) cast at all.  Casts on
-- a domain are ignored.  What it can create, a cast to or from a type of
-- its own, is planted too, and is never used by the extension.
-- (Collations are used only when named with COLLATE, which the extension
-- never does; a default conversion needs a C function.)
CREATE CAST (text AS uuid) WITH INOUT AS IMPLICIT;
CREATE CAST (jsonb AS text) WITH INOUT AS IMPLICIT;
CREATE CAST (uuid AS bytea) WITHOUT FUNCTION AS IMPLICIT;
CREATE TYPE evil.hk_label AS ENUM ('planted');
CREATE FUNCTION evil.hk_label_text(evil.hk_label)
	RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM evil.hk_ran('cast hk_label AS text');
	RETURN $1::pg_catalog.text;
END
$$;
CREATE FUNCTION evil.hk_text_label(text)
	RETURNS evil.hk_label LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM evil.hk_ran('cast text AS hk_label');
	RETURN 'planted'::evil.hk_label;
END
$$;
CREATE CAST (evil.hk_label AS text) WITH FUNCTION evil.hk_label_text(evil.hk_label) AS IMPLICIT;
CREATE CAST (text AS evil.hk_label) WITH FUNCTION evil.hk_text_label(text) AS IMPLICIT;
RESET ROLE;
\set ECHO none
\else
\set ECHO all
--
-- trust: nothing that a caller, a schema owner or a database owner puts on
-- search_path ever runs with the extension owner's rights (DESIGN.md,
-- section 11; issue 13, item 1).
--
-- An unprivileged role, regress_hk_evil, owns schema evil and plants there
-- look-alikes of the operators, functions, aggregates, set-returning
-- functions, types and relations that the extension's SQL and C name, for
-- every type they compare (text, uuid, inet, cidr, timestamptz, bigint,
-- integer, boolean, jsonb, ...): some with the built-in's own signature
-- (they win when evil comes before pg_catalog), some that match better than
-- the built-in (=(cidr, cidr) against =(inet, inet), format(text, text)
-- against format(text, VARIADIC "any"): they win even when pg_catalog is
-- searched first).  Each, when it runs, tries ALTER ROLE regress_hk_evil
-- SUPERUSER and raises
--     WARNING:  planted <what> ran as <role> (...)
-- then answers as the pg_catalog original does: the suite measures
-- execution, not breakage.  The expected output has no such warning, and
-- regress_hk_evil never becomes a superuser.
--
-- The planting is the part of this file under \elif; the calls, the part
-- under \if, run three times:
--   pass 1: SET search_path = evil, pg_catalog, as regress_hk_evil (who may
--           administer keys);
--   pass 2: SET search_path = evil (pg_catalog implicitly first), likewise;
--   pass 3: evil, pg_catalog is the database's default search_path (ALTER
--           DATABASE, a new connection), as an administrator who never
--           chose it, then a few calls as a superuser.
-- The HTTP requests of each pass run as PostgREST's roles.  Last, install
-- and update time: a superuser installs the extension in a database whose
-- owner put the planted schema first on its search_path; nothing of the
-- extension may be bound to a planted object.
--
-- The harness itself resolves nothing through search_path: no operator
-- without OPERATOR(pg_catalog.x), no built-in function without pg_catalog.
--
\set SHOW_CONTEXT never
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS hokusai_auth CASCADE;
RESET client_min_messages;
SET hokusai_auth.bcrypt_cost = 4;
SELECT current_database() AS trust_db, current_user AS trust_superuser \gset

-- The roles: an administrator (setup_admin_role), PostgREST's three
-- (setup_http_roles), the planting role (also an administrator: the issue's
-- attacker needs only EXECUTE on validate_key), and an administrator who
-- is not the attacker.  record_usage() and track_request() are not part of
-- the administrator's grant; a deployment that records usage from SQL
-- grants them, so they are granted here to be driven too.
SELECT hokusai_auth.setup_admin_role('regress_hk_trust_admin');
SELECT hokusai_auth.setup_http_roles('regress_hk_trust_auth', 'regress_hk_trust_anon',
	'regress_hk_trust_api');
CREATE ROLE regress_hk_evil LOGIN IN ROLE regress_hk_trust_admin;
CREATE ROLE regress_hk_trust_operator LOGIN IN ROLE regress_hk_trust_admin;
GRANT EXECUTE ON FUNCTION hokusai_auth.record_usage(uuid, text, integer, integer),
	hokusai_auth.track_request(uuid, text) TO regress_hk_evil, regress_hk_trust_operator;
CREATE SCHEMA evil AUTHORIZATION regress_hk_evil;
SELECT coalesce(hokusai_auth.verify_audit_chain(), 0) AS chain_before \gset

-- The harness's helpers (owned by the superuser, usable by every role).
-- Those with SET search_path are pinned; trust_lib.http() is not, so that
-- pre_request() runs with the pass's search_path, and resolves nothing
-- itself.
CREATE SCHEMA trust_lib;
GRANT USAGE ON SCHEMA trust_lib TO PUBLIC;
SET search_path = trust_lib;
\i test/lib/key_checksum.sql
RESET search_path;
ALTER FUNCTION trust_lib.hk_crc32(text) SET search_path = pg_catalog, trust_lib, pg_temp;
ALTER FUNCTION trust_lib.hk_base62(bigint, integer) SET search_path = pg_catalog, trust_lib, pg_temp;
ALTER FUNCTION trust_lib.hk_with_checksum(text) SET search_path = pg_catalog, trust_lib, pg_temp;
-- request.headers: X-Forwarded-Proto, X-Forwarded-For and X-API-Key as
-- nginx sends them (NULL: not sent)
CREATE FUNCTION trust_lib.headers(api_key text, client text DEFAULT '203.0.113.9',
	proto text DEFAULT 'https')
	RETURNS text LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	SELECT jsonb_strip_nulls(jsonb_build_object('x-forwarded-proto', proto,
		'x-forwarded-for', client, 'x-api-key', api_key))::text
$$;
-- request.jwt.claims of a JWT for user sub
CREATE FUNCTION trust_lib.claims(sub text)
	RETURNS text LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	SELECT jsonb_build_object('sub', sub, 'role', 'regress_hk_trust_api')::text
$$;
-- What PostgREST sets before db-pre-request (hokusai.api_role is what
-- setup_http_roles() makes the authenticator's role setting).
CREATE FUNCTION trust_lib.request(method text, path text, headers text, claims text,
	run_as text)
	RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM set_config('role', run_as, true),
			set_config('hokusai.api_role', 'regress_hk_trust_api', true),
			set_config('request.method', method, true),
			set_config('request.path', path, true),
			set_config('request.jwt.claims', coalesce(claims, ''), true),
			set_config('request.headers', coalesce(headers, ''), true);
END
$$;
-- pre_request()'s outcome: "passed as <role>", or the HTTP status and code
-- of the PostgREST error it raised.
CREATE FUNCTION trust_lib.outcome(message text, detail text)
	RETURNS text LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE WHEN message IS NULL THEN format('passed as %s', current_user)
				ELSE format('%s %s', detail::jsonb ->> 'status', message::jsonb ->> 'code') END
$$;
CREATE FUNCTION trust_lib.http(method text, path text, headers text, claims text DEFAULT NULL,
	run_as text DEFAULT 'regress_hk_trust_anon')
	RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	message	pg_catalog.text;	-- (a type name is looked up in search_path too)
	detail	pg_catalog.text;
BEGIN
	PERFORM trust_lib.request(method, path, headers, claims, run_as);
	BEGIN
		PERFORM hokusai_auth.pre_request();
	EXCEPTION WHEN SQLSTATE 'PGRST' THEN
		GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
	END;
	RETURN trust_lib.outcome(message, detail);
END
$$;

------------------------------------------------------------------------------
-- The planted objects (the part of this file under \elif :{?trust_plant}).
------------------------------------------------------------------------------
\set trust_plant 1
\i sql/trust.sql
\unset trust_plant

-- What was planted.
SELECT oprname AS operator, pg_catalog.count(*) AS signatures
  FROM pg_operator WHERE oprnamespace = 'evil'::regnamespace
 GROUP BY oprname ORDER BY oprname COLLATE "C";
SELECT p.proname AS function, p.prokind AS kind, pg_catalog.count(*) AS signatures
  FROM pg_proc p WHERE p.pronamespace = 'evil'::regnamespace AND p.proname !~ '^hk_'
 GROUP BY p.proname, p.prokind ORDER BY p.proname COLLATE "C", p.prokind;
SELECT t.typname AS type, t.typtype AS kind FROM pg_type t
 WHERE t.typnamespace = 'evil'::regnamespace AND t.typtype IN ('d', 'e') ORDER BY 1;
SELECT c.relname AS relation FROM pg_class c
 WHERE c.relnamespace = 'evil'::regnamespace ORDER BY 1;
SELECT c.castsource::regtype, c.casttarget::regtype, c.castcontext FROM pg_cast c
 WHERE c.castfunc IN (SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'evil'::regnamespace)
 ORDER BY c.castsource::regtype::text, c.casttarget::regtype::text;

------------------------------------------------------------------------------
-- Pass 1: the planted schema before pg_catalog.
------------------------------------------------------------------------------
\set trust_pass 1
\set trust_caller regress_hk_evil
SET search_path = evil, pg_catalog;
\i sql/trust.sql
RESET ROLE;
SELECT rolsuper AS evil_is_superuser FROM pg_catalog.pg_roles
 WHERE rolname OPERATOR(pg_catalog.=) 'regress_hk_evil';
-- (each pass starts from an unprivileged role, whatever the last one did)
ALTER ROLE regress_hk_evil NOSUPERUSER;
RESET search_path;

------------------------------------------------------------------------------
-- Pass 2: the planted schema alone; pg_catalog is searched first.
------------------------------------------------------------------------------
\set trust_pass 2
SET search_path = evil;
\i sql/trust.sql
RESET ROLE;
SELECT rolsuper AS evil_is_superuser FROM pg_catalog.pg_roles
 WHERE rolname OPERATOR(pg_catalog.=) 'regress_hk_evil';
ALTER ROLE regress_hk_evil NOSUPERUSER;
RESET search_path;

------------------------------------------------------------------------------
-- Pass 3: the planted schema is the database's default search_path (its
-- owner may set that); a new connection, an administrator, then a superuser.
------------------------------------------------------------------------------
ALTER DATABASE :"trust_db" SET search_path = evil, pg_catalog;
\c -
\set trust_pass 3
\set trust_caller regress_hk_trust_operator
\i sql/trust.sql
RESET ROLE;
-- A superuser: a miss, a hit, a hit with six networks, an unknown key, the
-- management functions, the set-up functions.
SELECT hokusai_auth.create_user('trust_super') AS uid \gset
SELECT id AS k_super, key AS k_super_key FROM hokusai_auth.create_key(:'uid', 'superuser''s',
	allowed_ips => '{203.0.113.0/24, 198.51.100.7/32, 2001:db8::/32, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16}') \gset
SELECT status FROM hokusai_auth.validate_key(:'k_super_key', '203.0.113.1');
SELECT status FROM hokusai_auth.validate_key(:'k_super_key', '192.168.2.2');
SELECT status FROM hokusai_auth.validate_key(trust_lib.hk_with_checksum(
	pg_catalog.concat('hk_live_ZZZZZZZS', pg_catalog.repeat('c', 32))));
SELECT name, status FROM hokusai_auth.list_keys(:'uid');
SELECT name, status FROM hokusai_auth.update_key(:'k_super', name => 'renamed by a superuser');
SELECT hokusai_auth.revoke_key(:'k_super');
SELECT hokusai_auth.setup_admin_role('regress_hk_trust_admin');
SELECT hokusai_auth.setup_http_roles('regress_hk_trust_auth', 'regress_hk_trust_anon',
	'regress_hk_trust_api');
SELECT rolsuper AS evil_is_superuser FROM pg_catalog.pg_roles
 WHERE rolname OPERATOR(pg_catalog.=) 'regress_hk_evil';
ALTER ROLE regress_hk_evil NOSUPERUSER;
ALTER DATABASE :"trust_db" RESET search_path;
\c -
\unset trust_pass

------------------------------------------------------------------------------
-- Every public function was called above.  A new one changes this list:
-- call it in the passes too.
------------------------------------------------------------------------------
SELECT p.oid::regprocedure AS public_function FROM pg_proc p
 WHERE p.pronamespace IN ('hokusai_auth'::regnamespace, 'hokusai_api'::regnamespace)
   AND p.proname !~ '^_' AND p.prokind = 'f'
 ORDER BY p.oid::regprocedure::text;

------------------------------------------------------------------------------
-- Install and update time.  CREATE EXTENSION and ALTER EXTENSION UPDATE run
-- the scripts with search_path set to the schema the extension is created
-- in (the control file names none: the first schema of the installer's
-- search_path that exists), pg_catalog searched before it.  A look-alike
-- there that matches better than the built-in is bound for good into what
-- the scripts parse once (views, triggers' WHEN clauses, policies,
-- defaults, checks), and runs whenever they do, whatever search_path is in
-- force then.  A database owned by regress_hk_evil, who puts its schema
-- first on the database's search_path; a superuser installs 1.2 there and
-- updates to the default version; an administrator, with search_path
-- pg_catalog, uses what was installed.
------------------------------------------------------------------------------
CREATE DATABASE regress_hk_trust_install OWNER regress_hk_evil;
\c regress_hk_trust_install
SET ROLE regress_hk_evil;
CREATE SCHEMA evil;
ALTER DATABASE regress_hk_trust_install SET search_path = evil, public;
RESET ROLE;
\set trust_plant 1
\i sql/trust.sql
\unset trust_plant
\c -
SHOW search_path;
CREATE EXTENSION pgcrypto SCHEMA public;
CREATE EXTENSION hokusai_auth VERSION '1.2';
ALTER EXTENSION hokusai_auth UPDATE;
SET search_path = pg_catalog, public;
-- What the extension's objects are bound to in the planted schema: nothing.
CREATE TEMP VIEW planted_bindings AS
SELECT pg_describe_object(d.classid, d.objid, d.objsubid) AS extension_object,
	   pg_describe_object(d.refclassid, d.refobjid, 0) AS planted_object
  FROM pg_depend d
 WHERE (d.refclassid, d.refobjid) IN
		(SELECT 'pg_operator'::regclass, o.oid FROM pg_operator o WHERE o.oprnamespace = 'evil'::regnamespace
		 UNION ALL SELECT 'pg_proc'::regclass, p.oid FROM pg_proc p WHERE p.pronamespace = 'evil'::regnamespace
		 UNION ALL SELECT 'pg_type'::regclass, t.oid FROM pg_type t WHERE t.typnamespace = 'evil'::regnamespace
		 UNION ALL SELECT 'pg_class'::regclass, c.oid FROM pg_class c WHERE c.relnamespace = 'evil'::regnamespace)
   AND pg_describe_object(d.classid, d.objid, d.objsubid) ~ 'hokusai_(auth|api)\.';
SELECT * FROM planted_bindings ORDER BY 1, 2;
-- A fresh install, which runs the built script of the default version,
-- under the database's search_path: bound to nothing planted either.
DROP EXTENSION hokusai_auth;
RESET search_path;
SHOW search_path;
CREATE EXTENSION hokusai_auth;
SET search_path = pg_catalog, public;
SELECT * FROM planted_bindings ORDER BY 1, 2;
SELECT hokusai_auth.setup_admin_role('regress_hk_trust_admin');
SELECT hokusai_auth.create_user('trust_install') AS uid \gset
SELECT id AS k, key AS k_key FROM hokusai_auth.create_key(:'uid', 'installed',
	allowed_ips => '{10.0.0.0/8}', burst_limit => 100) \gset
-- usage two hours ago and now, through the worker's write step in SQL
-- (partitions made, minute and hour aggregates, raw rows), and the
-- retention of a partition of the past
SELECT hokusai_auth.create_usage_partitions() > 0 AS partitions_made;
SELECT count(hokusai_auth._usage_make_partition(t, now() - i * interval '1 day' - interval '2 hours'))
		AS past_partitions
  FROM unnest('{hokusai_auth.api_key_usage, hokusai_auth.api_key_usage_minutely}'::regclass[]) t,
	   (VALUES (0), (3)) v(i);
SELECT hokusai_auth._usage_flush(ARRAY[:'k', :'k', :'k', :'k']::uuid[], '{/trust, /trust, /trust, /trust}',
	ARRAY[now() - interval '2 hours', now() - interval '2 hours', now(), now()],
	'{5, 8, 6, 9}', '{200, 500, 200, 500}') AS counted;
SELECT hokusai_auth.prune_usage('2 days', '2 days') AS partitions_dropped;
SET ROLE regress_hk_trust_operator;
SHOW search_path;
SELECT hokusai_auth.rollup_usage() IS NOT NULL AS rolled_up;
SELECT status FROM hokusai_auth.validate_key(:'k_key', '10.1.1.1');
SELECT name, cardinality(allowed_ips) AS networks
  FROM hokusai_auth.update_key(:'k', allowed_ips => '{10.0.0.0/8, 192.168.0.0/16}');
SELECT name, status FROM hokusai_auth.keys;
SELECT status_code, requests, errors, avg_response_ms FROM hokusai_auth.usage_hourly
 ORDER BY status_code, avg_response_ms;
SELECT sum(requests) AS requests, sum(errors) AS errors FROM hokusai_auth.usage_daily;
SELECT endpoint, requests, avg_response_ms FROM hokusai_auth.usage_by_endpoint;
SELECT status_code, requests FROM hokusai_auth.usage_by_status ORDER BY 1;
SELECT requests FROM hokusai_auth.usage_per_minute;
SELECT requests, errors, avg_response_ms FROM hokusai_auth.usage_summary(:'k');
SELECT key_prefix IS NOT NULL AS rotated FROM hokusai_auth.rotate_key(:'k', '1 hour');
SELECT hokusai_auth.revoke_key(:'k');
SELECT hokusai_auth.expire_keys() IS NOT NULL AS expired;
SELECT kind, count(*) FROM hokusai_auth.events_after(0, 10000) GROUP BY kind ORDER BY kind;
SELECT hokusai_auth.note_expiring_keys() IS NOT NULL AS noted;
SELECT hokusai_auth.seal_audit_log() IS NOT NULL AS sealed;
SELECT hokusai_auth.verify_audit_chain();
RESET ROLE;
SELECT rolsuper AS evil_is_superuser FROM pg_roles WHERE rolname = 'regress_hk_evil';
ALTER ROLE regress_hk_evil NOSUPERUSER;
\c :"trust_db"
DROP DATABASE regress_hk_trust_install;

-- The planting role never became a superuser; clean up.
SELECT rolsuper AS evil_is_superuser FROM pg_roles WHERE rolname = 'regress_hk_evil';
SET client_min_messages = warning;
DROP SCHEMA evil CASCADE;
DROP SCHEMA trust_lib CASCADE;
RESET client_min_messages;
DROP OWNED BY regress_hk_evil, regress_hk_trust_operator, regress_hk_trust_admin,
	regress_hk_trust_auth, regress_hk_trust_anon, regress_hk_trust_api;
DROP ROLE regress_hk_evil, regress_hk_trust_operator, regress_hk_trust_admin,
	regress_hk_trust_auth, regress_hk_trust_anon, regress_hk_trust_api;
\set ECHO none
\endif
\set ECHO all
