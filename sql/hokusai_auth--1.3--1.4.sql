/* hokusai_auth 1.3 -> 1.4: pre_request() in C */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION hokusai_auth UPDATE TO '1.4'" to load this file. \quit

-- Names in this script resolve in pg_catalog only: CREATE EXTENSION and
-- ALTER EXTENSION UPDATE otherwise search the schema they install into,
-- where a look-alike operator or function (say =(cidr[],cidr[]), more
-- specific than pg_catalog's anyarray one) would be bound for good into a
-- view, a trigger's WHEN clause or a default (DESIGN.md section 11).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- PostgREST's db-pre-request, now in C (src/middleware/pre_request.c) with
-- the behaviour of 1.3's PL/pgSQL: HTTPS check, client address, API key or
-- JWT subject, rate-limit headers, usage tracking, identity for row-level
-- security and the audit log, then the switch to the API role.
-- SECURITY INVOKER on purpose: only an invoker may switch role (SET ROLE);
-- the rows it reads (users, api_keys) are read as the schema's owner by the
-- C code itself.  CREATE OR REPLACE keeps the grants made by
-- setup_http_roles().
CREATE OR REPLACE FUNCTION hokusai_auth.pre_request()
	RETURNS void
	AS 'MODULE_PATHNAME', 'hk_sql_pre_request'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.pre_request() IS
	'PostgREST db-pre-request: authenticates by API key (X-API-Key) or JWT, sets rate-limit headers and the caller for row-level security';

-- The PL/pgSQL worker of 1.3's pre_request() and its helper: unused now.
-- (Their grants to the HTTP roles go with them.)
DROP FUNCTION hokusai_auth._http_authenticate(text);
DROP FUNCTION hokusai_auth._http_client_ip(text);

-- The same as in 1.3, without the grant on _http_authenticate(text).
CREATE OR REPLACE FUNCTION hokusai_auth.setup_http_roles(
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
	EXECUTE format('GRANT EXECUTE ON FUNCTION hokusai_auth.pre_request() TO %I, %I', anon, api_user);
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
