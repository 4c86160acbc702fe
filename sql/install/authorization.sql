
------------------------------------------------------------------------------
-- sql/install/authorization.sql: scopes, disable_key() and enable_key(),
-- require_scope() for pre_request(), and the caller of the current request
-- for row-level security (docs/authorization.md).
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- Scope names: 1 to 64 characters of [a-z0-9_.:-], optionally followed by
-- *, which grants every name that starts with what precedes it.  The same
-- rule is in C (src/validate/scopes.c), which checks validate_key()'s
-- required_scopes and decides what a key's scopes grant.
------------------------------------------------------------------------------

-- Checks a list of scopes (what names it in messages); NULL passes (the
-- callers decide what NULL means).  Messages never repeat the value.
CREATE FUNCTION hokusai_auth._check_scopes(scopes text[], what text DEFAULT 'scopes')
	RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	s	text;
	i	integer := 0;
BEGIN
	IF scopes IS NULL THEN
		RETURN;
	END IF;
	IF pg_catalog.array_ndims(scopes) OPERATOR(pg_catalog.>) 1 THEN
		RAISE EXCEPTION '% must be a one-dimensional array', what
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF pg_catalog.cardinality(scopes) OPERATOR(pg_catalog.>) 64 THEN
		RAISE EXCEPTION '% has too many entries', what
			USING ERRCODE = 'program_limit_exceeded',
				  DETAIL = 'The limit is 64 scopes.';
	END IF;
	FOREACH s IN ARRAY scopes LOOP
		i := i OPERATOR(pg_catalog.+) 1;
		IF s IS NULL THEN
			RAISE EXCEPTION '% must not contain nulls', what
				USING ERRCODE = 'null_value_not_allowed';
		END IF;
		IF s OPERATOR(pg_catalog.!~) '^[a-z0-9_.:-]{1,64}\*?$' THEN
			RAISE EXCEPTION 'invalid scope name in %', what
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = pg_catalog.format('Element %s is not 1 to 64 characters of a-z, 0-9, "_", ".", ":" and "-" with an optional trailing "*".', i),
					  HINT = 'For example: keys:read, models:predict, models:*.';
		END IF;
	END LOOP;
END
$$;

-- The first of wanted that no scope of granted covers (the grant rule of
-- src/validate/scopes.c, patterns included: models:* covers models:predict
-- and models:*, not models*); NULL when granted covers them all.
CREATE FUNCTION hokusai_auth._scopes_cover(granted text[], wanted text[])
	RETURNS text
	LANGUAGE sql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT w.name
	  FROM pg_catalog.unnest(wanted) WITH ORDINALITY w(name, n)
	 WHERE NOT EXISTS (
			SELECT FROM pg_catalog.unnest(granted) g(name)
			 WHERE g.name OPERATOR(pg_catalog.=) w.name
				OR (pg_catalog.right(g.name, 1) OPERATOR(pg_catalog.=) '*'
					AND pg_catalog.starts_with(w.name, pg_catalog.left(g.name, -1))))
	 ORDER BY w.n
	 LIMIT 1
$$;

------------------------------------------------------------------------------
-- disable_key() and enable_key(): reversible, audited, effective at commit
-- (the cache invalidation trigger of cache.sql watches disabled_at).
------------------------------------------------------------------------------

-- Refuses a key that can never work again: revoked (a rotation without
-- grace revokes too), or expired.
CREATE FUNCTION hokusai_auth._check_switchable(k hokusai_auth.api_keys, verb text)
	RETURNS void
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	IF k.revoked_at IS NOT NULL THEN
		RAISE EXCEPTION 'cannot % revoked api key %', verb, k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'A revoked key is revoked for good.';
	END IF;
	IF k.expires_at IS NOT NULL AND k.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() THEN
		RAISE EXCEPTION 'cannot % expired api key %', verb, k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF NOT k.is_active THEN
		RAISE EXCEPTION 'cannot % revoked api key %', verb, k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
END
$$;

CREATE FUNCTION hokusai_auth.disable_key(key_id uuid, reason text DEFAULT NULL)
	RETURNS boolean
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k	hokusai_auth.api_keys;
BEGIN
	IF reason IS NOT NULL THEN
		PERFORM hokusai_auth._check_text(reason, 'reason', 1000);
	END IF;
	k := hokusai_auth._key_for_update(key_id);
	PERFORM hokusai_auth._check_switchable(k, 'disable');
	IF k.disabled_at IS NOT NULL THEN
		RETURN false;
	END IF;
	UPDATE hokusai_auth.api_keys a SET disabled_at = pg_catalog.now()
	 WHERE a.id OPERATOR(pg_catalog.=) k.id;
	PERFORM hokusai_auth._audit('disable', k.id, k.user_id,
		pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
			'key_prefix', k.key_prefix, 'reason', reason)));
	RETURN true;
END
$$;
COMMENT ON FUNCTION hokusai_auth.disable_key(uuid, text) IS
	'Switch a key off until enable_key() (status disabled, from commit on); false when it already was';

CREATE FUNCTION hokusai_auth.enable_key(key_id uuid)
	RETURNS boolean
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k	hokusai_auth.api_keys;
BEGIN
	k := hokusai_auth._key_for_update(key_id);
	PERFORM hokusai_auth._check_switchable(k, 'enable');
	IF k.disabled_at IS NULL THEN
		RETURN false;
	END IF;
	UPDATE hokusai_auth.api_keys a SET disabled_at = NULL
	 WHERE a.id OPERATOR(pg_catalog.=) k.id;
	PERFORM hokusai_auth._audit('enable', k.id, k.user_id,
		pg_catalog.jsonb_build_object('key_prefix', k.key_prefix,
			'disabled_at', k.disabled_at));
	RETURN true;
END
$$;
COMMENT ON FUNCTION hokusai_auth.enable_key(uuid) IS
	'Switch a disabled key on again (from commit on); false when it was not disabled; a revoked or expired key cannot be enabled';

------------------------------------------------------------------------------
-- Route scopes: what pre_request() demands of an API key per request
-- (src/http/route_scopes.c).  Each backend keeps a copy of the table, read
-- again after any change (the statement trigger below).
------------------------------------------------------------------------------

CREATE TABLE hokusai_auth.route_scopes (
	method			text NOT NULL
		CONSTRAINT route_scopes_method_check
		CHECK (method IN ('*', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
	path_pattern	text NOT NULL
		CONSTRAINT route_scopes_path_pattern_check
		CHECK (path_pattern ~ '^/[A-Za-z0-9/_.~:@!$&''()+,;=%-]{0,199}\*?$'),
	scope			text NOT NULL
		CONSTRAINT route_scopes_scope_check
		CHECK (scope ~ '^[a-z0-9_.:-]{1,64}\*?$'),
	builtin			boolean NOT NULL DEFAULT false,
	PRIMARY KEY (method, path_pattern, scope)
);
COMMENT ON TABLE hokusai_auth.route_scopes IS
	'Scopes pre_request() demands of an API key per HTTP method and PostgREST path (require_scope())';
COMMENT ON COLUMN hokusai_auth.route_scopes.path_pattern IS
	'request.path as PostgREST sees it (/notes, /rpc/create_key); a trailing * matches any rest';
COMMENT ON COLUMN hokusai_auth.route_scopes.builtin IS
	'A key-management route''s own scope: demanded only of keys that have scopes';

CREATE FUNCTION hokusai_auth._route_scopes_changed()
	RETURNS trigger
	AS 'MODULE_PATHNAME', 'hk_sql_route_scopes_changed'
	LANGUAGE C;
CREATE TRIGGER route_scopes_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hokusai_auth.route_scopes
	FOR EACH STATEMENT EXECUTE FUNCTION hokusai_auth._route_scopes_changed();

-- The key-management routes (http.sql) as PostgREST sees them, whatever
-- the method: keys:read to list them, keys:write to change them,
-- usage:read for usage.
INSERT INTO hokusai_auth.route_scopes (method, path_pattern, scope, builtin) VALUES
	('*', '/keys', 'keys:read', true),
	('*', '/rpc/create_key', 'keys:write', true),
	('*', '/rpc/revoke_key', 'keys:write', true),
	('*', '/rpc/rotate_key', 'keys:write', true),
	('*', '/rpc/update_key', 'keys:write', true),
	('*', '/rpc/key_usage', 'usage:read', true);

-- pg_dump keeps what operators registered; the install script makes the
-- built-in rows.
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.route_scopes', 'WHERE NOT builtin');

-- The request's method (* for any) and path_pattern, checked and
-- normalized (method upper case).
CREATE FUNCTION hokusai_auth._check_route(method text, path_pattern text)
	RETURNS text
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	m	text;
BEGIN
	PERFORM hokusai_auth._check_not_null(method, 'method');
	PERFORM hokusai_auth._check_not_null(path_pattern, 'path_pattern');
	m := pg_catalog.upper(method);
	IF m OPERATOR(pg_catalog.<>) ALL (ARRAY['*', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE']) THEN
		RAISE EXCEPTION 'invalid method'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use GET, POST, PUT, PATCH, DELETE or * (any); HEAD requests count as GET.';
	END IF;
	IF path_pattern OPERATOR(pg_catalog.!~) '^/[A-Za-z0-9/_.~:@!$&''()+,;=%-]{0,199}\*?$' THEN
		RAISE EXCEPTION 'invalid path pattern'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A path pattern is a PostgREST path (starting with /, at most 200 characters, no query string), optionally ending in * to match any rest.',
				  HINT = 'For example /notes, /rpc/summarize or /reports*.';
	END IF;
	RETURN m;
END
$$;

CREATE FUNCTION hokusai_auth.require_scope(method text, path_pattern text, scope text)
	RETURNS boolean
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	m	text := hokusai_auth._check_route(method, path_pattern);
BEGIN
	PERFORM hokusai_auth._check_not_null(scope, 'scope');
	PERFORM hokusai_auth._check_scopes(ARRAY[scope], 'scope');
	INSERT INTO hokusai_auth.route_scopes (method, path_pattern, scope)
		VALUES (m, require_scope.path_pattern, require_scope.scope)
		ON CONFLICT DO NOTHING;
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION hokusai_auth.require_scope(text, text, text) IS
	'Make pre_request() demand scope of API keys for requests of method (* for any) on path_pattern; false when it already did';

CREATE FUNCTION hokusai_auth.unrequire_scope(method text, path_pattern text, scope text)
	RETURNS boolean
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	m	text := hokusai_auth._check_route(method, path_pattern);
BEGIN
	PERFORM hokusai_auth._check_not_null(scope, 'scope');
	IF EXISTS (SELECT FROM hokusai_auth.route_scopes r
				WHERE r.method OPERATOR(pg_catalog.=) m
				  AND r.path_pattern OPERATOR(pg_catalog.=) unrequire_scope.path_pattern
				  AND r.scope OPERATOR(pg_catalog.=) unrequire_scope.scope
				  AND r.builtin) THEN
		RAISE EXCEPTION 'the scopes of the key-management routes cannot be removed'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'They are part of the extension, and are demanded only of keys that have scopes.';
	END IF;
	DELETE FROM hokusai_auth.route_scopes r
	 WHERE r.method OPERATOR(pg_catalog.=) m
	   AND r.path_pattern OPERATOR(pg_catalog.=) unrequire_scope.path_pattern
	   AND r.scope OPERATOR(pg_catalog.=) unrequire_scope.scope;
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION hokusai_auth.unrequire_scope(text, text, text) IS
	'Stop demanding a scope require_scope() registered; false when it was not';

------------------------------------------------------------------------------
-- The caller of the current request, for row-level security policies
-- (src/http/caller.c).  NULL (has_scope(): false) outside a request that
-- pre_request() admitted; PARALLEL RESTRICTED: the caller is known to the
-- leader only.
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth.current_key_id()
	RETURNS uuid
	AS 'MODULE_PATHNAME', 'hk_sql_current_key_id'
	LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION hokusai_auth.current_key_id() IS
	'The API key of the current HTTP request; NULL for a JWT or outside a request';

CREATE FUNCTION hokusai_auth.current_user_id()
	RETURNS uuid
	AS 'MODULE_PATHNAME', 'hk_sql_current_user_id'
	LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION hokusai_auth.current_user_id() IS
	'The user the current HTTP request acts for (the key''s owner or the JWT subject); NULL outside a request';

CREATE FUNCTION hokusai_auth.current_scopes()
	RETURNS text[]
	AS 'MODULE_PATHNAME', 'hk_sql_current_scopes'
	LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION hokusai_auth.current_scopes() IS
	'The scopes of the current HTTP request''s API key (empty for a key without scopes); NULL for a JWT or outside a request';

CREATE FUNCTION hokusai_auth.has_scope(scope text)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'hk_sql_has_scope'
	LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION hokusai_auth.has_scope(text) IS
	'Does the current HTTP request''s API key grant scope (a trailing * in the key''s scopes matches any rest)? False otherwise';

------------------------------------------------------------------------------
-- HTTP: what a key may hand on.  A JWT (the user) or a key without scopes
-- may give a key any scopes; a key with scopes only scopes it has, and
-- never none at all (a key without scopes manages keys like a JWT).
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth._http_check_grant(wanted text[])
	RETURNS void
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	mine	text[] := hokusai_auth.current_scopes();
	missing text;
BEGIN
	IF hokusai_auth.current_key_id() IS NULL
	   OR pg_catalog.cardinality(mine) OPERATOR(pg_catalog.=) 0 THEN
		RETURN;
	END IF;
	IF pg_catalog.cardinality(coalesce(wanted, '{}')) OPERATOR(pg_catalog.=) 0 THEN
		PERFORM hokusai_auth._http_error(403, 'insufficient_scope',
			'a key with scopes cannot give a key no scopes',
			'A key without scopes is not restricted by scopes.',
			'List the scopes the key needs, from those of the key you call with.');
	END IF;
	missing := hokusai_auth._scopes_cover(mine, wanted);
	IF missing IS NOT NULL THEN
		PERFORM hokusai_auth._http_error(403, 'insufficient_scope',
			pg_catalog.format('this API key cannot grant the scope %s', missing),
			'A key with scopes can give a key only scopes it has itself.');
	END IF;
END
$$;

-- The scopes member of a request body: an array of scope names (NULL when
-- absent; JSON null is refused: [] is "no scopes").
CREATE FUNCTION hokusai_auth._http_scopes(body jsonb)
	RETURNS text[]
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v		jsonb := body OPERATOR(pg_catalog.->) 'scopes';
	item	jsonb;
	result	text[] := '{}';
BEGIN
	IF v IS NULL THEN
		RETURN NULL;
	END IF;
	IF pg_catalog.jsonb_typeof(v) OPERATOR(pg_catalog.<>) 'array' THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			'scopes must be an array of scope names', NULL,
			'For example ["keys:read", "models:*"]; [] for none.');
	END IF;
	IF pg_catalog.jsonb_array_length(v) OPERATOR(pg_catalog.>) 64 THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field', 'scopes must have at most 64 entries');
	END IF;
	FOR item IN SELECT pg_catalog.jsonb_array_elements(v) LOOP
		IF pg_catalog.jsonb_typeof(item) OPERATOR(pg_catalog.<>) 'string'
		   OR (item OPERATOR(pg_catalog.#>>) '{}') OPERATOR(pg_catalog.!~) '^[a-z0-9_.:-]{1,64}\*?$' THEN
			PERFORM hokusai_auth._http_error(400, 'invalid_field',
				'scopes must be an array of scope names',
				'A scope name is 1 to 64 characters of a-z, 0-9, "_", ".", ":" and "-" with an optional trailing "*".',
				'For example ["keys:read", "models:*"].');
		END IF;
		result := result OPERATOR(pg_catalog.||) (item OPERATOR(pg_catalog.#>>) '{}');
	END LOOP;
	RETURN result;
END
$$;
