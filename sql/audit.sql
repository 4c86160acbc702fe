--
-- audit: one row per key operation, with the actor and no secrets;
-- append-only and hash-chained.
--
SET hokusai_auth.bcrypt_cost = 4;
\set SHOW_CONTEXT never

SELECT coalesce(max(id), 0) AS rows_before FROM hokusai_auth.audit_log \gset
SELECT hokusai_auth.create_user('grace') AS grace \gset
SELECT * FROM hokusai_auth.create_key(:'grace', 'audited', metadata => '{"a": 1}',
	allowed_ips => '{192.0.2.0/24}') \gset k_
SELECT * FROM hokusai_auth.rotate_key(:'k_id', grace => '5 minutes') \gset r_
SELECT hokusai_auth.revoke_key(:'r_id', 'rotated out');

-- A role that is not the owner: the actor is the calling role, not the
-- SECURITY DEFINER owner.
CREATE ROLE hk_regress_operator;
GRANT USAGE ON SCHEMA hokusai_auth TO hk_regress_operator;
GRANT EXECUTE ON FUNCTION hokusai_auth.create_key
	TO hk_regress_operator;
SET ROLE hk_regress_operator;
SELECT * FROM hokusai_auth.create_key(:'grace', 'by operator') \gset o_
-- ...who cannot read the tables or write the log directly.
SELECT count(*) FROM hokusai_auth.audit_log;
INSERT INTO hokusai_auth.audit_log (action, actor_role, row_hash) VALUES ('create', 'me', '\x');
SELECT key_hash FROM hokusai_auth.api_keys LIMIT 1;
RESET ROLE;

-- HTTP callers: the JWT subject, API key and client address recorded by
-- pre_request() are taken from transaction-local settings.
BEGIN;
SELECT set_config('request.jwt.claims', json_build_object('sub', :'grace', 'role', 'web')::text, true),
       set_config('hokusai.api_key_id', :'o_id', true),
       set_config('hokusai.client_ip', '198.51.100.23', true) \gset
SELECT hokusai_auth.revoke_key(:'o_id', 'via http') AS revoked;
COMMIT;
-- Garbage in request.jwt.claims or the hokusai.* settings does not break
-- the operation; the garbage is not recorded.
BEGIN;
SELECT set_config('request.jwt.claims', '{not json', true),
       set_config('hokusai.api_key_id', 'not-a-uuid', true),
       set_config('hokusai.client_ip', '999.1.1.1', true) \gset
SELECT * FROM hokusai_auth.create_key(:'grace', 'odd claims') \gset
COMMIT;

SELECT a.action,
       a.api_key_id = :'k_id' AS on_old, a.api_key_id = :'r_id' AS on_new,
       a.api_key_id = :'o_id' AS on_op,
       a.user_id = :'grace' AS user_ok,
       a.actor_role, a.actor_sub = :'grace' AS sub_ok,
       a.actor_key_id = :'o_id' AS actor_key_ok, a.client_addr,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(a.details) k) AS detail_keys
  FROM hokusai_auth.audit_log a
 WHERE a.id > :rows_before
 ORDER BY a.id;
SELECT details->>'reason' AS reason FROM hokusai_auth.audit_log
 WHERE action = 'revoke' AND id > :rows_before ORDER BY id;

-- No secrets: neither plaintext keys nor hashes appear in the log.
SELECT count(*) AS secret_rows
  FROM hokusai_auth.audit_log a
 WHERE a::text ~ 'hk_(live|test)_[0-9A-Za-z]{46}'
    OR a::text LIKE '%$2a$%'
    OR position(:'k_key' IN a::text) > 0
    OR position(:'r_key' IN a::text) > 0;

-- Append-only, even for the owner.
UPDATE hokusai_auth.audit_log SET actor_role = 'someone else';
DELETE FROM hokusai_auth.audit_log;
TRUNCATE hokusai_auth.audit_log;

-- Rows are appended unsealed (no lock held to commit); seal_audit_log()
-- chains the committed ones, which the worker does every flush_interval.
SELECT count(*) > 0 AS some_unsealed, bool_and(row_hash IS NULL AND prev_hash IS NULL) AS no_hashes_yet
  FROM hokusai_auth.audit_log WHERE seq IS NULL;
SELECT hokusai_auth.verify_audit_chain() AS first_broken_before_sealing;
SELECT hokusai_auth.seal_audit_log(max_rows => 0);
SELECT hokusai_auth.seal_audit_log(max_rows => NULL);
SELECT hokusai_auth.seal_audit_log(max_rows => 2) AS sealed_two;
SELECT hokusai_auth.seal_audit_log() > 0 AS sealed_the_rest;
SELECT hokusai_auth.seal_audit_log() AS nothing_left;
SELECT count(*) AS unsealed FROM hokusai_auth.audit_log WHERE seq IS NULL;
-- Chain order is the order of sealing, which here is id order.
SELECT bool_and(a.seq > p.seq) AS seq_follows_id
  FROM hokusai_auth.audit_log a
  JOIN hokusai_auth.audit_log p ON p.id = (SELECT max(id) FROM hokusai_auth.audit_log WHERE id < a.id);
-- A sealed row cannot be sealed again, even by the owner.
UPDATE hokusai_auth.audit_log SET seq = seq + 1000000 WHERE id = (SELECT max(id) FROM hokusai_auth.audit_log);
-- Sealing may not change what a row says.
BEGIN;
SELECT hokusai_auth.create_user('grace_unsealed') AS gu \gset
SELECT * FROM hokusai_auth.create_key(:'gu', 'unsealed') \gset u_
UPDATE hokusai_auth.audit_log SET seq = -1, row_hash = '\x00', actor_role = 'forged'
 WHERE api_key_id = :'u_id';
ROLLBACK;

-- The chain is intact...
SELECT hokusai_auth.verify_audit_chain() AS first_broken;
SELECT bool_and(prev_hash IS NOT NULL) AS all_linked, count(*) > 1 AS several
  FROM hokusai_auth.audit_log WHERE seq > (SELECT min(seq) FROM hokusai_auth.audit_log);
-- ...and tampering is caught.  A superuser disables the guard and deletes
-- the newest row: the chain's head still names it.
ALTER TABLE hokusai_auth.audit_log DISABLE TRIGGER USER;
SELECT max(id) AS newest FROM hokusai_auth.audit_log \gset
DELETE FROM hokusai_auth.audit_log WHERE id = :newest;
SELECT hokusai_auth.verify_audit_chain() = :newest AS tail_deletion_found;
ALTER TABLE hokusai_auth.audit_log ENABLE TRIGGER USER;
-- An edited row is caught at that row.
SELECT min(id) + 2 AS victim FROM hokusai_auth.audit_log WHERE id > :rows_before \gset
ALTER TABLE hokusai_auth.audit_log DISABLE TRIGGER USER;
UPDATE hokusai_auth.audit_log SET details = details || '{"reason": "nothing to see"}'
 WHERE id = :victim;
SELECT hokusai_auth.verify_audit_chain() = :victim AS tamper_found;
-- Deleting a row is caught at the row after it.
DELETE FROM hokusai_auth.audit_log WHERE id = :victim;
SELECT hokusai_auth.verify_audit_chain() = :victim + 1 AS deletion_found;
ALTER TABLE hokusai_auth.audit_log ENABLE TRIGGER USER;

DROP OWNED BY hk_regress_operator;
DROP ROLE hk_regress_operator;
