-- pg_temp.hk_plant_operator(schema, op, l, r): in schema, an operator
-- op(l, r) that calls schema.ran('operator op(l, r)') (which the test
-- defines: it tries to escalate and reports that it ran), then answers as
-- OPERATOR(pg_catalog.op).  Shared by the TAP tests that plant look-alikes
-- (010_cli.pl, 022_http_trust.pl); run it as the planting role.
CREATE FUNCTION pg_temp.hk_plant_operator(schema text, op text, l text, r text) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $plant$
DECLARE
	result regtype;
	fn text := format('op_%s', md5(format('%s %s %s', op, l, r)));
BEGIN
	EXECUTE format('SELECT pg_typeof(NULL::%s OPERATOR(pg_catalog.%s) NULL::%s)', l, op, r)
		INTO result;
	EXECUTE format($f$CREATE FUNCTION %I.%I(%s, %s) RETURNS %s
		LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $b$
BEGIN
	PERFORM %I.ran(%L);
	RETURN $1 OPERATOR(pg_catalog.%s) $2;
END
$b$$f$, schema, fn, l, r, result, schema, format('operator %s(%s, %s)', op, l, r), op);
	EXECUTE format('CREATE OPERATOR %I.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %I.%I)',
		schema, op, l, r, schema, fn);
END
$plant$;
