
------------------------------------------------------------------------------
-- sql/install/roles.sql: privileges.  Nothing is usable by PUBLIC (the
-- REVOKEs at the end of this file); roles get what they need from the two
-- set-up functions the operator runs: setup_http_roles() for PostgREST's
-- roles and setup_admin_role() for key administrators (docs/keys.md,
-- Privileges; docs/http.md).
------------------------------------------------------------------------------

-- Create (if missing) and grant PostgREST's three roles: authenticator
-- (login), anon and api_user.  Created by the operator, not by this script:
-- roles are cluster-wide.
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
	-- The worker makes usage partitions (CREATE TABLE ... PARTITION OF),
	-- which updates the partitioned tables' catalog rows; a GRANT on one of
	-- them at the same moment fails with "tuple concurrently updated".  The
	-- lock holds the worker off until this transaction ends.
	LOCK TABLE hokusai_auth.api_key_usage, hokusai_auth.api_key_usage_minutely,
		hokusai_auth.api_key_usage_hourly, hokusai_auth.api_key_usage_daily
		IN SHARE UPDATE EXCLUSIVE MODE;
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
				   'hokusai_api.key_usage(text, text, text, text) TO %I', api_user);
	-- PATCH, and the caller for row-level security policies.
	EXECUTE format('GRANT EXECUTE ON FUNCTION hokusai_api.update_key(jsonb), '
				   'hokusai_auth.current_key_id(), hokusai_auth.current_user_id(), '
				   'hokusai_auth.current_scopes(), hokusai_auth.has_scope(text) TO %I', api_user);
	-- What the security-invoker view and key_usage() read, under row-level
	-- security; never key_hash.
	EXECUTE format('GRANT SELECT (id, key_prefix, user_id, name, environment, created_at, '
				   'expires_at, last_used_at, is_active, rate_limit_per_hour, burst_limit, '
				   'allowed_ips, metadata, revoked_at, rotated_from, scopes, disabled_at, '
				   'credits_remaining, refill_amount, refill_interval) ON hokusai_auth.api_keys TO %I', api_user);
	EXECUTE format('GRANT SELECT ON hokusai_auth.api_key_usage TO %I', api_user);
	EXECUTE format('GRANT EXECUTE ON FUNCTION hokusai_auth._http_user_id(), hokusai_auth._http_error(integer, text, text, text, text, jsonb), '
				   'hokusai_auth._http_caller(), hokusai_auth._http_key_id(text), '
				   'hokusai_auth._http_timestamp(text, text), '
				   'hokusai_auth._http_usage(uuid, timestamptz, timestamptz, text) TO %I', api_user);
	-- GET /api/v1/auth/events: the caller's events, under row-level security.
	EXECUTE format('GRANT SELECT ON hokusai_auth.events TO %I', api_user);
	EXECUTE format('GRANT EXECUTE ON FUNCTION hokusai_api.events(bigint), hokusai_auth._event_horizon() TO %I', api_user);
END
$$;
COMMENT ON FUNCTION hokusai_auth.setup_http_roles(text, text, text) IS
	'Create (if missing) and grant the PostgREST roles: authenticator (login), anon and api_user';

-- Administrators: everything but secrets and history rewriting.
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
	-- The worker makes usage partitions (CREATE TABLE ... PARTITION OF),
	-- which updates the partitioned tables' catalog rows; a GRANT on one of
	-- them at the same moment fails with "tuple concurrently updated".  The
	-- lock holds the worker off until this transaction ends.
	LOCK TABLE hokusai_auth.api_key_usage, hokusai_auth.api_key_usage_minutely,
		hokusai_auth.api_key_usage_hourly, hokusai_auth.api_key_usage_daily
		IN SHARE UPDATE EXCLUSIVE MODE;
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
		   AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition AND c.relname <> 'api_keys'
	LOOP
		EXECUTE format('GRANT SELECT ON %s TO %I', v, admin);
	END LOOP;
	EXECUTE format('GRANT SELECT (id, key_prefix, user_id, name, environment, created_at, '
				   'expires_at, last_used_at, is_active, rate_limit_per_hour, burst_limit, '
				   'allowed_ips, metadata, revoked_at, rotated_from, scopes, disabled_at, '
				   'credits_remaining, refill_amount, refill_interval) ON hokusai_auth.api_keys TO %I',
				   admin);
END
$$;
COMMENT ON FUNCTION hokusai_auth.setup_admin_role(text) IS
	'Create and grant a role for key administrators: manage keys, read everything but key_hash, write no table directly';

------------------------------------------------------------------------------
-- Nothing is usable by PUBLIC: every function, table and view made above,
-- and both schemas.  (Not the sequence, which PUBLIC cannot use anyway and
-- which the update scripts leave as created.)
------------------------------------------------------------------------------

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA hokusai_auth, hokusai_api FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA hokusai_auth, hokusai_api FROM PUBLIC;
REVOKE ALL ON SCHEMA hokusai_auth, hokusai_api FROM PUBLIC;
