--
-- migration: DROP EXTENSION leaves nothing of ours behind, CREATE works
-- again, versions install and update through the script chain, and a
-- database updated from 1.0 has the same objects, definitions included, as
-- one where CREATE EXTENSION ran the install script built from sql/install/.
--
SET hokusai_auth.bcrypt_cost = 4;

-- Objects of any kind named like ours, anywhere in the database.
CREATE VIEW pg_temp.leftovers AS
SELECT 'schema' AS kind, nspname::text AS name FROM pg_namespace WHERE nspname LIKE 'hokusai%'
UNION ALL
SELECT 'relation', c.oid::regclass::text FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname LIKE 'hokusai%' OR c.relname LIKE '%api_key%' OR c.relname LIKE 'audit_log%'
UNION ALL
SELECT 'function', p.oid::regprocedure::text FROM pg_proc p
 WHERE p.proname IN ('validate_key', 'create_key', 'revoke_key', 'rotate_key', 'list_keys', 'create_user')
    OR p.pronamespace::regnamespace::text LIKE 'hokusai%'
UNION ALL
SELECT 'type', t.oid::regtype::text FROM pg_type t
 WHERE t.typnamespace::regnamespace::text LIKE 'hokusai%';

SELECT count(*) > 0 AS objects_present FROM pg_temp.leftovers;
DROP EXTENSION hokusai_auth;
SELECT * FROM pg_temp.leftovers;

-- pgcrypto, which CASCADE installed, is not ours and stays.
SELECT extname FROM pg_extension WHERE extname IN ('pgcrypto', 'hokusai_auth');

-- Create again: works, and starts empty.
CREATE EXTENSION hokusai_auth;
SELECT count(*) AS keys FROM hokusai_auth.api_keys;
SELECT hokusai_auth.create_user('henry') AS henry \gset
SELECT * FROM hokusai_auth.create_key(:'henry', 'after re-create') \gset k_
SELECT status FROM hokusai_auth.validate_key(:'k_key');

-- Every object of the extension, as one row per (object, property), with
-- its definition as PostgreSQL prints it back.  Compared between a database
-- updated along the script chain and a fresh install, it shows any drift
-- between the frozen update scripts and sql/install/.
CREATE VIEW pg_temp.extension_objects AS
WITH member AS (
	SELECT d.classid, d.objid
	  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
	   AND e.extname = 'hokusai_auth'
), rel AS (
	SELECT c.* FROM pg_class c
	  JOIN member m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
)
SELECT 'member' AS kind, pg_describe_object(m.classid, m.objid, 0) AS object,
	   'member' AS property, NULL AS value
  FROM member m
UNION ALL
SELECT 'extension', 'extension hokusai_auth', x.property, x.value
  FROM pg_extension e,
	   LATERAL (VALUES ('version', e.extversion),
					   ('schema', e.extnamespace::regnamespace::text),
					   ('relocatable', e.extrelocatable::text)) x(property, value)
 WHERE e.extname = 'hokusai_auth'
UNION ALL
-- pg_extension_config_dump() registrations, by table name
SELECT 'extension', 'extension hokusai_auth', 'dumps rows of ' || u.tab::regclass::text,
	   coalesce(quote_literal(u.cond), 'NULL')
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) u(tab, cond)
 WHERE e.extname = 'hokusai_auth'
UNION ALL
SELECT 'schema', pg_describe_object('pg_namespace'::regclass, n.oid, 0), x.property, x.value
  FROM pg_namespace n
  JOIN member m ON m.classid = 'pg_namespace'::regclass AND m.objid = n.oid,
	   LATERAL (VALUES ('owner', n.nspowner::regrole::text),
					   ('acl', n.nspacl::text),
					   ('comment', obj_description(n.oid, 'pg_namespace'))) x(property, value)
UNION ALL
SELECT 'function', pg_describe_object('pg_proc'::regclass, p.oid, 0), x.property, x.value
  FROM pg_proc p
  JOIN member m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid,
	   LATERAL (VALUES ('definition',
						CASE WHEN p.prokind = 'a'
							 THEN (SELECT format('AGGREGATE (%s) SFUNC %s STYPE %s FINALFUNC %s',
												 pg_get_function_arguments(p.oid), a.aggtransfn,
												 a.aggtranstype::regtype, a.aggfinalfn)
									 FROM pg_aggregate a WHERE a.aggfnoid = p.oid)
							 ELSE pg_get_functiondef(p.oid) END),
					   ('volatility', p.provolatile::text),
					   ('security definer', p.prosecdef::text),
					   ('config', p.proconfig::text),
					   ('owner', p.proowner::regrole::text),
					   ('acl', p.proacl::text),
					   ('comment', obj_description(p.oid, 'pg_proc'))) x(property, value)
UNION ALL
SELECT 'relation', pg_describe_object('pg_class'::regclass, c.oid, 0), x.property, x.value
  FROM rel c,
	   LATERAL (VALUES ('kind', c.relkind::text || ' ' || c.relpersistence::text),
					   ('options', c.reloptions::text),
					   ('row security', c.relrowsecurity::text || ' ' || c.relforcerowsecurity::text),
					   ('owner', c.relowner::regrole::text),
					   ('acl', c.relacl::text),
					   ('comment', obj_description(c.oid, 'pg_class')),
					   ('view definition', CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END)
			   ) x(property, value)
UNION ALL
-- Columns in order: position, type, NOT NULL, default.
SELECT 'column', pg_describe_object('pg_class'::regclass, a.attrelid, a.attnum), x.property, x.value
  FROM rel c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type ty ON ty.oid = a.atttypid
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum,
	   LATERAL (VALUES ('definition',
						concat_ws(' ', 'position ' || a.attnum, format_type(a.atttypid, a.atttypmod),
								  CASE WHEN a.attnotnull THEN 'NOT NULL' END,
								  'DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid),
								  'IDENTITY ' || nullif(a.attidentity::text, ''),
								  'GENERATED ' || nullif(a.attgenerated::text, ''),
								  'COLLATE ' || CASE WHEN a.attcollation <> ty.typcollation
													  THEN a.attcollation::regcollation::text END)),
					   ('acl', a.attacl::text),
					   ('comment', col_description(a.attrelid, a.attnum))) x(property, value)
UNION ALL
SELECT 'constraint', pg_describe_object('pg_constraint'::regclass, k.oid, 0), x.property, x.value
  FROM rel c JOIN pg_constraint k ON k.conrelid = c.oid,
	   LATERAL (VALUES ('definition', pg_get_constraintdef(k.oid)),
					   ('validated', k.convalidated::text),
					   ('comment', obj_description(k.oid, 'pg_constraint'))) x(property, value)
UNION ALL
SELECT 'index', pg_describe_object('pg_class'::regclass, i.indexrelid, 0), x.property, x.value
  FROM rel c JOIN pg_index i ON i.indrelid = c.oid,
	   LATERAL (VALUES ('definition', pg_get_indexdef(i.indexrelid)),
					   ('comment', obj_description(i.indexrelid, 'pg_class'))) x(property, value)
UNION ALL
SELECT 'trigger', pg_describe_object('pg_trigger'::regclass, t.oid, 0), x.property, x.value
  FROM rel c JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal,
	   LATERAL (VALUES ('definition', pg_get_triggerdef(t.oid)),
					   ('enabled', t.tgenabled::text)) x(property, value)
UNION ALL
SELECT 'policy', format('policy %s on table %s.%s', p.policyname, p.schemaname, p.tablename),
	   'definition',
	   format('%s %s TO %s USING %s WITH CHECK %s', p.permissive, p.cmd, p.roles, p.qual, p.with_check)
  FROM rel c JOIN pg_policies p
	ON p.schemaname = c.relnamespace::regnamespace::text AND p.tablename = c.relname
UNION ALL
SELECT 'sequence', pg_describe_object('pg_class'::regclass, s.seqrelid, 0), 'definition',
	   format('AS %s START %s INCREMENT %s MINVALUE %s MAXVALUE %s CACHE %s CYCLE %s OWNED BY %s',
			  s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
			  s.seqcycle,
			  (SELECT pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
				 FROM pg_depend d
				WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
				  AND d.deptype = 'a'))
  FROM rel c JOIN pg_sequence s ON s.seqrelid = c.oid;

-- Installing 1.0 and updating along the script chain keeps the data and
-- ends with the same objects as a fresh install.
DROP EXTENSION hokusai_auth;
CREATE EXTENSION hokusai_auth VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'hokusai_auth';
SELECT version, installed FROM pg_available_extension_versions
 WHERE name = 'hokusai_auth' ORDER BY version;
SELECT source, target FROM pg_extension_update_paths('hokusai_auth')
 WHERE path IS NOT NULL ORDER BY source, target;
SELECT hokusai_auth.create_user('ivy') AS ivy \gset
SELECT * FROM hokusai_auth.create_key(:'ivy', 'made on 1.0') \gset old_
ALTER EXTENSION hokusai_auth UPDATE;
SELECT extversion = (SELECT default_version FROM pg_available_extensions
					  WHERE name = 'hokusai_auth') AS at_default_version
  FROM pg_extension WHERE extname = 'hokusai_auth';
SELECT status FROM hokusai_auth.validate_key(:'old_key');
SELECT name FROM hokusai_auth.update_key(:'old_id', name => 'renamed on 1.1');

-- The grants the set-up functions make are compared too.
SELECT hokusai_auth.setup_http_roles('regress_mig_cmp_auth', 'regress_mig_cmp_anon', 'regress_mig_cmp_api');
SELECT hokusai_auth.setup_admin_role('regress_mig_cmp_admin');
CREATE TEMP TABLE upgraded AS SELECT * FROM pg_temp.extension_objects;

-- CREATE EXTENSION runs hokusai_auth--1.6.sql, built from sql/install/.
DROP EXTENSION hokusai_auth;
CREATE EXTENSION hokusai_auth;
SELECT hokusai_auth.setup_http_roles('regress_mig_cmp_auth', 'regress_mig_cmp_anon', 'regress_mig_cmp_api');
SELECT hokusai_auth.setup_admin_role('regress_mig_cmp_admin');
CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.extension_objects;

-- What was compared: every kind of object is there.
SELECT kind, count(DISTINCT object) > 0 AS compared FROM fresh GROUP BY kind ORDER BY kind;
SELECT count(*) > 30 AS many_members FROM fresh WHERE kind = 'member';

-- Differences, both ways: none.
(SELECT 'only upgraded' AS side, * FROM upgraded EXCEPT SELECT 'only upgraded', * FROM fresh)
UNION ALL
(SELECT 'only fresh', * FROM fresh EXCEPT SELECT 'only fresh', * FROM upgraded)
ORDER BY object, property, side;
DROP EXTENSION hokusai_auth;
DROP ROLE regress_mig_cmp_auth, regress_mig_cmp_anon, regress_mig_cmp_api, regress_mig_cmp_admin;
CREATE EXTENSION hokusai_auth;

-- 1.4 -> 1.5: audit rows chained by 1.4 stay verifiable, and the chain
-- goes on from them with rows sealed after commit.
DROP EXTENSION hokusai_auth;
CREATE EXTENSION hokusai_auth VERSION '1.4';
SELECT hokusai_auth.create_user('jay') AS jay \gset
SELECT * FROM hokusai_auth.create_key(:'jay', 'chained by 1.4') \gset j14_
SELECT hokusai_auth.revoke_key(:'j14_id') AS revoked_on_14;
SELECT hokusai_auth.verify_audit_chain() IS NULL AS intact_on_14;
ALTER EXTENSION hokusai_auth UPDATE TO '1.5';
SELECT hokusai_auth.verify_audit_chain() IS NULL AS intact_after_update,
       count(*) FILTER (WHERE seq IS NULL) AS unsealed
  FROM hokusai_auth.audit_log;
SELECT * FROM hokusai_auth.create_key(:'jay', 'sealed by 1.5') \gset j15_
SELECT hokusai_auth.seal_audit_log() AS sealed;
SELECT hokusai_auth.verify_audit_chain() IS NULL AS intact_and_extended,
       count(*) AS audit_rows FROM hokusai_auth.audit_log;
SELECT a.prev_hash = p.row_hash AS new_row_links_to_old
  FROM hokusai_auth.audit_log a, hokusai_auth.audit_log p
 WHERE a.api_key_id = :'j15_id' AND p.api_key_id = :'j14_id' AND p.action = 'revoke';
SELECT status FROM hokusai_auth.validate_key(:'j14_key');
DROP EXTENSION hokusai_auth;
CREATE EXTENSION hokusai_auth;

-- 1.5 -> 1.6: until the update, the 1.6 library answers 1.5's validate_key()
-- (three arguments, eight OUT columns); the update replaces it with the
-- five-argument function returning hokusai_auth.validation, and a role that
-- could run the old one can run the new one.
DROP EXTENSION hokusai_auth;
CREATE EXTENSION hokusai_auth VERSION '1.5';
CREATE ROLE regress_mig_validator;
GRANT USAGE ON SCHEMA hokusai_auth TO regress_mig_validator;
GRANT EXECUTE ON FUNCTION hokusai_auth.validate_key(text, inet, text) TO regress_mig_validator;
SELECT hokusai_auth.create_user('kim') AS kim \gset
SELECT * FROM hokusai_auth.create_key(:'kim', 'made on 1.5') \gset k15_
SELECT valid, status, remaining IS NOT NULL AS has_remaining
  FROM hokusai_auth.validate_key(:'k15_key', NULL, '/on-1.5');
ALTER EXTENSION hokusai_auth UPDATE TO '1.6';
SELECT has_function_privilege('regress_mig_validator',
	'hokusai_auth.validate_key(text, inet, text, integer, text[])', 'EXECUTE') AS may_validate,
       to_regprocedure('hokusai_auth.validate_key(text, inet, text)') AS old_validate_key;
SELECT pg_typeof(hokusai_auth.validate_key(:'k15_key')) AS result_type;
SELECT valid, status, credits_remaining FROM hokusai_auth.validate_key(:'k15_key');
SELECT scopes, credits_remaining, status FROM hokusai_auth.list_keys(:'kim');
DROP EXTENSION hokusai_auth;
DROP ROLE regress_mig_validator;
CREATE EXTENSION hokusai_auth;

-- 1.5 -> 1.6, usage at volume: raw rows move into daily partitions (not
-- members of the extension), the minute and hour aggregates are summed from
-- them, and hours 1.5 rolled up before pruning their raw rows keep their
-- rollups: the summary over the whole range answers as before.
DROP EXTENSION hokusai_auth;
CREATE EXTENSION hokusai_auth VERSION '1.5';
SET TimeZone = 'UTC';
SELECT hokusai_auth.create_user('lee') AS lee \gset
SELECT id AS lk FROM hokusai_auth.create_key(:'lee', 'usage on 1.5') \gset
SELECT date_trunc('hour', now()) - interval '3 days' AS t0, date_trunc('hour', now()) AS t1 \gset
INSERT INTO hokusai_auth.api_key_usage (api_key_id, endpoint, "timestamp", response_time_ms, status_code)
SELECT :'lk', '/e' || (i % 3), :'t0'::timestamptz + i * interval '75 seconds', (i * 7) % 40,
	   CASE WHEN i % 10 = 0 THEN 500 ELSE 200 END
  FROM generate_series(0, 72 * 48 - 1) i;
SELECT hokusai_auth.rollup_usage() >= 72 AS rolled_up;
SELECT hokusai_auth.prune_usage('2 days') > 0 AS pruned;
CREATE TEMP TABLE summary_15 AS
SELECT * FROM hokusai_auth.usage_summary(:'lk', :'t0', :'t1');
CREATE TEMP TABLE raw_15 AS SELECT * FROM hokusai_auth.api_key_usage;
ALTER EXTENSION hokusai_auth UPDATE TO '1.6';
SELECT (SELECT count(*) FROM hokusai_auth.api_key_usage) = (SELECT count(*) FROM raw_15) AS raw_rows_moved,
	   NOT EXISTS (SELECT * FROM raw_15 EXCEPT SELECT * FROM hokusai_auth.api_key_usage) AS same_rows;
SELECT count(*) > 0 AS partitions,
	   count(*) FILTER (WHERE EXISTS (SELECT FROM pg_depend d
									   WHERE d.objid = p.partition AND d.deptype = 'e')) AS members
  FROM hokusai_auth.usage_partitions p;
SELECT to_regclass('hokusai_auth.api_key_usage_1_5') AS old_raw, to_regclass('hokusai_auth.usage_rollup_state') AS rollup_state;
SELECT n.requests = o.requests AS requests, n.errors = o.errors AS errors,
	   n.server_errors = o.server_errors AS server_errors,
	   n.avg_response_ms = o.avg_response_ms AS avg, n.max_response_ms = o.max_response_ms AS max,
	   n.by_status = o.by_status AS by_status, n.by_endpoint = o.by_endpoint AS by_endpoint,
	   abs(n.p50_response_ms - o.p50_response_ms) <= 0.25 * o.p50_response_ms AS p50_close,
	   abs(n.p95_response_ms - o.p95_response_ms) <= 0.25 * o.p95_response_ms AS p95_close
  FROM hokusai_auth.usage_summary(:'lk', :'t0', :'t1') n, summary_15 o;
-- Where the raw rows are whole, the aggregates are the raw log's.
SELECT s.requests = r.n AS requests, s.errors = r.e AS errors, s.max_response_ms = r.mx AS max
  FROM hokusai_auth.usage_summary(:'lk', :'t1'::timestamptz - interval '1 day', :'t1') s,
	   (SELECT count(*) n, count(*) FILTER (WHERE status_code >= 400) e, max(response_time_ms) mx
		  FROM raw_15 WHERE "timestamp" >= :'t1'::timestamptz - interval '1 day'
		   AND "timestamp" < :'t1') r;
RESET TimeZone;
DROP EXTENSION hokusai_auth;
CREATE EXTENSION hokusai_auth;

-- 1.3 -> 1.4: pre_request() becomes C, 1.3's PL/pgSQL helpers
-- _http_authenticate() and _http_client_ip() go, and the HTTP roles keep
-- their grant on pre_request().
DROP EXTENSION hokusai_auth;
CREATE EXTENSION hokusai_auth VERSION '1.3';
SELECT hokusai_auth.setup_http_roles('regress_mig_auth', 'regress_mig_anon', 'regress_mig_api');
SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid = 'hokusai_auth.pre_request()'::regprocedure;
SELECT to_regprocedure('hokusai_auth._http_authenticate(text)') IS NOT NULL AS has_http_authenticate;
ALTER EXTENSION hokusai_auth UPDATE TO '1.4';
SELECT l.lanname, p.prosecdef FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid = 'hokusai_auth.pre_request()'::regprocedure;
SELECT to_regprocedure('hokusai_auth._http_authenticate(text)') AS http_authenticate,
       to_regprocedure('hokusai_auth._http_client_ip(text)') AS http_client_ip;
SELECT r AS role, has_function_privilege(r, 'hokusai_auth.pre_request()', 'EXECUTE') AS may_run
  FROM unnest(ARRAY['regress_mig_anon', 'regress_mig_api', 'regress_mig_auth']) r ORDER BY 1;
SELECT obj_description('hokusai_auth.pre_request()'::regprocedure, 'pg_proc') IS NOT NULL AS has_comment;
-- setup_http_roles() of 1.4 runs again on the updated database.
SELECT hokusai_auth.setup_http_roles('regress_mig_auth', 'regress_mig_anon', 'regress_mig_api');
DROP EXTENSION hokusai_auth;
DROP ROLE regress_mig_auth, regress_mig_anon, regress_mig_api;
CREATE EXTENSION hokusai_auth;
