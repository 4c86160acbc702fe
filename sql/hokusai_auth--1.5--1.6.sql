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



------------------------------------------------------------------------------
-- Usage at volume: per-minute aggregates, raw rows by sampling, time
-- partitions (sql/install/usage.sql).
------------------------------------------------------------------------------



------------------------------------------------------------------------------
-- Replicas: cache invalidation carried by the WAL, usage shipped from
-- standbys (sql/install/cache.sql, sql/install/usage.sql).
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- Replicas: cache invalidation carried by the WAL (src/replica/inval_log.c,
-- walinval.c).  The invalidation triggers also append what they forget to
-- this log, with the 64-bit id of the changing transaction, and register a
-- relcache invalidation of it that rides in the commit record; a hot
-- standby's backends read the rows new to them before their next use of the
-- cache.  Rows are this server's (and its standbys') only: not dumped.
------------------------------------------------------------------------------

CREATE TABLE hokusai_auth.cache_invalidations (
	xid			xid8 NOT NULL,
	kind		"char" NOT NULL CHECK (kind IN ('k', 'u', 'a', 'p')),
	id			uuid,
	at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	pruned		xid8[]
);
CREATE INDEX cache_invalidations_xid ON hokusai_auth.cache_invalidations (xid);
COMMENT ON TABLE hokusai_auth.cache_invalidations IS
	'Keys (k) and users (u) to forget, or everything (a), per committing transaction, for hot standbys; p: a prune and the transactions whose rows it deleted';

-- The worker, every flush_interval: forget log rows older than keep, and
-- say which transactions' rows went (a standby that had not read them
-- clears that database's entries).  Also forgets the shipping state of
-- standby runs silent for 30 days.
CREATE FUNCTION hokusai_auth._prune_replica_state(keep interval DEFAULT '1 hour')
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	xids	xid8[];
	n		integer;
BEGIN
	WITH d AS (
		DELETE FROM hokusai_auth.cache_invalidations c
		 WHERE c.at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) keep)
		RETURNING c.xid)
	SELECT pg_catalog.array_agg(DISTINCT d.xid), pg_catalog.count(*) INTO xids, n FROM d;
	IF n OPERATOR(pg_catalog.>) 0 THEN
		INSERT INTO hokusai_auth.cache_invalidations (xid, kind, pruned)
		VALUES (pg_catalog.pg_current_xact_id(), 'p',
				CASE WHEN pg_catalog.cardinality(xids) OPERATOR(pg_catalog.<=) 10000 THEN xids END);
	END IF;
	DELETE FROM hokusai_auth.usage_shipments s
	 WHERE s.last_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '30 days');
	RETURN n;
END
$$;


------------------------------------------------------------------------------
-- Replicas: usage recorded on hot standbys, shipped here by their workers
-- (src/replica/ship.c) and received once (src/replica/receive.c): per
-- standby run, the queue position below which everything was received.
-- Grant EXECUTE on _receive_usage() to the role the standbys connect as
-- (docs/scaling.md); it needs nothing else.
------------------------------------------------------------------------------

CREATE TABLE hokusai_auth.usage_shipments (
	run_id			uuid PRIMARY KEY,
	received_until	bigint NOT NULL DEFAULT 0,
	first_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	last_at			timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE hokusai_auth.usage_shipments IS
	'Per standby run: the queue position below which its usage has been received';

CREATE FUNCTION hokusai_auth._receive_usage(run_id uuid, upto bigint,
	positions bigint[], key_ids uuid[], endpoints text[], ats bigint[],
	response_times integer[], status_codes integer[],
	touch_keys uuid[], touch_ats bigint[])
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'hk_sql_receive_usage'
	LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION hokusai_auth.replica_stats(
	OUT in_recovery boolean, OUT invalidation_reads bigint,
	OUT invalidations_applied bigint, OUT invalidation_clear_all bigint,
	OUT shipped bigint, OUT touches_shipped bigint, OUT ship_calls bigint,
	OUT ship_failures bigint, OUT last_ship_at timestamptz,
	OUT primary_reachable boolean, OUT received bigint,
	OUT received_duplicates bigint, OUT received_deferred bigint)
	RETURNS record
	AS 'MODULE_PATHNAME', 'hk_sql_replica_stats'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.replica_stats() IS
	'This server''s side of replication: invalidations read from the WAL, usage shipped (standby) or received (primary)';

CREATE VIEW hokusai_auth.replica_stats AS SELECT * FROM hokusai_auth.replica_stats();
COMMENT ON VIEW hokusai_auth.replica_stats IS 'Replication counters (hokusai_auth.replica_stats())';



------------------------------------------------------------------------------
-- END: nothing new is usable by PUBLIC.
------------------------------------------------------------------------------

DROP FUNCTION hokusai_auth._copy_function_grants(regprocedure, regprocedure);
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA hokusai_auth, hokusai_api FROM PUBLIC;
