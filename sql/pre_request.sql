--
-- pre_request: the PostgREST hook, called the way PostgREST calls it (the
-- request.* settings, as the anonymous role, then pre_request()), once on
-- extension version 1.3 (PL/pgSQL) and again after the update to 1.4 (C)
-- on the same data: both must give the same answer to every request.
-- Then what only 1.4 is checked for: malformed request.headers without the
-- key in the error, the usage event, nothing of a key in any error.
--
SET hokusai_auth.bcrypt_cost = 4;
\set VERBOSITY terse

DROP EXTENSION hokusai_auth;
CREATE EXTENSION hokusai_auth VERSION '1.3';
SELECT hokusai_auth.setup_http_roles('regress_pr_auth', 'regress_pr_anon', 'regress_pr_api');

-- Users and keys.  The values that change from run to run are shown as
-- <name> by pg_temp.norm().
CREATE TEMP TABLE subs (val text, token text);
SELECT hokusai_auth.create_user('pr_alice') AS alice, hokusai_auth.create_user('pr_bob') AS bob,
	   hokusai_auth.create_user('pr_carol') AS carol \gset
UPDATE hokusai_auth.users SET is_active = false WHERE id = :'carol';
SELECT id AS k1_id, key AS k1, key_prefix AS k1_prefix
  FROM hokusai_auth.create_key(:'alice', 'main', rate_limit_per_hour => 1000, burst_limit => 1000) \gset
SELECT id AS kb_id, key AS kb, key_prefix AS kb_prefix FROM hokusai_auth.create_key(:'bob', 'bob', burst_limit => 1000) \gset
SELECT id AS kr_id, key AS kr, key_prefix AS kr_prefix FROM hokusai_auth.create_key(:'alice', 'revoked') \gset
SELECT hokusai_auth.revoke_key(:'kr_id', 'test');
SELECT id AS ki_id, key AS ki, key_prefix AS ki_prefix
  FROM hokusai_auth.create_key(:'alice', 'office', allowed_ips => '{10.0.0.0/8}', burst_limit => 1000) \gset
SELECT id AS kl_id, key AS kl, key_prefix AS kl_prefix
  FROM hokusai_auth.create_key(:'alice', 'limited', rate_limit_per_hour => 1) \gset
SELECT key AS ku, key_prefix AS ku_prefix FROM hokusai_auth._new_key('live') \gset
INSERT INTO subs VALUES (:'alice', '<alice>'), (:'bob', '<bob>'), (:'carol', '<carol>'),
	(upper(:'alice'), '<ALICE>'),
	(:'k1_id', '<k1_id>'), (:'kb_id', '<kb_id>'), (:'kr_id', '<kr_id>'), (:'ki_id', '<ki_id>'),
	(:'kl_id', '<kl_id>'),
	(:'k1_prefix', '<k1>'), (:'kb_prefix', '<kb>'), (:'kr_prefix', '<kr>'), (:'ki_prefix', '<ki>'),
	(:'kl_prefix', '<kl>'), (:'ku_prefix', '<ku>');
CREATE TEMP TABLE secrets AS
SELECT unnest(ARRAY[:'k1', :'kb', :'kr', :'ki', :'kl', :'ku']) AS key;

CREATE FUNCTION pg_temp.norm(s text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r	record;
BEGIN
	FOR r IN SELECT * FROM subs ORDER BY length(val) DESC LOOP
		s := replace(s, r.val, r.token);
	END LOOP;
	-- Seconds to wait depend on the clock: shown as <s> when positive, and
	-- so are RateLimit's t (seconds) and X-RateLimit-Reset (epoch seconds).
	s := regexp_replace(s, ';t=[0-9]+', ';t=<s>', 'g');
	RETURN regexp_replace(s, '"(Retry-After|X-RateLimit-Reset)": "[1-9][0-9]*"', '"\1": "<s>"', 'g');
END
$$;
-- 1.3's headers: what 1.5 added (RateLimit, RateLimit-Policy,
-- X-RateLimit-Used, X-RateLimit-Resource) left out, and X-RateLimit-Reset,
-- seconds in 1.3 and an epoch time since, as <reset>.
CREATE FUNCTION pg_temp.as13(s text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	s := regexp_replace(s, '\{"(RateLimit|RateLimit-Policy|X-RateLimit-Used|X-RateLimit-Resource)": "([^"\\]|\\.)*"\}(, )?', '', 'g');
	s := regexp_replace(s, '"(RateLimit|RateLimit-Policy|X-RateLimit-Used|X-RateLimit-Resource)": "([^"\\]|\\.)*"(, )?', '', 'g');
	RETURN pg_temp.norm(regexp_replace(s, '"X-RateLimit-Reset": "[0-9]+"', '"X-RateLimit-Reset": "<reset>"', 'g'));
END
$$;

-- Every request of the comparison: its settings as PostgREST would make
-- them (NULL: not set), and the role PostgREST runs it as.
CREATE TEMP TABLE requests (n int, what text, headers text, claims text,
	path text DEFAULT '/keys', method text DEFAULT 'GET', resp text,
	api_role text DEFAULT 'regress_pr_api', run_as text DEFAULT 'regress_pr_anon',
	https text DEFAULT 'on');
CREATE FUNCTION pg_temp.h(VARIADIC kv text[]) RETURNS text LANGUAGE sql AS $$
	SELECT json_object(kv)::text
$$;
INSERT INTO requests (n, what, headers, claims, path, method, resp, api_role, run_as, https) VALUES
	(1, 'no request.headers', NULL, NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(2, 'empty request.headers', '', NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(3, 'plain http', pg_temp.h('x-forwarded-proto', 'http', 'x-api-key', :'k1'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(4, 'last proto wins, trimmed, any case', pg_temp.h('x-forwarded-proto', 'http,  HTTPS ', 'x-api-key', :'k1'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(5, 'https then http', pg_temp.h('x-forwarded-proto', 'https,http', 'x-api-key', :'k1'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(6, 'proto with a tab', pg_temp.h('x-forwarded-proto', E'https\t'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(7, 'proto escaped', '{"x-forwarded-proto": "htt\u0070s"}', NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(8, 'proto a number', '{"x-forwarded-proto": 1}', NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(9, 'headers a JSON array', '[{"x-forwarded-proto": "https"}]', NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(10, 'headers a JSON string', '"https"', NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(11, 'require_https off, no headers', NULL, NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'off'),
	(12, 'OpenAPI description: public, no role switch', pg_temp.h('x-forwarded-proto', 'https'), NULL, '/', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(13, 'OpenAPI description over http', pg_temp.h('x-forwarded-proto', 'http'), NULL, '/', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(14, 'no credentials', pg_temp.h('x-forwarded-proto', 'https'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(15, 'empty X-API-Key', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', ''), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(16, 'valid key, client behind two proxies', pg_temp.h('x-forwarded-proto', 'https', 'x-forwarded-for', '198.51.100.1, 203.0.113.7, 127.0.0.1', 'x-api-key', :'k1'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(17, 'valid key, IPv6 client', pg_temp.h('x-forwarded-proto', 'https', 'x-forwarded-for', '[2001:DB8::1]:443', 'x-api-key', :'k1'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(18, 'valid key, response.headers already an array', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'k1'), NULL, '/keys', 'GET', '[{"X-Other": "1"}]', 'regress_pr_api', 'regress_pr_anon', 'on'),
	(19, 'valid key, response.headers already an object', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'k1'), NULL, '/keys', 'GET', '{"X-Other": "1"}', 'regress_pr_api', 'regress_pr_anon', 'on'),
	(20, 'valid key, response.headers empty', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'k1'), NULL, '/keys', 'GET', '', 'regress_pr_api', 'regress_pr_anon', 'on'),
	(21, 'valid key, already the API role', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'k1'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_api', 'on'),
	(22, 'valid key, no hokusai.api_role', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'k1'), NULL, '/keys', 'GET', NULL, NULL, 'regress_pr_anon', 'on'),
	(23, 'valid key, empty hokusai.api_role', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'k1'), NULL, '/keys', 'GET', NULL, '', 'regress_pr_anon', 'on'),
	(24, 'valid key, empty request.method', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'k1'), NULL, '/keys', NULL, NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(25, 'valid key, endpoint too long', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'k1'), NULL, '/' || repeat('k', 3000), 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(26, 'valid key, duplicate member: the last counts', '{"x-forwarded-proto": "https", "x-api-key": "nope", "x-api-key": "' || :'k1' || '"}', NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(27, 'key and JWT of the same user', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'k1'), json_build_object('sub', :'alice', 'role', 'regress_pr_api')::text, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_api', 'on'),
	(28, 'key and JWT of another user', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'kb'), json_build_object('sub', :'alice')::text, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(29, 'key and JWT sub in capitals', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'k1'), json_build_object('sub', upper(:'alice'))::text, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(30, 'malformed key', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', 'hk_live_short'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(31, 'huge key', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', repeat('hk_live_', 20000)), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(32, 'key a number', '{"x-forwarded-proto": "https", "x-api-key": 12345}', NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(33, 'key an object', '{"x-forwarded-proto": "https", "x-api-key": {"a": [1, true, null]}}', NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(34, 'key JSON null', '{"x-forwarded-proto": "https", "x-api-key": null}', NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(35, 'unknown key', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'ku'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(36, 'revoked key', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'kr'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(37, 'allow-list, client outside', pg_temp.h('x-forwarded-proto', 'https', 'x-forwarded-for', '203.0.113.7', 'x-api-key', :'ki'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(38, 'allow-list, client inside', pg_temp.h('x-forwarded-proto', 'https', 'x-forwarded-for', '10.1.2.3', 'x-api-key', :'ki'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(39, 'allow-list, no X-Forwarded-For', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'ki'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(40, 'allow-list, unparsable X-Forwarded-For', pg_temp.h('x-forwarded-proto', 'https', 'x-forwarded-for', '10.1.2.3, bogus', 'x-api-key', :'ki'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(41, 'allow-list, huge X-Forwarded-For', pg_temp.h('x-forwarded-proto', 'https', 'x-forwarded-for', repeat('10.1.2.3, ', 1000), 'x-api-key', :'ki'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(42, 'allow-list, X-Forwarded-For an array', '{"x-forwarded-proto": "https", "x-forwarded-for": ["10.1.2.3"], "x-api-key": "' || :'ki' || '"}', NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(43, 'limit 1/hour, first request', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'kl'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(44, 'limit 1/hour, second request', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'kl'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(45, 'JWT of an active user', pg_temp.h('x-forwarded-proto', 'https'), json_build_object('sub', :'alice')::text, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(46, 'JWT sub in capitals', pg_temp.h('x-forwarded-proto', 'https'), json_build_object('sub', upper(:'alice'))::text, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(47, 'JWT of an inactive user', pg_temp.h('x-forwarded-proto', 'https'), json_build_object('sub', :'carol')::text, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(48, 'JWT of nobody', pg_temp.h('x-forwarded-proto', 'https'), json_build_object('sub', '00000000-0000-4000-8000-000000000000')::text, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(49, 'JWT sub not a uuid', pg_temp.h('x-forwarded-proto', 'https'), '{"sub": "alice"}', '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(50, 'JWT sub a uuid in braces', pg_temp.h('x-forwarded-proto', 'https'), json_build_object('sub', '{' || :'alice' || '}')::text, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(51, 'JWT sub a number', pg_temp.h('x-forwarded-proto', 'https'), '{"sub": 42}', '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(52, 'JWT sub null', pg_temp.h('x-forwarded-proto', 'https'), '{"sub": null}', '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(53, 'claims a JSON array', pg_temp.h('x-forwarded-proto', 'https'), '[{"sub": "x"}]', '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(54, 'claims a JSON string', pg_temp.h('x-forwarded-proto', 'https'), '"' || :'alice' || '"', '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(55, 'claims with leading white space', pg_temp.h('x-forwarded-proto', 'https'), E' \n\t' || json_build_object('sub', :'alice')::text, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(56, 'claims empty', pg_temp.h('x-forwarded-proto', 'https'), '', '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(57, 'claims malformed', pg_temp.h('x-forwarded-proto', 'https'), '{"sub": ', '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(58, 'malformed request.headers', '{"x-forwarded-proto": "https", "x-api-key": "' || :'k1' || '", oops}', NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(59, 'request.headers with \u0000', '{"x-forwarded-proto": "https", "x-api-key": "' || :'k1' || '", "x": "\u0000"}', NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on'),
	(60, 'huge header values', pg_temp.h('x-forwarded-proto', 'https', 'user-agent', repeat('u', 1000000), 'x-api-key', :'k1'), NULL, '/keys', 'GET', NULL, 'regress_pr_api', 'regress_pr_anon', 'on');

-- One request, as PostgREST makes it, in a subtransaction that is rolled
-- back afterwards (nothing it sets survives): what pre_request() answered,
-- the role it left and the settings it made.  Errors: SQLSTATE, message
-- and detail; for errors that are not PostgREST's, without the detail
-- (1.4 does not quote malformed JSON, see below).
CREATE FUNCTION pg_temp.request(r requests) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	res	text;
	st	text;
	msg	text;
	det	text;
BEGIN
	BEGIN
		PERFORM set_config('hokusai_auth.require_https', r.https, true);
		PERFORM set_config('hokusai.client_ip', '', true), set_config('hokusai.user_id', '', true),
				set_config('hokusai.api_key_id', '', true), set_config('response.status', '', true),
				set_config('response.headers', coalesce(r.resp, ''), true),
				set_config('hokusai.api_role', coalesce(r.api_role, ''), true),
				set_config('request.headers', coalesce(r.headers, ''), true),
				set_config('request.jwt.claims', coalesce(r.claims, ''), true),
				set_config('request.path', coalesce(r.path, ''), true),
				set_config('request.method', coalesce(r.method, ''), true);
		-- NULL: as if never set in this session (current_setting(.., true) is '' then)
		PERFORM set_config('role', r.run_as, true);
		PERFORM hokusai_auth.pre_request();
		res := format('ok as %s; client_ip=%s user_id=%s api_key_id=%s response.headers=%s',
			current_user, current_setting('hokusai.client_ip'), current_setting('hokusai.user_id'),
			current_setting('hokusai.api_key_id'), current_setting('response.headers'));
		RAISE SQLSTATE 'HKTST';
	EXCEPTION
		WHEN SQLSTATE 'HKTST' THEN
			NULL;
		WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
			res := format('error %s %s%s', st, msg, CASE WHEN st = 'PGRST' THEN ' ' || det ELSE '' END);
	END;
	RETURN res;
END
$$;

CREATE TEMP TABLE answers (version text, n int, answer text);
-- The rate limiter counts requests: each version starts from zero.
SELECT hokusai_auth.rate_limit_reset(k) FROM unnest(ARRAY[:'k1_id', :'kb_id', :'ki_id', :'kl_id']::uuid[]) k;
INSERT INTO answers SELECT '1.3', n, pg_temp.request(r) FROM requests r ORDER BY n;
ALTER EXTENSION hokusai_auth UPDATE TO '1.4';
SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid = 'hokusai_auth.pre_request()'::regprocedure;
SELECT hokusai_auth.rate_limit_reset(k) FROM unnest(ARRAY[:'k1_id', :'kb_id', :'ki_id', :'kl_id']::uuid[]) k;
INSERT INTO answers SELECT '1.4', n, pg_temp.request(r) FROM requests r ORDER BY n;

-- The answers of 1.4.
SELECT r.n, r.what, pg_temp.norm(a.answer) AS answer
  FROM requests r JOIN answers a ON a.n = r.n AND a.version = '1.4' ORDER BY r.n;
-- Where 1.3 and 1.4 (today's C) differ, the rate-limit headers added
-- since aside (pg_temp.as13): only in the text of the 429, which now says
-- which limit refused.
SELECT n, version, answer FROM (
	(SELECT '1.3 only' AS version, n, pg_temp.as13(answer) AS answer FROM answers WHERE version = '1.3'
	 EXCEPT SELECT '1.3 only', n, pg_temp.as13(answer) FROM answers WHERE version = '1.4')
	UNION ALL
	(SELECT '1.4 only', n, pg_temp.as13(answer) FROM answers WHERE version = '1.4'
	 EXCEPT SELECT '1.4 only', n, pg_temp.as13(answer) FROM answers WHERE version = '1.3')) d
 ORDER BY n, version;
-- No answer of either version contains a whole key.
SELECT a.version, a.n FROM answers a, secrets s WHERE strpos(a.answer, s.key) > 0;

-- 1.4: a malformed request.headers is refused like the cast would, but
-- neither the detail nor the context quotes it (it holds the key).
BEGIN;
SELECT set_config('request.headers', '{"x-forwarded-proto": "https", "x-api-key": "' || :'k1' || '", oops}', true) IS NOT NULL AS set;
DO $$
DECLARE
	st text; msg text; det text; ctx text; hint text;
BEGIN
	PERFORM hokusai_auth.pre_request();
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
		ctx = PG_EXCEPTION_CONTEXT, hint = PG_EXCEPTION_HINT;
	RAISE NOTICE 'sqlstate %, message %, detail %, quotes the key: %', st, msg, det,
		EXISTS (SELECT FROM secrets s
				 WHERE strpos(concat_ws(' ', msg, det, ctx, hint), s.key) > 0
					OR strpos(concat_ws(' ', msg, det, ctx, hint), 'oops') > 0);
END
$$;
ROLLBACK;

-- 1.4: a request with a valid key queues one usage event when its
-- transaction ends (track_request), however often pre_request() ran in it;
-- so does a refused one of a known key (here revoked: 401), but not one
-- of a key nobody issued, which has no id to count it on.  (This database
-- is not the worker's: the event is counted as other_database.)
CREATE TEMP TABLE q AS SELECT enqueued + other_database AS events FROM hokusai_auth.usage_queue_stats();
BEGIN;
SELECT set_config('request.headers', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'k1'), true) IS NOT NULL AS set,
	   set_config('request.method', 'GET', true) IS NOT NULL AS set,
	   set_config('request.path', '/keys', true) IS NOT NULL AS set;
SELECT hokusai_auth.pre_request();
SELECT hokusai_auth.pre_request();
SELECT pg_temp.norm(current_setting('response.headers')) AS "response.headers";
SELECT (SELECT enqueued + other_database FROM hokusai_auth.usage_queue_stats()) - events AS queued_before_commit FROM q;
COMMIT;
SELECT (SELECT enqueued + other_database FROM hokusai_auth.usage_queue_stats()) - events AS queued_after_commit FROM q;
BEGIN;
SELECT pg_temp.norm(pg_temp.request(r)) AS refused FROM requests r WHERE n = 36;
COMMIT;
SELECT (SELECT enqueued + other_database FROM hokusai_auth.usage_queue_stats()) - events AS queued_after_refusal FROM q;
BEGIN;
SELECT pg_temp.norm(pg_temp.request(r)) AS refused FROM requests r WHERE n = 35;
COMMIT;
SELECT (SELECT enqueued + other_database FROM hokusai_auth.usage_queue_stats()) - events AS queued_after_unknown FROM q;

-- 1.4: a burst refusal says so: X-RateLimit-* describe the burst limit
-- (X-RateLimit-Resource: burst), Retry-After is that limit's.
SELECT id AS kq_id, key AS kq, key_prefix AS kq_prefix
  FROM hokusai_auth.create_key(:'alice', 'burst of one', rate_limit_per_hour => 100, burst_limit => 1) \gset
INSERT INTO subs VALUES (:'kq_id', '<kq_id>'), (:'kq_prefix', '<kq>');
INSERT INTO requests (n, what, headers) VALUES
	(61, 'burst of one, first', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'kq')),
	(62, 'burst of one, second in the same second', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'kq'));
SELECT n, pg_temp.norm(pg_temp.request(r)) AS answer FROM requests r WHERE n IN (61, 62) ORDER BY n;

-- 1.4: the API role, as PostgREST's anonymous role would: only pre_request().
BEGIN;
SET LOCAL ROLE regress_pr_anon;
SELECT set_config('hokusai.api_role', 'regress_pr_api', true) IS NOT NULL AS set,
	   set_config('request.headers', pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'k1'), true) IS NOT NULL AS set;
SELECT hokusai_auth.pre_request();
SELECT current_user, session_user = current_user AS is_session_user;
ROLLBACK;
-- A role the session may not become: the role switch fails.
SELECT current_user AS superuser \gset
SELECT pg_temp.h('x-forwarded-proto', 'https', 'x-api-key', :'k1') AS k1_headers \gset
CREATE ROLE regress_pr_stranger NOLOGIN;
CREATE ROLE regress_pr_login LOGIN IN ROLE regress_pr_anon;
\c - regress_pr_login
BEGIN;
SET LOCAL ROLE regress_pr_anon;
SELECT set_config('hokusai.api_role', 'regress_pr_stranger', true) IS NOT NULL AS set,
	   set_config('request.headers', :'k1_headers', true) IS NOT NULL AS set;
SELECT hokusai_auth.pre_request();
ROLLBACK;
\c - :superuser

-- Clean up the cluster-wide roles (leaving the extension at the default
-- version, as the suite found it).
DROP EXTENSION hokusai_auth;
DROP ROLE regress_pr_auth, regress_pr_anon, regress_pr_api, regress_pr_stranger, regress_pr_login;
CREATE EXTENSION hokusai_auth;
