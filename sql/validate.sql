--
-- validate: every status validate_key() reports (except rate_limited).
--
SET hokusai_auth.bcrypt_cost = 4;
\set SHOW_CONTEXT never

SELECT hokusai_auth.create_user('carol') AS carol \gset
SELECT * FROM hokusai_auth.create_key(:'carol', 'app') \gset k_

-- ok: the full row.
SELECT valid, status, key_id = :'k_id' AS key_id_ok,
       user_id = :'carol' AS user_id_ok, rate_limit
  FROM hokusai_auth.validate_key(:'k_key');
-- Named notation, with an address and an endpoint.
SELECT valid, status FROM hokusai_auth.validate_key(key => :'k_key',
	client_ip => '192.0.2.7', endpoint => '/v1/things');

-- malformed: no table or bcrypt work, nothing about any key revealed.
SELECT status, valid, key_id, user_id, rate_limit
  FROM hokusai_auth.validate_key(NULL);
SELECT v.k AS input_kind, r.status
  FROM (VALUES
		('empty', ''),
		('short', 'hk_live_abc'),
		('bad env', 'hk_prod_' || substr(:'k_key', 9)),
		('bad char', left(:'k_key', 20) || '-' || substr(:'k_key', 22)),
		('upper head', 'HK_LIVE_' || substr(:'k_key', 9)),
		('one longer', :'k_key' || 'a'),
		('one shorter', left(:'k_key', 53)),
		('space', ' ' || left(:'k_key', 53)),
		('1 MB', repeat('a', 1024 * 1024)),
		('bad checksum', left(:'k_key', 48) ||
			CASE WHEN substr(:'k_key', 49, 1) = 'A' THEN 'B' ELSE 'A' END ||
			substr(:'k_key', 50))) AS v(k, key),
	   LATERAL hokusai_auth.validate_key(v.key) r;
-- A secret changed but checksum still wrong for it: malformed, not unknown.
SELECT status FROM hokusai_auth.validate_key(
	left(:'k_key', 30) || CASE WHEN substr(:'k_key', 31, 1) = 'x' THEN 'y' ELSE 'x' END || substr(:'k_key', 32));

-- unknown: well-formed keys that are not ours.  Build keys with correct
-- checksums using the same checksum the C code computes.
\i test/lib/key_checksum.sql
SELECT hk_with_checksum(left(:'k_key', 48)) = :'k_key' AS checksum_matches;
-- Unknown prefix.
SELECT status, key_id FROM hokusai_auth.validate_key(
	hk_with_checksum('hk_live_ZZZZZZZZ' || repeat('a', 32)));
-- Right prefix, wrong secret (with a valid checksum): unknown, and the
-- response reveals nothing about the key.
SELECT status, valid, key_id, user_id, rate_limit FROM hokusai_auth.validate_key(
	hk_with_checksum(left(:'k_key', 16) || repeat('a', 32)));
-- Right secret, wrong environment in the head: a different prefix, unknown.
SELECT status FROM hokusai_auth.validate_key(
	hk_with_checksum('hk_test_' || substr(:'k_key', 9, 40)));

-- expired: checked against the clock on every call.
SELECT * FROM hokusai_auth.create_key(:'carol', 'short lived',
	expires_at => clock_timestamp() + interval '1 second') \gset e_
SELECT status FROM hokusai_auth.validate_key(:'e_key');
SELECT pg_sleep(1.2);
SELECT status, valid, key_id = :'e_id' AS key_id_ok FROM hokusai_auth.validate_key(:'e_key');
-- Still "expired" once the worker has marked it inactive, as it does.
UPDATE hokusai_auth.api_keys SET is_active = false WHERE id = :'e_id';
SELECT status FROM hokusai_auth.validate_key(:'e_key');

-- revoked.
SELECT * FROM hokusai_auth.create_key(:'carol', 'to revoke') \gset r_
SELECT status FROM hokusai_auth.validate_key(:'r_key');
SELECT hokusai_auth.revoke_key(:'r_id');
SELECT status, valid FROM hokusai_auth.validate_key(:'r_key');
-- A revocation that rolls back leaves the key working.
BEGIN;
SELECT hokusai_auth.revoke_key(:'k_id');
SELECT status FROM hokusai_auth.validate_key(:'k_key');
ROLLBACK;
SELECT status FROM hokusai_auth.validate_key(:'k_key');
-- Revoked wins over expired.
SELECT * FROM hokusai_auth.create_key(:'carol', 'both',
	expires_at => clock_timestamp() + interval '1 second') \gset b_
SELECT hokusai_auth.revoke_key(:'b_id');
SELECT pg_sleep(1.1);
SELECT status FROM hokusai_auth.validate_key(:'b_key');

-- A deactivated owner's keys stop working.
SELECT hokusai_auth.create_user('dave') AS dave \gset
SELECT * FROM hokusai_auth.create_key(:'dave', 'dave key') \gset d_
UPDATE hokusai_auth.users SET is_active = false WHERE id = :'dave';
SELECT status FROM hokusai_auth.validate_key(:'d_key');
UPDATE hokusai_auth.users SET is_active = true WHERE id = :'dave';
SELECT status FROM hokusai_auth.validate_key(:'d_key');

-- Rotation: with grace both keys work until the grace ends.
SELECT * FROM hokusai_auth.rotate_key(:'d_id', grace => '1 second') \gset d2_
SELECT (SELECT status FROM hokusai_auth.validate_key(:'d_key')) AS old_key,
       (SELECT status FROM hokusai_auth.validate_key(:'d2_key')) AS new_key;
SELECT pg_sleep(1.2);
SELECT (SELECT status FROM hokusai_auth.validate_key(:'d_key')) AS old_key,
       (SELECT status FROM hokusai_auth.validate_key(:'d2_key')) AS new_key;
-- Without grace the old key is revoked at once.
SELECT * FROM hokusai_auth.rotate_key(:'d2_id') \gset d3_
SELECT (SELECT status FROM hokusai_auth.validate_key(:'d2_key')) AS old_key,
       (SELECT status FROM hokusai_auth.validate_key(:'d3_key')) AS new_key;

-- ip_denied: IPv4, IPv6 and IPv4-mapped IPv6 against allowed_ips.
SELECT * FROM hokusai_auth.create_key(:'carol', 'office only',
	allowed_ips => '{203.0.113.0/24,2001:db8:abcd::/48,198.51.100.7/32}') \gset i_
SELECT a.ip, r.status
  FROM (VALUES ('203.0.113.1'::inet), ('203.0.113.255'), ('203.0.114.1'),
			   ('198.51.100.7'), ('198.51.100.8'), ('2001:db8:abcd:12::1'),
			   ('2001:db8:abce::1'), ('::ffff:203.0.113.9'), ('::ffff:192.0.2.1'),
			   ('10.0.0.1')) AS a(ip),
	   LATERAL hokusai_auth.validate_key(:'i_key', a.ip) r;
-- A key with an allow-list is denied when no address is given.
SELECT status, valid FROM hokusai_auth.validate_key(:'i_key');
-- Keys without allowed_ips accept any address.
SELECT status FROM hokusai_auth.validate_key(:'k_key', '2001:db8::99');
-- An allow-list covering everything.
SELECT * FROM hokusai_auth.create_key(:'carol', 'anywhere',
	allowed_ips => '{0.0.0.0/0,::/0}') \gset a_
SELECT status FROM hokusai_auth.validate_key(:'a_key', '192.0.2.200');
SELECT status FROM hokusai_auth.validate_key(:'a_key', 'fe80::1');
-- An IP check happens only after the secret is proven.
SELECT status FROM hokusai_auth.validate_key(
	hk_with_checksum(left(:'i_key', 16) || repeat('b', 32)), '10.0.0.1');

-- The key text never appears in the tables.
SELECT count(*) AS leaks FROM hokusai_auth.api_keys k, hokusai_auth.audit_log a
 WHERE k::text LIKE '%' || :'k_key' || '%' OR a::text LIKE '%' || :'k_key' || '%';

-- After the first row of a status, validate_key copies its row from that
-- status's template and writes the call's values in (validate/row.c):
-- rows of one status for different keys, with the statuses interleaved,
-- each carry their own key, user, limit and remaining count.
SELECT hokusai_auth.create_user('rowtpl') AS rowtpl \gset
SELECT * FROM hokusai_auth.create_key(:'rowtpl', 'template', rate_limit_per_hour => 77) \gset t_
SELECT i, r.valid, r.status,
       r.key_id = CASE i % 4 WHEN 0 THEN :'k_id'::uuid WHEN 1 THEN :'t_id'::uuid
                             WHEN 2 THEN :'i_id'::uuid END AS key_id_ok,
       r.user_id = CASE i % 4 WHEN 1 THEN :'rowtpl'::uuid ELSE :'carol'::uuid END AS user_id_ok,
       r.rate_limit, CASE WHEN i % 4 = 1 THEN r.remaining ELSE -1 END AS t_remaining,
       r.remaining < r.rate_limit AS counted, r.reset_seconds,
       r.retry_after, r.credits_remaining
  FROM generate_series(0, 11) i,
       LATERAL hokusai_auth.validate_key(CASE i % 4 WHEN 0 THEN :'k_key' WHEN 1 THEN :'t_key'
                                         WHEN 2 THEN :'i_key' ELSE 'hk_live_junk' END) r
 ORDER BY i;
