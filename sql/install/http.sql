
------------------------------------------------------------------------------
-- sql/install/http.sql: the HTTP API for PostgREST.  The client address
-- behind trusted proxies (client_ip()), the _http_* helpers, pre_request()
-- (the db-pre-request hook), row-level security for HTTP callers, and what
-- PostgREST exposes: schema hokusai_api.
--
-- Request flow (docs/http.md): nginx -> PostgREST -> for every request,
-- as the role PostgREST chose, hokusai_auth.pre_request() (db-pre-request),
-- then the exposed object in schema hokusai_api.  No role is created here:
-- roles are cluster-wide and would survive DROP EXTENSION.  The operator runs
-- hokusai_auth.setup_http_roles() (roles.sql) once, which creates (if
-- missing) and grants.
------------------------------------------------------------------------------

-- The client address behind trusted proxies (src/common/forwarded.c, src/http/client_ip.c).
CREATE FUNCTION hokusai_auth.client_ip(forwarded_for text, peer inet DEFAULT NULL)
	RETURNS inet
	AS 'MODULE_PATHNAME', 'hk_sql_client_ip'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION hokusai_auth.client_ip(text, inet) IS
	'The right-most X-Forwarded-For address outside hokusai_auth.trusted_proxies (peer when it is untrusted or the header is empty; NULL when the header is malformed)';

------------------------------------------------------------------------------
-- Helpers
------------------------------------------------------------------------------

-- The HTTP caller: the user id pre_request() set, else the JWT subject.
-- NULL outside an HTTP request.  A JWT subject that is not a uuid counts as
-- no caller.
CREATE FUNCTION hokusai_auth._http_user_id()
	RETURNS uuid
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT CASE WHEN u ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
				THEN u::uuid END
	  FROM (SELECT coalesce(nullif(current_setting('hokusai.user_id', true), ''),
				CASE WHEN current_setting('request.jwt.claims', true) ~ '^\s*\{'
					 THEN current_setting('request.jwt.claims', true)::jsonb ->> 'sub' END) AS u) s
$$;
COMMENT ON FUNCTION hokusai_auth._http_user_id() IS
	'The user an HTTP request acts for (hokusai.user_id, else the JWT sub); NULL when none';

-- Ends the request with an HTTP status and PostgREST's JSON error shape.
-- Messages quote what the client sent (an unknown field's name, an
-- allowed_ips item that is not a network), and a client may put a key
-- there: such a token is replaced before the error is raised, so it reaches
-- neither the response nor the server log.
CREATE FUNCTION hokusai_auth._http_error(status integer, code text, message text,
	details text DEFAULT NULL, hint text DEFAULT NULL, headers jsonb DEFAULT '{}')
	RETURNS void
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	key_token constant text := '(hk_(live|test)_)[0-9a-z]{9,}';
BEGIN
	-- For track_request(), which records the status when the transaction ends.
	PERFORM pg_catalog.set_config('response.status', status::text, true);
	RAISE SQLSTATE 'PGRST'
		USING MESSAGE = pg_catalog.json_build_object('code', code,
				'message', pg_catalog.regexp_replace(message, key_token, '\1(redacted)', 'gi'),
				'details', pg_catalog.regexp_replace(details, key_token, '\1(redacted)', 'gi'),
				'hint', pg_catalog.regexp_replace(hint, key_token, '\1(redacted)', 'gi'))::text,
			  DETAIL = pg_catalog.json_build_object('status', status,
										 'headers', coalesce(headers, '{}'))::text;
END
$$;

-- A request body: a JSON object with only the named members.
CREATE FUNCTION hokusai_auth._http_body(body jsonb, allowed text[])
	RETURNS jsonb
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	unknown text[];
BEGIN
	IF body IS NULL OR jsonb_typeof(body) = 'null' THEN
		RETURN '{}';
	END IF;
	IF jsonb_typeof(body) <> 'object' THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_body', 'the request body must be a JSON object');
	END IF;
	SELECT array_agg(left(k, 64) ORDER BY k) INTO unknown
	  FROM jsonb_object_keys(body) k WHERE k <> ALL (allowed);
	IF unknown IS NOT NULL THEN
		PERFORM hokusai_auth._http_error(400, 'unknown_field',
			format('unknown field%s in the request body: %s',
				   CASE WHEN cardinality(unknown) > 1 THEN 's' ELSE '' END,
				   array_to_string(unknown[1:5], ', ')),
			NULL, format('Allowed fields: %s.', array_to_string(allowed, ', ')));
	END IF;
	RETURN body;
END
$$;

-- A string member (NULL when absent or JSON null).
CREATE FUNCTION hokusai_auth._http_text(body jsonb, field text, max_length integer)
	RETURNS text
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v	jsonb := body -> field;
BEGIN
	IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
		RETURN NULL;
	END IF;
	IF jsonb_typeof(v) <> 'string' THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', format('%s must be a string', field));
	END IF;
	IF btrim(v #>> '{}') = '' THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', format('%s must not be empty', field));
	END IF;
	IF length(v #>> '{}') > max_length OR v #>> '{}' ~ '[[:cntrl:]]' THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			format('%s must be at most %s characters, without control characters', field, max_length));
	END IF;
	RETURN v #>> '{}';
END
$$;

-- An integer member in [min_value, max_value] (NULL when absent or JSON null).
CREATE FUNCTION hokusai_auth._http_int(body jsonb, field text, min_value integer, max_value integer)
	RETURNS integer
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v	jsonb := body -> field;
BEGIN
	IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
		RETURN NULL;
	END IF;
	IF jsonb_typeof(v) <> 'number' OR v::numeric <> trunc(v::numeric) THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', format('%s must be an integer', field));
	END IF;
	IF v::numeric < min_value OR v::numeric > max_value THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			format('%s must be between %s and %s', field, min_value, max_value));
	END IF;
	RETURN v::numeric::integer;
END
$$;

-- A bigint member in [min_value, max_value] (NULL when absent or JSON null).
CREATE FUNCTION hokusai_auth._http_bigint(body jsonb, field text, min_value bigint, max_value bigint)
	RETURNS bigint
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v	jsonb := body -> field;
BEGIN
	IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
		RETURN NULL;
	END IF;
	IF jsonb_typeof(v) <> 'number' OR v::numeric <> trunc(v::numeric) THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', format('%s must be an integer', field));
	END IF;
	IF v::numeric < min_value OR v::numeric > max_value THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			format('%s must be between %s and %s', field, min_value, max_value));
	END IF;
	RETURN v::numeric::bigint;
END
$$;

-- An RFC 3339 / ISO 8601 timestamp member (NULL when absent or JSON null).
CREATE FUNCTION hokusai_auth._http_timestamp(value text, field text)
	RETURNS timestamptz
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	IF value IS NULL THEN
		RETURN NULL;
	END IF;
	IF value !~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$' THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			format('%s must be an ISO 8601 timestamp', field), NULL,
			'For example 2030-01-31T12:00:00Z.');
	END IF;
	BEGIN
		RETURN value::timestamptz;
	EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format OR invalid_time_zone_displacement_value THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			format('%s must be an ISO 8601 timestamp', field));
	END;
	RETURN NULL;
END
$$;

-- The allowed_ips member of a request body: an array of 1 to 100 IP
-- networks (NULL when absent or JSON null).
CREATE FUNCTION hokusai_auth._http_cidrs(body jsonb)
	RETURNS cidr[]
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v		jsonb := body OPERATOR(pg_catalog.->) 'allowed_ips';
	item	jsonb;
	ips		cidr[] := '{}';
BEGIN
	IF v IS NULL OR pg_catalog.jsonb_typeof(v) OPERATOR(pg_catalog.=) 'null' THEN
		RETURN NULL;
	END IF;
	IF pg_catalog.jsonb_typeof(v) OPERATOR(pg_catalog.<>) 'array' THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'allowed_ips must be an array of IP networks');
	END IF;
	IF pg_catalog.jsonb_array_length(v) OPERATOR(pg_catalog.<) 1
	   OR pg_catalog.jsonb_array_length(v) OPERATOR(pg_catalog.>) 100 THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			'allowed_ips must have 1 to 100 entries', NULL, 'Leave it out to allow every address.');
	END IF;
	FOR item IN SELECT pg_catalog.jsonb_array_elements(v) LOOP
		IF pg_catalog.jsonb_typeof(item) OPERATOR(pg_catalog.<>) 'string'
		   OR (item OPERATOR(pg_catalog.#>>) '{}') OPERATOR(pg_catalog.!~) '^[0-9A-Fa-f:.]{2,45}(/[0-9]{1,3})?$' THEN
			PERFORM hokusai_auth._http_error(400, 'invalid_field',
				'allowed_ips must be an array of IP networks', NULL, 'For example ["10.0.0.0/8", "2001:db8::/32"].');
		END IF;
		BEGIN
			ips := ips OPERATOR(pg_catalog.||) (item OPERATOR(pg_catalog.#>>) '{}')::cidr;
		EXCEPTION WHEN invalid_text_representation OR invalid_binary_representation THEN
			PERFORM hokusai_auth._http_error(400, 'invalid_field',
				pg_catalog.format('allowed_ips: "%s" is not a network', item OPERATOR(pg_catalog.#>>) '{}'), NULL,
				'Write networks with no bits set right of the mask, e.g. 10.0.0.0/8.');
		END;
	END LOOP;
	RETURN ips;
END
$$;

-- The key a route acts on: the X-Hokusai-Key-Id header that nginx sets from
-- the path, or key_id in the body or arguments (PostgREST used directly).
CREATE FUNCTION hokusai_auth._http_key_id(given text)
	RETURNS uuid
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	from_path text;
	v		  text;
BEGIN
	IF current_setting('request.headers', true) ~ '^\s*\{' THEN
		from_path := nullif(current_setting('request.headers', true)::jsonb ->> 'x-hokusai-key-id', '');
	END IF;
	IF from_path IS NOT NULL AND given IS NOT NULL AND lower(from_path) <> lower(given) THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			'key_id in the request does not match the key id in the path');
	END IF;
	v := coalesce(from_path, given);
	IF v IS NULL THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'key_id is required');
	END IF;
	IF v !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'key_id must be a uuid');
	END IF;
	RETURN v::uuid;
END
$$;

-- The Location of a created key, /keys/{id}, added to response.headers
-- (kept: pre_request()'s rate-limit headers); nginx rewrites it to the
-- public path (proxy_redirect).
CREATE FUNCTION hokusai_auth._http_location(key_id uuid)
	RETURNS void
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	h	text := nullif(current_setting('response.headers', true), '');
BEGIN
	PERFORM set_config('response.headers',
		(coalesce(h::jsonb, '[]') || jsonb_build_array(jsonb_build_object('Location', '/keys/' || key_id)))::text,
		true);
END
$$;

-- The caller's key row, locked; 404 when it does not exist or is someone
-- else's (the two are indistinguishable on purpose).
CREATE FUNCTION hokusai_auth._http_own_key(key_id uuid)
	RETURNS hokusai_auth.api_keys
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k	hokusai_auth.api_keys;
BEGIN
	SELECT * INTO k FROM hokusai_auth.api_keys a
	 WHERE a.id = key_id AND a.user_id = hokusai_auth._http_user_id()
	   FOR UPDATE;
	IF NOT FOUND THEN
		PERFORM hokusai_auth._http_error(404, 'not_found', 'api key not found');
	END IF;
	RETURN k;
END
$$;

-- Who may call: an HTTP caller with a user id.
CREATE FUNCTION hokusai_auth._http_caller()
	RETURNS uuid
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	u	uuid := hokusai_auth._http_user_id();
BEGIN
	IF u IS NULL THEN
		PERFORM hokusai_auth._http_error(401, 'missing_credentials',
			'authentication required', NULL,
			'Send an API key (Authorization: Bearer hk_..., X-API-Key or ?api_key=) or a JWT.',
			'{"WWW-Authenticate": "Bearer"}');
	END IF;
	RETURN u;
END
$$;

-- A key row as the API shows it.
CREATE FUNCTION hokusai_auth._http_key_json(k hokusai_auth.keys)
	RETURNS jsonb
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT to_jsonb(k) - 'user_id'
$$;

------------------------------------------------------------------------------
-- pre_request: the db-pre-request hook
------------------------------------------------------------------------------

-- In C (src/http/pre_request.c): HTTPS check, client address, API key
-- or JWT subject, rate-limit headers, usage tracking, identity for
-- row-level security and the audit log, then the switch to the API role.
-- SECURITY INVOKER on purpose: only an invoker may switch role (SET ROLE);
-- the rows it reads (users, api_keys) are read as the schema's owner by the
-- C code itself.
CREATE FUNCTION hokusai_auth.pre_request()
	RETURNS void
	AS 'MODULE_PATHNAME', 'hk_sql_pre_request'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.pre_request() IS
	'PostgREST db-pre-request: authenticates by API key (X-API-Key) or JWT, sets rate-limit headers and the caller for row-level security';

------------------------------------------------------------------------------
-- Row-level security: a role that may use schema hokusai_api (an HTTP role)
-- sees only the rows of the HTTP caller.  Other roles are unaffected; the
-- owner and superusers bypass row-level security.
------------------------------------------------------------------------------

-- The caller is written out with built-in functions only (the same value as
-- _http_user_id()), so that roles without EXECUTE on our functions can still
-- read the tables they were granted.
ALTER TABLE hokusai_auth.api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY http_caller_keys ON hokusai_auth.api_keys
	USING (NOT (SELECT pg_catalog.has_schema_privilege('hokusai_api', 'USAGE'))
		   OR user_id::text = (SELECT coalesce(nullif(pg_catalog.current_setting('hokusai.user_id', true), ''),
				CASE WHEN pg_catalog.current_setting('request.jwt.claims', true) ~ '^\s*\{'
					 THEN pg_catalog.current_setting('request.jwt.claims', true)::jsonb ->> 'sub' END)));

ALTER TABLE hokusai_auth.api_key_usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY http_caller_usage ON hokusai_auth.api_key_usage
	USING (NOT (SELECT pg_catalog.has_schema_privilege('hokusai_api', 'USAGE'))
		   OR api_key_id IN (SELECT k.id FROM hokusai_auth.api_keys k));

------------------------------------------------------------------------------
-- What PostgREST exposes: schema hokusai_api
------------------------------------------------------------------------------

-- GET /api/v1/auth/keys: the caller's keys (row-level security), no hashes.
CREATE VIEW hokusai_api.keys WITH (security_invoker = true, security_barrier = true) AS
	SELECT k.id, k.key_prefix, k.name, k.environment, k.created_at, k.expires_at,
		   k.last_used_at, k.is_active, k.rate_limit_per_hour, k.burst_limit,
		   k.allowed_ips, k.metadata, k.revoked_at, k.rotated_from,
		   CASE WHEN k.revoked_at IS NOT NULL OR NOT k.is_active THEN 'revoked'
				WHEN k.expires_at <= now() THEN 'expired'
				WHEN k.disabled_at IS NOT NULL THEN 'disabled'
				ELSE 'active' END AS status,
		   k.scopes, k.disabled_at, k.credits_remaining, k.refill_amount,
		   k.refill_interval
	  FROM hokusai_auth.api_keys k;
COMMENT ON VIEW hokusai_api.keys IS
	'The caller''s API keys, without hashes; status is active, disabled, expired or revoked';

-- POST /api/v1/auth/keys
CREATE FUNCTION hokusai_api.create_key(jsonb)
	RETURNS jsonb
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	body	jsonb := hokusai_auth._http_body($1, ARRAY['name', 'environment',
				'expires_at', 'rate_limit_per_hour', 'burst_limit', 'allowed_ips', 'metadata',
				'scopes', 'credits', 'refill_amount', 'refill_interval']);
	caller	uuid := hokusai_auth._http_caller();
	name	text := hokusai_auth._http_text(body, 'name', 200);
	env		text := coalesce(hokusai_auth._http_text(body, 'environment', 4), 'live');
	expires timestamptz := hokusai_auth._http_timestamp(hokusai_auth._http_text(body, 'expires_at', 64), 'expires_at');
	hourly	integer := hokusai_auth._http_int(body, 'rate_limit_per_hour', 1, 1000000000);
	burst	integer := hokusai_auth._http_int(body, 'burst_limit', 1, 1000000);
	ips		cidr[] := hokusai_auth._http_cidrs(body);
	meta	jsonb := body -> 'metadata';
	scopes	text[] := coalesce(hokusai_auth._http_scopes(body), '{}');
	credits bigint := hokusai_auth._http_bigint(body, 'credits', 0, 9223372036854775807);
	refill	bigint := hokusai_auth._http_bigint(body, 'refill_amount', 1, 9223372036854775807);
	refill_every text := hokusai_auth._http_text(body, 'refill_interval', 5);
	nk		record;
	k		hokusai_auth.keys;
BEGIN
	IF name IS NULL THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'name is required');
	END IF;
	IF env NOT IN ('live', 'test') THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'environment must be "live" or "test"');
	END IF;
	IF expires IS NOT NULL AND expires <= now() THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'expires_at must be in the future');
	END IF;
	IF meta IS NULL OR jsonb_typeof(meta) = 'null' THEN
		meta := '{}';
	ELSIF jsonb_typeof(meta) <> 'object' THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'metadata must be a JSON object');
	ELSIF octet_length(meta::text) > 65536 THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'metadata must be at most 65536 bytes of JSON');
	END IF;

	IF (refill IS NULL) <> (refill_every IS NULL) THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			'refill_amount and refill_interval must be given together');
	END IF;
	IF refill_every NOT IN ('day', 'week', 'month') THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			'refill_interval must be "day", "week" or "month"');
	END IF;
	PERFORM hokusai_auth._http_check_grant(scopes);

	nk := hokusai_auth.create_key(caller, name, environment => env, expires_at => expires,
		rate_limit_per_hour => hourly, burst_limit => burst, allowed_ips => ips, metadata => meta,
		scopes => scopes, credits => credits, refill_amount => refill, refill_interval => refill_every);
	SELECT * INTO k FROM hokusai_auth.keys WHERE id = nk.id;
	PERFORM set_config('response.status', '201', true);
	PERFORM hokusai_auth._http_location(nk.id);
	RETURN jsonb_build_object('key', nk.key) || hokusai_auth._http_key_json(k);
END
$$;
COMMENT ON FUNCTION hokusai_api.create_key(jsonb) IS
	'Create an API key for the caller; the plaintext key is in this response only';

-- DELETE /api/v1/auth/keys/{key_id}
CREATE FUNCTION hokusai_api.revoke_key(jsonb)
	RETURNS jsonb
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	body	jsonb := hokusai_auth._http_body($1, ARRAY['key_id', 'reason']);
	caller	uuid := hokusai_auth._http_caller();
	reason	text := hokusai_auth._http_text(body, 'reason', 1000);
	k		hokusai_auth.api_keys := hokusai_auth._http_own_key(
				hokusai_auth._http_key_id(hokusai_auth._http_text(body, 'key_id', 64)));
	done	boolean;
	r		hokusai_auth.keys;
BEGIN
	done := hokusai_auth.revoke_key(k.id, reason);
	SELECT * INTO r FROM hokusai_auth.keys WHERE id = k.id;
	RETURN jsonb_build_object('revoked', done) || hokusai_auth._http_key_json(r);
END
$$;
COMMENT ON FUNCTION hokusai_api.revoke_key(jsonb) IS
	'Revoke one of the caller''s keys; "revoked" is false when it already was';

-- POST /api/v1/auth/keys/{key_id}/rotate
CREATE FUNCTION hokusai_api.rotate_key(jsonb)
	RETURNS jsonb
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	body	jsonb := hokusai_auth._http_body($1, ARRAY['key_id', 'grace_seconds']);
	caller	uuid := hokusai_auth._http_caller();
	grace	integer := coalesce(hokusai_auth._http_int(body, 'grace_seconds', 0, 2592000), 0);
	k		hokusai_auth.api_keys := hokusai_auth._http_own_key(
				hokusai_auth._http_key_id(hokusai_auth._http_text(body, 'key_id', 64)));
	nk		record;
	r		hokusai_auth.keys;
BEGIN
	IF k.revoked_at IS NOT NULL OR NOT k.is_active
	   OR (k.expires_at IS NOT NULL AND k.expires_at <= now())
	   OR EXISTS (SELECT FROM hokusai_auth.api_keys a WHERE a.rotated_from = k.id) THEN
		PERFORM hokusai_auth._http_error(409, 'conflict',
			'only an active key that has not been rotated can be rotated',
			format('Key %s is %s.', k.key_prefix,
				   CASE WHEN k.revoked_at IS NOT NULL OR NOT k.is_active THEN 'revoked'
						WHEN k.expires_at <= now() THEN 'expired'
						ELSE 'already rotated' END));
	END IF;
	-- The new key has the old one's scopes: a key with scopes may rotate
	-- only a key whose scopes it has.
	PERFORM hokusai_auth._http_check_grant(k.scopes);
	nk := hokusai_auth.rotate_key(k.id, make_interval(secs => grace));
	SELECT * INTO r FROM hokusai_auth.keys WHERE id = nk.id;
	PERFORM set_config('response.status', '201', true);
	PERFORM hokusai_auth._http_location(nk.id);
	RETURN jsonb_build_object('key', nk.key,
			'old_key_ends_at', (SELECT CASE WHEN o.revoked_at IS NOT NULL THEN o.revoked_at ELSE o.expires_at END
								 FROM hokusai_auth.api_keys o WHERE o.id = k.id))
		   || hokusai_auth._http_key_json(r);
END
$$;
COMMENT ON FUNCTION hokusai_api.rotate_key(jsonb) IS
	'Replace one of the caller''s keys; the new plaintext key is in this response only';

-- The credits of a key for the usage summary: the live balance and its
-- refill; null when the key is not metered.
CREATE FUNCTION hokusai_auth._http_credits(k hokusai_auth.api_keys)
	RETURNS jsonb
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	c	record;
BEGIN
	IF k.credits_remaining IS NULL THEN
		RETURN NULL;
	END IF;
	c := hokusai_auth._credits_status(coalesce(k.credits_key_id, k.id), k.refill_amount,
									  k.refill_interval);
	RETURN jsonb_build_object('remaining', coalesce(c.balance, k.credits_remaining),
							  'refill_amount', k.refill_amount,
							  'refill_interval', k.refill_interval,
							  'next_refill_at', c.next_refill_at);
END
$$;
-- PATCH /api/v1/auth/keys/{key_id}: change one of the caller's keys (name,
-- scopes, expiry, limits, allowed_ips, metadata, refill) and disable or
-- enable it, in one transaction.  A member given as null clears
-- expires_at, burst_limit or allowed_ips, and refill_amount with
-- refill_interval both null stops refills; absent members stay as they are.
CREATE FUNCTION hokusai_api.update_key(jsonb)
	RETURNS jsonb
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	body	jsonb := hokusai_auth._http_body($1, ARRAY['key_id', 'name', 'scopes',
				'expires_at', 'rate_limit_per_hour', 'burst_limit', 'allowed_ips', 'metadata',
				'refill_amount', 'refill_interval', 'disabled', 'reason']);
	caller	uuid := hokusai_auth._http_caller();
	k		hokusai_auth.api_keys := hokusai_auth._http_own_key(
				hokusai_auth._http_key_id(hokusai_auth._http_text(body, 'key_id', 64)));
	new_name text := hokusai_auth._http_text(body, 'name', 200);
	scopes	text[] := hokusai_auth._http_scopes(body);
	expires timestamptz := hokusai_auth._http_timestamp(hokusai_auth._http_text(body, 'expires_at', 64), 'expires_at');
	hourly	integer := hokusai_auth._http_int(body, 'rate_limit_per_hour', 1, 1000000000);
	burst	integer := hokusai_auth._http_int(body, 'burst_limit', 1, 1000000);
	ips		cidr[] := hokusai_auth._http_cidrs(body);
	meta	jsonb := body OPERATOR(pg_catalog.->) 'metadata';
	refill	bigint := hokusai_auth._http_bigint(body, 'refill_amount', 1, 9223372036854775807);
	refill_every text := hokusai_auth._http_text(body, 'refill_interval', 5);
	-- Both members given as null: no refill from now on.
	no_refill boolean := body OPERATOR(pg_catalog.?&) ARRAY['refill_amount', 'refill_interval']
				AND refill IS NULL AND refill_every IS NULL;
	disabled jsonb := body OPERATOR(pg_catalog.->) 'disabled';
	reason	text := hokusai_auth._http_text(body, 'reason', 1000);
	settings boolean := body OPERATOR(pg_catalog.?|) ARRAY['name', 'scopes', 'expires_at',
				'rate_limit_per_hour', 'burst_limit', 'allowed_ips', 'metadata',
				'refill_amount', 'refill_interval'];
	msg		text;
	r		hokusai_auth.keys;
BEGIN
	IF (body OPERATOR(pg_catalog.?) 'name' AND new_name IS NULL)
	   OR (body OPERATOR(pg_catalog.?) 'rate_limit_per_hour' AND hourly IS NULL) THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			'name and rate_limit_per_hour cannot be cleared', NULL, 'Leave a member out to keep its value.');
	END IF;
	IF body OPERATOR(pg_catalog.?) 'metadata'
	   AND pg_catalog.jsonb_typeof(meta) OPERATOR(pg_catalog.<>) 'object' THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'metadata must be a JSON object');
	END IF;
	IF NOT no_refill
	   AND ((body OPERATOR(pg_catalog.?) 'refill_amount' AND refill IS NULL)
			OR (body OPERATOR(pg_catalog.?) 'refill_interval' AND refill_every IS NULL)) THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			'refill_amount and refill_interval are cleared together', NULL,
			'Send "refill_amount": null, "refill_interval": null to stop refills.');
	END IF;
	IF refill_every OPERATOR(pg_catalog.<>) ALL (ARRAY['day', 'week', 'month']) THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			'refill_interval must be "day", "week" or "month"');
	END IF;
	IF (refill IS NULL) OPERATOR(pg_catalog.<>) (refill_every IS NULL)
	   AND k.refill_interval IS NULL THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			'refill_amount and refill_interval must be given together', NULL,
			pg_catalog.format('Key %s has no refill yet.', k.key_prefix));
	END IF;
	IF disabled IS NOT NULL AND pg_catalog.jsonb_typeof(disabled) OPERATOR(pg_catalog.<>) 'boolean' THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'disabled must be true or false');
	END IF;
	IF reason IS NOT NULL
	   AND (disabled IS NULL OR disabled OPERATOR(pg_catalog.<>) 'true'::jsonb) THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'reason goes with "disabled": true only');
	END IF;
	IF NOT settings AND disabled IS NULL THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_body', 'nothing to change', NULL,
			'Send one or more of name, scopes, expires_at, rate_limit_per_hour, burst_limit, allowed_ips, metadata, refill_amount, refill_interval, disabled.');
	END IF;
	IF scopes IS NOT NULL THEN
		PERFORM hokusai_auth._http_check_grant(scopes);
	END IF;

	BEGIN
		IF settings THEN
			PERFORM hokusai_auth.update_key(k.id, name => new_name, expires_at => expires,
				rate_limit_per_hour => hourly, burst_limit => burst, allowed_ips => ips,
				metadata => meta, scopes => scopes,
				refill_amount => refill, refill_interval => refill_every,
				clear_expires_at => body OPERATOR(pg_catalog.?) 'expires_at' AND expires IS NULL,
				clear_burst_limit => body OPERATOR(pg_catalog.?) 'burst_limit' AND burst IS NULL,
				clear_allowed_ips => body OPERATOR(pg_catalog.?) 'allowed_ips' AND ips IS NULL,
				clear_refill => no_refill);
		END IF;
		IF disabled OPERATOR(pg_catalog.=) 'true'::jsonb THEN
			PERFORM hokusai_auth.disable_key(k.id, reason);
		ELSIF disabled OPERATOR(pg_catalog.=) 'false'::jsonb THEN
			PERFORM hokusai_auth.enable_key(k.id);
		END IF;
	EXCEPTION
		WHEN object_not_in_prerequisite_state THEN
			GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
			PERFORM hokusai_auth._http_error(409, 'conflict', msg);
		WHEN invalid_parameter_value OR string_data_right_truncation
			 OR program_limit_exceeded OR null_value_not_allowed THEN
			GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
			PERFORM hokusai_auth._http_error(400, 'invalid_field', msg);
	END;
	SELECT * INTO r FROM hokusai_auth.keys v WHERE v.id OPERATOR(pg_catalog.=) k.id;
	RETURN hokusai_auth._http_key_json(r);
END
$$;
COMMENT ON FUNCTION hokusai_api.update_key(jsonb) IS
	'Change one of the caller''s keys (name, scopes, expiry, limits, allowed_ips, metadata, refill) and disable or enable it';

-- The usage summary of one of the caller's keys (hokusai_auth.usage_summary,
-- which reads as the owner: the ownership check is repeated here) and, with
-- series = 'hour', its hours (hokusai_auth.usage_timeseries): both read the
-- aggregates only.  A series needs since and covers at most 31 days (745
-- points at most, the hours that since and until cut included).
CREATE FUNCTION hokusai_auth._http_usage(key_id uuid, since timestamptz, "until" timestamptz,
	series text DEFAULT NULL)
	RETURNS jsonb
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k		hokusai_auth.api_keys;
	hi		timestamptz := coalesce("until", now());
	points	jsonb;
BEGIN
	IF series IS NOT NULL THEN
		IF series <> 'hour' THEN
			PERFORM hokusai_auth._http_error(400, 'invalid_field', 'series must be "hour"', NULL,
				'Leave series out for the summary alone.');
		END IF;
		IF since IS NULL THEN
			PERFORM hokusai_auth._http_error(400, 'invalid_field', 'since is required with series');
		END IF;
		IF hi - since > interval '31 days' THEN
			PERFORM hokusai_auth._http_error(400, 'invalid_field',
				'a series covers at most 31 days', NULL,
				'Ask for since and until at most 31 days apart, or leave series out for the summary alone.');
		END IF;
	END IF;
	SELECT * INTO k FROM hokusai_auth.api_keys a
	 WHERE a.id = _http_usage.key_id AND a.user_id = hokusai_auth._http_user_id();
	IF NOT FOUND THEN
		PERFORM hokusai_auth._http_error(404, 'not_found', 'api key not found');
	END IF;
	IF series IS NOT NULL THEN
		SELECT coalesce(jsonb_agg(jsonb_build_object('period_start', t.period_start,
													 'requests', t.requests,
													 'errors', t.errors,
													 'p95_response_ms', t.p95_response_ms)
								  ORDER BY t.period_start), '[]')
		  INTO points
		  FROM hokusai_auth.usage_timeseries(k.id, 'hour', since, hi) t;
	END IF;
	RETURN jsonb_build_object('key_id', k.id, 'key_prefix', k.key_prefix,
							  'since', since, 'until', hi)
		   || to_jsonb(s)
		   || jsonb_build_object('credits', hokusai_auth._http_credits(k))
		   || CASE WHEN series IS NOT NULL
				   THEN jsonb_build_object('series_period', series, 'series', points)
				   ELSE '{}' END
	  FROM hokusai_auth.usage_summary(k.id, since, hi) s;
END
$$;

-- GET /api/v1/auth/keys/{key_id}/usage?since=...&until=...&series=hour
-- Finds the key through row-level security (SECURITY INVOKER): another
-- user's key is not found.
CREATE FUNCTION hokusai_api.key_usage(key_id text DEFAULT NULL, since text DEFAULT NULL,
	"until" text DEFAULT NULL, series text DEFAULT NULL)
	RETURNS jsonb
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	caller	uuid := hokusai_auth._http_caller();
	kid		uuid := hokusai_auth._http_key_id(key_id);
	t_until timestamptz := hokusai_auth._http_timestamp("until", 'until');
	t_since timestamptz := hokusai_auth._http_timestamp(since, 'since');
BEGIN
	IF t_since > coalesce(t_until, now()) THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'since must not be later than until');
	END IF;
	IF NOT EXISTS (SELECT FROM hokusai_auth.api_keys k WHERE k.id = kid) THEN
		PERFORM hokusai_auth._http_error(404, 'not_found', 'api key not found');
	END IF;
	RETURN hokusai_auth._http_usage(kid, t_since, t_until, series);
END
$$;
COMMENT ON FUNCTION hokusai_api.key_usage(text, text, text, text) IS
	'Usage summary of one of the caller''s keys in [since, until) (default: all of it, until now); with series = ''hour'', its hours too (at most 31 days)';
