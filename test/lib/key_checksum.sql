-- The key checksum, written independently of the C code: IEEE CRC-32 (as
-- zlib computes it) and base62 (0-9A-Za-z, most significant digit first).
-- Included with \i by the regression suites that forge well-formed keys
-- (keys, validate, cache) and by test/bench/flood_bench.sh.  Creates the
-- functions in the first schema of search_path.
\set hk_saved_echo :ECHO
\set ECHO none
CREATE OR REPLACE FUNCTION hk_crc32(t text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	crc bigint := 4294967295;
BEGIN
	FOR i IN 1..length(t) LOOP
		crc := crc # ascii(substr(t, i, 1));
		FOR j IN 1..8 LOOP
			IF crc & 1 = 1 THEN
				crc := (crc >> 1) # 3988292384;
			ELSE
				crc := crc >> 1;
			END IF;
		END LOOP;
	END LOOP;
	RETURN crc # 4294967295;
END $$;
CREATE OR REPLACE FUNCTION hk_base62(v bigint, width int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	digits text := '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
	r text := '';
BEGIN
	FOR i IN 1..width LOOP
		r := substr(digits, (v % 62)::int + 1, 1) || r;
		v := v / 62;
	END LOOP;
	RETURN r;
END $$;
-- head (the first 48 characters of a key) followed by its checksum.
CREATE OR REPLACE FUNCTION hk_with_checksum(head text) RETURNS text LANGUAGE sql AS $$
	SELECT head || hk_base62(hk_crc32(head), 6)
$$;
\set ECHO :hk_saved_echo
