--
-- keys: create, list, revoke and rotate keys; the key format and its hash.
--
SET hokusai_auth.bcrypt_cost = 4;
\set SHOW_CONTEXT never

-- An independent CRC-32 (IEEE, as zlib computes it) and base62 encoding, to
-- check the checksum the C code writes.
\i test/lib/key_checksum.sql
-- CRC-32 of "123456789" is the standard check value cbf43926.
SELECT to_hex(hk_crc32('123456789'));

SELECT hokusai_auth.create_user('alice', 'alice@example.com') AS alice \gset
SELECT hokusai_auth.create_user('bob') AS bob \gset
SELECT username, email, is_active FROM hokusai_auth.users ORDER BY username;

-- A live key with defaults.
SELECT * FROM hokusai_auth.create_key(:'alice', 'ci deploys') \gset k1_
SELECT :'k1_key' ~ '^hk_live_[0-9A-Za-z]{46}$' AS shape,
       length(:'k1_key') AS length,
       :'k1_key_prefix' = left(:'k1_key', 16) AS prefix_is_head;
-- The scanner regex from the design finds it.
SELECT regexp_match('token=' || :'k1_key' || ';', '\mhk_(live|test)_[0-9A-Za-z]{46}\M') IS NOT NULL AS scanner_finds_it;
-- The checksum is base62(CRC-32) of the first 48 characters.
SELECT right(:'k1_key', 6) = hk_base62(hk_crc32(left(:'k1_key', 48)), 6) AS checksum_ok;
SELECT hokusai_auth.key_is_well_formed(:'k1_key') AS well_formed,
       hokusai_auth.key_prefix(:'k1_key') = :'k1_key_prefix' AS prefix_fn;

-- Only the hash is stored; it is a $2a$ bcrypt hash that plain SQL verifies.
SELECT key_prefix = :'k1_key_prefix' AS prefix_stored,
       key_hash ~ '^\$2a\$04\$' AS bcrypt_2a_cost4,
       crypt(:'k1_key', key_hash) = key_hash AS crypt_verifies,
       crypt(:'k1_key' || 'x', key_hash) = key_hash AS wrong_key_verifies,
       environment, name, rate_limit_per_hour, burst_limit, allowed_ips,
       metadata, is_active, expires_at, revoked_at, rotated_from
  FROM hokusai_auth.api_keys WHERE id = :'k1_id';
SELECT count(*) AS plaintext_rows
  FROM hokusai_auth.api_keys k WHERE k::text LIKE '%' || :'k1_key' || '%';

-- The cost follows hokusai_auth.bcrypt_cost.
SET hokusai_auth.bcrypt_cost = 10;
SELECT * FROM hokusai_auth.create_key(:'alice', 'cost ten', environment => 'test') \gset k2_
RESET hokusai_auth.bcrypt_cost;
SET hokusai_auth.bcrypt_cost = 4;
SELECT left(:'k2_key', 8) AS head, key_hash ~ '^\$2a\$10\$' AS cost10,
       crypt(:'k2_key', key_hash) = key_hash AS crypt_verifies
  FROM hokusai_auth.api_keys WHERE id = :'k2_id';

-- Every option, by name.
SELECT * FROM hokusai_auth.create_key(
	user_id => :'bob', name => 'partner feed', environment => 'test',
	expires_at => now() + interval '30 days', rate_limit_per_hour => 5000,
	burst_limit => 50, allowed_ips => '{10.0.0.0/8,2001:db8::/32}',
	metadata => '{"team": "data"}') \gset k3_
SELECT environment, expires_at = :'k3_expires_at' AS expiry_returned,
       expires_at > now() + interval '29 days' AS expiry_set,
       rate_limit_per_hour, burst_limit, allowed_ips, metadata
  FROM hokusai_auth.api_keys WHERE id = :'k3_id';

-- NULL limits take the GUC default; infinity means no expiry.
SET hokusai_auth.default_rate_limit_per_hour = 42;
SELECT * FROM hokusai_auth.create_key(:'bob', 'defaults',
	rate_limit_per_hour => NULL, expires_at => 'infinity') \gset k4_
RESET hokusai_auth.default_rate_limit_per_hour;
SELECT rate_limit_per_hour, burst_limit, expires_at FROM hokusai_auth.api_keys WHERE id = :'k4_id';

-- Keys are distinct.
SELECT count(DISTINCT key_prefix) = count(*) AS prefixes_unique,
       count(DISTINCT key_hash) = count(*) AS hashes_unique
  FROM hokusai_auth.api_keys;

-- list_keys: one user's keys, no key_hash column, with a status.
SELECT name, environment, status, key_prefix ~ '^hk_(live|test)_[0-9A-Za-z]{8}$' AS prefix_shape
  FROM hokusai_auth.list_keys(:'alice');
SELECT count(*) FROM hokusai_auth.list_keys(:'bob');
SELECT attname FROM pg_attribute
 WHERE attrelid = 'hokusai_auth.keys'::regclass AND attnum > 0 AND attname LIKE '%hash%';

-- revoke_key: soft, once.
SELECT hokusai_auth.revoke_key(:'k4_id', 'no longer needed') AS revoked;
SELECT hokusai_auth.revoke_key(:'k4_id') AS revoked_again;
SELECT is_active, revoked_at IS NOT NULL AS has_revoked_at
  FROM hokusai_auth.api_keys WHERE id = :'k4_id';
SELECT status FROM hokusai_auth.list_keys(:'bob') WHERE id = :'k4_id';

-- rotate_key with no grace: the old key is revoked now, the new one copies
-- name, limits, allowed_ips and metadata.
SELECT * FROM hokusai_auth.rotate_key(:'k3_id') \gset r3_
SELECT n.name, n.environment, n.rate_limit_per_hour, n.burst_limit, n.allowed_ips,
       n.metadata, n.rotated_from = o.id AS links_back,
       n.expires_at > now() + interval '29 days' AS keeps_lifetime,
       :'r3_key' <> :'k3_key' AS new_secret,
       left(:'r3_key', 8) AS head,
       o.is_active AS old_active, o.revoked_at IS NOT NULL AS old_revoked
  FROM hokusai_auth.api_keys n, hokusai_auth.api_keys o
 WHERE n.id = :'r3_id' AND o.id = :'k3_id';

-- rotate_key with grace: the old key keeps working until now() + grace.
SELECT * FROM hokusai_auth.rotate_key(:'k1_id', grace => '1 hour') \gset r1_
SELECT o.is_active AS old_active,
       o.expires_at BETWEEN now() + interval '59 minutes' AND now() + interval '61 minutes' AS old_ends_in_an_hour,
       n.expires_at IS NULL AS new_no_expiry
  FROM hokusai_auth.api_keys n, hokusai_auth.api_keys o
 WHERE n.id = :'r1_id' AND o.id = :'k1_id';
-- Grace never extends a key past its own expiry.
SELECT * FROM hokusai_auth.create_key(:'alice', 'short', expires_at => now() + interval '10 minutes') \gset k5_
SELECT * FROM hokusai_auth.rotate_key(:'k5_id', grace => '1 day') \gset r5_
SELECT expires_at = :'k5_expires_at'::timestamptz AS grace_capped
  FROM hokusai_auth.api_keys WHERE id = :'k5_id';

-- A key can be rotated once; its successor can be rotated again.
\set VERBOSITY sqlstate
SELECT * FROM hokusai_auth.rotate_key(:'k1_id') \gset
\set VERBOSITY default
SELECT * FROM hokusai_auth.rotate_key(:'r1_id') \gset r1b_
SELECT count(*) AS chain_length FROM hokusai_auth.api_keys
 WHERE id IN (:'k1_id', :'r1_id', :'r1b_id');

SELECT name, status FROM hokusai_auth.list_keys(:'alice');

-- A deactivated user gets no new key, by create_key() or rotate_key()
-- (55000 object_not_in_prerequisite_state), and keeps the keys it had:
-- nothing is issued that would start working on re-activation.
SELECT hokusai_auth.create_user('dora') AS dora \gset
SELECT * FROM hokusai_auth.create_key(:'dora', 'before') \gset d_
UPDATE hokusai_auth.users SET is_active = false WHERE id = :'dora';
\set VERBOSITY sqlstate
SELECT * FROM hokusai_auth.create_key(:'dora', 'after');
SELECT * FROM hokusai_auth.rotate_key(:'d_id');
SELECT * FROM hokusai_auth.rotate_key(:'d_id', grace => '1 hour');
\set VERBOSITY default
SELECT count(*) AS dora_keys, bool_and(rotated_from IS NULL) AS none_rotated,
       bool_and(expires_at IS NULL) AS old_key_untouched
  FROM hokusai_auth.api_keys WHERE user_id = :'dora';
UPDATE hokusai_auth.users SET is_active = true WHERE id = :'dora';
SELECT status FROM hokusai_auth.validate_key(:'d_key');
SELECT count(*) AS rotated_now FROM hokusai_auth.rotate_key(:'d_id');
-- The shape checks of a stored prefix and hash (api_keys_key_prefix_check,
-- api_keys_key_hash_check): one good row, then each way of being wrong.
CREATE FUNCTION pg_temp.try_key(prefix text, env text, hash text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO hokusai_auth.api_keys (key_hash, key_prefix, environment, user_id, name, rate_limit_per_hour)
	VALUES (hash, prefix, env, (SELECT id FROM hokusai_auth.users WHERE username = 'dora'), 'shape', 10);
	RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'stored';
EXCEPTION
	WHEN check_violation THEN
		RETURN 'refused: ' || (regexp_match(SQLERRM, '"(api_keys_[a-z_]+)"'))[1];
	WHEN raise_exception THEN
		RETURN 'accepted';
END
$$;
SELECT p.prefix, p.env, length(p.hash) AS hash_length, pg_temp.try_key(p.prefix, p.env, p.hash)
  FROM (VALUES ('hk_live_Ab3dEf9h', 'live', '$2a$04$' || repeat('x', 53)),
               ('hk_test_Ab3dEf9h', 'test', '$2a$12$' || repeat('./', 26) || 'Z'),
               ('hk_live_Ab3dEf9', 'live', '$2a$04$' || repeat('x', 53)),
               ('hk_live_Ab3dEf9hi', 'live', '$2a$04$' || repeat('x', 53)),
               ('hk_live_Ab3d-f9h', 'live', '$2a$04$' || repeat('x', 53)),
               ('hk_test_Ab3dEf9h', 'live', '$2a$04$' || repeat('x', 53)),
               ('hk_prod_Ab3dEf9h', 'live', '$2a$04$' || repeat('x', 53)),
               ('hk_live_Ab3dEf9é', 'live', '$2a$04$' || repeat('x', 53)),
               ('hk_live_Ab3dEf9h', 'live', '$2a$04$' || repeat('x', 52)),
               ('hk_live_Ab3dEf9h', 'live', '$2a$04$' || repeat('x', 54)),
               ('hk_live_Ab3dEf9h', 'live', '$2b$04$' || repeat('x', 53)),
               ('hk_live_Ab3dEf9h', 'live', '$2a$4$' || repeat('x', 54)),
               ('hk_live_Ab3dEf9h', 'live', '$2a$04$' || repeat('é', 53))) p(prefix, env, hash);
