--
-- events: the transactional outbox (docs/events.md).  One event per
-- audited key operation, in its transaction (a rollback leaves none), of
-- the kind for its action, with no secret in it; reading in id order never
-- passes an event whose transaction is open; key.expiring once each;
-- retention; the request-path queue; webhook cursors; who may read what.
-- (NOTIFY at commit, and late commits across sessions: the isolation spec
-- events_order; the worker and the CLI: test/t/08*.pl.)
--
SET hokusai_auth.bcrypt_cost = 4;
SELECT hokusai_auth.create_user('evelyn') AS u \gset
SELECT hokusai_auth.create_user('frank') AS u2 \gset
SELECT coalesce(max(id), 0) AS base FROM hokusai_auth.events \gset
-- The events written since :base, without what differs from run to run.
CREATE TEMP VIEW new_events AS
SELECT row_number() OVER (ORDER BY e.id) AS n, e.kind,
	   e.api_key_id, e.user_id, e.data, e.at, e.id
  FROM hokusai_auth.events e
 WHERE e.id > current_setting('events.base')::bigint;
SELECT set_config('events.base', :'base', false) IS NOT NULL AS based;

-- A rolled-back operation leaves no event (and no audit row).
BEGIN;
SELECT id AS gone FROM hokusai_auth.create_key(:'u', 'rolled back') \gset
SELECT count(*) AS events_inside FROM new_events;
ROLLBACK;
SELECT count(*) AS events_after_rollback FROM new_events;
SELECT count(*) AS audit_rows FROM hokusai_auth.audit_log WHERE api_key_id = :'gone';

-- Each key operation, and its event.
SELECT id AS k1, key AS k1_key FROM hokusai_auth.create_key(:'u', 'events one',
	expires_at => now() + interval '30 days', allowed_ips => '{10.0.0.0/8}',
	metadata => '{"secret-ish": "metadata values are not copied"}') \gset
SELECT name FROM hokusai_auth.update_key(:'k1', name => 'events one, renamed',
	metadata => '{"changed": true}');
SELECT id AS k2, key AS k2_key FROM hokusai_auth.rotate_key(:'k1', grace => '1 hour') \gset
SELECT hokusai_auth.revoke_key(:'k2', reason => 'done with it') AS revoked;
SELECT id AS k3, key AS k3_key FROM hokusai_auth.create_key(:'u2', 'to expire') \gset
UPDATE hokusai_auth.api_keys SET expires_at = now() - interval '1 second' WHERE id = :'k3';
SELECT hokusai_auth.expire_keys() AS expired;
-- The actions of other operations (disable_key(), enable_key(),
-- add_credits(), set_user_limits()) become their kinds through _audit().
SELECT hokusai_auth._audit('disable', :'k3', :'u2', '{"reason": "test"}');
SELECT hokusai_auth._audit('enable', :'k3', :'u2', '{}');
SELECT hokusai_auth._audit('add_credits', :'k3', :'u2', '{"amount": 5, "balance": 5}');
SELECT hokusai_auth._audit('set_user_limits', NULL, :'u2', '{"rate_limit_per_hour": 10}');

SELECT n, kind,
	   CASE api_key_id WHEN :'k1' THEN 'k1' WHEN :'k2' THEN 'k2' WHEN :'k3' THEN 'k3' END AS key,
	   CASE user_id WHEN :'u' THEN 'evelyn' WHEN :'u2' THEN 'frank' END AS "user",
	   data - 'key_prefix' - 'new_key_id' - 'new_key_prefix' - 'rotated_from'
			- 'old_key_ends_at' - 'expires_at' AS data
  FROM new_events ORDER BY n;
-- Every event of an audited operation has its audit row, in the same
-- transaction: the same key, user and details.
SELECT count(*) AS events, count(a.id) AS with_audit_row
  FROM new_events e
  LEFT JOIN hokusai_auth.audit_log a
	ON a.api_key_id IS NOT DISTINCT FROM e.api_key_id AND a.user_id = e.user_id
   AND a.details = e.data AND a.xmin = (SELECT x.xmin FROM hokusai_auth.events x WHERE x.id = e.id);

-- No secret in any event: no plaintext key, no key hash, no metadata value.
SELECT count(*) AS with_a_key FROM hokusai_auth.events e
 WHERE e.data::text ~ 'hk_(live|test)_[0-9A-Za-z]{46}'
	OR strpos(e::text, :'k1_key') > 0 OR strpos(e::text, :'k2_key') > 0
	OR strpos(e::text, :'k3_key') > 0;
SELECT count(*) AS with_a_hash FROM hokusai_auth.events e, hokusai_auth.api_keys k
 WHERE strpos(e.data::text, k.key_hash) > 0 OR strpos(e.data::text, substr(k.key_hash, 8)) > 0;
SELECT count(*) AS with_metadata FROM hokusai_auth.events e
 WHERE e.data::text ~ 'metadata values' OR e.data::text ~ '"changed"';

-- The table's rules: known kinds, data an object.
\set VERBOSITY terse
INSERT INTO hokusai_auth.events (kind, data) VALUES ('key.deleted', '{}');
INSERT INTO hokusai_auth.events (kind, data) VALUES ('key.created', '[]');
\set VERBOSITY default

------------------------------------------------------------------------------
-- Reading in id order: events_after() never passes an event whose
-- transaction is still open (here our own), and takes REPEATABLE READ.
------------------------------------------------------------------------------
SELECT max(id) AS seen FROM hokusai_auth.events_after(:base, 10000) \gset
BEGIN;
SELECT id AS k4 FROM hokusai_auth.create_key(:'u', 'open transaction') \gset
SELECT count(*) AS in_table, (SELECT count(*) FROM hokusai_auth.events_after(:seen)) AS deliverable
  FROM hokusai_auth.events WHERE id > :seen;
COMMIT;
SELECT kind FROM hokusai_auth.events_after(:seen);
SELECT count(*) AS limited FROM hokusai_auth.events_after(:base, 3);
SELECT count(*) FROM hokusai_auth.events_after(:base, 0);
SELECT count(*) FROM hokusai_auth.events_after(:base, 10001);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM hokusai_auth.events_after(:base);
ROLLBACK;
-- A transaction that wrote events cannot be prepared.
BEGIN;
SELECT name FROM hokusai_auth.update_key(:'k4', name => 'prepared?');
PREPARE TRANSACTION 'events';
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'events';

------------------------------------------------------------------------------
-- key.expiring: 7 days and 1 day before expires_at, once each.
------------------------------------------------------------------------------
SELECT id AS x7 FROM hokusai_auth.create_key(:'u', 'in three days',
	expires_at => now() + interval '3 days') \gset
SELECT id AS x1 FROM hokusai_auth.create_key(:'u', 'in twelve hours',
	expires_at => now() + interval '12 hours') \gset
SELECT id AS xr FROM hokusai_auth.create_key(:'u', 'revoked, in two days',
	expires_at => now() + interval '2 days') \gset
SELECT hokusai_auth.revoke_key(:'xr') AS revoked;
SELECT id AS xo FROM hokusai_auth.create_key(:'u', 'rotated, in four days',
	expires_at => now() + interval '4 days') \gset
SELECT id AS xn FROM hokusai_auth.rotate_key(:'xo', grace => '2 hours') \gset
SELECT hokusai_auth.note_expiring_keys() >= 2 AS noted;
SELECT hokusai_auth.note_expiring_keys() AS again;
SELECT CASE api_key_id WHEN :'x7' THEN 'three days' WHEN :'x1' THEN 'twelve hours'
					   WHEN :'xn' THEN 'successor of the rotated one' END AS key,
	   data->>'days' AS days, data->>'name' AS name,
	   (data->>'expires_at')::timestamptz = k.expires_at AS expires_at_ok
  FROM hokusai_auth.events e JOIN hokusai_auth.api_keys k ON k.id = e.api_key_id
 WHERE e.kind = 'key.expiring' AND k.user_id = :'u'
 ORDER BY e.id;
-- Now one day from expiry: the 1-day notice.  A new expiry: told again.
UPDATE hokusai_auth.api_keys SET expires_at = now() + interval '20 hours' WHERE id = :'x7';
SELECT hokusai_auth.note_expiring_keys() AS one_day;
SELECT name FROM hokusai_auth.update_key(:'x1', expires_at => now() + interval '6 days');
SELECT hokusai_auth.note_expiring_keys() AS new_expiry;
SELECT hokusai_auth.note_expiring_keys() AS again;
SELECT CASE api_key_id WHEN :'x7' THEN 'three days' WHEN :'x1' THEN 'twelve hours' END AS key,
	   string_agg(data->>'days', ', ' ORDER BY id) AS notices
  FROM hokusai_auth.events
 WHERE kind = 'key.expiring' AND api_key_id IN (:'x7', :'x1')
 GROUP BY 1 ORDER BY 1;

------------------------------------------------------------------------------
-- Retention
------------------------------------------------------------------------------
UPDATE hokusai_auth.events SET at = at - interval '40 days'
 WHERE id = (SELECT min(id) FROM new_events);
SELECT hokusai_auth.prune_events() AS pruned;
SELECT hokusai_auth.prune_events('60 days') AS pruned;
SELECT hokusai_auth.prune_events('6 days');
SELECT hokusai_auth.prune_events(NULL);
-- The worker's setting: 0 (keep all) or at least 7 days.
SHOW hokusai_auth.events_retention;
ALTER SYSTEM SET hokusai_auth.events_retention = '1d';

------------------------------------------------------------------------------
-- The request-path queue: rate_limit.exceeded from validate_key(), once per
-- key per minute; the other kinds each time.  (This database is not the
-- worker's: it discards these notes, counted.)
------------------------------------------------------------------------------
CREATE TEMP TABLE q0 AS SELECT * FROM hokusai_auth.event_queue_stats();
SELECT id AS kl, key AS kl_key FROM hokusai_auth.create_key(:'u', 'one an hour',
	rate_limit_per_hour => 1) \gset
SELECT status FROM hokusai_auth.validate_key(:'kl_key');
SELECT status FROM hokusai_auth.validate_key(:'kl_key');
SELECT status FROM hokusai_auth.validate_key(:'kl_key');
SELECT status FROM hokusai_auth.validate_key(:'kl_key');
SELECT hokusai_auth._event_note('credits.low', :'kl', :'u', 10);
SELECT hokusai_auth._event_note('credits.low', :'kl', NULL, 9);
SELECT hokusai_auth._event_note('key.created', :'kl', :'u', 0);
SELECT hokusai_auth._event_note(NULL, :'kl');
SELECT s.capacity, s.noted - q0.noted AS noted,
	   s.deduplicated - q0.deduplicated AS deduplicated, s.dropped - q0.dropped AS dropped
  FROM hokusai_auth.event_queue_stats() s, q0;
-- What the worker does with notes (_events_from_notes()): a key that is
-- gone is skipped, and so is a rate_limit.exceeded within a minute of the
-- key's last one, either way.
SELECT max(id) AS before_notes FROM hokusai_auth.events \gset
SELECT hokusai_auth._events_from_notes(
	ARRAY['rate_limit.exceeded', 'rate_limit.exceeded', 'credits.low', 'credits.exhausted',
		  'rate_limit.exceeded', 'rate_limit.exceeded'],
	ARRAY[:'kl', :'kl', :'kl', '00000000-0000-0000-0000-000000000000', :'kl', :'kl']::uuid[],
	ARRAY[30, 29, 10, 0, 28, 27],
	ARRAY[now(), now() + interval '30 seconds', now(), now(), now() - interval '59 seconds',
		  now() + interval '61 seconds']) AS written;
SELECT kind, user_id = :'u' AS owner, data - 'key_prefix' AS data,
	   data->>'key_prefix' = (SELECT key_prefix FROM hokusai_auth.api_keys WHERE id = :'kl') AS prefix_ok,
	   round(extract(epoch FROM at - (SELECT min(at) FROM hokusai_auth.events WHERE id > :before_notes))) AS seconds
  FROM hokusai_auth.events WHERE id > :before_notes ORDER BY id;

------------------------------------------------------------------------------
-- The webhook relay's cursors: by URL, keeping only its hash and origin.
------------------------------------------------------------------------------
SELECT hokusai_auth.webhook_cursor('https://hooks.example.com/in/T0K3N?x=1') AS none_yet;
SELECT hokusai_auth.set_webhook_cursor('https://user:pw@hooks.example.com:8443/in/T0K3N?x=1', 42);
SELECT hokusai_auth.webhook_cursor('https://user:pw@hooks.example.com:8443/in/T0K3N?x=1') AS cursor;
SELECT hokusai_auth.set_webhook_cursor('https://user:pw@hooks.example.com:8443/in/T0K3N?x=1', 7);
SELECT hokusai_auth.webhook_cursor('https://user:pw@hooks.example.com:8443/in/T0K3N?x=1') AS cursor;
SELECT endpoint, last_event_id, octet_length(url_hash) AS hash_bytes
  FROM hokusai_auth.webhook_cursors;
SELECT count(*) AS url_kept FROM hokusai_auth.webhook_cursors c
 WHERE c::text ~ 'T0K3N|pw@|user';
SELECT hokusai_auth.set_webhook_cursor('ftp://example.com/', 1);
SELECT hokusai_auth.set_webhook_cursor('https://example.com/ with space', 1);
SELECT hokusai_auth.set_webhook_cursor('https://example.com/', -1);
SELECT hokusai_auth.set_webhook_cursor(NULL, 1);

------------------------------------------------------------------------------
-- Who reads what: administrators everything (and write no event), a role
-- without grants nothing, an HTTP caller its own user's events.
------------------------------------------------------------------------------
SELECT hokusai_auth.setup_admin_role('regress_hk_events_admin');
CREATE ROLE regress_hk_events_nobody;
SET ROLE regress_hk_events_admin;
SELECT count(*) > 10 AS admin_reads FROM hokusai_auth.events;
SELECT count(*) > 10 AS admin_reads_in_order FROM hokusai_auth.events_after(0, 10000);
SELECT count(*) >= 0 AS admin_reads_cursors FROM hokusai_auth.webhook_cursors;
INSERT INTO hokusai_auth.events (kind) VALUES ('key.created');
DELETE FROM hokusai_auth.events;
SELECT hokusai_auth._event_horizon();
RESET ROLE;
SET ROLE regress_hk_events_nobody;
SELECT count(*) FROM hokusai_auth.events;
SELECT count(*) FROM hokusai_auth.events_after();
RESET ROLE;

SELECT hokusai_auth.setup_http_roles('regress_hk_events_auth', 'regress_hk_events_anon',
	'regress_hk_events_api');
BEGIN;
SELECT set_config('request.jwt.claims', json_build_object('sub', :'u2', 'role', 'regress_hk_events_api')::text, true)
	IS NOT NULL AS claims_set;
SET LOCAL ROLE regress_hk_events_api;
SELECT kind, user_id = :'u2' AS own FROM hokusai_api.events(:base) ORDER BY id;
SELECT count(*) AS others FROM hokusai_auth.events WHERE user_id <> :'u2';
ROLLBACK;
\set VERBOSITY terse
BEGIN;
SET LOCAL ROLE regress_hk_events_api;
SELECT count(*) FROM hokusai_api.events();
ROLLBACK;
\set VERBOSITY default

DROP OWNED BY regress_hk_events_admin, regress_hk_events_nobody, regress_hk_events_auth,
	regress_hk_events_anon, regress_hk_events_api;
DROP ROLE regress_hk_events_admin, regress_hk_events_nobody, regress_hk_events_auth,
	regress_hk_events_anon, regress_hk_events_api;
