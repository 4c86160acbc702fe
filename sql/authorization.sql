--
-- authorization: scope names and their errors, validate_key()'s
-- required_scopes with the trailing-* wildcard, through the cache (scopes
-- kept inline and too long to keep), a refused call spending nothing,
-- update_key() of scopes, disable_key()/enable_key(), rotation,
-- require_scope() and pre_request(), and the caller functions for
-- row-level security (docs/authorization.md).
--
SET hokusai_auth.bcrypt_cost = 4;

-- An error as SQLSTATE, message and detail, or ok.
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st	text;
	msg	text;
	det	text;
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
	RETURN st || ': ' || msg || coalesce(' [' || nullif(det, '') || ']', '');
END
$$;

SELECT hokusai_auth.create_user('az_alice') AS alice \gset
SELECT id AS ks_id, key AS ks FROM hokusai_auth.create_key(:'alice', 'scoped',
	scopes => '{models:*, files:read}', burst_limit => 1000) \gset
SELECT id AS kn_id, key AS kn FROM hokusai_auth.create_key(:'alice', 'no scopes', burst_limit => 1000) \gset
-- More than the 32 bytes a cache entry keeps inline.
SELECT id AS kl_id, key AS kl FROM hokusai_auth.create_key(:'alice', 'many scopes', burst_limit => 1000,
	scopes => '{alpha:read, beta:read, gamma:read, delta:read, epsilon:read, models:predict}') \gset
SELECT name, scopes, status FROM hokusai_auth.list_keys(:'alice') ORDER BY name;

------------------------------------------------------------------------------
-- Scope names: 1 to 64 of [a-z0-9_.:-], an optional trailing *.  A bad
-- list is refused before anything is written; the value is not repeated.
------------------------------------------------------------------------------
SELECT s AS scopes, pg_temp.try(format(
		'SELECT hokusai_auth.create_key(%L, %L, scopes => %L)', :'alice', 'bad', s)) AS create_key
  FROM unnest(ARRAY['{Models:read}', '{""}', '{*}', '{a**}', '{*a}', '{"a b"}', '{a*b}',
		'{é}', E'{"a\nb"}', '{{a},{b}}', '{a,NULL}']) s;
SELECT pg_temp.try(format('SELECT hokusai_auth.create_key(%L, %L, scopes => %L)',
	:'alice', 'long', ARRAY[repeat('a', 65)])) AS name_65,
	   pg_temp.try(format('SELECT hokusai_auth.create_key(%L, %L, scopes => %L)',
	:'alice', 'huge', ARRAY[repeat('hk_live_', 10000)])) AS huge,
	   pg_temp.try(format('SELECT hokusai_auth.create_key(%L, %L, scopes => %L)',
	:'alice', 'many', (SELECT array_agg('s' || i) FROM generate_series(1, 65) i))) AS count_65;
-- The limits themselves are fine.
SELECT id AS k64 FROM hokusai_auth.create_key(:'alice', 'at the limits',
	scopes => ARRAY[repeat('a', 64), repeat('b', 64) || '*']) \gset
SELECT scopes[1] = repeat('a', 64) AS name_64, scopes[2] = repeat('b', 64) || '*' AS pattern_65,
	   cardinality(scopes) AS n
  FROM hokusai_auth.keys WHERE id = :'k64';
SELECT id AS k64 FROM hokusai_auth.create_key(:'alice', 'sixty-four',
	scopes => (SELECT array_agg('s' || i) FROM generate_series(1, 64) i)) \gset
SELECT cardinality(scopes) AS n FROM hokusai_auth.keys WHERE id = :'k64';
-- NULL is no scopes.
SELECT id AS k64 FROM hokusai_auth.create_key(:'alice', 'null scopes', scopes => NULL) \gset
SELECT scopes FROM hokusai_auth.keys WHERE id = :'k64';
-- Nothing was left behind by the refusals: the six keys created above,
-- one audit row each.
SELECT count(*) AS keys FROM hokusai_auth.api_keys WHERE user_id = :'alice';
SELECT count(*) AS creates FROM hokusai_auth.audit_log WHERE user_id = :'alice' AND action = 'create';
-- update_key checks them the same way, before touching the row.
SELECT pg_temp.try(format('SELECT hokusai_auth.update_key(%L, scopes => %L)', :'ks_id', '{Bad}'));
SELECT pg_temp.try(format('SELECT hokusai_auth.update_key(%L, scopes => %L)', :'ks_id', '{a,NULL}'));
SELECT scopes FROM hokusai_auth.keys WHERE id = :'ks_id';

------------------------------------------------------------------------------
-- validate_key(required_scopes): every required scope must be granted;
-- models:* grants models:predict, models: and models:* itself, not
-- modelsx.  Each is asked twice: a miss or a hit, then a hit.
------------------------------------------------------------------------------
SELECT hokusai_auth.cache_stats_reset();
SELECT r AS required, v.valid, v.status, v.key_id = :'ks_id' AS key_id,
	   v.remaining IS NOT NULL AS has_limits
  FROM unnest(ARRAY['{models:predict}', '{models:predict}', '{models:}', '{models:*}',
		'{files:read}', '{files:write}', '{files:write}', '{modelsx}', '{models:predict,files:write}',
		'{}', NULL]::text[][]) WITH ORDINALITY u(r, n),
	   LATERAL hokusai_auth.validate_key(:'ks', required_scopes => r::text[]) v
 ORDER BY n;
-- A key without scopes has none to grant.
SELECT v.status FROM hokusai_auth.validate_key(:'kn', required_scopes => '{x}') v;
SELECT v.status FROM hokusai_auth.validate_key(:'kn', required_scopes => '{x}') v;
SELECT v.status FROM hokusai_auth.validate_key(:'kn') v;
-- Scopes too long for the cache entry are read again on a hit.
SELECT v.status FROM hokusai_auth.validate_key(:'kl', required_scopes => '{models:predict}') v;
SELECT v.status FROM hokusai_auth.validate_key(:'kl', required_scopes => '{models:predict,epsilon:read}') v;
SELECT v.status FROM hokusai_auth.validate_key(:'kl', required_scopes => '{zeta:read}') v;
SELECT v.status FROM hokusai_auth.validate_key(:'kl') v;
SELECT misses, hits, bcrypt_verifications FROM hokusai_auth.cache_stats();
-- A bad list of required scopes is the caller's mistake: an error, even
-- for a key that is not one.
SELECT r AS required_scopes,
	   pg_temp.try(format('SELECT hokusai_auth.validate_key(%L, required_scopes => %L)', k, r)) AS validate_key
  FROM (VALUES (:'ks', '{NULL}'), (:'ks', '{Bad}'), (:'ks', '{{a},{b}}'), ('not a key', '{*}')) v(k, r);
SELECT pg_temp.try(format('SELECT hokusai_auth.validate_key(%L, required_scopes => %L)',
	:'ks', (SELECT array_agg('s' || i) FROM generate_series(1, 65) i))) AS too_many;

-- A refused call spends nothing of the key's quota.
SELECT id AS kq_id, key AS kq FROM hokusai_auth.create_key(:'alice', 'two an hour',
	rate_limit_per_hour => 2, scopes => '{a}') \gset
SELECT i, v.status FROM generate_series(1, 5) i,
	   LATERAL hokusai_auth.validate_key(:'kq', required_scopes => ARRAY[left('b', i)]) v
 ORDER BY i;
SELECT requests_last_hour FROM hokusai_auth.rate_limit_status(:'kq_id');
SELECT i, v.status, v.remaining FROM generate_series(1, 3) i,
	   LATERAL hokusai_auth.validate_key(:'kq', required_scopes => ARRAY[left('a', i)]) v ORDER BY i;

-- update_key(scopes) applies on the next call, the key being cached.
SELECT v.status FROM hokusai_auth.validate_key(:'ks', required_scopes => '{files:write}') v;
SELECT scopes FROM hokusai_auth.update_key(:'ks_id', scopes => '{files:*}');
SELECT v.status FROM hokusai_auth.validate_key(:'ks', required_scopes => '{files:write}') v;
SELECT v.status FROM hokusai_auth.validate_key(:'ks', required_scopes => '{models:predict}') v;
SELECT details->'changes' AS changes FROM hokusai_auth.audit_log
 WHERE api_key_id = :'ks_id' AND action = 'update' ORDER BY id DESC LIMIT 1;

------------------------------------------------------------------------------
-- disable_key() and enable_key()
------------------------------------------------------------------------------
SELECT v.status FROM hokusai_auth.validate_key(:'kn') v;
SELECT hokusai_auth.disable_key(:'kn_id', 'paused by the owner') AS disabled,
	   hokusai_auth.disable_key(:'kn_id') AS again;
SELECT requests_last_hour AS before FROM hokusai_auth.rate_limit_status(:'kn_id') \gset
SELECT v.valid, v.status, v.key_id = :'kn_id' AS key_id, v.remaining
  FROM hokusai_auth.validate_key(:'kn') v;
SELECT status, disabled_at IS NOT NULL AS disabled_at FROM hokusai_auth.keys WHERE id = :'kn_id';
SELECT status FROM hokusai_auth.list_keys(:'alice') WHERE id = :'kn_id';
-- Disabled comes before the address and scope checks, and spends nothing.
SELECT v.status FROM hokusai_auth.validate_key(:'kn', '192.0.2.1', required_scopes => '{x}') v;
SELECT requests_last_hour - :before AS spent FROM hokusai_auth.rate_limit_status(:'kn_id');
SELECT hokusai_auth.enable_key(:'kn_id') AS enabled, hokusai_auth.enable_key(:'kn_id') AS again;
SELECT v.status FROM hokusai_auth.validate_key(:'kn') v;
SELECT action, details - 'disabled_at' - 'key_prefix' AS details,
	   details ? 'disabled_at' AS has_disabled_at, details ? 'key_prefix' AS has_key_prefix
  FROM hokusai_auth.audit_log WHERE api_key_id = :'kn_id' AND action IN ('disable', 'enable')
 ORDER BY id;
-- Inside the transaction that disables it, the key is disabled; rolled
-- back, it works.
BEGIN;
SELECT hokusai_auth.disable_key(:'kn_id');
SELECT v.status FROM hokusai_auth.validate_key(:'kn') v;
ROLLBACK;
SELECT v.status FROM hokusai_auth.validate_key(:'kn') v;
-- Errors: bad arguments, a revoked key (never enabled again), an expired one.
SELECT pg_temp.try(format('SELECT hokusai_auth.disable_key(%L, %L)', :'kn_id', ' '));
SELECT pg_temp.try('SELECT hokusai_auth.disable_key(NULL)');
SELECT pg_temp.try('SELECT hokusai_auth.enable_key(''00000000-0000-0000-0000-000000000000'')');
SELECT id AS kr_id, key AS kr, key_prefix AS kr_prefix FROM hokusai_auth.create_key(:'alice', 'revoked') \gset
SELECT hokusai_auth.disable_key(:'kr_id');
SELECT hokusai_auth.revoke_key(:'kr_id');
SELECT replace(pg_temp.try(format('SELECT hokusai_auth.enable_key(%L)', :'kr_id')), :'kr_prefix', '<prefix>');
SELECT replace(pg_temp.try(format('SELECT hokusai_auth.disable_key(%L)', :'kr_id')), :'kr_prefix', '<prefix>');
SELECT v.status FROM hokusai_auth.validate_key(:'kr') v;
SELECT status FROM hokusai_auth.keys WHERE id = :'kr_id';
SELECT id AS ke_id, key_prefix AS ke_prefix FROM hokusai_auth.create_key(:'alice', 'expired') \gset
SELECT hokusai_auth.disable_key(:'ke_id');
UPDATE hokusai_auth.api_keys SET expires_at = now() - interval '1 second' WHERE id = :'ke_id';
SELECT replace(pg_temp.try(format('SELECT hokusai_auth.enable_key(%L)', :'ke_id')), :'ke_prefix', '<prefix>');

------------------------------------------------------------------------------
-- Rotation copies scopes; the replacement of a disabled key starts
-- disabled (rotation changes the secret, not the switch).
------------------------------------------------------------------------------
SELECT id AS kt_id, key AS kt FROM hokusai_auth.rotate_key(:'ks_id', '1 hour') \gset
SELECT scopes, status FROM hokusai_auth.keys WHERE id = :'kt_id';
SELECT v.status FROM hokusai_auth.validate_key(:'kt', required_scopes => '{files:write}') v;
SELECT hokusai_auth.disable_key(:'kt_id');
SELECT id AS ku_id, key AS ku FROM hokusai_auth.rotate_key(:'kt_id') \gset
SELECT scopes, status FROM hokusai_auth.keys WHERE id = :'ku_id';
SELECT v.status FROM hokusai_auth.validate_key(:'ku') v;
SELECT action, details->>'reason' AS reason, details->>'rotated_from' = :'kt_id' AS rotated_from
  FROM hokusai_auth.audit_log WHERE api_key_id = :'ku_id' ORDER BY id;
SELECT hokusai_auth.enable_key(:'ku_id');
SELECT v.status FROM hokusai_auth.validate_key(:'ku', required_scopes => '{files:write}') v;

------------------------------------------------------------------------------
-- require_scope() and unrequire_scope()
------------------------------------------------------------------------------
SELECT method, path_pattern, scope, builtin FROM hokusai_auth.route_scopes ORDER BY path_pattern, method;
SELECT hokusai_auth.require_scope('get', '/notes', 'notes:read') AS added,
	   hokusai_auth.require_scope('GET', '/notes', 'notes:read') AS again,
	   hokusai_auth.require_scope('*', '/reports*', 'reports:read') AS prefix,
	   hokusai_auth.require_scope('POST', '/rpc/summarize', 'models:*') AS pattern;
SELECT m, left(p, 12) AS p, s, pg_temp.try(format('SELECT hokusai_auth.require_scope(%L, %L, %L)', m, p, s)) AS require_scope
  FROM (VALUES ('FETCH', '/notes', 'a'), ('HEAD', '/notes', 'a'), (NULL, '/notes', 'a'),
			   ('GET', 'notes', 'a'), ('GET', '/a*b', 'a'), ('GET', '/notes?x=1', 'a'),
			   ('GET', NULL, 'a'), ('GET', '/' || repeat('x', 200), 'a'),
			   ('GET', '/notes', 'Bad'), ('GET', '/notes', NULL)) v(m, p, s);
SELECT hokusai_auth.unrequire_scope('POST', '/rpc/summarize', 'models:*') AS removed,
	   hokusai_auth.unrequire_scope('POST', '/rpc/summarize', 'models:*') AS again;
SELECT pg_temp.try('SELECT hokusai_auth.unrequire_scope(''*'', ''/keys'', ''keys:read'')');
SELECT method, path_pattern, scope FROM hokusai_auth.route_scopes WHERE NOT builtin ORDER BY 1, 2, 3;

------------------------------------------------------------------------------
-- pre_request(): the route's scopes, 403 insufficient_scope naming the one
-- missing, 403 disabled, and the caller of the request.  Requests are made
-- as PostgREST makes them (the request.* settings, then pre_request()), in
-- one transaction with what reads the caller.
------------------------------------------------------------------------------
SELECT id AS kr1_id, key AS kr1 FROM hokusai_auth.create_key(:'alice', 'notes reader',
	scopes => '{notes:read, keys:read}', burst_limit => 1000) \gset
SELECT id AS kw1_id, key AS kw1 FROM hokusai_auth.create_key(:'alice', 'keys writer',
	scopes => '{keys:*}', burst_limit => 1000) \gset
CREATE TEMP TABLE subs (val text, token text);
INSERT INTO subs VALUES (:'alice', '<alice>'), (:'ks_id', '<ks>'), (:'kn_id', '<kn>'),
	(:'kr1_id', '<kr1>'), (:'kw1_id', '<kw1>'),
	(hokusai_auth.key_prefix(:'ks'), '<ks>'), (hokusai_auth.key_prefix(:'kn'), '<kn>'),
	(hokusai_auth.key_prefix(:'kr1'), '<kr1>'), (hokusai_auth.key_prefix(:'kw1'), '<kw1>');
CREATE FUNCTION pg_temp.norm(s text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r	record;
BEGIN
	FOR r IN SELECT * FROM subs ORDER BY length(val) DESC LOOP
		s := replace(s, r.val, r.token);
	END LOOP;
	RETURN s;
END
$$;
-- One request: its outcome (passed, or status, code, message, details and
-- WWW-Authenticate), then the caller functions in the same transaction.
CREATE FUNCTION pg_temp.req(method text, path text, key text, sub text DEFAULT NULL)
	RETURNS TABLE (outcome text, key_id text, user_id text, scopes text[], reads_notes boolean)
	LANGUAGE plpgsql AS $$
DECLARE
	msg	text;
	det	text;
BEGIN
	PERFORM set_config('request.method', method, true),
			set_config('request.path', path, true),
			set_config('request.jwt.claims', coalesce(json_build_object('sub', sub)::text, ''), true),
			set_config('request.headers', json_strip_nulls(json_build_object(
				'x-forwarded-proto', 'https', 'x-api-key', key))::text, true);
	BEGIN
		PERFORM hokusai_auth.pre_request();
		outcome := 'passed';
	EXCEPTION WHEN SQLSTATE 'PGRST' THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
		outcome := pg_temp.norm(format('%s %s: %s [%s] %s', det::jsonb->>'status', msg::jsonb->>'code',
			msg::jsonb->>'message', msg::jsonb->>'details', det::jsonb->'headers'->>'WWW-Authenticate'));
	END;
	key_id := pg_temp.norm(hokusai_auth.current_key_id()::text);
	user_id := pg_temp.norm(hokusai_auth.current_user_id()::text);
	scopes := hokusai_auth.current_scopes();
	reads_notes := hokusai_auth.has_scope('notes:read');
	RETURN NEXT;
END
$$;
SELECT hokusai_auth.rate_limit_reset(:'ks_id');
SELECT r.* FROM (VALUES
	(1, 'GET', '/notes', :'ks'),			-- notes:read demanded, not granted
	(2, 'HEAD', '/notes', :'ks'),			-- HEAD is GET
	(3, 'POST', '/notes', :'ks'),			-- nothing demanded of POST
	(4, 'GET', '/notes', :'kr1'),
	(5, 'GET', '/notes', :'kn'),			-- a key without scopes has none
	(6, 'GET', '/reports/2024', :'kr1'),	-- /reports*
	(7, 'GET', '/report', :'kr1'),
	(8, 'GET', '/keys', :'kn'),				-- key management: a key without scopes
	(9, 'GET', '/keys', :'ks'),				-- ... a key with scopes needs keys:read
	(10, 'GET', '/keys', :'kr1'),
	(11, 'POST', '/rpc/create_key', :'kr1'),
	(12, 'POST', '/rpc/create_key', :'kw1'),
	(13, 'GET', '/rpc/key_usage', :'kw1')
	) v(n, m, p, k), LATERAL pg_temp.req(m, p, k) r ORDER BY n;
-- Refused requests spent nothing: one request passed.
SELECT requests_last_hour FROM hokusai_auth.rate_limit_status(:'ks_id');
-- A disabled key: 403 disabled.
SELECT hokusai_auth.disable_key(:'kr1_id');
SELECT outcome FROM pg_temp.req('GET', '/notes', :'kr1');
SELECT hokusai_auth.enable_key(:'kr1_id');
-- A JWT is the user: no scope is demanded, no key, no scopes.
SELECT * FROM pg_temp.req('GET', '/notes', NULL, :'alice');
-- The caller belongs to the transaction that ran pre_request(): not the
-- next one, not after a refused request, and SET cannot make one.
SELECT outcome FROM pg_temp.req('GET', '/notes', :'kr1');
SELECT hokusai_auth.current_key_id(), hokusai_auth.current_user_id(), hokusai_auth.current_scopes(),
	   hokusai_auth.has_scope('notes:read');
BEGIN;
SELECT outcome FROM pg_temp.req('GET', '/notes', :'kr1');
SELECT pg_temp.norm(hokusai_auth.current_key_id()::text) AS in_same_transaction;
SELECT outcome, key_id FROM pg_temp.req('GET', '/notes', :'ks');
COMMIT;
SET hokusai.api_key_id = :'kr1_id';
SET hokusai.user_id = :'alice';
SELECT hokusai_auth.current_key_id(), hokusai_auth.current_user_id();
RESET hokusai.api_key_id;
RESET hokusai.user_id;
SELECT pg_temp.try('SELECT hokusai_auth.has_scope(''Not A Scope'')');
-- A change of route scopes applies to the next request.
BEGIN;
SELECT outcome FROM pg_temp.req('GET', '/notes', :'kw1');
SELECT hokusai_auth.unrequire_scope('GET', '/notes', 'notes:read');
SELECT outcome FROM pg_temp.req('GET', '/notes', :'kw1');
ROLLBACK;
SELECT outcome FROM pg_temp.req('GET', '/notes', :'kw1');

------------------------------------------------------------------------------
-- The grant rule for patterns (what a key may hand on over HTTP).
------------------------------------------------------------------------------
SELECT g, w, hokusai_auth._scopes_cover(g::text[], w::text[]) AS first_not_covered
  FROM (VALUES ('{models:*}', '{models:predict,models:*}'), ('{models:*}', '{models*}'),
			   ('{mod*}', '{models:*,modx}'), ('{a,b}', '{b,c,d}'), ('{}', '{a}'), ('{a}', '{}')) v(g, w);

-- What this suite registered goes.
SELECT hokusai_auth.unrequire_scope('GET', '/notes', 'notes:read'),
	   hokusai_auth.unrequire_scope('*', '/reports*', 'reports:read');
