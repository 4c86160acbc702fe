--
-- call_scan: validate_key() in FROM runs as a "Validation Call" custom scan
-- (src/validate/call_scan.c), with a Function Scan's results.  Each query
-- that counts calls runs once with the scan and once without
-- (hokusai_auth.enable_call_scan = off), and both must agree.
--
SET hokusai_auth.bcrypt_cost = 4;
\set SHOW_CONTEXT never

SELECT hokusai_auth.create_user('callie') AS callie \gset
SELECT key AS k FROM hokusai_auth.create_key(:'callie', 'scan',
	rate_limit_per_hour => 1000, burst_limit => 100) \gset

-- The plans: the custom scan, and a Function Scan when it is turned off.
EXPLAIN (COSTS OFF) SELECT valid FROM hokusai_auth.validate_key('hk_live_x');
EXPLAIN (COSTS OFF, VERBOSE) SELECT v.status FROM hokusai_auth.validate_key('hk_live_x') v
	WHERE v.remaining > 0;
SET hokusai_auth.enable_call_scan = off;
EXPLAIN (COSTS OFF) SELECT valid FROM hokusai_auth.validate_key('hk_live_x');
RESET hokusai_auth.enable_call_scan;

-- What keeps the Function Scan: a whole-row reference, WITH ORDINALITY,
-- two functions in ROWS FROM, and a function of another composite type.
EXPLAIN (COSTS OFF) SELECT v FROM hokusai_auth.validate_key('hk_live_x') v;
EXPLAIN (COSTS OFF) SELECT * FROM hokusai_auth.validate_key('hk_live_x') WITH ORDINALITY;
EXPLAIN (COSTS OFF) SELECT * FROM ROWS FROM (hokusai_auth.validate_key('hk_live_x'),
	hokusai_auth.validate_key('hk_live_y'));
CREATE TYPE public.validation AS (valid boolean);
CREATE FUNCTION public.not_ours(text) RETURNS public.validation
	LANGUAGE plpgsql AS 'BEGIN RETURN ROW(true); END';
EXPLAIN (COSTS OFF) SELECT valid FROM public.not_ours('x');
DROP FUNCTION public.not_ours(text);
DROP TYPE public.validation;

-- A subquery in the arguments: an InitPlan, still the custom scan.
EXPLAIN (COSTS OFF) SELECT status FROM hokusai_auth.validate_key((SELECT 'hk_live_x'));
SELECT status FROM hokusai_auth.validate_key((SELECT 'hk_live_x'));

-- Rows: every column, a filter, no column at all, and the whole row.
SELECT valid, status, user_id = :'callie' AS user_ok, rate_limit, remaining,
	   retry_after, credits_remaining
  FROM hokusai_auth.validate_key(:'k');
SELECT status, remaining FROM hokusai_auth.validate_key(:'k') v WHERE v.remaining < 1000;
SELECT status FROM hokusai_auth.validate_key(:'k') v WHERE v.remaining > 1000;
SELECT count(*) FROM hokusai_auth.validate_key(:'k');
SELECT (v).status, (v).remaining FROM hokusai_auth.validate_key(:'k') v;
-- Six calls with this one: 994 left.
SELECT remaining FROM hokusai_auth.validate_key(:'k');

-- The number of calls is a Function Scan's.  A LATERAL argument that
-- changes calls it once per row (3 calls); a scan on the inner side of a
-- nested loop whose arguments do not change calls it once (the rescans
-- hand on the same row, as a Function Scan reads its tuplestore again).
SET enable_material = off;
EXPLAIN (COSTS OFF) SELECT g, v.status FROM generate_series(1, 3) g
	LEFT JOIN hokusai_auth.validate_key('hk_live_x') v ON true;
SELECT g, v.status, v.remaining FROM generate_series(1, 3) g
	LEFT JOIN hokusai_auth.validate_key(:'k') v ON true;
SELECT g, v.status, v.remaining FROM generate_series(1, 3) g,
	LATERAL hokusai_auth.validate_key(:'k' || left(g::text, 0)) v;
-- The same queries as Function Scans: the same counts.
SET hokusai_auth.enable_call_scan = off;
SELECT g, v.status, v.remaining FROM generate_series(1, 3) g
	LEFT JOIN hokusai_auth.validate_key(:'k') v ON true;
SELECT g, v.status, v.remaining FROM generate_series(1, 3) g,
	LATERAL hokusai_auth.validate_key(:'k' || left(g::text, 0)) v;
RESET hokusai_auth.enable_call_scan;
RESET enable_material;
-- A filter that reads the outer row, under a LATERAL call.
SELECT g, v.status FROM generate_series(1, 3) g,
	LATERAL hokusai_auth.validate_key(:'k' || left(g::text, 0)) v
 WHERE v.remaining > 983 + g;

-- Prepared: the sixth execution uses a generic plan, still the custom scan.
PREPARE p(text) AS SELECT valid, status FROM hokusai_auth.validate_key($1);
EXECUTE p(:'k'); EXECUTE p(:'k'); EXECUTE p(:'k');
EXECUTE p(:'k'); EXECUTE p(:'k'); EXECUTE p(:'k');
EXECUTE p('hk_live_x');
EXPLAIN (COSTS OFF) EXECUTE p('hk_live_x');
DEALLOCATE p;

-- A function of the extension's type that returns NULL: a row of NULLs.
CREATE FUNCTION pg_temp.no_row() RETURNS hokusai_auth.validation
	LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
EXPLAIN (COSTS OFF) SELECT * FROM pg_temp.no_row();
SELECT valid IS NULL AS valid_null, status IS NULL AS status_null,
	   credits_remaining IS NULL AS credits_null
  FROM pg_temp.no_row();
SELECT g, n.status IS NULL AS status_null FROM generate_series(1, 2) g,
	LATERAL pg_temp.no_row() n;

-- A function of the extension's type that returns a row (read from the row,
-- not handed over as validate_key() hands its values over).
CREATE FUNCTION pg_temp.a_row() RETURNS hokusai_auth.validation
	LANGUAGE plpgsql AS $$BEGIN
	RETURN ROW(true, 'ok', NULL, '00000000-0000-0000-0000-00000000abcd', 5, 4, 3, 2, 1)::hokusai_auth.validation;
END$$;
EXPLAIN (COSTS OFF) SELECT * FROM pg_temp.a_row();
SELECT * FROM pg_temp.a_row();
SELECT credits_remaining, user_id, status FROM pg_temp.a_row() WHERE valid;

-- track_functions counts the scan's calls as a Function Scan's.
BEGIN;
SET LOCAL track_functions = 'all';
SELECT status FROM hokusai_auth.validate_key('hk_live_x');
SELECT g, v.status FROM generate_series(1, 2) g,
	LATERAL hokusai_auth.validate_key('hk_live_x' || left(g::text, 0)) v;
SET LOCAL hokusai_auth.enable_call_scan = off;
SELECT status FROM hokusai_auth.validate_key('hk_live_x');
SELECT calls FROM pg_stat_xact_user_functions WHERE funcname = 'validate_key';
COMMIT;

-- From PL/pgSQL.
DO $$
DECLARE
	st text;
BEGIN
	SELECT status INTO st FROM hokusai_auth.validate_key('hk_live_x');
	RAISE NOTICE 'status %', st;
END
$$;

-- The scan checks EXECUTE on the function as a Function Scan does: a role
-- that may use the schema but not the function is refused when the
-- executor starts (so EXPLAIN too), with the scan and without it.
CREATE ROLE regress_hk_call_scan;
GRANT USAGE ON SCHEMA hokusai_auth TO regress_hk_call_scan;
SET ROLE regress_hk_call_scan;
EXPLAIN (COSTS OFF) SELECT valid FROM hokusai_auth.validate_key('hk_live_x');
SELECT valid FROM hokusai_auth.validate_key('hk_live_x');
SET hokusai_auth.enable_call_scan = off;
SELECT valid FROM hokusai_auth.validate_key('hk_live_x');
RESET hokusai_auth.enable_call_scan;
RESET ROLE;
GRANT EXECUTE ON FUNCTION hokusai_auth.validate_key(text, inet, text, integer, text[])
	TO regress_hk_call_scan;
SET ROLE regress_hk_call_scan;
SELECT valid, status FROM hokusai_auth.validate_key('hk_live_x');
RESET ROLE;
REVOKE ALL ON FUNCTION hokusai_auth.validate_key(text, inet, text, integer, text[])
	FROM regress_hk_call_scan;
REVOKE ALL ON SCHEMA hokusai_auth FROM regress_hk_call_scan;
DROP ROLE regress_hk_call_scan;
