--
-- privileges: what each kind of role can and cannot do, tried as that role.
--
SET hokusai_auth.bcrypt_cost = 4;
\set SHOW_CONTEXT never
\set VERBOSITY terse

SELECT hokusai_auth.setup_admin_role('regress_hk_admin');
SELECT hokusai_auth.setup_http_roles('regress_hk_auth', 'regress_hk_anon', 'regress_hk_api');
CREATE ROLE regress_hk_operator LOGIN IN ROLE regress_hk_admin;
CREATE ROLE regress_hk_nobody LOGIN;

SELECT hokusai_auth.create_user('priv_a') AS a \gset
SELECT hokusai_auth.create_user('priv_b') AS b \gset
SELECT id AS ka, key AS ka_key FROM hokusai_auth.create_key(:'a', 'a key') \gset
SELECT id AS kb FROM hokusai_auth.create_key(:'b', 'b key') \gset
-- (the audit suite tampered with the chain on purpose: compare, don't assume)
SELECT coalesce(hokusai_auth.verify_audit_chain(), 0) AS chain_before \gset

-- Every SECURITY DEFINER function pins search_path; nothing is granted to
-- PUBLIC in either schema.
SELECT p.oid::regprocedure FROM pg_proc p
 WHERE p.pronamespace IN ('hokusai_auth'::regnamespace, 'hokusai_api'::regnamespace)
   AND p.prosecdef
   AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%');
SELECT p.oid::regprocedure FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE p.pronamespace IN ('hokusai_auth'::regnamespace, 'hokusai_api'::regnamespace) AND a.grantee = 0;
SELECT c.oid::regclass FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.relnamespace IN ('hokusai_auth'::regnamespace, 'hokusai_api'::regnamespace) AND a.grantee = 0;
-- key_hash: only the owner has it.
SELECT r.rolname, has_column_privilege(r.rolname, 'hokusai_auth.api_keys', 'key_hash', 'SELECT') AS can_read_hash
  FROM pg_roles r WHERE r.rolname LIKE 'regress_hk_%' ORDER BY 1;

-- A role with no grants: nothing.
SET ROLE regress_hk_nobody;
SELECT count(*) FROM hokusai_auth.api_keys;
SELECT count(*) FROM hokusai_auth.keys;
SELECT * FROM hokusai_auth.validate_key(:'ka_key');
SELECT hokusai_auth.create_user('intruder');
SELECT count(*) FROM hokusai_api.keys;
RESET ROLE;

-- An administrator: manages keys, reads everything but key_hash.
SET ROLE regress_hk_operator;
SELECT count(*) > 0 AS sees_keys FROM hokusai_auth.keys;
SELECT id IS NOT NULL AS created FROM hokusai_auth.create_key(:'a', 'by admin');
SELECT hokusai_auth.revoke_key(:'kb', 'admin revokes');
SELECT status FROM hokusai_auth.validate_key(:'ka_key');
SELECT count(*) > 0 AS reads_audit FROM hokusai_auth.audit_log;
SELECT coalesce(hokusai_auth.verify_audit_chain(), 0) = :chain_before AS chain_unchanged;
SELECT key_hash FROM hokusai_auth.api_keys LIMIT 1;
SELECT * FROM hokusai_auth.api_keys LIMIT 1;
-- cannot forge usage or rewrite history
SELECT hokusai_auth.record_usage(:'ka', '/forged', 1, 200);
INSERT INTO hokusai_auth.api_key_usage (api_key_id, endpoint) VALUES (:'ka', '/forged');
UPDATE hokusai_auth.audit_log SET actor_role = 'someone else';
DELETE FROM hokusai_auth.audit_log;
INSERT INTO hokusai_auth.audit_log (action, actor_role, row_hash) VALUES ('create', 'me', '\x');
UPDATE hokusai_auth.audit_head SET last_hash = NULL;
UPDATE hokusai_auth.api_keys SET is_active = true WHERE id = :'kb';
-- nor create roles through the set-up functions
SELECT hokusai_auth.setup_admin_role('regress_hk_escalate');
RESET ROLE;

-- The API role, as PostgREST runs it for user A: only A's keys, no hashes,
-- no writes but through the hokusai_api functions.
BEGIN;
SET LOCAL ROLE regress_hk_api;
SELECT set_config('hokusai.user_id', :'a', true) \gset
SELECT count(*) AS own_keys FROM hokusai_api.keys;
SELECT count(*) AS visible_b_key FROM hokusai_api.keys WHERE id = :'kb';
SELECT count(*) AS table_rows, bool_and(user_id = :'a') AS all_own FROM hokusai_auth.api_keys;
SELECT key_hash FROM hokusai_auth.api_keys LIMIT 1;
ROLLBACK;
BEGIN;
SET LOCAL ROLE regress_hk_api;
SELECT set_config('hokusai.user_id', :'a', true) \gset
UPDATE hokusai_auth.api_keys SET rate_limit_per_hour = 1;
ROLLBACK;
BEGIN;
SET LOCAL ROLE regress_hk_api;
SELECT hokusai_auth.record_usage(:'ka', '/forged', 1, 200);
ROLLBACK;
BEGIN;
SET LOCAL ROLE regress_hk_api;
DELETE FROM hokusai_auth.audit_log;
ROLLBACK;

-- Nothing above changed what it must not have.
SELECT count(*) AS forged_usage FROM hokusai_auth.api_key_usage WHERE endpoint = '/forged';
SELECT is_active FROM hokusai_auth.api_keys WHERE id = :'kb';
SELECT coalesce(hokusai_auth.verify_audit_chain(), 0) = :chain_before AS chain_unchanged;
SELECT count(*) AS escalated FROM pg_roles WHERE rolname = 'regress_hk_escalate';

-- Clean up the cluster-wide roles.
DROP OWNED BY regress_hk_operator, regress_hk_nobody, regress_hk_admin, regress_hk_api,
	regress_hk_anon, regress_hk_auth;
DROP ROLE regress_hk_operator, regress_hk_nobody, regress_hk_admin, regress_hk_api,
	regress_hk_anon, regress_hk_auth;
