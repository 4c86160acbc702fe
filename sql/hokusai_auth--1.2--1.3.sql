/* hokusai_auth 1.2 -> 1.3: the HTTP API for PostgREST (schema hokusai_api) */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION hokusai_auth UPDATE TO '1.3'" to load this file. \quit

-- Names in this script resolve in pg_catalog only: CREATE EXTENSION and
-- ALTER EXTENSION UPDATE otherwise search the schema they install into,
-- where a look-alike operator or function (say =(cidr[],cidr[]), more
-- specific than pg_catalog's anyarray one) would be bound for good into a
-- view, a trigger's WHEN clause or a default (DESIGN.md section 11).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- Request flow (docs/http.md): nginx -> PostgREST -> for every request,
-- as the role PostgREST chose, hokusai_auth.pre_request() (db-pre-request),
-- then the exposed object in schema hokusai_api.  No role is created here:
-- roles are cluster-wide and would survive DROP EXTENSION.  The operator runs
-- hokusai_auth.setup_http_roles() once, which creates (if missing) and grants.

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
CREATE FUNCTION hokusai_auth._http_error(status integer, code text, message text,
	details text DEFAULT NULL, hint text DEFAULT NULL, headers jsonb DEFAULT '{}')
	RETURNS void
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	-- For track_request(), which records the status when the transaction ends.
	PERFORM set_config('response.status', status::text, true);
	RAISE SQLSTATE 'PGRST'
		USING MESSAGE = json_build_object('code', code, 'message', message,
										  'details', details, 'hint', hint)::text,
			  DETAIL = json_build_object('status', status,
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

-- Right-most X-Forwarded-For address that is not a trusted proxy (the
-- left-most when all are); NULL without the header or when an entry
-- between the client and us is not an address.  The parser is the C one
-- in forwarded.c (fuzzed, see test/fuzz/).
CREATE FUNCTION hokusai_auth._http_client_ip(forwarded_for text)
	RETURNS inet
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT hokusai_auth.client_ip(forwarded_for) $$;

-- Does the work of pre_request() as the extension's owner: HTTPS check,
-- client address, API key or JWT subject, rate-limit headers, identity for
-- row-level security and the audit log.  Returns the role to switch to (the
-- API role, for a caller that PostgREST ran as the anonymous role), or NULL.
CREATE FUNCTION hokusai_auth._http_authenticate(invoker text)
	RETURNS text
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	headers	jsonb;
	api_key	text;
	proto	text;
	client	inet;
	sub		text;
	claims	text;
	v		record;
	endpoint text;
	rl		jsonb := '{}';
	resp	text;
	prefix	text;
	api_role text := nullif(current_setting('hokusai.api_role', true), '');
BEGIN
	headers := coalesce(nullif(current_setting('request.headers', true), ''), '{}')::jsonb;

	IF coalesce(current_setting('hokusai_auth.require_https', true), 'on')::boolean THEN
		-- The nearest proxy's value is the last one.
		proto := lower(btrim(substring(coalesce(headers ->> 'x-forwarded-proto', '') FROM '([^,]*)$')));
		IF proto IS DISTINCT FROM 'https' THEN
			PERFORM hokusai_auth._http_error(403, 'https_required', 'HTTPS is required',
				'The request did not arrive over HTTPS (X-Forwarded-Proto from a trusted proxy).',
				'Use https://.');
		END IF;
	END IF;

	-- The OpenAPI description (GET /) is public.
	IF current_setting('request.path', true) = '/' THEN
		RETURN NULL;
	END IF;

	client := hokusai_auth._http_client_ip(headers ->> 'x-forwarded-for');
	PERFORM set_config('hokusai.client_ip', coalesce(host(client), ''), true);

	claims := nullif(current_setting('request.jwt.claims', true), '');
	IF claims ~ '^\s*\{' THEN
		sub := claims::jsonb ->> 'sub';
	END IF;

	api_key := nullif(headers ->> 'x-api-key', '');
	IF api_key IS NOT NULL THEN
		endpoint := current_setting('request.method', true) || ' ' || current_setting('request.path', true);
		-- No endpoint here: track_request() below records the request once,
		-- with its response time and status, when the transaction ends.
		v := hokusai_auth.validate_key(api_key, client);
		IF v.rate_limit IS NOT NULL THEN
			rl := rl || jsonb_build_object('X-RateLimit-Limit', v.rate_limit::text);
		END IF;
		IF v.remaining IS NOT NULL THEN
			rl := rl || jsonb_build_object('X-RateLimit-Remaining', v.remaining::text);
		END IF;
		IF v.reset_seconds IS NOT NULL THEN
			rl := rl || jsonb_build_object('X-RateLimit-Reset', v.reset_seconds::text);
		END IF;
		IF NOT v.valid THEN
			prefix := hokusai_auth.key_prefix(api_key);
			CASE v.status
			WHEN 'rate_limited' THEN
				PERFORM hokusai_auth._http_error(429, 'rate_limited', 'rate limit exceeded',
					format('Key %s has used its requests for now.', prefix),
					'Retry after the number of seconds in Retry-After.',
					rl || jsonb_build_object('Retry-After',
						greatest(coalesce(v.retry_after, v.reset_seconds, 1), 1)::text));
			WHEN 'ip_denied' THEN
				PERFORM hokusai_auth._http_error(403, 'ip_denied',
					'this API key may not be used from this address',
					format('Key %s has an IP allow-list that does not include %s.',
						   prefix, coalesce(host(client), 'the client address')), NULL, rl);
			ELSE
				PERFORM hokusai_auth._http_error(401, v.status,
					CASE v.status
						WHEN 'malformed' THEN 'malformed API key'
						WHEN 'unknown' THEN 'unknown API key'
						WHEN 'revoked' THEN 'API key revoked'
						WHEN 'expired' THEN 'API key expired'
						ELSE 'invalid API key' END,
					CASE WHEN prefix IS NOT NULL THEN format('Key %s.', prefix) END, NULL,
					rl || '{"WWW-Authenticate": "Bearer error=\"invalid_token\""}');
			END CASE;
		END IF;
		IF sub IS NOT NULL AND sub IS DISTINCT FROM v.user_id::text THEN
			PERFORM hokusai_auth._http_error(401, 'conflicting_credentials',
				'the API key and the JWT belong to different users');
		END IF;
		PERFORM set_config('hokusai.api_key_id', v.key_id::text, true),
				set_config('hokusai.user_id', v.user_id::text, true);
		IF rl <> '{}' THEN
			resp := nullif(current_setting('response.headers', true), '');
			PERFORM set_config('response.headers',
				(coalesce(resp::jsonb, '[]') ||
				 (SELECT jsonb_agg(jsonb_build_object(key, value)) FROM jsonb_each(rl)))::text, true);
		END IF;
		PERFORM hokusai_auth.track_request(v.key_id, endpoint);
	ELSIF sub IS NOT NULL THEN
		IF sub !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
		   OR NOT EXISTS (SELECT FROM hokusai_auth.users u WHERE u.id = sub::uuid AND u.is_active) THEN
			PERFORM hokusai_auth._http_error(401, 'invalid_token',
				'the JWT subject is not an active user', NULL, NULL,
				'{"WWW-Authenticate": "Bearer error=\"invalid_token\""}');
		END IF;
		PERFORM set_config('hokusai.user_id', sub::uuid::text, true);
	ELSE
		PERFORM hokusai_auth._http_error(401, 'missing_credentials',
			'authentication required', NULL,
			'Send an API key (Authorization: Bearer hk_..., X-API-Key or ?api_key=) or a JWT.',
			'{"WWW-Authenticate": "Bearer"}');
	END IF;

	IF api_role IS NOT NULL AND invoker IS DISTINCT FROM api_role THEN
		RETURN api_role;
	END IF;
	RETURN NULL;
END
$$;

-- PostgREST's db-pre-request.  SECURITY INVOKER on purpose: only an invoker
-- may SET ROLE, which moves a caller that PostgREST ran as the anonymous
-- role (it had no JWT, only an API key) to the API role once authenticated.
CREATE FUNCTION hokusai_auth.pre_request()
	RETURNS void
	LANGUAGE plpgsql
	AS $$
DECLARE
	promote text := hokusai_auth._http_authenticate(current_user::text);
BEGIN
	IF promote IS NOT NULL THEN
		PERFORM pg_catalog.set_config('role', promote, true);
	END IF;
END
$$;
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
				ELSE 'active' END AS status
	  FROM hokusai_auth.api_keys k;
COMMENT ON VIEW hokusai_api.keys IS
	'The caller''s API keys, without hashes; status is active, expired or revoked';

-- POST /api/v1/auth/keys
CREATE FUNCTION hokusai_api.create_key(jsonb)
	RETURNS jsonb
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	body	jsonb := hokusai_auth._http_body($1, ARRAY['name', 'environment',
				'expires_at', 'rate_limit_per_hour', 'burst_limit', 'allowed_ips', 'metadata']);
	caller	uuid := hokusai_auth._http_caller();
	name	text := hokusai_auth._http_text(body, 'name', 200);
	env		text := coalesce(hokusai_auth._http_text(body, 'environment', 4), 'live');
	expires timestamptz := hokusai_auth._http_timestamp(hokusai_auth._http_text(body, 'expires_at', 64), 'expires_at');
	hourly	integer := hokusai_auth._http_int(body, 'rate_limit_per_hour', 1, 1000000000);
	burst	integer := hokusai_auth._http_int(body, 'burst_limit', 1, 1000000);
	ips		cidr[];
	meta	jsonb := body -> 'metadata';
	item	jsonb;
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
	IF jsonb_typeof(body -> 'allowed_ips') = 'array' THEN
		IF jsonb_array_length(body -> 'allowed_ips') NOT BETWEEN 1 AND 100 THEN
			PERFORM hokusai_auth._http_error(400, 'invalid_field',
				'allowed_ips must have 1 to 100 entries', NULL, 'Leave it out to allow every address.');
		END IF;
		ips := '{}';
		FOR item IN SELECT jsonb_array_elements(body -> 'allowed_ips') LOOP
			IF jsonb_typeof(item) <> 'string' OR item #>> '{}' !~ '^[0-9A-Fa-f:.]{2,45}(/[0-9]{1,3})?$' THEN
				PERFORM hokusai_auth._http_error(400, 'invalid_field',
					'allowed_ips must be an array of IP networks', NULL, 'For example ["10.0.0.0/8", "2001:db8::/32"].');
			END IF;
			BEGIN
				ips := ips || (item #>> '{}')::cidr;
			EXCEPTION WHEN invalid_text_representation OR invalid_binary_representation THEN
				PERFORM hokusai_auth._http_error(400, 'invalid_field',
					format('allowed_ips: "%s" is not a network', item #>> '{}'), NULL,
					'Write networks with no bits set right of the mask, e.g. 10.0.0.0/8.');
			END;
		END LOOP;
	ELSIF body ? 'allowed_ips' AND jsonb_typeof(body -> 'allowed_ips') <> 'null' THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'allowed_ips must be an array of IP networks');
	END IF;
	IF meta IS NULL OR jsonb_typeof(meta) = 'null' THEN
		meta := '{}';
	ELSIF jsonb_typeof(meta) <> 'object' THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'metadata must be a JSON object');
	ELSIF octet_length(meta::text) > 65536 THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'metadata must be at most 65536 bytes of JSON');
	END IF;

	nk := hokusai_auth.create_key(caller, name, environment => env, expires_at => expires,
		rate_limit_per_hour => hourly, burst_limit => burst, allowed_ips => ips, metadata => meta);
	SELECT * INTO k FROM hokusai_auth.keys WHERE id = nk.id;
	PERFORM set_config('response.status', '201', true);
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
	nk := hokusai_auth.rotate_key(k.id, make_interval(secs => grace));
	SELECT * INTO r FROM hokusai_auth.keys WHERE id = nk.id;
	PERFORM set_config('response.status', '201', true);
	RETURN jsonb_build_object('key', nk.key,
			'old_key_ends_at', (SELECT CASE WHEN o.revoked_at IS NOT NULL THEN o.revoked_at ELSE o.expires_at END
								 FROM hokusai_auth.api_keys o WHERE o.id = k.id))
		   || hokusai_auth._http_key_json(r);
END
$$;
COMMENT ON FUNCTION hokusai_api.rotate_key(jsonb) IS
	'Replace one of the caller''s keys; the new plaintext key is in this response only';

-- The usage summary of one of the caller's keys (hokusai_auth.usage_summary,
-- which reads as the owner: the ownership check is repeated here).
CREATE FUNCTION hokusai_auth._http_usage(key_id uuid, since timestamptz, "until" timestamptz)
	RETURNS jsonb
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k	hokusai_auth.api_keys;
BEGIN
	SELECT * INTO k FROM hokusai_auth.api_keys a
	 WHERE a.id = _http_usage.key_id AND a.user_id = hokusai_auth._http_user_id();
	IF NOT FOUND THEN
		PERFORM hokusai_auth._http_error(404, 'not_found', 'api key not found');
	END IF;
	RETURN jsonb_build_object('key_id', k.id, 'key_prefix', k.key_prefix,
							  'since', since, 'until', coalesce("until", now()))
		   || to_jsonb(s)
	  FROM hokusai_auth.usage_summary(k.id, since, "until") s;
END
$$;

-- GET /api/v1/auth/keys/{key_id}/usage?since=...&until=...
-- Finds the key through row-level security (SECURITY INVOKER): another
-- user's key is not found.
CREATE FUNCTION hokusai_api.key_usage(key_id text DEFAULT NULL, since text DEFAULT NULL,
	"until" text DEFAULT NULL)
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
	RETURN hokusai_auth._http_usage(kid, t_since, t_until);
END
$$;
COMMENT ON FUNCTION hokusai_api.key_usage(text, text, text) IS
	'Usage summary of one of the caller''s keys in [since, until) (default: all of it, until now)';

------------------------------------------------------------------------------
-- Roles for PostgREST.  Created by the operator, not by this script.
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth.setup_http_roles(
	authenticator text DEFAULT 'hokusai_authenticator',
	anon text DEFAULT 'hokusai_anon',
	api_user text DEFAULT 'hokusai_api_user')
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	SET client_min_messages = warning
	AS $$
DECLARE
	r	text;
BEGIN
	PERFORM hokusai_auth._check_text(authenticator, 'authenticator', 63);
	PERFORM hokusai_auth._check_text(anon, 'anon', 63);
	PERFORM hokusai_auth._check_text(api_user, 'api_user', 63);
	IF authenticator IN (anon, api_user) OR anon = api_user THEN
		RAISE EXCEPTION 'the three roles must be different'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOREACH r IN ARRAY ARRAY[anon, api_user] LOOP
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', r);
		END IF;
	END LOOP;
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = authenticator) THEN
		EXECUTE format('CREATE ROLE %I LOGIN NOINHERIT', authenticator);
	END IF;
	IF EXISTS (SELECT FROM pg_roles WHERE rolname IN (anon, api_user)
				AND (rolsuper OR rolbypassrls)) THEN
		RAISE EXCEPTION 'the anonymous and API roles must not be superusers or bypass row-level security'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	EXECUTE format('GRANT %I, %I TO %I', anon, api_user, authenticator);
	-- pre_request() moves an anonymous caller with a valid API key to api_user.
	EXECUTE format('GRANT %I TO %I', api_user, anon);
	EXECUTE format('ALTER ROLE %I SET hokusai.api_role = %L', authenticator, api_user);

	EXECUTE format('GRANT USAGE ON SCHEMA hokusai_auth TO %I, %I', anon, api_user);
	EXECUTE format('GRANT EXECUTE ON FUNCTION hokusai_auth.pre_request(), '
				   'hokusai_auth._http_authenticate(text) TO %I, %I', anon, api_user);
	EXECUTE format('GRANT USAGE ON SCHEMA hokusai_api TO %I', api_user);
	EXECUTE format('GRANT SELECT ON hokusai_api.keys TO %I', api_user);
	EXECUTE format('GRANT EXECUTE ON FUNCTION hokusai_api.create_key(jsonb), '
				   'hokusai_api.revoke_key(jsonb), hokusai_api.rotate_key(jsonb), '
				   'hokusai_api.key_usage(text, text, text) TO %I', api_user);
	-- What the security-invoker view and key_usage() read, under row-level
	-- security; never key_hash.
	EXECUTE format('GRANT SELECT (id, key_prefix, user_id, name, environment, created_at, '
				   'expires_at, last_used_at, is_active, rate_limit_per_hour, burst_limit, '
				   'allowed_ips, metadata, revoked_at, rotated_from) ON hokusai_auth.api_keys TO %I', api_user);
	EXECUTE format('GRANT SELECT ON hokusai_auth.api_key_usage TO %I', api_user);
	EXECUTE format('GRANT EXECUTE ON FUNCTION hokusai_auth._http_user_id(), hokusai_auth._http_error(integer, text, text, text, text, jsonb), '
				   'hokusai_auth._http_caller(), hokusai_auth._http_key_id(text), '
				   'hokusai_auth._http_timestamp(text, text), '
				   'hokusai_auth._http_usage(uuid, timestamptz, timestamptz) TO %I', api_user);
END
$$;
COMMENT ON FUNCTION hokusai_auth.setup_http_roles(text, text, text) IS
	'Create (if missing) and grant the PostgREST roles: authenticator (login), anon and api_user';

REVOKE ALL ON FUNCTION hokusai_auth._http_user_id() FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth._http_error(integer, text, text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth._http_body(jsonb, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth._http_text(jsonb, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth._http_int(jsonb, text, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth._http_timestamp(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth._http_key_id(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth._http_own_key(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth._http_caller() FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth._http_key_json(hokusai_auth.keys) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth._http_client_ip(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth._http_authenticate(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth._http_usage(uuid, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth.pre_request() FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth.setup_http_roles(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_api.create_key(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_api.revoke_key(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_api.rotate_key(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_api.key_usage(text, text, text) FROM PUBLIC;
REVOKE ALL ON hokusai_api.keys FROM PUBLIC;

------------------------------------------------------------------------------
-- Administrators: everything but secrets and history rewriting
------------------------------------------------------------------------------

-- Create (if missing) a NOLOGIN role for key administrators and grant it:
-- the public functions (not the set-up ones, not internals), reading every
-- view and table except api_keys.key_hash, and nothing that writes a table
-- directly, so usage cannot be forged and audit rows cannot be rewritten.
-- Grant the role to the people who administer keys.
CREATE FUNCTION hokusai_auth.setup_admin_role(admin text DEFAULT 'hokusai_admin')
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	f	regprocedure;
	v	regclass;
BEGIN
	PERFORM hokusai_auth._check_text(admin, 'admin', 63);
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = admin) THEN
		EXECUTE format('CREATE ROLE %I NOLOGIN', admin);
	END IF;
	EXECUTE format('GRANT USAGE ON SCHEMA hokusai_auth TO %I', admin);
	FOR f IN
		SELECT p.oid::regprocedure FROM pg_proc p
		 WHERE p.pronamespace = 'hokusai_auth'::regnamespace
		   AND p.proname !~ '^_' AND p.proname !~ '^setup_'
		   AND p.prokind = 'f'
	LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, admin);
	END LOOP;
	-- Not these: they write usage on the caller's word.
	EXECUTE format('REVOKE EXECUTE ON FUNCTION hokusai_auth.record_usage(uuid, text, integer, integer) FROM %I', admin);
	EXECUTE format('REVOKE EXECUTE ON FUNCTION hokusai_auth.track_request(uuid, text) FROM %I', admin);
	FOR v IN
		SELECT c.oid::regclass FROM pg_class c
		 WHERE c.relnamespace = 'hokusai_auth'::regnamespace
		   AND c.relkind IN ('r', 'v') AND c.relname <> 'api_keys'
	LOOP
		EXECUTE format('GRANT SELECT ON %s TO %I', v, admin);
	END LOOP;
	EXECUTE format('GRANT SELECT (id, key_prefix, user_id, name, environment, created_at, '
				   'expires_at, last_used_at, is_active, rate_limit_per_hour, burst_limit, '
				   'allowed_ips, metadata, revoked_at, rotated_from) ON hokusai_auth.api_keys TO %I',
				   admin);
END
$$;
COMMENT ON FUNCTION hokusai_auth.setup_admin_role(text) IS
	'Create and grant a role for key administrators: manage keys, read everything but key_hash, write no table directly';
REVOKE ALL ON FUNCTION hokusai_auth.setup_admin_role(text) FROM PUBLIC;
