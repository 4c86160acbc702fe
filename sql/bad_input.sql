--
-- bad_input: every management function refuses bad input with a clear
-- message and a proper SQLSTATE, and leaves no rows behind.
--
SET hokusai_auth.bcrypt_cost = 4;
\set SHOW_CONTEXT never

-- try(sql): 'ok', or the SQLSTATE and message of the error it raised.
CREATE FUNCTION pg_temp.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	-- Ids and key prefixes are random: mask them.
	RETURN SQLSTATE || ': ' || regexp_replace(regexp_replace(SQLERRM,
		'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g'),
		'hk_(live|test)_[0-9A-Za-z]{8}', 'hk_\1_<lookup>', 'g');
END $$;

SELECT hokusai_auth.create_user('erin') AS erin \gset
SELECT * FROM hokusai_auth.create_key(:'erin', 'good') \gset g_
\set erin_q '''' :erin ''''

CREATE TEMP TABLE counts AS
SELECT (SELECT count(*) FROM hokusai_auth.users) AS users,
       (SELECT count(*) FROM hokusai_auth.api_keys) AS keys,
       (SELECT count(*) FROM hokusai_auth.audit_log) AS audit;

-- create_user
SELECT t.what, pg_temp.try(t.stmt) AS result FROM (VALUES
	('null username', $$SELECT hokusai_auth.create_user(NULL)$$),
	('empty username', $$SELECT hokusai_auth.create_user('')$$),
	('blank username', $$SELECT hokusai_auth.create_user('   ')$$),
	('1 MB username', $$SELECT hokusai_auth.create_user(repeat('a', 1048576))$$),
	('65 chars', $$SELECT hokusai_auth.create_user(repeat('a', 65))$$),
	('control char', $$SELECT hokusai_auth.create_user(E'ev\x01il')$$),
	('newline', $$SELECT hokusai_auth.create_user(E'evil\nname')$$),
	('quote', $$SELECT hokusai_auth.create_user('o''brien')$$),
	('sql-ish', $$SELECT hokusai_auth.create_user('x; DROP TABLE hokusai_auth.users')$$),
	('leading dot', $$SELECT hokusai_auth.create_user('.hidden')$$),
	('duplicate', $$SELECT hokusai_auth.create_user('erin')$$),
	('bad email', $$SELECT hokusai_auth.create_user('frank', 'not an email')$$),
	('empty email', $$SELECT hokusai_auth.create_user('frank', '')$$),
	('1 MB email', $$SELECT hokusai_auth.create_user('frank', repeat('a', 1048576) || '@x.org')$$),
	('wrong type', $$SELECT hokusai_auth.create_user(42::int)$$)
) AS t(what, stmt);

-- create_key
SELECT t.what, pg_temp.try(format(t.stmt, :'erin_q')) AS result FROM (VALUES
	('null user', $$SELECT hokusai_auth.create_key(NULL, 'k')$$),
	('unknown user', $$SELECT hokusai_auth.create_key('00000000-0000-0000-0000-000000000000', 'k')$$),
	('not a uuid', $$SELECT hokusai_auth.create_key('erin', 'k')$$),
	('null name', $$SELECT hokusai_auth.create_key(%s, NULL)$$),
	('empty name', $$SELECT hokusai_auth.create_key(%s, '')$$),
	('1 MB name', $$SELECT hokusai_auth.create_key(%s, repeat('n', 1048576))$$),
	('201 chars', $$SELECT hokusai_auth.create_key(%s, repeat('n', 201))$$),
	('control name', $$SELECT hokusai_auth.create_key(%s, E'bell\x07')$$),
	('tab name', $$SELECT hokusai_auth.create_key(%s, E'a\tb')$$),
	('null env', $$SELECT hokusai_auth.create_key(%s, 'k', environment => NULL)$$),
	('prod env', $$SELECT hokusai_auth.create_key(%s, 'k', environment => 'prod')$$),
	('upper env', $$SELECT hokusai_auth.create_key(%s, 'k', environment => 'LIVE')$$),
	('past expiry', $$SELECT hokusai_auth.create_key(%s, 'k', expires_at => now() - interval '1 day')$$),
	('-infinity', $$SELECT hokusai_auth.create_key(%s, 'k', expires_at => '-infinity')$$),
	('zero limit', $$SELECT hokusai_auth.create_key(%s, 'k', rate_limit_per_hour => 0)$$),
	('negative limit', $$SELECT hokusai_auth.create_key(%s, 'k', rate_limit_per_hour => -5)$$),
	('limit overflow', $$SELECT hokusai_auth.create_key(%s, 'k', rate_limit_per_hour => '3000000000')$$),
	('negative burst', $$SELECT hokusai_auth.create_key(%s, 'k', burst_limit => -1)$$),
	('bad cidr', $$SELECT hokusai_auth.create_key(%s, 'k', allowed_ips => '{10.0.0.300/8}')$$),
	('host bits', $$SELECT hokusai_auth.create_key(%s, 'k', allowed_ips => '{10.0.0.1/8}')$$),
	('not cidr', $$SELECT hokusai_auth.create_key(%s, 'k', allowed_ips => '{example.com}')$$),
	('empty list', $$SELECT hokusai_auth.create_key(%s, 'k', allowed_ips => '{}')$$),
	('null in list', $$SELECT hokusai_auth.create_key(%s, 'k', allowed_ips => '{10.0.0.0/8,NULL}')$$),
	('2-D list', $$SELECT hokusai_auth.create_key(%s, 'k', allowed_ips => '{{10.0.0.0/8},{10.1.0.0/16}}')$$),
	('101 cidrs', $$SELECT hokusai_auth.create_key(%s, 'k', allowed_ips => (SELECT array_agg(('10.0.' || i || '.0/24')::cidr) FROM generate_series(0, 100) i))$$),
	('array metadata', $$SELECT hokusai_auth.create_key(%s, 'k', metadata => '[1,2]')$$),
	('scalar metadata', $$SELECT hokusai_auth.create_key(%s, 'k', metadata => '"x"')$$),
	('bad json', $$SELECT hokusai_auth.create_key(%s, 'k', metadata => '{oops')$$),
	('huge metadata', $$SELECT hokusai_auth.create_key(%s, 'k', metadata => jsonb_build_object('x', repeat('m', 70000)))$$),
	('unknown param', $$SELECT hokusai_auth.create_key(%s, 'k', colour => 'red')$$)
) AS t(what, stmt);

-- revoke_key
SELECT t.what, pg_temp.try(t.stmt) AS result FROM (VALUES
	('null id', $$SELECT hokusai_auth.revoke_key(NULL)$$),
	('unknown id', $$SELECT hokusai_auth.revoke_key('00000000-0000-0000-0000-000000000000')$$),
	('not a uuid', $$SELECT hokusai_auth.revoke_key('hk_live_abc')$$),
	('1 MB reason', format($$SELECT hokusai_auth.revoke_key(%L, repeat('r', 1048576))$$, :'g_id')),
	('control reason', format($$SELECT hokusai_auth.revoke_key(%L, E'x\x1b[31m')$$, :'g_id'))
) AS t(what, stmt);

-- rotate_key
SELECT t.what, pg_temp.try(t.stmt) AS result FROM (VALUES
	('null id', $$SELECT hokusai_auth.rotate_key(NULL)$$),
	('unknown id', $$SELECT hokusai_auth.rotate_key('00000000-0000-0000-0000-000000000000')$$),
	('null grace', format($$SELECT hokusai_auth.rotate_key(%L, NULL)$$, :'g_id')),
	('negative grace', format($$SELECT hokusai_auth.rotate_key(%L, '-1 hour')$$, :'g_id')),
	('huge grace', format($$SELECT hokusai_auth.rotate_key(%L, '1 year')$$, :'g_id')),
	('bad interval', format($$SELECT hokusai_auth.rotate_key(%L, 'soon')$$, :'g_id'))
) AS t(what, stmt);

-- list_keys
SELECT t.what, pg_temp.try(t.stmt) AS result FROM (VALUES
	('null user', $$SELECT * FROM hokusai_auth.list_keys(NULL)$$),
	('unknown user', $$SELECT * FROM hokusai_auth.list_keys('00000000-0000-0000-0000-000000000000')$$)
) AS t(what, stmt);

-- Nothing was written by any of the failures above.
SELECT c.users = (SELECT count(*) FROM hokusai_auth.users) AS users_same,
       c.keys = (SELECT count(*) FROM hokusai_auth.api_keys) AS keys_same,
       c.audit = (SELECT count(*) FROM hokusai_auth.audit_log) AS audit_same
  FROM counts c;
-- The good key still works and was neither revoked nor rotated.
SELECT status FROM hokusai_auth.validate_key(:'g_key');

-- Revoking or rotating a revoked key, and rotating an expired one.
SELECT hokusai_auth.revoke_key(:'g_id');
SELECT pg_temp.try(format($$SELECT hokusai_auth.rotate_key(%L)$$, :'g_id')) AS rotate_revoked;
SELECT * FROM hokusai_auth.create_key(:'erin', 'will expire',
	expires_at => clock_timestamp() + interval '1 second') \gset x_
SELECT pg_sleep(1.1);
SELECT pg_temp.try(format($$SELECT hokusai_auth.rotate_key(%L)$$, :'x_id')) AS rotate_expired;

-- Deactivated users cannot get new keys.
UPDATE hokusai_auth.users SET is_active = false WHERE id = :'erin';
SELECT pg_temp.try(format($$SELECT hokusai_auth.create_key(%L, 'k')$$, :'erin')) AS inactive_owner;
