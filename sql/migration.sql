--
-- migration: DROP EXTENSION leaves nothing of ours behind, CREATE works
-- again, and versions install and update through the script chain.
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

CREATE TEMP TABLE upgraded AS
SELECT pg_describe_object(classid, objid, objsubid) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hokusai_auth');
DROP EXTENSION hokusai_auth;
CREATE EXTENSION hokusai_auth;
CREATE TEMP TABLE fresh AS
SELECT pg_describe_object(classid, objid, objsubid) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hokusai_auth');
SELECT count(*) > 30 AS many_objects FROM fresh;
(SELECT 'only upgraded' AS side, * FROM upgraded EXCEPT SELECT 'only upgraded', * FROM fresh)
UNION ALL
(SELECT 'only fresh', * FROM fresh EXCEPT SELECT 'only fresh', * FROM upgraded);

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
