/* hokusai_auth 1.5 -> 1.6: validate_key() returns a named type and takes a
   cost and required scopes; keys get scopes, a reversible disable, and
   credits with refills (DESIGN.md section 12) */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION hokusai_auth UPDATE TO '1.6'" to load this file. \quit

-- Names in this script resolve in pg_catalog only (see the 1.4--1.5 script).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- A function whose arguments change is made anew beside the old one; the
-- roles that could run the old one (setup_admin_role() grants, grants an
-- operator made) may run the new one; then the old one goes.
CREATE FUNCTION hokusai_auth._copy_function_grants(old regprocedure, new regprocedure)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	r	record;
BEGIN
	FOR r IN
		SELECT a.grantee, a.is_grantable
		  FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		 WHERE p.oid OPERATOR(pg_catalog.=) old
		   AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
		   AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
		   AND a.grantee OPERATOR(pg_catalog.<>) 0
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I%s', new,
			pg_catalog.pg_get_userbyid(r.grantee),
			CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
	END LOOP;
END
$$;

------------------------------------------------------------------------------
-- Columns of api_keys: scopes, disabled_at, credits and refills.
------------------------------------------------------------------------------

ALTER TABLE hokusai_auth.api_keys
	ADD COLUMN scopes text[] NOT NULL DEFAULT '{}',
	ADD COLUMN disabled_at timestamptz,
	ADD COLUMN credits_remaining bigint,
	ADD COLUMN refill_amount bigint,
	ADD COLUMN refill_interval text,
	ADD CONSTRAINT api_keys_credits_check CHECK (credits_remaining >= 0),
	ADD CONSTRAINT api_keys_refill_check
		CHECK ((refill_interval IS NULL AND refill_amount IS NULL)
			   OR (refill_interval IN ('day', 'week', 'month') AND refill_amount > 0));
COMMENT ON COLUMN hokusai_auth.api_keys.scopes IS 'What the key may do: names of [a-z0-9_.:-], a trailing * matches any suffix';
COMMENT ON COLUMN hokusai_auth.api_keys.disabled_at IS 'Set while the key is switched off by disable_key(); enable_key() clears it';
COMMENT ON COLUMN hokusai_auth.api_keys.credits_remaining IS 'Balance as last written back from shared memory; NULL: unlimited';
COMMENT ON COLUMN hokusai_auth.api_keys.refill_amount IS 'Balance set at the start of each refill_interval';
COMMENT ON COLUMN hokusai_auth.api_keys.refill_interval IS 'day, week (from Monday) or month, in UTC; NULL: no refill';

DROP TRIGGER api_keys_invalidate_update ON hokusai_auth.api_keys;
CREATE TRIGGER api_keys_invalidate_update AFTER UPDATE ON hokusai_auth.api_keys
	FOR EACH ROW
	WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active
		  OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
		  OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
		  OR OLD.rate_limit_per_hour IS DISTINCT FROM NEW.rate_limit_per_hour
		  OR OLD.burst_limit IS DISTINCT FROM NEW.burst_limit
		  OR OLD.allowed_ips IS DISTINCT FROM NEW.allowed_ips
		  OR OLD.scopes IS DISTINCT FROM NEW.scopes
		  OR OLD.disabled_at IS DISTINCT FROM NEW.disabled_at
		  OR OLD.refill_amount IS DISTINCT FROM NEW.refill_amount
		  OR OLD.refill_interval IS DISTINCT FROM NEW.refill_interval
		  OR OLD.key_hash IS DISTINCT FROM NEW.key_hash
		  OR OLD.key_prefix IS DISTINCT FROM NEW.key_prefix
		  OR OLD.user_id IS DISTINCT FROM NEW.user_id
		  OR OLD.id IS DISTINCT FROM NEW.id)
	EXECUTE FUNCTION hokusai_auth._invalidate_cache('key');

CREATE OR REPLACE VIEW hokusai_auth.keys AS
	SELECT k.id, k.key_prefix, k.user_id, k.name, k.environment, k.created_at,
		   k.expires_at, k.last_used_at, k.is_active, k.rate_limit_per_hour,
		   k.burst_limit, k.allowed_ips, k.metadata, k.revoked_at, k.rotated_from,
		   CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked'
				WHEN k.expires_at <= now() THEN 'expired'
				WHEN NOT k.is_active THEN 'revoked'
				WHEN k.disabled_at IS NOT NULL THEN 'disabled'
				ELSE 'active' END AS status,
		   k.scopes, k.disabled_at, k.credits_remaining, k.refill_amount,
		   k.refill_interval
	  FROM hokusai_auth.api_keys k;
COMMENT ON VIEW hokusai_auth.keys IS
	'API keys without their hashes; status is active, disabled, expired or revoked';

CREATE OR REPLACE VIEW hokusai_api.keys WITH (security_invoker = true, security_barrier = true) AS
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

-- The audit trail records the new operations (disable_key(), enable_key(),
-- add_credits(), set_user_limits()).
ALTER TABLE hokusai_auth.audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE hokusai_auth.audit_log ADD CONSTRAINT audit_log_action_check
	CHECK (action IN ('create', 'revoke', 'rotate', 'update', 'expire',
					  'disable', 'enable', 'add_credits', 'set_user_limits'));

------------------------------------------------------------------------------
-- validate_key(): a named result type, cost and required_scopes.
------------------------------------------------------------------------------

CREATE TYPE hokusai_auth.validation AS (
	valid				boolean,
	status				text,
	key_id				uuid,
	user_id				uuid,
	rate_limit			integer,
	remaining			integer,
	reset_seconds		integer,
	retry_after			integer,
	credits_remaining	bigint
);
COMMENT ON TYPE hokusai_auth.validation IS 'The result of validate_key()';

CREATE FUNCTION hokusai_auth.validate_key(key text, client_ip inet DEFAULT NULL,
	endpoint text DEFAULT NULL, cost integer DEFAULT 1,
	required_scopes text[] DEFAULT NULL)
	RETURNS hokusai_auth.validation
	AS 'MODULE_PATHNAME', 'hk_sql_validate_key'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.validate_key(text, inet, text, integer, text[]) IS
	'Check an API key: status ok, malformed, unknown, revoked, expired, disabled, ip_denied, insufficient_scope, rate_limited or credits_exhausted';

SELECT hokusai_auth._copy_function_grants(
	'hokusai_auth.validate_key(text, inet, text)',
	'hokusai_auth.validate_key(text, inet, text, integer, text[])');
DROP FUNCTION hokusai_auth.validate_key(text, inet, text);

------------------------------------------------------------------------------
-- Key management with scopes and credits.
------------------------------------------------------------------------------

DROP FUNCTION hokusai_auth._insert_key(uuid, text, text, timestamptz, integer,
	integer, cidr[], jsonb, uuid);
CREATE FUNCTION hokusai_auth._insert_key(user_id uuid, name text, environment text,
	expires_at timestamptz, rate_limit_per_hour integer, burst_limit integer,
	allowed_ips cidr[], metadata jsonb, rotated_from uuid,
	scopes text[], credits bigint, refill_amount bigint, refill_interval text,
	OUT id uuid, OUT key text, OUT key_prefix text)
	RETURNS record
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	nk		record;
	attempt integer;
BEGIN
	-- A key_prefix collision (8 base62 characters) is astronomically rare;
	-- draw again rather than fail.
	FOR attempt IN 1..3 LOOP
		nk := hokusai_auth._new_key(environment);
		INSERT INTO hokusai_auth.api_keys
			(key_hash, key_prefix, user_id, name, environment, expires_at,
			 rate_limit_per_hour, burst_limit, allowed_ips, metadata, rotated_from,
			 scopes, credits_remaining, refill_amount, refill_interval)
		VALUES
			(nk.key_hash, nk.key_prefix, _insert_key.user_id, _insert_key.name,
			 _insert_key.environment, _insert_key.expires_at,
			 _insert_key.rate_limit_per_hour, _insert_key.burst_limit,
			 _insert_key.allowed_ips, _insert_key.metadata, _insert_key.rotated_from,
			 _insert_key.scopes, _insert_key.credits, _insert_key.refill_amount,
			 _insert_key.refill_interval)
		ON CONFLICT DO NOTHING
		RETURNING api_keys.id INTO id;
		IF id IS NOT NULL THEN
			key := nk.key;
			key_prefix := nk.key_prefix;
			PERFORM hokusai_auth._audit('create', id, _insert_key.user_id,
				jsonb_strip_nulls(jsonb_build_object(
					'key_prefix', nk.key_prefix,
					'name', _insert_key.name,
					'environment', _insert_key.environment,
					'expires_at', _insert_key.expires_at,
					'rate_limit_per_hour', _insert_key.rate_limit_per_hour,
					'burst_limit', _insert_key.burst_limit,
					'allowed_ips', _insert_key.allowed_ips,
					'rotated_from', _insert_key.rotated_from,
					'scopes', nullif(_insert_key.scopes, '{}'),
					'credits', _insert_key.credits,
					'refill_amount', _insert_key.refill_amount,
					'refill_interval', _insert_key.refill_interval)));
			RETURN;
		END IF;
	END LOOP;
	RAISE EXCEPTION 'could not allocate a unique key prefix';
END
$$;

CREATE FUNCTION hokusai_auth.create_key(user_id uuid, name text,
	OUT id uuid, OUT key text, OUT key_prefix text,
	environment text DEFAULT 'live',
	INOUT expires_at timestamptz DEFAULT NULL,
	rate_limit_per_hour integer DEFAULT NULL,
	burst_limit integer DEFAULT NULL,
	allowed_ips cidr[] DEFAULT NULL,
	metadata jsonb DEFAULT '{}',
	scopes text[] DEFAULT '{}',
	credits bigint DEFAULT NULL,
	refill_amount bigint DEFAULT NULL,
	refill_interval text DEFAULT NULL)
	RETURNS record
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	nk			 record;
BEGIN
	PERFORM hokusai_auth._check_not_null(user_id, 'user_id');
	PERFORM hokusai_auth._check_text(name, 'name', 200);
	PERFORM hokusai_auth._check_not_null(environment, 'environment');
	IF environment NOT IN ('live', 'test') THEN
		RAISE EXCEPTION 'invalid environment'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use "live" or "test".';
	END IF;
	IF expires_at OPERATOR(pg_catalog.=) 'infinity'::timestamptz THEN
		expires_at := NULL;
	END IF;
	PERFORM hokusai_auth._check_key_settings(expires_at, rate_limit_per_hour,
		burst_limit, allowed_ips, metadata);
	PERFORM hokusai_auth._active_user(user_id);

	nk := hokusai_auth._insert_key(user_id, name, environment, expires_at,
		coalesce(rate_limit_per_hour, hokusai_auth._default_rate_limit_per_hour()),
		burst_limit, allowed_ips, coalesce(metadata, '{}'), NULL,
		coalesce(scopes, '{}'), credits, refill_amount, refill_interval);
	id := nk.id;
	key := nk.key;
	key_prefix := nk.key_prefix;
END
$$;
COMMENT ON FUNCTION hokusai_auth.create_key(uuid, text, text, timestamptz, integer, integer, cidr[], jsonb, text[], bigint, bigint, text) IS
	'Issue a key; the plaintext key is returned here once and never stored';

SELECT hokusai_auth._copy_function_grants(
	'hokusai_auth.create_key(uuid, text, text, timestamptz, integer, integer, cidr[], jsonb)',
	'hokusai_auth.create_key(uuid, text, text, timestamptz, integer, integer, cidr[], jsonb, text[], bigint, bigint, text)');
DROP FUNCTION hokusai_auth.create_key(uuid, text, text, timestamptz, integer,
	integer, cidr[], jsonb);

CREATE OR REPLACE FUNCTION hokusai_auth.rotate_key(key_id uuid, grace interval DEFAULT '0',
	OUT id uuid, OUT key text, OUT key_prefix text, OUT expires_at timestamptz)
	RETURNS record
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k		hokusai_auth.api_keys;
	old_end timestamptz;
	nk		record;
BEGIN
	PERFORM hokusai_auth._check_not_null(grace, 'grace');
	IF grace OPERATOR(pg_catalog.<) interval '0' THEN
		RAISE EXCEPTION 'grace must not be negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF grace OPERATOR(pg_catalog.>) interval '30 days' THEN
		RAISE EXCEPTION 'grace must be at most 30 days'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	k := hokusai_auth._key_for_update(key_id);
	IF k.revoked_at IS NOT NULL OR NOT k.is_active THEN
		RAISE EXCEPTION 'cannot rotate revoked api key %', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF k.expires_at IS NOT NULL AND k.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() THEN
		RAISE EXCEPTION 'cannot rotate expired api key %', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF EXISTS (SELECT FROM hokusai_auth.api_keys a
				WHERE a.rotated_from OPERATOR(pg_catalog.=) k.id) THEN
		RAISE EXCEPTION 'api key % has already been rotated', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Rotate the key that replaced it.';
	END IF;
	-- The same rule as create_key(): no new key for a deactivated user.
	PERFORM hokusai_auth._active_user(k.user_id);

	-- The new key keeps the old one's lifetime, counted from now.
	IF k.expires_at IS NOT NULL THEN
		expires_at := pg_catalog.now() OPERATOR(pg_catalog.+)
			(k.expires_at OPERATOR(pg_catalog.-) k.created_at);
	END IF;
	nk := hokusai_auth._insert_key(k.user_id, k.name, k.environment, expires_at,
		k.rate_limit_per_hour, k.burst_limit, k.allowed_ips, k.metadata, k.id,
		k.scopes, k.credits_remaining, k.refill_amount, k.refill_interval);
	id := nk.id;
	key := nk.key;
	key_prefix := nk.key_prefix;

	IF grace OPERATOR(pg_catalog.=) interval '0' THEN
		old_end := pg_catalog.now();
		UPDATE hokusai_auth.api_keys a
		   SET is_active = false, revoked_at = pg_catalog.now()
		 WHERE a.id OPERATOR(pg_catalog.=) k.id;
	ELSE
		old_end := least(coalesce(k.expires_at, 'infinity'),
									pg_catalog.now() OPERATOR(pg_catalog.+) grace);
		UPDATE hokusai_auth.api_keys a SET expires_at = old_end
		 WHERE a.id OPERATOR(pg_catalog.=) k.id;
	END IF;
	PERFORM hokusai_auth._audit('rotate', k.id, k.user_id,
		pg_catalog.jsonb_build_object('key_prefix', k.key_prefix, 'new_key_id', nk.id,
						   'new_key_prefix', nk.key_prefix, 'grace', grace::text,
						   'old_key_ends_at', old_end));
END
$$;
COMMENT ON FUNCTION hokusai_auth.rotate_key(uuid, interval) IS
	'Replace a key with a new one of the same settings; the old key stops at now() + grace';

CREATE FUNCTION hokusai_auth.update_key(key_id uuid,
	name text DEFAULT NULL,
	expires_at timestamptz DEFAULT NULL,
	rate_limit_per_hour integer DEFAULT NULL,
	burst_limit integer DEFAULT NULL,
	allowed_ips cidr[] DEFAULT NULL,
	metadata jsonb DEFAULT NULL,
	clear_expires_at boolean DEFAULT false,
	clear_burst_limit boolean DEFAULT false,
	clear_allowed_ips boolean DEFAULT false,
	scopes text[] DEFAULT NULL,
	refill_amount bigint DEFAULT NULL,
	refill_interval text DEFAULT NULL,
	clear_refill boolean DEFAULT false)
	RETURNS SETOF hokusai_auth.keys
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k		hokusai_auth.api_keys;
	changes jsonb := '{}';
BEGIN
	IF name IS NOT NULL THEN
		PERFORM hokusai_auth._check_text(name, 'name', 200);
	END IF;
	PERFORM hokusai_auth._check_not_null(clear_expires_at, 'clear_expires_at');
	PERFORM hokusai_auth._check_not_null(clear_burst_limit, 'clear_burst_limit');
	PERFORM hokusai_auth._check_not_null(clear_allowed_ips, 'clear_allowed_ips');
	PERFORM hokusai_auth._check_not_null(clear_refill, 'clear_refill');
	IF (clear_expires_at AND expires_at IS NOT NULL)
	   OR (clear_burst_limit AND burst_limit IS NOT NULL)
	   OR (clear_allowed_ips AND allowed_ips IS NOT NULL)
	   OR (clear_refill AND (refill_amount IS NOT NULL OR refill_interval IS NOT NULL)) THEN
		RAISE EXCEPTION 'a setting cannot be both given and cleared'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF expires_at = 'infinity' THEN
		expires_at := NULL;
		clear_expires_at := true;
	END IF;
	PERFORM hokusai_auth._check_key_settings(expires_at, rate_limit_per_hour,
		burst_limit, allowed_ips, metadata);
	k := hokusai_auth._key_for_update(key_id);
	IF k.revoked_at IS NOT NULL OR NOT k.is_active THEN
		RAISE EXCEPTION 'cannot update revoked api key %', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	-- Neither an expired key nor one replaced by rotation comes back to life.
	IF k.expires_at IS NOT NULL AND k.expires_at <= now() THEN
		RAISE EXCEPTION 'cannot update expired api key %', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF EXISTS (SELECT FROM hokusai_auth.api_keys a WHERE a.rotated_from = k.id) THEN
		RAISE EXCEPTION 'cannot update api key %: it has been rotated', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Update the key that replaced it.';
	END IF;

	IF name IS NOT NULL AND name IS DISTINCT FROM k.name THEN
		changes := changes || jsonb_build_object('name', name);
	END IF;
	IF (expires_at IS NOT NULL OR clear_expires_at)
	   AND expires_at IS DISTINCT FROM k.expires_at THEN
		changes := changes || jsonb_build_object('expires_at', coalesce(to_jsonb(expires_at), 'null'));
	END IF;
	IF rate_limit_per_hour IS NOT NULL AND rate_limit_per_hour IS DISTINCT FROM k.rate_limit_per_hour THEN
		changes := changes || jsonb_build_object('rate_limit_per_hour', rate_limit_per_hour);
	END IF;
	IF (burst_limit IS NOT NULL OR clear_burst_limit)
	   AND burst_limit IS DISTINCT FROM k.burst_limit THEN
		changes := changes || jsonb_build_object('burst_limit', coalesce(to_jsonb(burst_limit), 'null'));
	END IF;
	IF (allowed_ips IS NOT NULL OR clear_allowed_ips)
	   AND allowed_ips IS DISTINCT FROM k.allowed_ips THEN
		changes := changes || jsonb_build_object('allowed_ips', coalesce(to_jsonb(allowed_ips), 'null'));
	END IF;
	IF metadata IS NOT NULL AND metadata IS DISTINCT FROM k.metadata THEN
		changes := changes || jsonb_build_object('metadata', true);
	END IF;
	IF scopes IS NOT NULL AND scopes IS DISTINCT FROM k.scopes THEN
		changes := changes || jsonb_build_object('scopes', to_jsonb(scopes));
	END IF;
	IF clear_refill AND k.refill_interval IS NOT NULL THEN
		changes := changes || jsonb_build_object('refill_amount', 'null'::jsonb,
												 'refill_interval', 'null'::jsonb);
	ELSIF (refill_amount IS NOT NULL AND refill_amount IS DISTINCT FROM k.refill_amount)
	   OR (refill_interval IS NOT NULL AND refill_interval IS DISTINCT FROM k.refill_interval) THEN
		changes := changes || jsonb_build_object(
			'refill_amount', coalesce(refill_amount, k.refill_amount),
			'refill_interval', coalesce(refill_interval, k.refill_interval));
	END IF;

	IF changes <> '{}' THEN
		UPDATE hokusai_auth.api_keys a SET
			name = coalesce(update_key.name, a.name),
			expires_at = CASE WHEN clear_expires_at THEN NULL
							  ELSE coalesce(update_key.expires_at, a.expires_at) END,
			rate_limit_per_hour = coalesce(update_key.rate_limit_per_hour, a.rate_limit_per_hour),
			burst_limit = CASE WHEN clear_burst_limit THEN NULL
							   ELSE coalesce(update_key.burst_limit, a.burst_limit) END,
			allowed_ips = CASE WHEN clear_allowed_ips THEN NULL
							   ELSE coalesce(update_key.allowed_ips, a.allowed_ips) END,
			metadata = coalesce(update_key.metadata, a.metadata),
			scopes = coalesce(update_key.scopes, a.scopes),
			refill_amount = CASE WHEN clear_refill THEN NULL
								 ELSE coalesce(update_key.refill_amount, a.refill_amount) END,
			refill_interval = CASE WHEN clear_refill THEN NULL
								   ELSE coalesce(update_key.refill_interval, a.refill_interval) END
		 WHERE a.id = k.id;
		-- Keep the audit trail free of the values of metadata: it may be large.
		PERFORM hokusai_auth._audit('update', k.id, k.user_id,
			jsonb_build_object('key_prefix', k.key_prefix, 'changes', changes));
	END IF;
	RETURN QUERY SELECT * FROM hokusai_auth.keys WHERE id = k.id;
END
$$;
COMMENT ON FUNCTION hokusai_auth.update_key(uuid, text, timestamptz, integer, integer, cidr[], jsonb, boolean, boolean, boolean, text[], bigint, text, boolean) IS
	'Change a key''s name, expiry, limits, allowed_ips, metadata, scopes or refill; NULL leaves a setting as it is';

SELECT hokusai_auth._copy_function_grants(
	'hokusai_auth.update_key(uuid, text, timestamptz, integer, integer, cidr[], jsonb, boolean, boolean, boolean)',
	'hokusai_auth.update_key(uuid, text, timestamptz, integer, integer, cidr[], jsonb, boolean, boolean, boolean, text[], bigint, text, boolean)');
DROP FUNCTION hokusai_auth.update_key(uuid, text, timestamptz, integer, integer,
	cidr[], jsonb, boolean, boolean, boolean);

------------------------------------------------------------------------------
-- The set-up functions grant the new columns.
------------------------------------------------------------------------------

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
				   'allowed_ips, metadata, revoked_at, rotated_from, scopes, disabled_at, '
				   'credits_remaining, refill_amount, refill_interval) ON hokusai_auth.api_keys TO %I', api_user);
	EXECUTE format('GRANT SELECT ON hokusai_auth.api_key_usage TO %I', api_user);
	EXECUTE format('GRANT EXECUTE ON FUNCTION hokusai_auth._http_user_id(), hokusai_auth._http_error(integer, text, text, text, text, jsonb), '
				   'hokusai_auth._http_caller(), hokusai_auth._http_key_id(text), '
				   'hokusai_auth._http_timestamp(text, text), '
				   'hokusai_auth._http_usage(uuid, timestamptz, timestamptz) TO %I', api_user);
END
$$;
COMMENT ON FUNCTION hokusai_auth.setup_http_roles(text, text, text) IS
	'Create (if missing) and grant the PostgREST roles: authenticator (login), anon and api_user';

CREATE OR REPLACE FUNCTION hokusai_auth.setup_admin_role(admin text DEFAULT 'hokusai_admin')
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
				   'allowed_ips, metadata, revoked_at, rotated_from, scopes, disabled_at, '
				   'credits_remaining, refill_amount, refill_interval) ON hokusai_auth.api_keys TO %I',
				   admin);
END
$$;
COMMENT ON FUNCTION hokusai_auth.setup_admin_role(text) IS
	'Create and grant a role for key administrators: manage keys, read everything but key_hash, write no table directly';

------------------------------------------------------------------------------
-- Authorization: scopes, disable and enable, require_scope(), the caller of
-- the current request (sql/install/authorization.sql).
------------------------------------------------------------------------------



------------------------------------------------------------------------------
-- Metering: credits with refills, add_credits(), set_user_limits()
-- (sql/install/metering.sql).
------------------------------------------------------------------------------

-- Columns: who spends whose balance (rotation), the first balance, the
-- last refill; limits shared by a user's keys; burst_limit 0 is none.
ALTER TABLE hokusai_auth.api_keys
	ADD COLUMN credits_key_id uuid REFERENCES hokusai_auth.api_keys (id),
	ADD COLUMN credits_initial bigint,
	ADD COLUMN credits_refilled_at timestamptz,
	DROP CONSTRAINT api_keys_burst_limit_check,
	ADD CONSTRAINT api_keys_burst_limit_check CHECK (burst_limit >= 0);
ALTER TABLE hokusai_auth.users
	ADD COLUMN rate_limit_per_hour integer
		CONSTRAINT users_rate_limit_check CHECK (rate_limit_per_hour > 0),
	ADD COLUMN burst_limit integer
		CONSTRAINT users_burst_limit_check CHECK (burst_limit > 0);
COMMENT ON COLUMN hokusai_auth.users.rate_limit_per_hour IS 'Requests per rolling hour for all of the user''s keys together; NULL: no shared limit';
COMMENT ON COLUMN hokusai_auth.users.burst_limit IS 'Requests per rolling second for all of the user''s keys together; NULL: no shared limit';
COMMENT ON COLUMN hokusai_auth.api_keys.burst_limit IS 'Requests per rolling second; 0: none; NULL follows hokusai_auth.default_burst_limit';
COMMENT ON COLUMN hokusai_auth.api_keys.credits_key_id IS 'The key whose credit balance this key spends (set by rotate_key(): old and new key share one balance); NULL: its own';
COMMENT ON COLUMN hokusai_auth.api_keys.credits_initial IS 'The first balance: credits.low is 10% of it when there is no refill';
COMMENT ON COLUMN hokusai_auth.api_keys.credits_refilled_at IS 'Start of the period the balance was last refilled in, as last written back';
CREATE INDEX api_keys_credits_key_id_idx ON hokusai_auth.api_keys (credits_key_id)
	WHERE credits_key_id IS NOT NULL;

DROP TRIGGER users_invalidate_update ON hokusai_auth.users;
CREATE TRIGGER users_invalidate_update AFTER UPDATE ON hokusai_auth.users
	FOR EACH ROW
	WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active OR OLD.id IS DISTINCT FROM NEW.id
		  OR OLD.rate_limit_per_hour IS DISTINCT FROM NEW.rate_limit_per_hour
		  OR OLD.burst_limit IS DISTINCT FROM NEW.burst_limit)
	EXECUTE FUNCTION hokusai_auth._invalidate_cache('user');

-- metering.sql
-- The columns are in schema.sql: api_keys.credits_remaining, refill_amount,
-- refill_interval, credits_key_id, credits_initial, credits_refilled_at;
-- users.rate_limit_per_hour and burst_limit.  Live balances are in shared
-- memory (src/metering/) and written back by the worker.

------------------------------------------------------------------------------
-- C functions
------------------------------------------------------------------------------

-- The live balance owned by a key, a refill that is due applied; NULL when
-- the key has no balance or the library was not preloaded.
CREATE FUNCTION hokusai_auth._credits_status(key_id uuid, refill_amount bigint,
	refill_interval text, OUT balance bigint, OUT refilled_at timestamptz,
	OUT next_refill_at timestamptz)
	RETURNS record
	AS 'MODULE_PATHNAME', 'hk_sql_credits_status'
	LANGUAGE C VOLATILE;

-- For add_credits(): the change to a live balance, applied at commit.
CREATE FUNCTION hokusai_auth._credits_add(key_id uuid, amount bigint,
	refill_amount bigint, refill_interval text,
	OUT old_balance bigint, OUT new_balance bigint, OUT refilled_at timestamptz)
	RETURNS record
	AS 'MODULE_PATHNAME', 'hk_sql_credits_add'
	LANGUAGE C VOLATILE;

-- For the events outbox: the crossings of 10% and zero since last taken.
CREATE FUNCTION hokusai_auth._credits_events(OUT key_id uuid, OUT low boolean,
	OUT exhausted boolean, OUT balance bigint, OUT at timestamptz)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'hk_sql_credits_events'
	LANGUAGE C VOLATILE;

CREATE FUNCTION hokusai_auth.metering_stats(
	OUT credits_charged bigint, OUT credits_spent bigint, OUT credits_refused bigint,
	OUT credits_given_back bigint, OUT credits_refills bigint, OUT credits_added bigint,
	OUT credits_low bigint, OUT credits_exhausted bigint, OUT credits_loaded bigint,
	OUT credits_written bigint, OUT credits_swept bigint, OUT credit_entries bigint,
	OUT rejected_user_hourly bigint, OUT rejected_user_burst bigint,
	OUT user_entries bigint)
	RETURNS record
	AS 'MODULE_PATHNAME', 'hk_sql_metering_stats'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.metering_stats() IS
	'Credit and user-limit counters since server start, and the balances and users tracked now';

------------------------------------------------------------------------------
-- Checks and helpers
------------------------------------------------------------------------------

-- The start (UTC) of the refill period that at falls in: the same rule as
-- src/metering/balance.c (weeks start on Monday).
CREATE FUNCTION hokusai_auth._refill_period_start(at timestamptz, refill_interval text)
	RETURNS timestamptz
	LANGUAGE sql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT pg_catalog.timezone('UTC',
		pg_catalog.date_trunc(refill_interval, pg_catalog.timezone('UTC', at)))
$$;

-- Credits and refill settings as create_key() and update_key() accept them,
-- checked before any row is written (a failing CHECK would echo the row).
CREATE FUNCTION hokusai_auth._check_credit_settings(credits bigint,
	refill_amount bigint, refill_interval text)
	RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	IF credits IS NOT NULL AND credits OPERATOR(pg_catalog.<) 0 THEN
		RAISE EXCEPTION 'credits must not be negative'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL for a key whose calls are not metered.';
	END IF;
	IF (refill_amount IS NULL) OPERATOR(pg_catalog.<>) (refill_interval IS NULL) THEN
		RAISE EXCEPTION 'refill_amount and refill_interval must be given together'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF refill_amount IS NOT NULL AND refill_amount OPERATOR(pg_catalog.<=) 0 THEN
		RAISE EXCEPTION 'refill_amount must be positive'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF refill_interval IS NOT NULL
	   AND refill_interval OPERATOR(pg_catalog.<>) ALL (ARRAY['day', 'week', 'month']) THEN
		RAISE EXCEPTION 'invalid refill_interval'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use "day", "week" or "month" (periods start at midnight UTC; weeks on Monday).';
	END IF;
END
$$;

-- The credit columns of a new key (_insert_key()): a key made by rotation
-- spends the balance of the key it replaces (that key's credits_key_id, or
-- that key); another starts its own, refilled in the current period.
CREATE FUNCTION hokusai_auth._credits_of_new_key(rotated_from uuid, credits bigint,
	refill_interval text, OUT credits_key_id uuid, OUT credits_initial bigint,
	OUT credits_refilled_at timestamptz)
	RETURNS record
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	IF _credits_of_new_key.credits IS NULL THEN
		RETURN;
	END IF;
	IF _credits_of_new_key.rotated_from IS NOT NULL THEN
		SELECT coalesce(a.credits_key_id, a.id), a.credits_initial, a.credits_refilled_at
		  INTO _credits_of_new_key.credits_key_id, _credits_of_new_key.credits_initial,
			   _credits_of_new_key.credits_refilled_at
		  FROM hokusai_auth.api_keys a
		 WHERE a.id OPERATOR(pg_catalog.=) _credits_of_new_key.rotated_from
		   AND a.credits_remaining IS NOT NULL;
		IF FOUND THEN
			RETURN;
		END IF;
	END IF;
	_credits_of_new_key.credits_initial := _credits_of_new_key.credits;
	IF _credits_of_new_key.refill_interval IS NOT NULL THEN
		_credits_of_new_key.credits_refilled_at := hokusai_auth._refill_period_start(
			pg_catalog.now(), _credits_of_new_key.refill_interval);
	END IF;
END
$$;

-- A key's live balance (NULL: not metered): shared memory when the library
-- is preloaded, else the row.
CREATE FUNCTION hokusai_auth._credits_live(k hokusai_auth.api_keys)
	RETURNS bigint
	LANGUAGE sql VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT CASE WHEN k.credits_remaining IS NOT NULL THEN
		coalesce((hokusai_auth._credits_status(coalesce(k.credits_key_id, k.id),
					k.refill_amount, k.refill_interval)).balance, k.credits_remaining) END
$$;

-- After update_key() changed a key's refill: the keys that share its balance
-- refill alike, from the next period on, and a key without credits gets a
-- balance, full.
CREATE FUNCTION hokusai_auth._credits_refill_changed(key_id uuid)
	RETURNS void
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k	hokusai_auth.api_keys;
BEGIN
	SELECT * INTO STRICT k FROM hokusai_auth.api_keys a
	 WHERE a.id OPERATOR(pg_catalog.=) _credits_refill_changed.key_id;
	IF k.credits_remaining IS NULL THEN
		IF k.refill_interval IS NOT NULL THEN
			UPDATE hokusai_auth.api_keys a
			   SET credits_remaining = k.refill_amount, credits_initial = k.refill_amount,
				   credits_refilled_at = hokusai_auth._refill_period_start(pg_catalog.now(),
											k.refill_interval)
			 WHERE a.id OPERATOR(pg_catalog.=) k.id;
		END IF;
		RETURN;
	END IF;
	-- The new schedule starts with the next period (as for the live
	-- balance, src/metering/balance.c).
	UPDATE hokusai_auth.api_keys a
	   SET refill_amount = k.refill_amount, refill_interval = k.refill_interval,
		   credits_refilled_at = CASE WHEN k.refill_interval IS NOT NULL THEN
				hokusai_auth._refill_period_start(pg_catalog.now(), k.refill_interval)
				ELSE a.credits_refilled_at END
	 WHERE coalesce(a.credits_key_id, a.id) OPERATOR(pg_catalog.=) coalesce(k.credits_key_id, k.id);
END
$$;

------------------------------------------------------------------------------
-- add_credits() and set_user_limits()
------------------------------------------------------------------------------

-- Add credits to a key's balance (negative: take them away, never below
-- zero); returns the new balance.  The live balance changes when the
-- transaction commits; validations are never blocked.  Audited.
CREATE FUNCTION hokusai_auth.add_credits(key_id uuid, amount bigint)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k		hokusai_auth.api_keys;
	root	uuid;
	old_balance bigint;
	new_balance bigint;
	refilled timestamptz;
BEGIN
	PERFORM hokusai_auth._check_not_null(key_id, 'key_id');
	PERFORM hokusai_auth._check_not_null(amount, 'amount');
	IF amount OPERATOR(pg_catalog.=) 0 THEN
		RAISE EXCEPTION 'amount must not be zero'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT coalesce(a.credits_key_id, a.id) INTO root
	  FROM hokusai_auth.api_keys a WHERE a.id OPERATOR(pg_catalog.=) add_credits.key_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'api key % does not exist', key_id
			USING ERRCODE = 'no_data_found';
	END IF;
	-- Every row that shows the balance, in one order: the worker writes
	-- them together and waits for none of them.
	PERFORM FROM hokusai_auth.api_keys a
	  WHERE a.id OPERATOR(pg_catalog.=) root OR a.credits_key_id OPERATOR(pg_catalog.=) root
	  ORDER BY a.id FOR NO KEY UPDATE;
	SELECT * INTO STRICT k FROM hokusai_auth.api_keys a
	 WHERE a.id OPERATOR(pg_catalog.=) add_credits.key_id;
	IF k.revoked_at IS NOT NULL OR NOT k.is_active THEN
		RAISE EXCEPTION 'cannot add credits to revoked api key %', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF k.expires_at IS NOT NULL AND k.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() THEN
		RAISE EXCEPTION 'cannot add credits to expired api key %', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF k.credits_remaining IS NULL THEN
		RAISE EXCEPTION 'api key % has no credit balance', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Its calls are not metered.',
				  HINT = 'Give a key credits when it is created (credits => ...), or a refill with update_key().';
	END IF;
	SELECT s.old_balance, s.new_balance, s.refilled_at
	  INTO old_balance, new_balance, refilled
	  FROM hokusai_auth._credits_add(root, amount, k.refill_amount, k.refill_interval) s;
	IF new_balance IS NULL THEN
		-- The library is not preloaded: there is no live balance, the row is it.
		old_balance := k.credits_remaining;
		new_balance := greatest(k.credits_remaining OPERATOR(pg_catalog.+) amount, 0);
		refilled := k.credits_refilled_at;
	END IF;
	UPDATE hokusai_auth.api_keys a
	   SET credits_remaining = new_balance, credits_refilled_at = refilled
	 WHERE a.id OPERATOR(pg_catalog.=) root OR a.credits_key_id OPERATOR(pg_catalog.=) root;
	PERFORM hokusai_auth._audit('add_credits', k.id, k.user_id,
		pg_catalog.jsonb_build_object('key_prefix', k.key_prefix, 'amount', amount,
			'added', new_balance OPERATOR(pg_catalog.-) old_balance,
			'balance', new_balance));
	RETURN new_balance;
END
$$;
COMMENT ON FUNCTION hokusai_auth.add_credits(uuid, bigint) IS
	'Add credits to a key''s balance (negative: take away, never below zero); returns the new balance, live at commit';

-- Limits shared by all of a user's keys, checked with each key's own
-- (NULL: none).  Take effect at commit.  Audited.
CREATE FUNCTION hokusai_auth.set_user_limits(user_id uuid, rate_limit_per_hour integer,
	burst_limit integer)
	RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	u	hokusai_auth.users;
BEGIN
	PERFORM hokusai_auth._check_not_null(user_id, 'user_id');
	IF rate_limit_per_hour OPERATOR(pg_catalog.<=) 0 THEN
		RAISE EXCEPTION 'rate_limit_per_hour must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL for no hourly limit shared by the user''s keys.';
	END IF;
	IF burst_limit OPERATOR(pg_catalog.<=) 0 THEN
		RAISE EXCEPTION 'burst_limit must be positive'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL for no burst limit shared by the user''s keys.';
	END IF;
	SELECT * INTO u FROM hokusai_auth.users x
	 WHERE x.id OPERATOR(pg_catalog.=) set_user_limits.user_id FOR NO KEY UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'user % does not exist', user_id
			USING ERRCODE = 'no_data_found';
	END IF;
	IF (u.rate_limit_per_hour, u.burst_limit) IS NOT DISTINCT FROM
	   (set_user_limits.rate_limit_per_hour, set_user_limits.burst_limit) THEN
		RETURN;
	END IF;
	UPDATE hokusai_auth.users x
	   SET rate_limit_per_hour = set_user_limits.rate_limit_per_hour,
		   burst_limit = set_user_limits.burst_limit
	 WHERE x.id OPERATOR(pg_catalog.=) u.id;
	PERFORM hokusai_auth._audit('set_user_limits', NULL, u.id,
		pg_catalog.jsonb_build_object('username', u.username,
			'rate_limit_per_hour', set_user_limits.rate_limit_per_hour,
			'burst_limit', set_user_limits.burst_limit));
END
$$;
COMMENT ON FUNCTION hokusai_auth.set_user_limits(uuid, integer, integer) IS
	'Set the hourly and burst limits shared by all of a user''s keys (NULL: none); audited';


-- ratelimit.sql: the user windows, the replay, rate_limit_status() with
-- credits and user limits (new OUT columns: made anew, grants copied).
CREATE FUNCTION hokusai_auth._user_limit_inspect(user_id uuid, per_hour integer, burst integer,
	OUT tracked boolean, OUT hour_count bigint, OUT burst_count bigint,
	OUT remaining integer, OUT reset_seconds integer)
	RETURNS record
	AS 'MODULE_PATHNAME', 'hk_sql_user_limit_inspect'
	LANGUAGE C VOLATILE;
-- Tests only: the all-or-nothing admission of validate_key() (credits, the
-- key's limits, the user's limits) replayed on private states, with every
-- counter after every call (sql/ratelimit.sql checks them against an exact
-- log).
CREATE FUNCTION hokusai_auth._admission_replay(at timestamptz[], key_no integer[],
	cost integer[], key_per_hour integer, key_burst integer,
	user_per_hour integer, user_burst integer, credits bigint,
	refill_amount bigint DEFAULT NULL, refill_interval text DEFAULT NULL,
	OUT i integer, OUT status text, OUT key_hour bigint, OUT key_burst_count bigint,
	OUT user_hour bigint, OUT user_burst_count bigint, OUT credits_left bigint,
	OUT refills bigint)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'hk_sql_admission_replay'
	LANGUAGE C IMMUTABLE;
COMMENT ON FUNCTION hokusai_auth._admission_replay(timestamptz[], integer[], integer[], integer, integer, integer, integer, bigint, bigint, text) IS
	'Tests only: validate_key''s all-or-nothing admission replayed on given calls, with every counter after each';

CREATE FUNCTION hokusai_auth._rate_limit_status_16(key_id uuid,
	OUT rate_limit_per_hour integer, OUT burst_limit integer,
	OUT requests_last_hour bigint, OUT requests_last_second bigint,
	OUT remaining integer, OUT reset_seconds integer, OUT tracked boolean,
	OUT credits_remaining bigint, OUT refill_amount bigint, OUT refill_interval text,
	OUT next_refill_at timestamptz, OUT user_rate_limit_per_hour integer,
	OUT user_burst_limit integer, OUT user_requests_last_hour bigint,
	OUT user_requests_last_second bigint, OUT user_remaining integer)
	RETURNS record
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k		hokusai_auth.api_keys;
	u		hokusai_auth.users;
	burst	integer;
	s		record;
	c		record;
BEGIN
	PERFORM hokusai_auth._check_not_null(rate_limit_status.key_id, 'key_id');
	SELECT * INTO k FROM hokusai_auth.api_keys a WHERE a.id OPERATOR(pg_catalog.=) rate_limit_status.key_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'api key % does not exist', rate_limit_status.key_id
			USING ERRCODE = 'no_data_found';
	END IF;
	burst := coalesce(k.burst_limit,
					  pg_catalog.current_setting('hokusai_auth.default_burst_limit')::integer);
	s := hokusai_auth._rate_limit_inspect(k.id, k.rate_limit_per_hour, burst);
	rate_limit_per_hour := k.rate_limit_per_hour;
	burst_limit := nullif(burst, 0);
	requests_last_hour := s.hour_count;
	requests_last_second := s.burst_count;
	remaining := s.remaining;
	reset_seconds := s.reset_seconds;
	tracked := s.tracked;
	IF k.credits_remaining IS NOT NULL THEN
		c := hokusai_auth._credits_status(coalesce(k.credits_key_id, k.id),
										  k.refill_amount, k.refill_interval);
		credits_remaining := coalesce(c.balance, k.credits_remaining);
		refill_amount := k.refill_amount;
		refill_interval := k.refill_interval;
		next_refill_at := c.next_refill_at;
	END IF;
	SELECT * INTO u FROM hokusai_auth.users x WHERE x.id OPERATOR(pg_catalog.=) k.user_id;
	IF u.rate_limit_per_hour IS NOT NULL OR u.burst_limit IS NOT NULL THEN
		s := hokusai_auth._user_limit_inspect(u.id, coalesce(u.rate_limit_per_hour, 0),
											  coalesce(u.burst_limit, 0));
		user_rate_limit_per_hour := u.rate_limit_per_hour;
		user_burst_limit := u.burst_limit;
		user_requests_last_hour := s.hour_count;
		user_requests_last_second := s.burst_count;
		user_remaining := s.remaining;
	END IF;
	RETURN;
END
$$;
SELECT hokusai_auth._copy_function_grants('hokusai_auth.rate_limit_status(uuid)',
	'hokusai_auth._rate_limit_status_16(uuid)');
DROP FUNCTION hokusai_auth.rate_limit_status(uuid);
ALTER FUNCTION hokusai_auth._rate_limit_status_16(uuid) RENAME TO rate_limit_status;
COMMENT ON FUNCTION hokusai_auth.rate_limit_status(uuid) IS
	'A key''s requests in its current windows, remaining quota, seconds until it can be used again, its live credits and the limits its owner''s keys share';

-- Every counter of the extension in one row (the cache's, the rate
-- limiter's, then metering's).
CREATE OR REPLACE VIEW hokusai_auth.stats AS
	SELECT c.*, r.admitted AS rate_admitted, r.rejected_hourly AS rate_rejected_hourly,
		   r.rejected_burst AS rate_rejected_burst, r.entries AS rate_entries,
		   r.created AS rate_entries_created, r.reclaimed AS rate_entries_reclaimed,
		   r.entry_bytes AS rate_entry_bytes,
		   m.credits_charged, m.credits_spent, m.credits_refused, m.credits_given_back,
		   m.credits_refills, m.credits_added, m.credits_low, m.credits_exhausted,
		   m.credits_loaded, m.credits_written, m.credits_swept, m.credit_entries,
		   m.rejected_user_hourly, m.rejected_user_burst, m.user_entries
	  FROM hokusai_auth.cache_stats() c, hokusai_auth.rate_limit_stats() r,
		   hokusai_auth.metering_stats() m;
COMMENT ON VIEW hokusai_auth.stats IS 'Key cache, rate limiter and metering counters';

-- keys.sql: burst_limit 0, credits checked, a rotated key spends the
-- balance of the key it replaces.
CREATE OR REPLACE FUNCTION hokusai_auth._check_key_settings(expires_at timestamptz,
	rate_limit_per_hour integer, burst_limit integer,
	allowed_ips cidr[], metadata jsonb)
	RETURNS void
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	IF expires_at IS NOT NULL AND expires_at <= now() THEN
		RAISE EXCEPTION 'expires_at must be in the future'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF rate_limit_per_hour IS NOT NULL AND rate_limit_per_hour <= 0 THEN
		RAISE EXCEPTION 'rate_limit_per_hour must be positive'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF burst_limit IS NOT NULL AND burst_limit < 0 THEN
		RAISE EXCEPTION 'burst_limit must not be negative'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use 0 for no burst limit, NULL for hokusai_auth.default_burst_limit.';
	END IF;
	IF allowed_ips IS NOT NULL THEN
		IF cardinality(allowed_ips) = 0 THEN
			RAISE EXCEPTION 'allowed_ips must not be empty'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Pass NULL to allow every address.';
		END IF;
		IF array_ndims(allowed_ips) > 1 THEN
			RAISE EXCEPTION 'allowed_ips must be a one-dimensional array'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF cardinality(allowed_ips) > 100 THEN
			RAISE EXCEPTION 'allowed_ips has too many entries'
				USING ERRCODE = 'program_limit_exceeded',
					  DETAIL = 'The limit is 100 entries.';
		END IF;
		IF array_position(allowed_ips, NULL) IS NOT NULL THEN
			RAISE EXCEPTION 'allowed_ips must not contain nulls'
				USING ERRCODE = 'null_value_not_allowed';
		END IF;
	END IF;
	IF metadata IS NOT NULL THEN
		IF jsonb_typeof(metadata) <> 'object' THEN
			RAISE EXCEPTION 'metadata must be a JSON object'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF octet_length(metadata::text) > 65536 THEN
			RAISE EXCEPTION 'metadata is too large'
				USING ERRCODE = 'program_limit_exceeded',
					  DETAIL = 'The limit is 65536 bytes of JSON.';
		END IF;
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION hokusai_auth._insert_key(user_id uuid, name text, environment text,
	expires_at timestamptz, rate_limit_per_hour integer, burst_limit integer,
	allowed_ips cidr[], metadata jsonb, rotated_from uuid,
	scopes text[], credits bigint, refill_amount bigint, refill_interval text,
	OUT id uuid, OUT key text, OUT key_prefix text)
	RETURNS record
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	nk		record;
	attempt integer;
	m		record := hokusai_auth._credits_of_new_key(_insert_key.rotated_from,
				_insert_key.credits, _insert_key.refill_interval);
BEGIN
	-- A key_prefix collision (8 base62 characters) is astronomically rare;
	-- draw again rather than fail.
	FOR attempt IN 1..3 LOOP
		nk := hokusai_auth._new_key(environment);
		INSERT INTO hokusai_auth.api_keys
			(key_hash, key_prefix, user_id, name, environment, expires_at,
			 rate_limit_per_hour, burst_limit, allowed_ips, metadata, rotated_from,
			 scopes, credits_remaining, refill_amount, refill_interval,
			 credits_key_id, credits_initial, credits_refilled_at)
		VALUES
			(nk.key_hash, nk.key_prefix, _insert_key.user_id, _insert_key.name,
			 _insert_key.environment, _insert_key.expires_at,
			 _insert_key.rate_limit_per_hour, _insert_key.burst_limit,
			 _insert_key.allowed_ips, _insert_key.metadata, _insert_key.rotated_from,
			 _insert_key.scopes, _insert_key.credits, _insert_key.refill_amount,
			 _insert_key.refill_interval, m.credits_key_id, m.credits_initial,
			 m.credits_refilled_at)
		ON CONFLICT DO NOTHING
		RETURNING api_keys.id INTO id;
		IF id IS NOT NULL THEN
			key := nk.key;
			key_prefix := nk.key_prefix;
			PERFORM hokusai_auth._audit('create', id, _insert_key.user_id,
				jsonb_strip_nulls(jsonb_build_object(
					'key_prefix', nk.key_prefix,
					'name', _insert_key.name,
					'environment', _insert_key.environment,
					'expires_at', _insert_key.expires_at,
					'rate_limit_per_hour', _insert_key.rate_limit_per_hour,
					'burst_limit', _insert_key.burst_limit,
					'allowed_ips', _insert_key.allowed_ips,
					'rotated_from', _insert_key.rotated_from,
					'scopes', nullif(_insert_key.scopes, '{}'),
					'credits', _insert_key.credits,
					'refill_amount', _insert_key.refill_amount,
					'refill_interval', _insert_key.refill_interval)));
			RETURN;
		END IF;
	END LOOP;
	RAISE EXCEPTION 'could not allocate a unique key prefix';
END
$$;

CREATE OR REPLACE FUNCTION hokusai_auth.create_key(user_id uuid, name text,
	OUT id uuid, OUT key text, OUT key_prefix text,
	environment text DEFAULT 'live',
	INOUT expires_at timestamptz DEFAULT NULL,
	rate_limit_per_hour integer DEFAULT NULL,
	burst_limit integer DEFAULT NULL,
	allowed_ips cidr[] DEFAULT NULL,
	metadata jsonb DEFAULT '{}',
	scopes text[] DEFAULT '{}',
	credits bigint DEFAULT NULL,
	refill_amount bigint DEFAULT NULL,
	refill_interval text DEFAULT NULL)
	RETURNS record
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	nk			 record;
BEGIN
	PERFORM hokusai_auth._check_not_null(user_id, 'user_id');
	PERFORM hokusai_auth._check_text(name, 'name', 200);
	PERFORM hokusai_auth._check_not_null(environment, 'environment');
	IF environment NOT IN ('live', 'test') THEN
		RAISE EXCEPTION 'invalid environment'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use "live" or "test".';
	END IF;
	IF expires_at OPERATOR(pg_catalog.=) 'infinity'::timestamptz THEN
		expires_at := NULL;
	END IF;
	PERFORM hokusai_auth._check_key_settings(expires_at, rate_limit_per_hour,
		burst_limit, allowed_ips, metadata);
	PERFORM hokusai_auth._check_credit_settings(credits, refill_amount, refill_interval);
	PERFORM hokusai_auth._active_user(user_id);

	-- A refill without credits starts full.
	nk := hokusai_auth._insert_key(user_id, name, environment, expires_at,
		coalesce(rate_limit_per_hour, hokusai_auth._default_rate_limit_per_hour()),
		burst_limit, allowed_ips, coalesce(metadata, '{}'), NULL,
		coalesce(scopes, '{}'), coalesce(credits, refill_amount), refill_amount,
		refill_interval);
	id := nk.id;
	key := nk.key;
	key_prefix := nk.key_prefix;
END
$$;
COMMENT ON FUNCTION hokusai_auth.create_key(uuid, text, text, timestamptz, integer, integer, cidr[], jsonb, text[], bigint, bigint, text) IS
	'Issue a key; the plaintext key is returned here once and never stored';

CREATE OR REPLACE FUNCTION hokusai_auth.rotate_key(key_id uuid, grace interval DEFAULT '0',
	OUT id uuid, OUT key text, OUT key_prefix text, OUT expires_at timestamptz)
	RETURNS record
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k		hokusai_auth.api_keys;
	old_end timestamptz;
	nk		record;
BEGIN
	PERFORM hokusai_auth._check_not_null(grace, 'grace');
	IF grace OPERATOR(pg_catalog.<) interval '0' THEN
		RAISE EXCEPTION 'grace must not be negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF grace OPERATOR(pg_catalog.>) interval '30 days' THEN
		RAISE EXCEPTION 'grace must be at most 30 days'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	k := hokusai_auth._key_for_update(key_id);
	IF k.revoked_at IS NOT NULL OR NOT k.is_active THEN
		RAISE EXCEPTION 'cannot rotate revoked api key %', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF k.expires_at IS NOT NULL AND k.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() THEN
		RAISE EXCEPTION 'cannot rotate expired api key %', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF EXISTS (SELECT FROM hokusai_auth.api_keys a
				WHERE a.rotated_from OPERATOR(pg_catalog.=) k.id) THEN
		RAISE EXCEPTION 'api key % has already been rotated', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Rotate the key that replaced it.';
	END IF;
	-- The same rule as create_key(): no new key for a deactivated user.
	PERFORM hokusai_auth._active_user(k.user_id);

	-- The new key keeps the old one's lifetime, counted from now.
	IF k.expires_at IS NOT NULL THEN
		expires_at := pg_catalog.now() OPERATOR(pg_catalog.+)
			(k.expires_at OPERATOR(pg_catalog.-) k.created_at);
	END IF;
	-- The new key spends the old one's balance (shared during the grace
	-- period); its row shows the live balance.
	nk := hokusai_auth._insert_key(k.user_id, k.name, k.environment, expires_at,
		k.rate_limit_per_hour, k.burst_limit, k.allowed_ips, k.metadata, k.id,
		k.scopes, hokusai_auth._credits_live(k), k.refill_amount, k.refill_interval);
	id := nk.id;
	key := nk.key;
	key_prefix := nk.key_prefix;

	IF grace OPERATOR(pg_catalog.=) interval '0' THEN
		old_end := pg_catalog.now();
		UPDATE hokusai_auth.api_keys a
		   SET is_active = false, revoked_at = pg_catalog.now()
		 WHERE a.id OPERATOR(pg_catalog.=) k.id;
	ELSE
		old_end := least(coalesce(k.expires_at, 'infinity'),
									pg_catalog.now() OPERATOR(pg_catalog.+) grace);
		UPDATE hokusai_auth.api_keys a SET expires_at = old_end
		 WHERE a.id OPERATOR(pg_catalog.=) k.id;
	END IF;
	PERFORM hokusai_auth._audit('rotate', k.id, k.user_id,
		pg_catalog.jsonb_build_object('key_prefix', k.key_prefix, 'new_key_id', nk.id,
						   'new_key_prefix', nk.key_prefix, 'grace', grace::text,
						   'old_key_ends_at', old_end));
END
$$;
COMMENT ON FUNCTION hokusai_auth.rotate_key(uuid, interval) IS
	'Replace a key with a new one of the same settings; the old key stops at now() + grace';

CREATE OR REPLACE FUNCTION hokusai_auth.update_key(key_id uuid,
	name text DEFAULT NULL,
	expires_at timestamptz DEFAULT NULL,
	rate_limit_per_hour integer DEFAULT NULL,
	burst_limit integer DEFAULT NULL,
	allowed_ips cidr[] DEFAULT NULL,
	metadata jsonb DEFAULT NULL,
	clear_expires_at boolean DEFAULT false,
	clear_burst_limit boolean DEFAULT false,
	clear_allowed_ips boolean DEFAULT false,
	scopes text[] DEFAULT NULL,
	refill_amount bigint DEFAULT NULL,
	refill_interval text DEFAULT NULL,
	clear_refill boolean DEFAULT false)
	RETURNS SETOF hokusai_auth.keys
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k		hokusai_auth.api_keys;
	changes jsonb := '{}';
BEGIN
	IF name IS NOT NULL THEN
		PERFORM hokusai_auth._check_text(name, 'name', 200);
	END IF;
	PERFORM hokusai_auth._check_not_null(clear_expires_at, 'clear_expires_at');
	PERFORM hokusai_auth._check_not_null(clear_burst_limit, 'clear_burst_limit');
	PERFORM hokusai_auth._check_not_null(clear_allowed_ips, 'clear_allowed_ips');
	PERFORM hokusai_auth._check_not_null(clear_refill, 'clear_refill');
	IF (clear_expires_at AND expires_at IS NOT NULL)
	   OR (clear_burst_limit AND burst_limit IS NOT NULL)
	   OR (clear_allowed_ips AND allowed_ips IS NOT NULL)
	   OR (clear_refill AND (refill_amount IS NOT NULL OR refill_interval IS NOT NULL)) THEN
		RAISE EXCEPTION 'a setting cannot be both given and cleared'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF expires_at = 'infinity' THEN
		expires_at := NULL;
		clear_expires_at := true;
	END IF;
	PERFORM hokusai_auth._check_key_settings(expires_at, rate_limit_per_hour,
		burst_limit, allowed_ips, metadata);
	k := hokusai_auth._key_for_update(key_id);
	IF k.revoked_at IS NOT NULL OR NOT k.is_active THEN
		RAISE EXCEPTION 'cannot update revoked api key %', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	-- Neither an expired key nor one replaced by rotation comes back to life.
	IF k.expires_at IS NOT NULL AND k.expires_at <= now() THEN
		RAISE EXCEPTION 'cannot update expired api key %', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF EXISTS (SELECT FROM hokusai_auth.api_keys a WHERE a.rotated_from = k.id) THEN
		RAISE EXCEPTION 'cannot update api key %: it has been rotated', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Update the key that replaced it.';
	END IF;
	IF NOT clear_refill AND (refill_amount IS NOT NULL OR refill_interval IS NOT NULL) THEN
		PERFORM hokusai_auth._check_credit_settings(NULL,
			coalesce(refill_amount, k.refill_amount), coalesce(refill_interval, k.refill_interval));
	END IF;

	IF name IS NOT NULL AND name IS DISTINCT FROM k.name THEN
		changes := changes || jsonb_build_object('name', name);
	END IF;
	IF (expires_at IS NOT NULL OR clear_expires_at)
	   AND expires_at IS DISTINCT FROM k.expires_at THEN
		changes := changes || jsonb_build_object('expires_at', coalesce(to_jsonb(expires_at), 'null'));
	END IF;
	IF rate_limit_per_hour IS NOT NULL AND rate_limit_per_hour IS DISTINCT FROM k.rate_limit_per_hour THEN
		changes := changes || jsonb_build_object('rate_limit_per_hour', rate_limit_per_hour);
	END IF;
	IF (burst_limit IS NOT NULL OR clear_burst_limit)
	   AND burst_limit IS DISTINCT FROM k.burst_limit THEN
		changes := changes || jsonb_build_object('burst_limit', coalesce(to_jsonb(burst_limit), 'null'));
	END IF;
	IF (allowed_ips IS NOT NULL OR clear_allowed_ips)
	   AND allowed_ips IS DISTINCT FROM k.allowed_ips THEN
		changes := changes || jsonb_build_object('allowed_ips', coalesce(to_jsonb(allowed_ips), 'null'));
	END IF;
	IF metadata IS NOT NULL AND metadata IS DISTINCT FROM k.metadata THEN
		changes := changes || jsonb_build_object('metadata', true);
	END IF;
	IF scopes IS NOT NULL AND scopes IS DISTINCT FROM k.scopes THEN
		changes := changes || jsonb_build_object('scopes', to_jsonb(scopes));
	END IF;
	IF clear_refill AND k.refill_interval IS NOT NULL THEN
		changes := changes || jsonb_build_object('refill_amount', 'null'::jsonb,
												 'refill_interval', 'null'::jsonb);
	ELSIF (refill_amount IS NOT NULL AND refill_amount IS DISTINCT FROM k.refill_amount)
	   OR (refill_interval IS NOT NULL AND refill_interval IS DISTINCT FROM k.refill_interval) THEN
		changes := changes || jsonb_build_object(
			'refill_amount', coalesce(refill_amount, k.refill_amount),
			'refill_interval', coalesce(refill_interval, k.refill_interval));
	END IF;

	IF changes <> '{}' THEN
		UPDATE hokusai_auth.api_keys a SET
			name = coalesce(update_key.name, a.name),
			expires_at = CASE WHEN clear_expires_at THEN NULL
							  ELSE coalesce(update_key.expires_at, a.expires_at) END,
			rate_limit_per_hour = coalesce(update_key.rate_limit_per_hour, a.rate_limit_per_hour),
			burst_limit = CASE WHEN clear_burst_limit THEN NULL
							   ELSE coalesce(update_key.burst_limit, a.burst_limit) END,
			allowed_ips = CASE WHEN clear_allowed_ips THEN NULL
							   ELSE coalesce(update_key.allowed_ips, a.allowed_ips) END,
			metadata = coalesce(update_key.metadata, a.metadata),
			scopes = coalesce(update_key.scopes, a.scopes),
			refill_amount = CASE WHEN clear_refill THEN NULL
								 ELSE coalesce(update_key.refill_amount, a.refill_amount) END,
			refill_interval = CASE WHEN clear_refill THEN NULL
								   ELSE coalesce(update_key.refill_interval, a.refill_interval) END
		 WHERE a.id = k.id;
		IF changes ? 'refill_interval' THEN
			PERFORM hokusai_auth._credits_refill_changed(k.id);
		END IF;
		-- Keep the audit trail free of the values of metadata: it may be large.
		PERFORM hokusai_auth._audit('update', k.id, k.user_id,
			jsonb_build_object('key_prefix', k.key_prefix, 'changes', changes));
	END IF;
	RETURN QUERY SELECT * FROM hokusai_auth.keys WHERE id = k.id;
END
$$;
COMMENT ON FUNCTION hokusai_auth.update_key(uuid, text, timestamptz, integer, integer, cidr[], jsonb, boolean, boolean, boolean, text[], bigint, text, boolean) IS
	'Change a key''s name, expiry, limits, allowed_ips, metadata, scopes or refill; NULL leaves a setting as it is';

-- http.sql: credits when a key is created, in the usage summary.
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

CREATE OR REPLACE FUNCTION hokusai_api.create_key(jsonb)
	RETURNS jsonb
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	body	jsonb := hokusai_auth._http_body($1, ARRAY['name', 'environment',
				'expires_at', 'rate_limit_per_hour', 'burst_limit', 'allowed_ips', 'metadata',
				'credits', 'refill_amount', 'refill_interval']);
	caller	uuid := hokusai_auth._http_caller();
	name	text := hokusai_auth._http_text(body, 'name', 200);
	env		text := coalesce(hokusai_auth._http_text(body, 'environment', 4), 'live');
	expires timestamptz := hokusai_auth._http_timestamp(hokusai_auth._http_text(body, 'expires_at', 64), 'expires_at');
	hourly	integer := hokusai_auth._http_int(body, 'rate_limit_per_hour', 1, 1000000000);
	burst	integer := hokusai_auth._http_int(body, 'burst_limit', 1, 1000000);
	ips		cidr[];
	meta	jsonb := body -> 'metadata';
	credits bigint := hokusai_auth._http_bigint(body, 'credits', 0, 9223372036854775807);
	refill	bigint := hokusai_auth._http_bigint(body, 'refill_amount', 1, 9223372036854775807);
	refill_every text := hokusai_auth._http_text(body, 'refill_interval', 5);
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

	IF (refill IS NULL) <> (refill_every IS NULL) THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			'refill_amount and refill_interval must be given together');
	END IF;
	IF refill_every NOT IN ('day', 'week', 'month') THEN
		PERFORM hokusai_auth._http_error(400, 'invalid_field',
			'refill_interval must be "day", "week" or "month"');
	END IF;

	nk := hokusai_auth.create_key(caller, name, environment => env, expires_at => expires,
		rate_limit_per_hour => hourly, burst_limit => burst, allowed_ips => ips, metadata => meta,
		credits => credits, refill_amount => refill, refill_interval => refill_every);
	SELECT * INTO k FROM hokusai_auth.keys WHERE id = nk.id;
	PERFORM set_config('response.status', '201', true);
	PERFORM hokusai_auth._http_location(nk.id);
	RETURN jsonb_build_object('key', nk.key) || hokusai_auth._http_key_json(k);
END
$$;
COMMENT ON FUNCTION hokusai_api.create_key(jsonb) IS
	'Create an API key for the caller; the plaintext key is in this response only';

CREATE OR REPLACE FUNCTION hokusai_auth._http_usage(key_id uuid, since timestamptz, "until" timestamptz)
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
		   || jsonb_build_object('credits', hokusai_auth._http_credits(k))
	  FROM hokusai_auth.usage_summary(k.id, since, "until") s;
END
$$;


------------------------------------------------------------------------------
-- END: nothing new is usable by PUBLIC.
------------------------------------------------------------------------------

DROP FUNCTION hokusai_auth._copy_function_grants(regprocedure, regprocedure);
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA hokusai_auth, hokusai_api FROM PUBLIC;
