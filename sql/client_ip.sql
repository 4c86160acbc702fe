--
-- client_ip: the client behind trusted proxies (X-Forwarded-For).
--
SHOW hokusai_auth.trusted_proxies;
SELECT h AS header, p AS peer, hokusai_auth.client_ip(h, p) AS client
  FROM (VALUES
	-- nginx on loopback appended the address it saw
	('203.0.113.7', NULL::inet),
	('203.0.113.7, 127.0.0.1', NULL),
	-- a client-supplied left part is not believed
	('6.6.6.6, 203.0.113.7', NULL),
	('6.6.6.6, 203.0.113.7, 127.0.0.1, ::1', NULL),
	-- IPv6, brackets, ports
	('2001:db8::5', NULL),
	('[2001:db8::5]:8443, 127.0.0.1', NULL),
	('198.51.100.9:55000', NULL),
	-- IPv4-mapped IPv6: trusted when its IPv4 form is
	('203.0.113.7, ::ffff:127.0.0.1', NULL),
	('::ffff:198.51.100.1', NULL),
	-- every hop trusted: the left-most
	('127.0.0.1, ::1', NULL),
	-- empty, blank and odd separators
	('', NULL),
	('  ,  , ', NULL),
	('203.0.113.7,,127.0.0.1,', NULL),
	-- garbage before the client: no answer
	('203.0.113.7, not-an-ip', NULL),
	('203.0.113.7, 127.0.0.1:port', NULL),
	('fe80::1%eth0', NULL),
	('[2001:db8::5', NULL),
	('1.2.3.4.5', NULL),
	-- garbage left of the client does not matter
	('junk, 203.0.113.7', NULL),
	-- an untrusted peer's header is ignored; a trusted peer's is used
	('203.0.113.7', '192.0.2.50'),
	('203.0.113.7', '127.0.0.1'),
	(NULL, '192.0.2.50'),
	(NULL, NULL),
	('', '127.0.0.1')
  ) AS t(h, p);
-- Too long a header gives no answer.
SELECT hokusai_auth.client_ip(repeat('1.2.3.4,', 2000)) IS NULL AS too_long_is_null;
SELECT hokusai_auth.client_ip(repeat(' ', 1000000)) IS NULL AS huge_blank_is_null;
-- The setting is checked when set.
SET hokusai_auth.trusted_proxies = '10.0.0.0/8';
ALTER SYSTEM SET hokusai_auth.trusted_proxies = '10.0.0.0/33';
ALTER SYSTEM SET hokusai_auth.trusted_proxies = 'localhost';
ALTER SYSTEM SET hokusai_auth.trusted_proxies = '10.0.0.0/8, 2001:db8::/32';
ALTER SYSTEM RESET hokusai_auth.trusted_proxies;
