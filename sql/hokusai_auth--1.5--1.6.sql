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
-- Room on each page for new versions of its rows, so that the worker's writes
-- (last_used_at, credit balances) are HOT updates (docs/usage.md).  Pages
-- written before the update keep no such room until the table is rewritten
-- (VACUUM FULL, CLUSTER).
ALTER TABLE hokusai_auth.api_keys SET (fillfactor = 70);
-- The same checks without bounded repetitions ({8}, {53}), which the regular
-- expression engine expands into many states: every UPDATE of a row checks
-- them, the worker's writes too.
ALTER TABLE hokusai_auth.api_keys
	DROP CONSTRAINT api_keys_key_prefix_check,
	ADD CONSTRAINT api_keys_key_prefix_check
		CHECK (key_prefix ~ '^hk_(live|test)_[0-9A-Za-z]+$'
			   AND char_length(key_prefix) = 16
			   AND substr(key_prefix, 4, 4) = environment),
	DROP CONSTRAINT api_keys_key_hash_check,
	ADD CONSTRAINT api_keys_key_hash_check
		CHECK (key_hash ~ '^\$2a\$[0-9][0-9]\$' AND char_length(key_hash) = 60);

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
	PERFORM hokusai_auth._check_scopes(scopes);
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
	-- Rotation changes the secret, not whether the key may be used: the
	-- replacement of a disabled key starts disabled (docs/authorization.md).
	IF k.disabled_at IS NOT NULL THEN
		UPDATE hokusai_auth.api_keys a SET disabled_at = k.disabled_at
		 WHERE a.id OPERATOR(pg_catalog.=) nk.id;
		PERFORM hokusai_auth._audit('disable', nk.id, k.user_id,
			pg_catalog.jsonb_build_object('key_prefix', nk.key_prefix,
				'reason', 'replaces a disabled key', 'rotated_from', k.id));
	END IF;

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
	PERFORM hokusai_auth._check_scopes(scopes);
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
-- Authorization: scopes, disable and enable, require_scope(), the caller of
-- the current request (sql/install/authorization.sql).
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

------------------------------------------------------------------------------
-- HTTP (sql/install/http.sql): scopes in POST /keys, the rotation check,
-- PATCH /keys/{key_id}.
------------------------------------------------------------------------------

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

-- POST /api/v1/auth/keys
CREATE OR REPLACE FUNCTION hokusai_api.create_key(jsonb)
	RETURNS jsonb
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	body	jsonb := hokusai_auth._http_body($1, ARRAY['name', 'environment',
				'expires_at', 'rate_limit_per_hour', 'burst_limit', 'allowed_ips', 'metadata',
				'scopes']);
	caller	uuid := hokusai_auth._http_caller();
	name	text := hokusai_auth._http_text(body, 'name', 200);
	env		text := coalesce(hokusai_auth._http_text(body, 'environment', 4), 'live');
	expires timestamptz := hokusai_auth._http_timestamp(hokusai_auth._http_text(body, 'expires_at', 64), 'expires_at');
	hourly	integer := hokusai_auth._http_int(body, 'rate_limit_per_hour', 1, 1000000000);
	burst	integer := hokusai_auth._http_int(body, 'burst_limit', 1, 1000000);
	ips		cidr[] := hokusai_auth._http_cidrs(body);
	meta	jsonb := body -> 'metadata';
	scopes	text[] := coalesce(hokusai_auth._http_scopes(body), '{}');
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

	PERFORM hokusai_auth._http_check_grant(scopes);

	nk := hokusai_auth.create_key(caller, name, environment => env, expires_at => expires,
		rate_limit_per_hour => hourly, burst_limit => burst, allowed_ips => ips, metadata => meta,
		scopes => scopes);
	SELECT * INTO k FROM hokusai_auth.keys WHERE id = nk.id;
	PERFORM set_config('response.status', '201', true);
	PERFORM hokusai_auth._http_location(nk.id);
	RETURN jsonb_build_object('key', nk.key) || hokusai_auth._http_key_json(k);
END
$$;
COMMENT ON FUNCTION hokusai_api.create_key(jsonb) IS
	'Create an API key for the caller; the plaintext key is in this response only';

-- POST /api/v1/auth/keys/{key_id}/rotate
CREATE OR REPLACE FUNCTION hokusai_api.rotate_key(jsonb)
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

-- For update_key(): the live balance set (balance NULL: removed, the key
-- no longer metered) when the transaction commits; the keys of key_ids
-- leave the cache then, and standbys hear of the balance's key.
CREATE FUNCTION hokusai_auth._credits_reset(key_id uuid, key_ids uuid[], balance bigint,
	refill_amount bigint, refill_interval text, refilled_at timestamptz)
	RETURNS void
	AS 'MODULE_PATHNAME', 'hk_sql_credits_reset'
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

-- update_key(credits => N) and (clear_credits => true), after update_key()
-- wrote the key's other settings: the balance the key spends (shared with
-- the keys of its rotation) is set to N, the key made metered if it was
-- not (its refill, if any, from the next period on); or, credits NULL, the
-- key and the keys that share its balance are no longer metered (no
-- balance, no refill).  The rows are written now, in one order; the live
-- balance changes when the transaction commits (_credits_reset()).
CREATE FUNCTION hokusai_auth._credits_update(key_id uuid, credits bigint)
	RETURNS void
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k		hokusai_auth.api_keys;
	root	uuid;
	ids		uuid[];
	anchor	timestamptz;
BEGIN
	SELECT * INTO STRICT k FROM hokusai_auth.api_keys a
	 WHERE a.id OPERATOR(pg_catalog.=) _credits_update.key_id;
	root := coalesce(k.credits_key_id, k.id);
	SELECT pg_catalog.array_agg(r.id ORDER BY r.id) INTO ids
	  FROM (SELECT a.id FROM hokusai_auth.api_keys a
			 WHERE a.id OPERATOR(pg_catalog.=) root
				OR a.credits_key_id OPERATOR(pg_catalog.=) root
			 ORDER BY a.id FOR NO KEY UPDATE) r;
	IF _credits_update.credits IS NULL THEN
		UPDATE hokusai_auth.api_keys a
		   SET credits_remaining = NULL, credits_key_id = NULL, credits_initial = NULL,
			   credits_refilled_at = NULL, refill_amount = NULL, refill_interval = NULL
		 WHERE a.id OPERATOR(pg_catalog.=) ANY (ids);
		PERFORM hokusai_auth._credits_reset(root, ids, NULL, NULL, NULL, NULL);
		RETURN;
	END IF;
	-- The refill anchor stays; a key metered from now on starts its
	-- schedule in the current period.
	IF k.refill_interval IS NOT NULL THEN
		anchor := coalesce(k.credits_refilled_at,
			hokusai_auth._refill_period_start(pg_catalog.now(), k.refill_interval));
	END IF;
	UPDATE hokusai_auth.api_keys a
	   SET credits_remaining = _credits_update.credits,
		   credits_initial = _credits_update.credits, credits_refilled_at = anchor
	 WHERE a.id OPERATOR(pg_catalog.=) ANY (ids);
	PERFORM hokusai_auth._credits_reset(root, ids, _credits_update.credits,
		k.refill_amount, k.refill_interval, anchor);
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
				  HINT = 'Give it a balance with update_key(key_id, credits => ...).';
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
	PERFORM hokusai_auth._check_scopes(scopes);
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
	-- Rotation changes the secret, not whether the key may be used: the
	-- replacement of a disabled key starts disabled (docs/authorization.md).
	IF k.disabled_at IS NOT NULL THEN
		UPDATE hokusai_auth.api_keys a SET disabled_at = k.disabled_at
		 WHERE a.id OPERATOR(pg_catalog.=) nk.id;
		PERFORM hokusai_auth._audit('disable', nk.id, k.user_id,
			pg_catalog.jsonb_build_object('key_prefix', nk.key_prefix,
				'reason', 'replaces a disabled key', 'rotated_from', k.id));
	END IF;

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
	clear_refill boolean DEFAULT false,
	credits bigint DEFAULT NULL,
	clear_credits boolean DEFAULT false)
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
	PERFORM hokusai_auth._check_not_null(clear_credits, 'clear_credits');
	PERFORM hokusai_auth._check_credit_settings(credits, NULL, NULL);
	IF (clear_expires_at AND expires_at IS NOT NULL)
	   OR (clear_burst_limit AND burst_limit IS NOT NULL)
	   OR (clear_allowed_ips AND allowed_ips IS NOT NULL)
	   OR (clear_refill AND (refill_amount IS NOT NULL OR refill_interval IS NOT NULL))
	   OR (clear_credits AND (credits IS NOT NULL OR refill_amount IS NOT NULL
							  OR refill_interval IS NOT NULL)) THEN
		RAISE EXCEPTION 'a setting cannot be both given and cleared'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- A key without credits has no refill either (metering.sql).
	clear_refill := clear_refill OR clear_credits;
	IF expires_at = 'infinity' THEN
		expires_at := NULL;
		clear_expires_at := true;
	END IF;
	PERFORM hokusai_auth._check_key_settings(expires_at, rate_limit_per_hour,
		burst_limit, allowed_ips, metadata);
	PERFORM hokusai_auth._check_scopes(scopes);
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
	IF clear_credits AND k.credits_remaining IS NOT NULL THEN
		changes := changes || jsonb_build_object('credits', 'null'::jsonb);
	ELSIF credits IS NOT NULL THEN
		changes := changes || jsonb_build_object('credits', credits);
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
		IF changes ? 'credits' THEN
			PERFORM hokusai_auth._credits_update(k.id, update_key.credits);
		END IF;
		-- Keep the audit trail free of the values of metadata: it may be large.
		PERFORM hokusai_auth._audit('update', k.id, k.user_id,
			jsonb_build_object('key_prefix', k.key_prefix, 'changes', changes));
	END IF;
	RETURN QUERY SELECT * FROM hokusai_auth.keys WHERE id = k.id;
END
$$;
COMMENT ON FUNCTION hokusai_auth.update_key(uuid, text, timestamptz, integer, integer, cidr[], jsonb, boolean, boolean, boolean, text[], bigint, text, boolean, bigint, boolean) IS
	'Change a key''s name, expiry, limits, allowed_ips, metadata, scopes, refill or credits; NULL leaves a setting as it is';
SELECT hokusai_auth._copy_function_grants(
	'hokusai_auth.update_key(uuid, text, timestamptz, integer, integer, cidr[], jsonb, boolean, boolean, boolean, text[], bigint, text, boolean)',
	'hokusai_auth.update_key(uuid, text, timestamptz, integer, integer, cidr[], jsonb, boolean, boolean, boolean, text[], bigint, text, boolean, bigint, boolean)');
DROP FUNCTION hokusai_auth.update_key(uuid, text, timestamptz, integer, integer,
	cidr[], jsonb, boolean, boolean, boolean, text[], bigint, text, boolean);

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

SELECT hokusai_auth._copy_function_grants(
	'hokusai_auth._http_usage(uuid, timestamptz, timestamptz)',
	'hokusai_auth._http_usage(uuid, timestamptz, timestamptz, text)');
DROP FUNCTION hokusai_auth._http_usage(uuid, timestamptz, timestamptz);

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
SELECT hokusai_auth._copy_function_grants(
	'hokusai_api.key_usage(text, text, text)',
	'hokusai_api.key_usage(text, text, text, text)');
DROP FUNCTION hokusai_api.key_usage(text, text, text);


------------------------------------------------------------------------------
-- Usage at volume: per-minute aggregates, raw rows by sampling, time
-- partitions (sql/install/usage.sql).
------------------------------------------------------------------------------

-- Relations whose definition changes are made anew beside the old ones;
-- the grants of the old ones (setup_http_roles(), setup_admin_role(), an
-- operator's) carry over.
CREATE FUNCTION hokusai_auth._copy_relation_grants(old regclass, new regclass)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	r	record;
BEGIN
	FOR r IN
		SELECT a.grantee, a.privilege_type, a.is_grantable
		  FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
		 WHERE c.oid OPERATOR(pg_catalog.=) old
		   AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
	LOOP
		EXECUTE pg_catalog.format('GRANT %s ON %s TO %s%s', r.privilege_type, new,
			CASE WHEN r.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
				 ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r.grantee)) END,
			CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
	END LOOP;
END
$$;

-- The 1.5 tables step aside; their rows move below.
ALTER TABLE hokusai_auth.api_key_usage RENAME TO api_key_usage_1_5;
ALTER TABLE hokusai_auth.api_key_usage_hourly RENAME TO api_key_usage_hourly_1_5;

-- Raw usage events, written by the background worker (usage.sql), for the
-- share of requests hokusai_auth.usage_raw_sample keeps.  Partitioned by
-- UTC day; the partitions (api_key_usage_pYYYYMMDD) are made by
-- create_usage_partitions() and dropped by prune_usage(), each with its own
-- indexes: a B-tree on api_key_id (deduplicated: a few bytes a row) and a
-- BRIN on "timestamp".  The parent has no index, key or foreign key of its
-- own: a partitioned index would make pg_dump's restore of the partitions
-- fail, and the worker checks the keys itself (docs/usage.md#partitions).
CREATE TABLE hokusai_auth.api_key_usage (
	id					uuid NOT NULL DEFAULT gen_random_uuid(),
	api_key_id			uuid NOT NULL,
	endpoint			text,
	"timestamp"			timestamptz NOT NULL DEFAULT now(),
	response_time_ms	integer,
	status_code			integer
) PARTITION BY RANGE ("timestamp");
COMMENT ON TABLE hokusai_auth.api_key_usage IS
	'Raw usage events: one row per recorded request that hokusai_auth.usage_raw_sample keeps';

-- Per key, UTC minute, endpoint and status code: requests, those with a
-- response time, their sum and maximum, and their histogram (pairs of
-- bucket and count, see _hist_percentile()).  Errors are the requests of
-- status 400 and above.
CREATE TABLE hokusai_auth.api_key_usage_minutely (
	api_key_id			uuid NOT NULL,
	minute				timestamptz NOT NULL,
	endpoint			text,
	status_code			integer,
	requests			bigint NOT NULL,
	timed_requests		bigint NOT NULL,
	response_ms_sum		bigint NOT NULL,
	max_response_ms		integer,
	latency_hist		bigint[]
) PARTITION BY RANGE (minute);
COMMENT ON TABLE hokusai_auth.api_key_usage_minutely IS
	'Requests per key, UTC minute, endpoint and status code, with a response-time histogram (every request counted)';

-- The same per UTC hour; partitioned by month.
CREATE TABLE hokusai_auth.api_key_usage_hourly (
	api_key_id			uuid NOT NULL,
	hour				timestamptz NOT NULL,
	endpoint			text,
	status_code			integer,
	requests			bigint NOT NULL,
	timed_requests		bigint NOT NULL,
	response_ms_sum		bigint NOT NULL,
	max_response_ms		integer,
	latency_hist		bigint[]
) PARTITION BY RANGE (hour);
COMMENT ON TABLE hokusai_auth.api_key_usage_hourly IS
	'Requests per key, UTC hour, endpoint and status code, with a response-time histogram (every request counted)';

-- The same per UTC day; partitioned by year.  Summaries read it for the
-- whole days of a range.
CREATE TABLE hokusai_auth.api_key_usage_daily (
	api_key_id			uuid NOT NULL,
	day					timestamptz NOT NULL,
	endpoint			text,
	status_code			integer,
	requests			bigint NOT NULL,
	timed_requests		bigint NOT NULL,
	response_ms_sum		bigint NOT NULL,
	max_response_ms		integer,
	latency_hist		bigint[]
) PARTITION BY RANGE (day);
COMMENT ON TABLE hokusai_auth.api_key_usage_daily IS
	'Requests per key, UTC day, endpoint and status code, with a response-time histogram (every request counted)';

-- One group of any of the three, as the worker hands them over.
CREATE TYPE hokusai_auth._usage_group AS (
	t					timestamptz,
	api_key_id			uuid,
	endpoint			text,
	status_code			integer,
	requests			bigint,
	timed_requests		bigint,
	response_ms_sum		bigint,
	max_response_ms		integer,
	latency_hist		bigint[]
);

------------------------------------------------------------------------------
-- Response-time histograms (src/usage/histogram.c).  Bucket b holds the
-- response times v with: v = b below 32 ms; above, 16 buckets per power of
-- two, each 1/16 of its lower bound wide at most.  A histogram is a
-- bigint[] of (bucket, count) pairs, buckets ascending, empty buckets left
-- out; NULL when no request had a response time.
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth._hist_merge(a bigint[], b bigint[])
	RETURNS bigint[]
	AS 'MODULE_PATHNAME', 'hk_sql_hist_merge'
	LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION hokusai_auth._hist_sum_step(state internal, h bigint[])
	RETURNS internal
	AS 'MODULE_PATHNAME', 'hk_sql_hist_sum_step'
	LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION hokusai_auth._hist_of_step(state internal, response_time_ms integer)
	RETURNS internal
	AS 'MODULE_PATHNAME', 'hk_sql_hist_of_step'
	LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION hokusai_auth._hist_final(state internal)
	RETURNS bigint[]
	AS 'MODULE_PATHNAME', 'hk_sql_hist_final'
	LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- The sum of histograms.
CREATE AGGREGATE hokusai_auth._hist_sum(bigint[]) (
	SFUNC = hokusai_auth._hist_sum_step,
	STYPE = internal,
	FINALFUNC = hokusai_auth._hist_final
);

-- The histogram of response times (NULLs left out).
CREATE AGGREGATE hokusai_auth._hist_of(integer) (
	SFUNC = hokusai_auth._hist_of_step,
	STYPE = internal,
	FINALFUNC = hokusai_auth._hist_final
);

-- (was PL/pgSQL over 1.5's 63 dense buckets)
-- The p-quantile of a histogram: interpolated inside the bucket that holds
-- the nearest-rank value, never above the largest value seen.  Exact below
-- 32 ms, less than 1/16 (6.25%) off above.
CREATE OR REPLACE FUNCTION hokusai_auth._hist_percentile(h bigint[], p double precision, max_ms integer)
	RETURNS numeric
	AS 'MODULE_PATHNAME', 'hk_sql_hist_percentile'
	LANGUAGE C IMMUTABLE PARALLEL SAFE;

------------------------------------------------------------------------------
-- Partitions.  Made only at run time, never by the install script: pg_dump
-- dumps them (they are not members of the extension) with their rows, and
-- a restore re-creates and attaches them after CREATE EXTENSION made the
-- parents.  Made ahead by the worker every hour (create_usage_partitions()),
-- dropped by prune_usage().  Every lock on a parent is taken NOWAIT: an idle
-- transaction that read a usage table never makes anyone queue behind us.
------------------------------------------------------------------------------

-- The partition of parent that holds time "at"; NULL when there is none.
CREATE FUNCTION hokusai_auth._usage_partition(parent regclass, at timestamptz)
	RETURNS regclass
	AS 'MODULE_PATHNAME', 'hk_sql_usage_partition'
	LANGUAGE C STABLE STRICT;

-- Every partition of parent with its bounds, oldest first.
CREATE FUNCTION hokusai_auth._usage_partition_bounds(parent regclass,
	OUT partition regclass, OUT from_time timestamptz, OUT until_time timestamptz)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'hk_sql_usage_partition_bounds'
	LANGUAGE C STABLE STRICT;

-- The partitions of the three usage tables.
CREATE VIEW hokusai_auth.usage_partitions AS
	SELECT t.t::regclass AS table_name, b.partition, b.from_time, b.until_time,
		   pg_catalog.pg_total_relation_size(b.partition) AS total_bytes
	  FROM unnest(ARRAY['hokusai_auth.api_key_usage', 'hokusai_auth.api_key_usage_minutely',
						'hokusai_auth.api_key_usage_hourly', 'hokusai_auth.api_key_usage_daily']) t,
		   LATERAL hokusai_auth._usage_partition_bounds(t.t::regclass) b;
COMMENT ON VIEW hokusai_auth.usage_partitions IS
	'Partitions of the raw and aggregate usage tables, with their time ranges and sizes';

-- Make the partition of parent that holds time "at" (a UTC day; a UTC
-- month for the hourly table, a year for the daily one), unless there is
-- one.  Returns it, or NULL
-- when the parent's lock was not available at once (try again later).
CREATE FUNCTION hokusai_auth._usage_make_partition(parent regclass, at timestamptz)
	RETURNS regclass
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	unit	text := CASE WHEN parent OPERATOR(pg_catalog.=) 'hokusai_auth.api_key_usage_hourly'::regclass
						 THEN 'month'
						 WHEN parent OPERATOR(pg_catalog.=) 'hokusai_auth.api_key_usage_daily'::regclass
						 THEN 'year' ELSE 'day' END;
	step	interval := pg_catalog.concat('1 ', unit)::interval;
	lo		timestamp;
	part	regclass := hokusai_auth._usage_partition(parent, at);
	name	text;
	owner	name;
BEGIN
	IF part IS NOT NULL THEN
		RETURN part;
	END IF;
	lo := pg_catalog.date_trunc(unit, at, 'UTC') AT TIME ZONE 'UTC';
	name := pg_catalog.format('%s_p%s', c.relname,
		pg_catalog.to_char(lo, CASE WHEN unit OPERATOR(pg_catalog.=) 'day' THEN 'YYYYMMDD'
									WHEN unit OPERATOR(pg_catalog.=) 'month' THEN 'YYYYMM' ELSE 'YYYY' END))
	  FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) parent;
	SELECT r.rolname INTO owner FROM pg_catalog.pg_class c, pg_catalog.pg_roles r
	 WHERE c.oid OPERATOR(pg_catalog.=) parent AND r.oid OPERATOR(pg_catalog.=) c.relowner;
	BEGIN
		-- ATTACH takes SHARE UPDATE EXCLUSIVE, which readers and writers do
		-- not conflict with; never wait for it.
		EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE UPDATE EXCLUSIVE MODE NOWAIT', parent);
	EXCEPTION WHEN lock_not_available THEN
		RETURN NULL;
	END;
	EXECUTE pg_catalog.format('CREATE TABLE hokusai_auth.%I (LIKE %s INCLUDING DEFAULTS)',
							  name, parent);
	part := pg_catalog.format('hokusai_auth.%I', name)::regclass;
	IF parent OPERATOR(pg_catalog.=) 'hokusai_auth.api_key_usage'::regclass THEN
		EXECUTE pg_catalog.format('CREATE INDEX %I ON %s (api_key_id)',
								  pg_catalog.concat(name, '_key_idx'), part);
		EXECUTE pg_catalog.format('CREATE INDEX %I ON %s USING brin ("timestamp")',
								  pg_catalog.concat(name, '_time_brin'), part);
	ELSE
		EXECUTE pg_catalog.format('CREATE UNIQUE INDEX %I ON %s (api_key_id, %I, endpoint, status_code) NULLS NOT DISTINCT',
								  pg_catalog.concat(name, '_key'), part,
								  CASE WHEN unit OPERATOR(pg_catalog.=) 'day' THEN 'minute'
									   WHEN unit OPERATOR(pg_catalog.=) 'month' THEN 'hour' ELSE 'day' END);
	END IF;
	EXECUTE pg_catalog.format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)',
							  parent, part, (lo AT TIME ZONE 'UTC')::text,
							  ((lo OPERATOR(pg_catalog.+) step) AT TIME ZONE 'UTC')::text);
	IF owner OPERATOR(pg_catalog.<>) current_user THEN
		EXECUTE pg_catalog.format('ALTER TABLE %s OWNER TO %I', part, owner);
	END IF;
	RETURN part;
END
$$;

-- Make the partitions for today and the next days_ahead UTC days (and
-- their months and years) that do not exist yet; returns how many were
-- made.  The
-- worker calls it every hour, prune_usage() too.
CREATE FUNCTION hokusai_auth.create_usage_partitions(days_ahead integer DEFAULT 2)
	RETURNS integer
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	t		timestamptz;
	parent	regclass;
	made	integer := 0;
	missed	integer := 0;
BEGIN
	IF days_ahead IS NULL OR days_ahead OPERATOR(pg_catalog.<) 0
	   OR days_ahead OPERATOR(pg_catalog.>) 366 THEN
		RAISE EXCEPTION 'days_ahead must be between 0 and 366'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR t IN SELECT pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(days => d)
			   FROM pg_catalog.generate_series(0, days_ahead) d
	LOOP
		FOREACH parent IN ARRAY ARRAY['hokusai_auth.api_key_usage', 'hokusai_auth.api_key_usage_minutely',
									  'hokusai_auth.api_key_usage_hourly',
									  'hokusai_auth.api_key_usage_daily']::regclass[]
		LOOP
			IF hokusai_auth._usage_partition(parent, t) IS NULL THEN
				IF hokusai_auth._usage_make_partition(parent, t) IS NULL THEN
					missed := missed OPERATOR(pg_catalog.+) 1;
				ELSE
					made := made OPERATOR(pg_catalog.+) 1;
				END IF;
			END IF;
		END LOOP;
	END LOOP;
	IF missed OPERATOR(pg_catalog.>) 0 THEN
		RAISE WARNING 'could not make % usage partitions now: a usage table is locked', missed
			USING HINT = 'They are made at the next try (the worker tries every minute until it succeeds).';
	END IF;
	RETURN made;
END
$$;
COMMENT ON FUNCTION hokusai_auth.create_usage_partitions(integer) IS
	'Make the usage partitions for today and the next days_ahead days that do not exist yet; returns how many';

-- Drop the partitions of parent that end at or before "before"; returns
-- how many.  Both locks are taken NOWAIT (tried ten times in a second):
-- when a session holds the parent (an open transaction that read it),
-- nothing more is dropped now, with a WARNING, and the next run drops it.
-- The lock is held for the drops only, until this transaction commits.
CREATE FUNCTION hokusai_auth._usage_drop_partitions(parent regclass, before timestamptz)
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	p		regclass;
	n		integer := 0;
	try		integer;
	locked	boolean;
BEGIN
	FOR p IN SELECT b.partition FROM hokusai_auth._usage_partition_bounds(parent) b
			  WHERE b.until_time OPERATOR(pg_catalog.<=) before ORDER BY b.from_time
	LOOP
		-- A few tries 0.1 s apart (the worker holds its locks for a moment
		-- each batch), never a wait in the lock queue.
		FOR try IN 1 .. 10 LOOP
			BEGIN
				EXECUTE pg_catalog.format('LOCK TABLE %s, %s IN ACCESS EXCLUSIVE MODE NOWAIT', parent, p);
				locked := true;
			EXCEPTION WHEN lock_not_available THEN
				locked := false;
			END;
			EXIT WHEN locked;
			PERFORM pg_catalog.pg_sleep(0.1);
		END LOOP;
		IF NOT locked THEN
			RAISE WARNING 'could not drop usage partition %: the table is in use', p
				USING DETAIL = pg_catalog.format('Another transaction holds a lock on %s or %s.', parent, p),
					  HINT = 'The next prune_usage() drops it.';
			RETURN n;
		END IF;
		EXECUTE pg_catalog.format('DROP TABLE %s', p);
		n := n OPERATOR(pg_catalog.+) 1;
	END LOOP;
	RETURN n;
END
$$;

------------------------------------------------------------------------------
-- The worker's write step.
------------------------------------------------------------------------------

-- Add groups (their t is a UTC minute, hour or day) to
-- api_key_usage_minutely, _hourly or _daily, each into the partition of its
-- time, an upsert per partition.  Groups whose time has no partition are left out.
-- Returns the requests added.
CREATE FUNCTION hokusai_auth._usage_add(tbl regclass, groups hokusai_auth._usage_group[])
	RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	col		text := CASE WHEN tbl OPERATOR(pg_catalog.=) 'hokusai_auth.api_key_usage_minutely'::regclass
						 THEN 'minute'
						 WHEN tbl OPERATOR(pg_catalog.=) 'hokusai_auth.api_key_usage_hourly'::regclass
						 THEN 'hour'
						 WHEN tbl OPERATOR(pg_catalog.=) 'hokusai_auth.api_key_usage_daily'::regclass
						 THEN 'day' END;
	part	regclass;
	added	bigint := 0;
	n		bigint;
BEGIN
	IF col IS NULL THEN
		RAISE EXCEPTION '_usage_add() is not for table %', tbl;
	END IF;
	FOR part IN SELECT DISTINCT hokusai_auth._usage_partition(tbl, g.t) FROM pg_catalog.unnest(groups) g
	LOOP
		CONTINUE WHEN part IS NULL;
		EXECUTE pg_catalog.format(
			'INSERT INTO %1$s AS a (api_key_id, %2$I, endpoint, status_code, requests, timed_requests,
					response_ms_sum, max_response_ms, latency_hist)
			 SELECT g.api_key_id, g.t, g.endpoint, g.status_code, g.requests, g.timed_requests,
					g.response_ms_sum, g.max_response_ms, g.latency_hist
			   FROM pg_catalog.unnest($1) g
			  WHERE hokusai_auth._usage_partition($2, g.t) OPERATOR(pg_catalog.=) $3
			 ON CONFLICT (api_key_id, %2$I, endpoint, status_code) DO UPDATE
			   SET requests = a.requests OPERATOR(pg_catalog.+) excluded.requests,
				   timed_requests = a.timed_requests OPERATOR(pg_catalog.+) excluded.timed_requests,
				   response_ms_sum = a.response_ms_sum OPERATOR(pg_catalog.+) excluded.response_ms_sum,
				   max_response_ms = GREATEST(a.max_response_ms, excluded.max_response_ms),
				   latency_hist = hokusai_auth._hist_merge(a.latency_hist, excluded.latency_hist)',
			part, col)
		USING groups, tbl, part;
		SELECT pg_catalog.sum(g.requests) INTO n FROM pg_catalog.unnest(groups) g
		 WHERE hokusai_auth._usage_partition(tbl, g.t) OPERATOR(pg_catalog.=) part;
		added := added OPERATOR(pg_catalog.+) n;
	END LOOP;
	RETURN added;
END
$$;

-- Groups summed again per UTC hour or day.
CREATE FUNCTION hokusai_auth._usage_groups_per(groups hokusai_auth._usage_group[], unit text)
	RETURNS hokusai_auth._usage_group[]
	LANGUAGE sql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT pg_catalog.array_agg(ROW(g.t, g.k, g.e, g.s, g.n, g.tn, g.ms, g.mx, g.h)::hokusai_auth._usage_group)
	  FROM (SELECT pg_catalog.date_trunc(unit, m.t, 'UTC') AS t, m.api_key_id AS k,
				   m.endpoint AS e, m.status_code AS s, pg_catalog.sum(m.requests)::bigint AS n,
				   pg_catalog.sum(m.timed_requests)::bigint AS tn,
				   pg_catalog.sum(m.response_ms_sum)::bigint AS ms,
				   pg_catalog.max(m.max_response_ms) AS mx, hokusai_auth._hist_sum(m.latency_hist) AS h
			  FROM pg_catalog.unnest(groups) m GROUP BY 1, 2, 3, 4) g
$$;

-- Insert raw rows (events already sampled, of keys that exist) into
-- api_key_usage, leaving out those whose day has no partition; returns the
-- rows inserted.  The worker writes in bulk (src/worker/usage_writer.c) and
-- comes here when someone altered the table (a trigger, a constraint, a
-- column): an INSERT, run with session_replication_role = replica, so
-- that ENABLE ALWAYS and ENABLE REPLICA triggers fire, defaults apply and
-- constraints hold.
CREATE FUNCTION hokusai_auth._usage_insert_raw(key_ids uuid[], endpoints text[],
	ats timestamptz[], response_times integer[], status_codes integer[])
	RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	SET session_replication_role = replica
	AS $$
DECLARE
	n		bigint;
BEGIN
	INSERT INTO hokusai_auth.api_key_usage
		(id, api_key_id, endpoint, "timestamp", response_time_ms, status_code)
	SELECT hokusai_auth._uuid_v7(u.t), u.k, u.e, u.t, u.r, u.s
	  FROM unnest(key_ids, endpoints, ats, response_times, status_codes) u(k, e, t, r, s)
	 WHERE hokusai_auth._usage_partition('hokusai_auth.api_key_usage', u.t) IS NOT NULL;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

-- Write one batch of queued events: the step the worker does in C
-- (src/worker/flush.c), in SQL, for callers that have the events as arrays
-- (a standby's worker shipping its queue, tests).  Events of keys that do
-- not exist are left out.  Every other event is counted in the minute, hour
-- and day aggregates when its minute's partition exists (a late event for a
-- dropped partition is left out, never an error; for an event after the
-- last partition, the partitions ahead are made first), and the share
-- usage_raw_sample says (drawn per event) becomes a raw row.  Returns the
-- events counted.
CREATE OR REPLACE FUNCTION hokusai_auth._usage_flush(key_ids uuid[], endpoints text[],
	ats timestamptz[], response_times integer[], status_codes integer[])
	RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	sample	double precision := coalesce(NULLIF(pg_catalog.current_setting(
				'hokusai_auth.usage_raw_sample', true), '')::double precision, 1);
	ev		record;
	minutes	hokusai_auth._usage_group[];
	hours	hokusai_auth._usage_group[];
	raw		record;
	counted	bigint;
BEGIN
	-- An event after the last partition is not late: its partition is not
	-- made yet.
	IF EXISTS (SELECT FROM pg_catalog.unnest(ats) t
				WHERE t OPERATOR(pg_catalog.>=) coalesce(
						(SELECT pg_catalog.max(b.until_time)
						   FROM hokusai_auth._usage_partition_bounds('hokusai_auth.api_key_usage_minutely') b),
						'-infinity')) THEN
		PERFORM hokusai_auth.create_usage_partitions();
	END IF;
	SELECT pg_catalog.array_agg(u.k) AS k, pg_catalog.array_agg(u.e) AS e, pg_catalog.array_agg(u.t) AS t,
		   pg_catalog.array_agg(u.r) AS r, pg_catalog.array_agg(u.s) AS s
	  INTO ev
	  FROM unnest(key_ids, endpoints, ats, response_times, status_codes) u(k, e, t, r, s)
	 WHERE EXISTS (SELECT FROM hokusai_auth.api_keys a WHERE a.id OPERATOR(pg_catalog.=) u.k)
	   AND hokusai_auth._usage_partition('hokusai_auth.api_key_usage_minutely', u.t) IS NOT NULL;
	IF ev.k IS NULL THEN
		RETURN 0;
	END IF;

	SELECT pg_catalog.array_agg(ROW(g.m, g.k, g.e, g.s, g.n, g.tn, g.ms, g.mx, g.h)::hokusai_auth._usage_group)
	  INTO minutes
	  FROM (SELECT pg_catalog.date_trunc('minute', x.t, 'UTC') AS m, x.k, x.e, x.s,
				   pg_catalog.count(*) AS n, pg_catalog.count(x.r) AS tn,
				   coalesce(pg_catalog.sum(x.r), 0) AS ms, pg_catalog.max(x.r) AS mx,
				   hokusai_auth._hist_of(x.r) AS h
			  FROM unnest(ev.k, ev.e, ev.t, ev.r, ev.s) x(k, e, t, r, s)
			 GROUP BY 1, 2, 3, 4) g;
	counted := hokusai_auth._usage_add('hokusai_auth.api_key_usage_minutely', minutes);
	hours := hokusai_auth._usage_groups_per(minutes, 'hour');
	PERFORM hokusai_auth._usage_add('hokusai_auth.api_key_usage_hourly', hours);
	PERFORM hokusai_auth._usage_add('hokusai_auth.api_key_usage_daily',
									hokusai_auth._usage_groups_per(hours, 'day'));

	-- Raw rows: each event kept with probability usage_raw_sample.
	SELECT pg_catalog.array_agg(x.k) AS k, pg_catalog.array_agg(x.e) AS e, pg_catalog.array_agg(x.t) AS t,
		   pg_catalog.array_agg(x.r) AS r, pg_catalog.array_agg(x.s) AS s
	  INTO raw
	  FROM unnest(ev.k, ev.e, ev.t, ev.r, ev.s) x(k, e, t, r, s)
	 WHERE sample OPERATOR(pg_catalog.>=) 1 OR pg_catalog.random() OPERATOR(pg_catalog.<) sample;
	IF raw.k IS NOT NULL THEN
		PERFORM hokusai_auth._usage_insert_raw(raw.k, raw.e, raw.t, raw.r, raw.s);
	END IF;
	RETURN counted;
END
$$;
------------------------------------------------------------------------------
-- usage_queue_stats() gains aggregated and late_discarded.
------------------------------------------------------------------------------

ALTER FUNCTION hokusai_auth.usage_queue_stats() RENAME TO usage_queue_stats_1_5;
ALTER VIEW hokusai_auth.usage_queue_stats RENAME TO usage_queue_stats_1_5;
CREATE FUNCTION hokusai_auth.usage_queue_stats(
	OUT capacity bigint, OUT queued bigint, OUT enqueued bigint, OUT dropped bigint,
	OUT other_database bigint, OUT touches_dropped bigint, OUT flushed bigint,
	OUT discarded bigint, OUT failed bigint, OUT flushes bigint,
	OUT keys_touched bigint, OUT keys_expired bigint,
	OUT last_flush_lag_ms double precision, OUT max_flush_lag_ms double precision,
	OUT last_flush_at timestamptz, OUT worker_pid integer, OUT stats_reset timestamptz,
	OUT aggregated bigint, OUT late_discarded bigint)
	RETURNS record
	AS 'MODULE_PATHNAME', 'hk_sql_usage_queue_stats'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.usage_queue_stats() IS
	'Usage queue and worker counters since the last reset';

CREATE VIEW hokusai_auth.usage_queue_stats AS SELECT * FROM hokusai_auth.usage_queue_stats();
COMMENT ON VIEW hokusai_auth.usage_queue_stats IS 'Usage queue and worker counters (hokusai_auth.usage_queue_stats())';
SELECT hokusai_auth._copy_function_grants('hokusai_auth.usage_queue_stats_1_5()',
	'hokusai_auth.usage_queue_stats()');
SELECT hokusai_auth._copy_relation_grants('hokusai_auth.usage_queue_stats_1_5',
	'hokusai_auth.usage_queue_stats');
DROP VIEW hokusai_auth.usage_queue_stats_1_5;
DROP FUNCTION hokusai_auth.usage_queue_stats_1_5();

------------------------------------------------------------------------------
-- Housekeeping: the worker keeps the hourly aggregates, retention drops
-- partitions.
------------------------------------------------------------------------------

-- Before 1.6, rolled raw rows up into hourly tables.  The worker now keeps
-- the hourly aggregates itself, with every batch: nothing is left to roll
-- up.  Kept so that existing calls and pg_cron jobs do not fail.
CREATE OR REPLACE FUNCTION hokusai_auth.rollup_usage()
	RETURNS integer
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT 0 $$;
COMMENT ON FUNCTION hokusai_auth.rollup_usage() IS
	'Does nothing since 1.6 (the worker keeps the hourly aggregates); returns 0';

-- Retention by dropping whole partitions: raw rows older than retention,
-- minute aggregates older than minute_retention, hour aggregates older than
-- hour_retention (NULL: kept).  A partition goes when all of it is older.
-- The daily aggregates (a few rows per key and day) are kept.
-- Makes the partitions ahead too.  Returns the partitions dropped.
CREATE FUNCTION hokusai_auth.prune_usage(retention interval DEFAULT '30 days',
	minute_retention interval DEFAULT '30 days', hour_retention interval DEFAULT NULL)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	n		bigint := 0;
BEGIN
	IF retention IS NULL OR retention OPERATOR(pg_catalog.<) interval '1 hour'
	   OR minute_retention IS NULL OR minute_retention OPERATOR(pg_catalog.<) interval '1 hour' THEN
		RAISE EXCEPTION 'retention must be at least 1 hour'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF hour_retention OPERATOR(pg_catalog.<) minute_retention THEN
		RAISE EXCEPTION 'hour_retention must not be shorter than minute_retention'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM hokusai_auth.create_usage_partitions();
	n := hokusai_auth._usage_drop_partitions('hokusai_auth.api_key_usage',
			pg_catalog.now() OPERATOR(pg_catalog.-) retention);
	n := n OPERATOR(pg_catalog.+) hokusai_auth._usage_drop_partitions('hokusai_auth.api_key_usage_minutely',
			pg_catalog.now() OPERATOR(pg_catalog.-) minute_retention);
	IF hour_retention IS NOT NULL THEN
		n := n OPERATOR(pg_catalog.+) hokusai_auth._usage_drop_partitions('hokusai_auth.api_key_usage_hourly',
				pg_catalog.now() OPERATOR(pg_catalog.-) hour_retention);
	END IF;
	RETURN n;
END
$$;
COMMENT ON FUNCTION hokusai_auth.prune_usage(interval, interval, interval) IS
	'Drop the usage partitions older than their retention (raw rows, minute and hour aggregates); returns how many';

SELECT hokusai_auth._copy_function_grants('hokusai_auth.prune_usage(interval)',
	'hokusai_auth.prune_usage(interval, interval, interval)');
DROP FUNCTION hokusai_auth.prune_usage(interval);

-- Install (or replace) the pg_cron job.  pg_cron must be installed in this
-- database (cron.database_name).  The job body is schema-qualified: nothing
-- in it is resolved through the search_path of whoever runs it.  The
-- hokusai_auth.rollup job of earlier versions is removed (rollup_schedule
-- is no longer used).
CREATE FUNCTION hokusai_auth.schedule_housekeeping(retention interval DEFAULT '30 days',
	rollup_schedule text DEFAULT '*/5 * * * *',
	prune_schedule text DEFAULT '17 3 * * *',
	minute_retention interval DEFAULT '30 days',
	hour_retention interval DEFAULT NULL)
	RETURNS TABLE (jobid bigint, jobname text, schedule text, command text)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	prune_cmd	text;
BEGIN
	IF retention IS NULL OR retention OPERATOR(pg_catalog.<) interval '1 hour'
	   OR minute_retention IS NULL OR minute_retention OPERATOR(pg_catalog.<) interval '1 hour' THEN
		RAISE EXCEPTION 'retention must be at least 1 hour'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF hour_retention OPERATOR(pg_catalog.<) minute_retention THEN
		RAISE EXCEPTION 'hour_retention must not be shorter than minute_retention'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM hokusai_auth._check_text(prune_schedule, 'prune_schedule', 100);
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e
					WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron') THEN
		RAISE EXCEPTION 'pg_cron is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart, and run CREATE EXTENSION pg_cron.';
	END IF;
	prune_cmd := pg_catalog.format('SELECT hokusai_auth.prune_usage(CAST(%L AS pg_catalog.interval), '
								   'CAST(%L AS pg_catalog.interval), CAST(%L AS pg_catalog.interval))',
								   retention::text, minute_retention::text, hour_retention::text);
	-- Without background workers pg_cron runs each job over a libpq
	-- connection to cron.host: over TCP that needs a password the server's
	-- OS user can find, or every job fails with "connection failed".
	IF coalesce(pg_catalog.current_setting('cron.use_background_workers', true), 'off')
		   OPERATOR(pg_catalog.<>) 'on'
	   AND pg_catalog.left(coalesce(pg_catalog.current_setting('cron.host', true), 'localhost'), 1)
		   OPERATOR(pg_catalog.<>) '/' THEN
		RAISE WARNING 'pg_cron will run these jobs over a TCP connection to %',
			coalesce(pg_catalog.current_setting('cron.host', true), 'localhost')
			USING DETAIL = pg_catalog.format('cron.use_background_workers is off, so each job connects as %s with libpq; unless pg_hba.conf lets that in without a password, or the server''s OS user has it in ~/.pgpass, every job fails with "connection failed" (see cron.job_run_details).', current_user),
				  HINT = 'Set cron.use_background_workers = on (and raise max_worker_processes), or cron.host to the socket directory (for example /var/run/postgresql), and restart.';
	END IF;
	IF EXISTS (SELECT FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron') THEN
		EXECUTE 'SELECT cron.unschedule(j.jobid) FROM cron.job j
				  WHERE j.jobname OPERATOR(pg_catalog.=) ''hokusai_auth.rollup''';
	END IF;
	EXECUTE 'SELECT cron.schedule($1, $2, $3)'
		USING 'hokusai_auth.prune', prune_schedule, prune_cmd;
	RETURN QUERY EXECUTE
		'SELECT j.jobid, j.jobname::text, j.schedule::text, j.command::text FROM cron.job j
		  WHERE j.jobname OPERATOR(pg_catalog.=) ''hokusai_auth.prune''
		  ORDER BY j.jobname';
END
$$;
COMMENT ON FUNCTION hokusai_auth.schedule_housekeeping(interval, text, text, interval, interval) IS
	'Install the pg_cron job hokusai_auth.prune (usage partitions kept for their retention)';

SELECT hokusai_auth._copy_function_grants('hokusai_auth.schedule_housekeeping(interval, text, text)',
	'hokusai_auth.schedule_housekeeping(interval, text, text, interval, interval)');
DROP FUNCTION hokusai_auth.schedule_housekeeping(interval, text, text);

------------------------------------------------------------------------------
-- Analytics read the aggregates only.
------------------------------------------------------------------------------

CREATE OR REPLACE VIEW hokusai_auth.usage_hourly AS
	SELECT h.api_key_id, h.hour, h.endpoint, h.status_code, h.requests,
		   CASE WHEN h.status_code >= 400 THEN h.requests ELSE 0 END AS errors,
		   h.timed_requests, h.response_ms_sum,
		   round(h.response_ms_sum::numeric / nullif(h.timed_requests, 0), 1) AS avg_response_ms,
		   h.max_response_ms
	  FROM hokusai_auth.api_key_usage_hourly h;
CREATE OR REPLACE VIEW hokusai_auth.usage_per_minute AS
	SELECT m.api_key_id, m.minute,
		   sum(m.requests)::bigint AS requests,
		   coalesce(sum(m.requests) FILTER (WHERE m.status_code >= 400), 0)::bigint AS errors,
		   round(sum(m.response_ms_sum)::numeric / nullif(sum(m.timed_requests), 0), 1) AS avg_response_ms,
		   max(m.max_response_ms) AS max_response_ms
	  FROM hokusai_auth.api_key_usage_minutely m
	 GROUP BY m.api_key_id, m.minute;
COMMENT ON VIEW hokusai_auth.usage_per_minute IS
	'Requests per key and minute, from the minute aggregates (as far back as their retention keeps them)';

-- One key's aggregate rows for the minutes that start in [lo, hi): whole
-- UTC days from api_key_usage_daily (unless coarsest is 'hour'), whole UTC
-- hours from api_key_usage_hourly, the minutes at either edge from
-- api_key_usage_minutely; t is the day, hour or minute.
CREATE FUNCTION hokusai_auth._usage_rows(key_id uuid, lo timestamptz, hi timestamptz,
	coarsest text DEFAULT 'day')
	RETURNS SETOF hokusai_auth._usage_group
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	-- minutes m with l <= m < h: the bounds rounded up to whole minutes
	l	timestamptz := CASE WHEN date_trunc('minute', lo) = lo THEN lo
							ELSE date_trunc('minute', lo) + interval '1 minute' END;
	h	timestamptz := CASE WHEN date_trunc('minute', hi) = hi THEN hi
							ELSE date_trunc('minute', hi) + interval '1 minute' END;
	-- whole hours in [l, h): [hl, hh); whole days in [hl, hh): [dl, dh)
	hl	timestamptz := CASE WHEN date_trunc('hour', l, 'UTC') = l THEN l
							ELSE date_trunc('hour', l, 'UTC') + interval '1 hour' END;
	hh	timestamptz := date_trunc('hour', h, 'UTC');
	dl	timestamptz;
	dh	timestamptz;
BEGIN
	IF hl >= hh THEN
		hl := l;
		hh := l;
	END IF;
	dl := CASE WHEN date_trunc('day', hl, 'UTC') = hl THEN hl
			   ELSE date_trunc('day', hl, 'UTC') + interval '1 day' END;
	dh := date_trunc('day', hh, 'UTC');
	IF dl >= dh OR coarsest = 'hour' THEN
		dl := hl;
		dh := hl;
	END IF;
	RETURN QUERY
	SELECT d.day, d.api_key_id, d.endpoint, d.status_code, d.requests, d.timed_requests,
		   d.response_ms_sum, d.max_response_ms, d.latency_hist
	  FROM hokusai_auth.api_key_usage_daily d
	 WHERE d.api_key_id = _usage_rows.key_id AND d.day >= dl AND d.day < dh
	UNION ALL
	SELECT a.hour, a.api_key_id, a.endpoint, a.status_code, a.requests, a.timed_requests,
		   a.response_ms_sum, a.max_response_ms, a.latency_hist
	  FROM hokusai_auth.api_key_usage_hourly a
	 WHERE a.api_key_id = _usage_rows.key_id
	   AND ((a.hour >= hl AND a.hour < dl) OR (a.hour >= dh AND a.hour < hh))
	UNION ALL
	SELECT m.minute, m.api_key_id, m.endpoint, m.status_code, m.requests, m.timed_requests,
		   m.response_ms_sum, m.max_response_ms, m.latency_hist
	  FROM hokusai_auth.api_key_usage_minutely m
	 WHERE m.api_key_id = _usage_rows.key_id
	   AND ((m.minute >= l AND m.minute < hl) OR (m.minute >= hh AND m.minute < h));
END
$$;

-- One statement, planned at each call with the range's bounds as constants
-- (plpgsql's custom plans), so that only the partitions holding them are
-- opened: whole UTC days from api_key_usage_daily, whole UTC hours from
-- api_key_usage_hourly, the minutes at either edge from
-- api_key_usage_minutely (the bounds as _usage_rows() computes them, read
-- here without it: a set-returning function would copy every row into a
-- tuplestore twice, and its own plan and compilation would add to a new
-- session's first call).
CREATE OR REPLACE FUNCTION hokusai_auth.usage_summary(key_id uuid,
	since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL,
	OUT requests bigint, OUT errors bigint, OUT client_errors bigint,
	OUT server_errors bigint, OUT avg_response_ms numeric,
	OUT p50_response_ms numeric, OUT p95_response_ms numeric,
	OUT p99_response_ms numeric, OUT max_response_ms integer,
	OUT by_status jsonb, OUT by_endpoint jsonb)
	RETURNS record
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	hist	bigint[];
	lo		timestamptz := coalesce(since, '-infinity');
	hi		timestamptz := coalesce(until, now());
	-- minutes m with l <= m < h: the bounds rounded up to whole minutes
	l		timestamptz := CASE WHEN date_trunc('minute', lo) = lo THEN lo
								ELSE date_trunc('minute', lo) + interval '1 minute' END;
	h		timestamptz := CASE WHEN date_trunc('minute', hi) = hi THEN hi
								ELSE date_trunc('minute', hi) + interval '1 minute' END;
	-- whole hours in [l, h): [hl, hh); whole days in [hl, hh): [dl, dh)
	hl		timestamptz := CASE WHEN date_trunc('hour', l, 'UTC') = l THEN l
								ELSE date_trunc('hour', l, 'UTC') + interval '1 hour' END;
	hh		timestamptz := date_trunc('hour', h, 'UTC');
	dl		timestamptz;
	dh		timestamptz;
BEGIN
	IF key_id IS NULL THEN
		RAISE EXCEPTION 'key_id must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF since > until THEN
		RAISE EXCEPTION 'since must not be later than until'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF hl >= hh THEN
		hl := l;
		hh := l;
	END IF;
	dl := CASE WHEN date_trunc('day', hl, 'UTC') = hl THEN hl
			   ELSE date_trunc('day', hl, 'UTC') + interval '1 day' END;
	dh := date_trunc('day', hh, 'UTC');
	IF dl >= dh THEN
		dl := hl;
		dh := hl;
	END IF;

	WITH g AS (
		-- Grouped at once: a few rows per endpoint and status, however long the range.
		SELECT r.endpoint, r.status_code, sum(r.requests) AS n, sum(r.timed_requests) AS timed,
			   sum(r.response_ms_sum) AS ms, max(r.max_response_ms) AS mx,
			   hokusai_auth._hist_sum(r.latency_hist) AS h
		  FROM (SELECT d.endpoint, d.status_code, d.requests, d.timed_requests,
					   d.response_ms_sum, d.max_response_ms, d.latency_hist
				  FROM hokusai_auth.api_key_usage_daily d
				 WHERE d.api_key_id = usage_summary.key_id AND d.day >= dl AND d.day < dh
				UNION ALL
				SELECT a.endpoint, a.status_code, a.requests, a.timed_requests,
					   a.response_ms_sum, a.max_response_ms, a.latency_hist
				  FROM hokusai_auth.api_key_usage_hourly a
				 WHERE a.api_key_id = usage_summary.key_id
				   AND ((a.hour >= hl AND a.hour < dl) OR (a.hour >= dh AND a.hour < hh))
				UNION ALL
				SELECT m.endpoint, m.status_code, m.requests, m.timed_requests,
					   m.response_ms_sum, m.max_response_ms, m.latency_hist
				  FROM hokusai_auth.api_key_usage_minutely m
				 WHERE m.api_key_id = usage_summary.key_id
				   AND ((m.minute >= l AND m.minute < hl) OR (m.minute >= hh AND m.minute < h))) r
		 GROUP BY 1, 2
	), st AS (
		SELECT g.status_code, sum(g.n)::bigint AS n FROM g GROUP BY 1
	), ep AS (
		SELECT g.endpoint, sum(g.n)::bigint AS n,
			   sum(g.n) FILTER (WHERE g.status_code >= 400)::bigint AS e,
			   round(sum(g.ms)::numeric / nullif(sum(g.timed), 0), 1) AS avg_ms
		  FROM g GROUP BY 1
	)
	SELECT coalesce(sum(g.n), 0)::bigint,
		   coalesce(sum(g.n) FILTER (WHERE g.status_code >= 400), 0)::bigint,
		   coalesce(sum(g.n) FILTER (WHERE g.status_code BETWEEN 400 AND 499), 0)::bigint,
		   coalesce(sum(g.n) FILTER (WHERE g.status_code >= 500), 0)::bigint,
		   round(sum(g.ms)::numeric / nullif(sum(g.timed), 0), 1),
		   max(g.mx),
		   coalesce((SELECT jsonb_agg(jsonb_build_object('status_code', st.status_code,
														 'requests', st.n)
									  ORDER BY st.status_code NULLS LAST) FROM st), '[]'),
		   coalesce((SELECT jsonb_agg(jsonb_build_object('endpoint', ep.endpoint,
														 'requests', ep.n,
														 'errors', coalesce(ep.e, 0),
														 'avg_response_ms', ep.avg_ms)
									  ORDER BY ep.n DESC, ep.endpoint NULLS LAST) FROM ep), '[]'),
		   hokusai_auth._hist_sum(g.h)
	  INTO requests, errors, client_errors, server_errors, avg_response_ms,
		   max_response_ms, by_status, by_endpoint, hist
	  FROM g;

	p50_response_ms := hokusai_auth._hist_percentile(hist, 0.50, max_response_ms);
	p95_response_ms := hokusai_auth._hist_percentile(hist, 0.95, max_response_ms);
	p99_response_ms := hokusai_auth._hist_percentile(hist, 0.99, max_response_ms);
END
$$;
COMMENT ON FUNCTION hokusai_auth.usage_summary(uuid, timestamptz, timestamptz) IS
	'One key''s requests, errors, response times (average, p50, p95, p99, max) and breakdowns by status and endpoint in [since, until)';

ALTER FUNCTION hokusai_auth.usage_timeseries(uuid, text, timestamptz, timestamptz)
	RENAME TO usage_timeseries_1_5;
-- Requests per minute, hour or day for one key in [since, until).
CREATE FUNCTION hokusai_auth.usage_timeseries(key_id uuid, period text DEFAULT 'hour',
	since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
	RETURNS TABLE (period_start timestamptz, requests bigint, errors bigint,
				   avg_response_ms numeric, max_response_ms integer,
				   p50_response_ms numeric, p95_response_ms numeric, p99_response_ms numeric)
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	lo		timestamptz := coalesce(since, '-infinity');
	hi		timestamptz := coalesce(until, now());
BEGIN
	PERFORM hokusai_auth._check_range(key_id, since, until);
	IF period IS NULL OR period NOT IN ('minute', 'hour', 'day') THEN
		RAISE EXCEPTION 'invalid period'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use "minute", "hour" or "day".';
	END IF;

	RETURN QUERY
	SELECT x.p, x.n, x.e, x.avg_ms, x.mx,
		   hokusai_auth._hist_percentile(x.h, 0.50, x.mx),
		   hokusai_auth._hist_percentile(x.h, 0.95, x.mx),
		   hokusai_auth._hist_percentile(x.h, 0.99, x.mx)
	  FROM (SELECT CASE period WHEN 'minute' THEN g.t
							   WHEN 'hour' THEN date_trunc('hour', g.t, 'UTC')
							   ELSE date_trunc('day', g.t) END AS p,
				   sum(g.requests)::bigint AS n,
				   coalesce(sum(g.requests) FILTER (WHERE g.status_code >= 400), 0)::bigint AS e,
				   round(sum(g.response_ms_sum)::numeric / nullif(sum(g.timed_requests), 0), 1) AS avg_ms,
				   max(g.max_response_ms) AS mx, hokusai_auth._hist_sum(g.latency_hist) AS h
			  FROM (SELECT m.minute AS t, m.status_code, m.requests, m.timed_requests,
						   m.response_ms_sum, m.max_response_ms, m.latency_hist
					  FROM hokusai_auth.api_key_usage_minutely m
					 WHERE period = 'minute' AND m.api_key_id = usage_timeseries.key_id
					   AND m.minute >= lo AND m.minute < hi
					UNION ALL
					SELECT r.t, r.status_code, r.requests, r.timed_requests,
						   r.response_ms_sum, r.max_response_ms, r.latency_hist
					  FROM hokusai_auth._usage_rows(key_id, lo, hi, 'hour') r
					 WHERE period <> 'minute') g
			 GROUP BY 1) x
	 ORDER BY 1;
END
$$;
COMMENT ON FUNCTION hokusai_auth.usage_timeseries(uuid, text, timestamptz, timestamptz) IS
	'One key''s requests, errors and response times (average, max, p50, p95, p99) per minute, hour or day in [since, until)';
SELECT hokusai_auth._copy_function_grants(
	'hokusai_auth.usage_timeseries_1_5(uuid, text, timestamptz, timestamptz)',
	'hokusai_auth.usage_timeseries(uuid, text, timestamptz, timestamptz)');
DROP FUNCTION hokusai_auth.usage_timeseries_1_5(uuid, text, timestamptz, timestamptz);

------------------------------------------------------------------------------
-- Row-level security for the HTTP roles, as on the 1.5 table (http.sql).
------------------------------------------------------------------------------

ALTER TABLE hokusai_auth.api_key_usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY http_caller_usage ON hokusai_auth.api_key_usage
	USING (NOT (SELECT pg_catalog.has_schema_privilege('hokusai_api', 'USAGE'))
		   OR api_key_id IN (SELECT k.id FROM hokusai_auth.api_keys k));
SELECT hokusai_auth._copy_relation_grants('hokusai_auth.api_key_usage_1_5',
	'hokusai_auth.api_key_usage');
SELECT hokusai_auth._copy_relation_grants('hokusai_auth.api_key_usage_hourly_1_5',
	'hokusai_auth.api_key_usage_hourly');
SELECT hokusai_auth._copy_relation_grants('hokusai_auth.api_key_usage_hourly_1_5',
	'hokusai_auth.api_key_usage_minutely');
SELECT hokusai_auth._copy_relation_grants('hokusai_auth.api_key_usage_hourly_1_5',
	'hokusai_auth.api_key_usage_daily');

------------------------------------------------------------------------------
-- The rows move.  Raw rows go to partitions of their days as they are.
-- Minutes are summed from the raw rows.  Hours: an hour that 1.5 rolled up
-- and whose raw rows may have been pruned (before the boundary b below)
-- keeps its rollup rows, with the key's hourly histogram moved to the new
-- buckets (each old bucket counted at its midpoint) on the busiest of its
-- rows; every later hour is summed from the minutes.  b is the earlier of
-- rolled_until and the first whole hour of the raw rows that are left:
-- every hour before it was rolled up, every hour from it is whole in the
-- raw rows.  Days are summed from the hours.
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth._hist_from_1_5(old bigint[], max_ms integer)
	RETURNS bigint[]
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	bounds	integer[] := '{1,2,3,4,5,6,7,8,9,10,12,14,16,18,20,25,30,35,40,45,50,60,70,80,90,
						   100,120,140,160,180,200,250,300,350,400,450,500,600,700,800,900,
						   1000,1200,1400,1600,1800,2000,2500,3000,3500,4000,4500,5000,6000,7000,
						   8000,9000,10000,15000,20000,30000,60000}';
	h		bigint[];
	v		integer;
	i		integer;
BEGIN
	FOR i IN 1 .. coalesce(cardinality(old), 0) LOOP
		CONTINUE WHEN old[i] IS NULL OR old[i] <= 0;
		v := CASE WHEN i = 1 THEN 0
				  WHEN i > cardinality(bounds) THEN greatest(bounds[i - 1], coalesce(max_ms, 0))
				  ELSE (bounds[i - 1] + bounds[i] - 1) / 2 END;
		h := hokusai_auth._hist_merge(h,
				ARRAY[(SELECT hokusai_auth._hist_of(v))[1], old[i]]);
	END LOOP;
	RETURN h;
END
$$;

DO $$
DECLARE
	b		timestamptz;
BEGIN
	SELECT least(s.rolled_until,
				 (SELECT date_trunc('hour', min(u."timestamp"), 'UTC')
						 + CASE WHEN date_trunc('hour', min(u."timestamp"), 'UTC') = min(u."timestamp")
								THEN interval '0' ELSE interval '1 hour' END
					FROM hokusai_auth.api_key_usage_1_5 u))
	  INTO b FROM hokusai_auth.usage_rollup_state s;
	b := coalesce(b, (SELECT s.rolled_until FROM hokusai_auth.usage_rollup_state s), '-infinity');

	PERFORM hokusai_auth._usage_make_partition(p.parent, p.t)
	   FROM (SELECT DISTINCT date_trunc('day', u."timestamp", 'UTC') AS t
			   FROM hokusai_auth.api_key_usage_1_5 u) d,
			LATERAL (VALUES ('hokusai_auth.api_key_usage'::regclass, d.t),
							('hokusai_auth.api_key_usage_minutely'::regclass, d.t),
							('hokusai_auth.api_key_usage_hourly'::regclass, d.t)) p(parent, t);
	PERFORM hokusai_auth._usage_make_partition(p.parent, m.t)
	   FROM (SELECT DISTINCT date_trunc('month', h.hour, 'UTC') AS t
			   FROM hokusai_auth.api_key_usage_hourly_1_5 h WHERE h.hour < b) m,
			LATERAL (VALUES ('hokusai_auth.api_key_usage_hourly'::regclass),
							('hokusai_auth.api_key_usage_daily'::regclass)) p(parent);
	PERFORM hokusai_auth._usage_make_partition('hokusai_auth.api_key_usage_daily', d.t)
	   FROM (SELECT DISTINCT date_trunc('year', u."timestamp", 'UTC') AS t
			   FROM hokusai_auth.api_key_usage_1_5 u) d;

	INSERT INTO hokusai_auth.api_key_usage
		(id, api_key_id, endpoint, "timestamp", response_time_ms, status_code)
	SELECT u.id, u.api_key_id, u.endpoint, u."timestamp", u.response_time_ms, u.status_code
	  FROM hokusai_auth.api_key_usage_1_5 u;

	INSERT INTO hokusai_auth.api_key_usage_minutely
		(api_key_id, minute, endpoint, status_code, requests, timed_requests,
		 response_ms_sum, max_response_ms, latency_hist)
	SELECT u.api_key_id, date_trunc('minute', u."timestamp", 'UTC'), u.endpoint, u.status_code,
		   count(*), count(u.response_time_ms), coalesce(sum(u.response_time_ms), 0),
		   max(u.response_time_ms), hokusai_auth._hist_of(u.response_time_ms)
	  FROM hokusai_auth.api_key_usage_1_5 u
	 GROUP BY 1, 2, 3, 4;

	INSERT INTO hokusai_auth.api_key_usage_hourly
		(api_key_id, hour, endpoint, status_code, requests, timed_requests,
		 response_ms_sum, max_response_ms, latency_hist)
	SELECT m.api_key_id, date_trunc('hour', m.minute, 'UTC'), m.endpoint, m.status_code,
		   sum(m.requests), sum(m.timed_requests), sum(m.response_ms_sum),
		   max(m.max_response_ms), hokusai_auth._hist_sum(m.latency_hist)
	  FROM hokusai_auth.api_key_usage_minutely m
	 WHERE m.minute >= b
	 GROUP BY 1, 2, 3, 4;

	INSERT INTO hokusai_auth.api_key_usage_hourly
		(api_key_id, hour, endpoint, status_code, requests, timed_requests,
		 response_ms_sum, max_response_ms, latency_hist)
	SELECT r.api_key_id, r.hour, r.endpoint, r.status_code, r.requests, r.timed_requests,
		   r.response_ms_sum, r.max_response_ms,
		   CASE WHEN r.busiest = 1 THEN
				(SELECT hokusai_auth._hist_from_1_5(l.histogram, l.max_response_ms)
				   FROM hokusai_auth.api_key_latency_hourly l
				  WHERE l.api_key_id = r.api_key_id AND l.hour = r.hour) END
	  FROM (SELECT h.*, row_number() OVER (PARTITION BY h.api_key_id, h.hour
											ORDER BY h.timed_requests DESC, h.requests DESC,
													 h.endpoint NULLS LAST, h.status_code NULLS LAST) AS busiest
			  FROM hokusai_auth.api_key_usage_hourly_1_5 h WHERE h.hour < b) r;

	INSERT INTO hokusai_auth.api_key_usage_daily
		(api_key_id, day, endpoint, status_code, requests, timed_requests,
		 response_ms_sum, max_response_ms, latency_hist)
	SELECT h.api_key_id, date_trunc('day', h.hour, 'UTC'), h.endpoint, h.status_code,
		   sum(h.requests), sum(h.timed_requests), sum(h.response_ms_sum),
		   max(h.max_response_ms), hokusai_auth._hist_sum(h.latency_hist)
	  FROM hokusai_auth.api_key_usage_hourly h
	 GROUP BY 1, 2, 3, 4;
END
$$;
DROP FUNCTION hokusai_auth._hist_from_1_5(bigint[], integer);

-- Partitions are not members of the extension (see usage.sql): pg_dump
-- dumps them, with their rows, as it dumps any table.
DO $$
DECLARE
	p	regclass;
BEGIN
	FOR p IN SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits i
			  WHERE i.inhparent IN ('hokusai_auth.api_key_usage'::regclass,
									'hokusai_auth.api_key_usage_minutely'::regclass,
									'hokusai_auth.api_key_usage_hourly'::regclass,
									'hokusai_auth.api_key_usage_daily'::regclass)
	LOOP
		EXECUTE pg_catalog.format('ALTER EXTENSION hokusai_auth DROP TABLE %s', p);
	END LOOP;
END
$$;

------------------------------------------------------------------------------
-- What 1.5 had and 1.6 does not: the old tables, the rollup state and
-- latency rollups, the 63-bucket histogram functions.
------------------------------------------------------------------------------

ALTER EXTENSION hokusai_auth DROP TABLE hokusai_auth.api_key_usage_1_5;
ALTER EXTENSION hokusai_auth DROP TABLE hokusai_auth.api_key_usage_hourly_1_5;
ALTER EXTENSION hokusai_auth DROP TABLE hokusai_auth.api_key_latency_hourly;
ALTER EXTENSION hokusai_auth DROP TABLE hokusai_auth.usage_rollup_state;
DROP TABLE hokusai_auth.api_key_usage_1_5, hokusai_auth.api_key_usage_hourly_1_5,
	hokusai_auth.api_key_latency_hourly, hokusai_auth.usage_rollup_state;
DROP FUNCTION hokusai_auth._rollup_span(timestamptz, timestamptz);
DROP FUNCTION hokusai_auth._hist_build(integer[], bigint[]);
DROP FUNCTION hokusai_auth._hist_add(bigint[], bigint[]);
DROP FUNCTION hokusai_auth._latency_bounds();
DROP FUNCTION hokusai_auth._copy_relation_grants(regclass, regclass);

CREATE OR REPLACE FUNCTION hokusai_auth._singleton_replace()
	RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'audit_head' THEN
		UPDATE hokusai_auth.audit_head h
		   SET last_id = NEW.last_id, last_hash = NEW.last_hash, last_seq = NEW.last_seq;
	ELSE
		RAISE EXCEPTION 'hokusai_auth._singleton_replace() is not for table %', TG_TABLE_NAME;
	END IF;
	IF FOUND THEN
		RETURN NULL;
	END IF;
	RETURN NEW;
END
$$;

SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.api_key_usage', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.api_key_usage_minutely', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.api_key_usage_hourly', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.api_key_usage_daily', '');

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
-- Grant EXECUTE on _receive_usage() and _receive_events() to the role the
-- standbys connect as (docs/scaling.md); it needs nothing else.
------------------------------------------------------------------------------

CREATE TABLE hokusai_auth.usage_shipments (
	run_id			uuid PRIMARY KEY,
	received_until	bigint NOT NULL DEFAULT 0,
	first_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	last_at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	events_received_until bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE hokusai_auth.usage_shipments IS
	'Per standby run: the queue positions below which its usage and its noted events have been received';

CREATE FUNCTION hokusai_auth._receive_usage(run_id uuid, upto bigint,
	positions bigint[], key_ids uuid[], endpoints text[], ats bigint[],
	response_times integer[], status_codes integer[],
	touch_keys uuid[], touch_ats bigint[])
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'hk_sql_receive_usage'
	LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;

-- The events a standby noted on the request path (rate_limit.exceeded,
-- credits.low, credits.exhausted; src/replica/ship_events.c), written here
-- once: per standby run, the event queue position below which everything
-- was received, moved in the transaction that writes them.  The kinds are
-- those three only: the shipping role cannot make up other events.
CREATE FUNCTION hokusai_auth._receive_events(run_id uuid, upto bigint,
	positions bigint[], kinds text[], key_ids uuid[], vals bigint[], ats bigint[])
	RETURNS bigint
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	done	bigint;
	n		integer := coalesce(pg_catalog.cardinality(positions), 0);
	k		text[];
	ks		uuid[];
	vs		bigint[];
	ts		timestamptz[];
BEGIN
	IF pg_catalog.pg_is_in_recovery() THEN
		RAISE EXCEPTION 'cannot receive events on a server in recovery'
			USING ERRCODE = 'read_only_sql_transaction',
				  HINT = 'Ship events to the primary: set hokusai_auth.primary_conninfo on the standby.';
	END IF;
	IF run_id IS NULL OR upto IS NULL THEN
		RAISE EXCEPTION 'run_id and upto must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF coalesce(pg_catalog.cardinality(kinds), 0) OPERATOR(pg_catalog.<>) n
	   OR coalesce(pg_catalog.cardinality(key_ids), 0) OPERATOR(pg_catalog.<>) n
	   OR coalesce(pg_catalog.cardinality(vals), 0) OPERATOR(pg_catalog.<>) n
	   OR coalesce(pg_catalog.cardinality(ats), 0) OPERATOR(pg_catalog.<>) n THEN
		RAISE EXCEPTION 'the event arrays must have the same length' USING ERRCODE = 'array_subscript_error';
	END IF;
	IF n OPERATOR(pg_catalog.>) 0 AND (
		   pg_catalog.array_position(positions, NULL) IS NOT NULL
		OR pg_catalog.array_position(key_ids, NULL) IS NOT NULL
		OR pg_catalog.array_position(vals, NULL) IS NOT NULL
		OR pg_catalog.array_position(ats, NULL) IS NOT NULL) THEN
		RAISE EXCEPTION 'positions, key ids, values and times must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT kinds OPERATOR(pg_catalog.<@)
		   '{rate_limit.exceeded,credits.low,credits.exhausted}'::text[] THEN
		RAISE EXCEPTION 'a standby ships rate_limit.exceeded, credits.low and credits.exhausted only'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO hokusai_auth.usage_shipments (run_id) VALUES (_receive_events.run_id)
		ON CONFLICT ON CONSTRAINT usage_shipments_pkey DO NOTHING;
	SELECT s.events_received_until INTO done FROM hokusai_auth.usage_shipments s
	 WHERE s.run_id OPERATOR(pg_catalog.=) _receive_events.run_id FOR UPDATE;
	SELECT pg_catalog.array_agg(kinds[i] ORDER BY i), pg_catalog.array_agg(key_ids[i] ORDER BY i),
		   pg_catalog.array_agg(vals[i] ORDER BY i),
		   pg_catalog.array_agg('2000-01-01 00:00:00+00'::timestamptz OPERATOR(pg_catalog.+)
								(ats[i] OPERATOR(pg_catalog.*) interval '1 microsecond') ORDER BY i)
	  INTO k, ks, vs, ts
	  FROM pg_catalog.generate_subscripts(positions, 1) AS g(i)
	 WHERE positions[i] OPERATOR(pg_catalog.>=) done;
	IF k IS NOT NULL THEN
		PERFORM hokusai_auth._events_from_notes(k, ks, vs, ts);
	END IF;
	IF upto OPERATOR(pg_catalog.>) done THEN
		UPDATE hokusai_auth.usage_shipments s
		   SET events_received_until = upto, last_at = pg_catalog.now()
		 WHERE s.run_id OPERATOR(pg_catalog.=) _receive_events.run_id;
		done := upto;
	END IF;
	RETURN done;
END
$$;

CREATE FUNCTION hokusai_auth.replica_stats(
	OUT in_recovery boolean, OUT invalidation_reads bigint,
	OUT invalidations_applied bigint, OUT invalidation_clear_all bigint,
	OUT shipped bigint, OUT touches_shipped bigint, OUT ship_calls bigint,
	OUT ship_failures bigint, OUT last_ship_at timestamptz,
	OUT primary_reachable boolean, OUT received bigint,
	OUT received_duplicates bigint, OUT received_deferred bigint,
	OUT events_shipped bigint)
	RETURNS record
	AS 'MODULE_PATHNAME', 'hk_sql_replica_stats'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.replica_stats() IS
	'This server''s side of replication: invalidations read from the WAL, usage shipped (standby) or received (primary)';

CREATE VIEW hokusai_auth.replica_stats AS SELECT * FROM hokusai_auth.replica_stats();
COMMENT ON VIEW hokusai_auth.replica_stats IS 'Replication counters (hokusai_auth.replica_stats())';



------------------------------------------------------------------------------
-- Events: a transactional outbox, signed webhooks (sql/install/events.sql;
-- _audit() in audit.sql, setup_http_roles() above, backups.sql).
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- C functions (src/events/)
------------------------------------------------------------------------------

-- The id of a new event: nextval of events_id_seq, the first one of a
-- transaction published in shared memory until the transaction ends.
CREATE FUNCTION hokusai_auth._event_id()
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'hk_sql_event_id'
	LANGUAGE C VOLATILE;

-- Events with a lower id have committed, or never will: readers deliver
-- only those (src/events/outbox.c).  As the owner: it reads the sequence.
CREATE FUNCTION hokusai_auth._event_horizon()
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'hk_sql_event_horizon'
	LANGUAGE C VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;

-- Note a request-path event in shared memory, as the C code does
-- (hk_event_note()); the worker writes it.
CREATE FUNCTION hokusai_auth._event_note(kind text, key_id uuid,
	user_id uuid DEFAULT NULL, value bigint DEFAULT NULL)
	RETURNS void
	AS 'MODULE_PATHNAME', 'hk_sql_event_note'
	LANGUAGE C VOLATILE;

CREATE FUNCTION hokusai_auth.event_queue_stats(OUT capacity bigint, OUT queued bigint,
	OUT noted bigint, OUT deduplicated bigint, OUT dropped bigint,
	OUT written bigint, OUT discarded bigint)
	RETURNS record
	AS 'MODULE_PATHNAME', 'hk_sql_event_queue_stats'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.event_queue_stats() IS
	'Request-path events since server start: queue capacity and fill, noted, deduplicated (within a minute), dropped (queue full), written and discarded by the worker';

------------------------------------------------------------------------------
-- Tables
------------------------------------------------------------------------------

CREATE SEQUENCE hokusai_auth.events_id_seq;
CREATE TABLE hokusai_auth.events (
	id			bigint PRIMARY KEY DEFAULT hokusai_auth._event_id(),
	at			timestamptz NOT NULL DEFAULT clock_timestamp(),
	kind		text NOT NULL
		CONSTRAINT events_kind_check
		CHECK (kind IN ('key.created', 'key.revoked', 'key.rotated', 'key.updated',
						'key.disabled', 'key.enabled', 'key.expired', 'key.expiring',
						'credits.low', 'credits.exhausted', 'credits.added',
						'user.limits_updated', 'rate_limit.exceeded')),
	api_key_id	uuid,
	user_id		uuid,
	data		jsonb NOT NULL DEFAULT '{}'
		CONSTRAINT events_data_check CHECK (jsonb_typeof(data) = 'object')
);
ALTER SEQUENCE hokusai_auth.events_id_seq OWNED BY hokusai_auth.events.id;
-- A user's events by id (GET /api/v1/auth/events); a key's by kind and
-- time (the per-minute rule of rate_limit.exceeded, key.expiring once
-- each); retention by time.
CREATE INDEX events_user_id_idx ON hokusai_auth.events (user_id, id);
CREATE INDEX events_api_key_id_idx ON hokusai_auth.events (api_key_id, kind, at);
CREATE INDEX events_at_idx ON hokusai_auth.events (at);
COMMENT ON TABLE hokusai_auth.events IS
	'What happened to keys, written in the transaction of the change and announced at commit (NOTIFY hokusai_auth_events, payload the id)';
COMMENT ON COLUMN hokusai_auth.events.id IS
	'Ascending; read in id order with events_after(), which never passes an id whose transaction may still commit';
COMMENT ON COLUMN hokusai_auth.events.data IS
	'What the event is about (for key operations the audit row''s details); never a key or a secret';

-- Where the webhook relay (hokusai auth webhook) has delivered up to, per
-- receiver URL.  A URL may hold a credential: only its SHA-256 is kept,
-- with the scheme, host and port to show.
CREATE TABLE hokusai_auth.webhook_cursors (
	url_hash		bytea PRIMARY KEY
		CONSTRAINT webhook_cursors_url_hash_check CHECK (octet_length(url_hash) = 32),
	endpoint		text NOT NULL,
	last_event_id	bigint NOT NULL
		CONSTRAINT webhook_cursors_last_event_id_check CHECK (last_event_id >= 0),
	updated_at		timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE hokusai_auth.webhook_cursors IS
	'The webhook relay''s position per receiver: the last event id delivered (or given up on) to the URL whose SHA-256 is url_hash';
COMMENT ON COLUMN hokusai_auth.webhook_cursors.endpoint IS
	'The URL''s scheme, host and port (no path, query or credentials)';

------------------------------------------------------------------------------
-- Writing events
------------------------------------------------------------------------------

-- One event, and its announcement at commit.
CREATE FUNCTION hokusai_auth._event(kind text, api_key_id uuid, user_id uuid, data jsonb,
	at timestamptz DEFAULT NULL)
	RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	id	bigint := hokusai_auth._event_id();
BEGIN
	INSERT INTO hokusai_auth.events (id, at, kind, api_key_id, user_id, data)
	VALUES (id, coalesce(_event.at, pg_catalog.clock_timestamp()), kind, api_key_id,
			user_id, coalesce(data, '{}'));
	PERFORM pg_catalog.pg_notify('hokusai_auth_events', id::text);
	RETURN id;
END
$$;

-- The event of an audited key operation (_audit() calls it): the kind for
-- the action, the audit row's details as data.
CREATE FUNCTION hokusai_auth._audit_event(action text, api_key_id uuid, user_id uuid,
	details jsonb)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	kind	text := '{"create": "key.created", "revoke": "key.revoked",
					  "rotate": "key.rotated", "update": "key.updated",
					  "disable": "key.disabled", "enable": "key.enabled",
					  "expire": "key.expired", "add_credits": "credits.added",
					  "set_user_limits": "user.limits_updated"}'::jsonb
				   OPERATOR(pg_catalog.->>) action;
BEGIN
	IF kind IS NOT NULL THEN
		PERFORM hokusai_auth._event(kind, api_key_id, user_id, details);
	END IF;
END
$$;

-- The worker writes the request path's notes (src/worker/events_step.c):
-- kinds[i] of key_ids[i] at ats[i], value vals[i].  A note of a key that
-- is gone is dropped, and so is a rate_limit.exceeded within a minute of
-- the key's last one.  Returns how many events were written.
CREATE FUNCTION hokusai_auth._events_from_notes(kinds text[], key_ids uuid[],
	vals bigint[], ats timestamptz[])
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k		record;
	data	jsonb;
	n		integer := 0;
BEGIN
	FOR i IN 1 .. coalesce(pg_catalog.cardinality(kinds), 0) LOOP
		SELECT a.id, a.user_id, a.key_prefix INTO k
		  FROM hokusai_auth.api_keys a WHERE a.id OPERATOR(pg_catalog.=) key_ids[i];
		CONTINUE WHEN NOT FOUND;
		IF kinds[i] OPERATOR(pg_catalog.=) 'rate_limit.exceeded' THEN
			CONTINUE WHEN EXISTS (
				SELECT FROM hokusai_auth.events e
				 WHERE e.api_key_id OPERATOR(pg_catalog.=) k.id
				   AND e.kind OPERATOR(pg_catalog.=) 'rate_limit.exceeded'
				   AND e.at OPERATOR(pg_catalog.>) (ats[i] OPERATOR(pg_catalog.-) interval '1 minute')
				   AND e.at OPERATOR(pg_catalog.<) (ats[i] OPERATOR(pg_catalog.+) interval '1 minute'));
			data := pg_catalog.jsonb_build_object('key_prefix', k.key_prefix,
												  'retry_after', vals[i]);
		ELSE
			data := pg_catalog.jsonb_build_object('key_prefix', k.key_prefix,
												  'credits_remaining', vals[i]);
		END IF;
		PERFORM hokusai_auth._event(kinds[i], k.id, k.user_id, data, ats[i]);
		n := n OPERATOR(pg_catalog.+) 1;
	END LOOP;
	RETURN n;
END
$$;

-- key.expiring: 7 days before expires_at and 1 day before, once each per
-- key and expiry (a key whose expiry is changed is told again).  Not for
-- keys that are revoked, inactive or replaced by a rotation.  The worker
-- runs it every few seconds; one caller at a time (a second returns 0).
CREATE FUNCTION hokusai_auth.note_expiring_keys()
	RETURNS integer
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k		record;
	days	integer;
	n		integer := 0;
BEGIN
	-- ('hkevents' as a number)
	IF NOT pg_catalog.pg_try_advisory_xact_lock(7524219161634829427) THEN
		RETURN 0;
	END IF;
	FOR k IN
		SELECT a.id, a.user_id, a.key_prefix, a.name, a.expires_at
		  FROM hokusai_auth.api_keys a
		 WHERE a.is_active AND a.revoked_at IS NULL AND a.expires_at IS NOT NULL
		   AND a.expires_at OPERATOR(pg_catalog.>) pg_catalog.now()
		   AND a.expires_at OPERATOR(pg_catalog.<=) (pg_catalog.now() OPERATOR(pg_catalog.+) interval '7 days')
		   AND NOT EXISTS (SELECT FROM hokusai_auth.api_keys r
							WHERE r.rotated_from OPERATOR(pg_catalog.=) a.id)
		 ORDER BY a.expires_at, a.id
	LOOP
		days := CASE WHEN k.expires_at OPERATOR(pg_catalog.<=)
							  (pg_catalog.now() OPERATOR(pg_catalog.+) interval '1 day')
					 THEN 1 ELSE 7 END;
		CONTINUE WHEN EXISTS (
			SELECT FROM hokusai_auth.events e
			 WHERE e.api_key_id OPERATOR(pg_catalog.=) k.id
			   AND e.kind OPERATOR(pg_catalog.=) 'key.expiring'
			   AND (e.data OPERATOR(pg_catalog.->>) 'days')::integer OPERATOR(pg_catalog.<=) days
			   AND (e.data OPERATOR(pg_catalog.->>) 'expires_at')::timestamptz
				   OPERATOR(pg_catalog.=) k.expires_at);
		PERFORM hokusai_auth._event('key.expiring', k.id, k.user_id,
			pg_catalog.jsonb_build_object('key_prefix', k.key_prefix, 'name', k.name,
										  'expires_at', k.expires_at, 'days', days));
		n := n OPERATOR(pg_catalog.+) 1;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION hokusai_auth.note_expiring_keys() IS
	'Write key.expiring for keys that expire within 7 days (days 7) or 1 day (days 1), once each; returns how many (the worker runs it)';

-- Retention: the worker calls it with hokusai_auth.events_retention.
CREATE FUNCTION hokusai_auth.prune_events(retention interval DEFAULT '30 days')
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	n	bigint;
BEGIN
	IF retention IS NULL OR retention OPERATOR(pg_catalog.<) interval '7 days' THEN
		RAISE EXCEPTION 'retention must be at least 7 days'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A key.expiring notice must outlive the 7 days before the expiry it announces.';
	END IF;
	DELETE FROM hokusai_auth.events e
	 WHERE e.at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) retention);
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION hokusai_auth.prune_events(interval) IS
	'Delete events older than retention (at least 7 days); returns how many (the worker runs it with hokusai_auth.events_retention)';

------------------------------------------------------------------------------
-- Reading events
------------------------------------------------------------------------------

-- Events after an id, in id order, only below the horizon: an event whose
-- transaction is still open holds back the ones after it, so a reader that
-- resumes after the last id it saw never misses one.  A statement begun
-- after the horizon was read sees every event below it.
CREATE FUNCTION hokusai_auth.events_after("after" bigint DEFAULT 0,
	max_events integer DEFAULT 100)
	RETURNS SETOF hokusai_auth.events
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	horizon	bigint;
BEGIN
	IF max_events IS NULL OR max_events OPERATOR(pg_catalog.<) 1
	   OR max_events OPERATOR(pg_catalog.>) 10000 THEN
		RAISE EXCEPTION 'max_events must be between 1 and 10000'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	horizon := hokusai_auth._event_horizon();
	RETURN QUERY
		SELECT e.* FROM hokusai_auth.events e
		 WHERE e.id OPERATOR(pg_catalog.>) coalesce(events_after."after", 0)
		   AND e.id OPERATOR(pg_catalog.<) horizon
		 ORDER BY e.id
		 LIMIT max_events;
END
$$;
COMMENT ON FUNCTION hokusai_auth.events_after(bigint, integer) IS
	'Up to max_events events with an id above after, in id order; never passes an event whose transaction may still commit';

-- The webhook relay's cursor for a URL: the last event id delivered there,
-- NULL when there is none.
CREATE FUNCTION hokusai_auth.webhook_cursor(url text)
	RETURNS bigint
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT c.last_event_id FROM hokusai_auth.webhook_cursors c
	 WHERE c.url_hash OPERATOR(pg_catalog.=) pg_catalog.sha256(pg_catalog.convert_to(url, 'UTF8'))
$$;
COMMENT ON FUNCTION hokusai_auth.webhook_cursor(text) IS
	'The last event id the webhook relay delivered to url, NULL when none';

CREATE FUNCTION hokusai_auth.set_webhook_cursor(url text, event_id bigint)
	RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	-- The URL is never repeated in a message: it may hold a credential.
	IF url IS NULL OR pg_catalog.length(url) OPERATOR(pg_catalog.>) 2048
	   OR url OPERATOR(pg_catalog.!~*) '^https?://[^/?#[:space:][:cntrl:]]+([/?#][^[:space:][:cntrl:]]*)?$' THEN
		RAISE EXCEPTION 'url must be an http:// or https:// URL of at most 2048 characters'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF event_id IS NULL OR event_id OPERATOR(pg_catalog.<) 0 THEN
		RAISE EXCEPTION 'event_id must be 0 or more'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO hokusai_auth.webhook_cursors AS c (url_hash, endpoint, last_event_id, updated_at)
	VALUES (pg_catalog.sha256(pg_catalog.convert_to(url, 'UTF8')),
			pg_catalog.regexp_replace(pg_catalog.substring(url, '^[^:]+://[^/?#]+'), '://[^@]*@', '://'),
			event_id, pg_catalog.now())
	ON CONFLICT (url_hash) DO UPDATE
	   SET last_event_id = excluded.last_event_id, updated_at = excluded.updated_at;
END
$$;
COMMENT ON FUNCTION hokusai_auth.set_webhook_cursor(text, bigint) IS
	'Record that the webhook relay delivered up to event_id to url (only the URL''s hash and its scheme, host and port are kept)';

------------------------------------------------------------------------------
-- HTTP: GET /api/v1/auth/events?after=ID&limit=N
------------------------------------------------------------------------------

-- An HTTP caller sees the events of its own user (the same rule as
-- api_keys: built-in functions only).
ALTER TABLE hokusai_auth.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY http_caller_events ON hokusai_auth.events
	USING (NOT (SELECT pg_catalog.has_schema_privilege('hokusai_api', 'USAGE'))
		   OR user_id::text = (SELECT coalesce(nullif(pg_catalog.current_setting('hokusai.user_id', true), ''),
				CASE WHEN pg_catalog.current_setting('request.jwt.claims', true) ~ '^\s*\{'
					 THEN pg_catalog.current_setting('request.jwt.claims', true)::jsonb ->> 'sub' END)));

-- The caller's events after an id, in id order, at most 1000 (PostgREST's
-- limit= takes fewer).  SECURITY INVOKER: row-level security picks them.
CREATE FUNCTION hokusai_api.events("after" bigint DEFAULT 0)
	RETURNS SETOF hokusai_auth.events
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	caller	uuid := hokusai_auth._http_caller();
	horizon	bigint := hokusai_auth._event_horizon();
BEGIN
	RETURN QUERY
		SELECT e.* FROM hokusai_auth.events e
		 WHERE e.id OPERATOR(pg_catalog.>) coalesce(events."after", 0)
		   AND e.id OPERATOR(pg_catalog.<) horizon
		   AND caller IS NOT NULL
		 ORDER BY e.id
		 LIMIT 1000;
END
$$;
COMMENT ON FUNCTION hokusai_api.events(bigint) IS
	'The caller''s events with an id above after, in id order (at most 1000; limit= takes fewer)';

-- Every audited key operation writes its event (audit.sql).
-- One audit row, unsealed, with the actor taken from the session: the
-- calling role, and for HTTP requests the JWT subject, the API key and the
-- client address that hokusai_auth.pre_request() recorded.  And the event
-- of the operation (events.sql).
CREATE OR REPLACE FUNCTION hokusai_auth._audit(action text, api_key_id uuid, user_id uuid,
	details jsonb)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	claims	text := nullif(pg_catalog.current_setting('request.jwt.claims', true), '');
	sub		text;
	key_id	text := pg_catalog.current_setting('hokusai.api_key_id', true);
	addr	text := pg_catalog.current_setting('hokusai.client_ip', true);
	client	inet;
BEGIN
	IF claims IS NOT NULL AND claims OPERATOR(pg_catalog.~) '^\s*\{' THEN
		BEGIN
			sub := claims::jsonb OPERATOR(pg_catalog.->>) 'sub';
		EXCEPTION WHEN invalid_text_representation THEN
			sub := NULL;
		END;
	END IF;
	-- Recorded only when well formed: a bad value must not fail the operation.
	IF key_id OPERATOR(pg_catalog.!~*) '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
		key_id := NULL;
	END IF;
	IF addr OPERATOR(pg_catalog.!~) '^[0-9A-Fa-f:.]{2,45}$' THEN
		addr := NULL;
	END IF;
	client := pg_catalog.inet_client_addr();
	IF addr IS NOT NULL THEN
		BEGIN
			client := addr::inet;
		EXCEPTION WHEN invalid_text_representation THEN
			NULL;
		END;
	END IF;
	INSERT INTO hokusai_auth.audit_log
		(action, api_key_id, user_id, actor_role, actor_sub, actor_key_id,
		 client_addr, details)
	VALUES
		(action, api_key_id, user_id, hokusai_auth._caller_role(), pg_catalog.left(sub, 200),
		 key_id::uuid, client,
		 coalesce(details, '{}'));
	-- Its event, in the same transaction (events.sql).
	PERFORM hokusai_auth._audit_event(action, api_key_id, user_id, coalesce(details, '{}'));
END
$$;

-- pg_dump keeps the events, their sequence's position and the webhook
-- cursors (backups.sql).
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.events', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.webhook_cursors', '');

------------------------------------------------------------------------------
-- expire_keys() skips rows other transactions hold (sql/install/keys.sql).
------------------------------------------------------------------------------

-- Deactivate expired keys, with an audit row each (the background worker
-- calls it every flush_interval).  A key whose row another transaction
-- holds is left for a later call: it never waits for a row lock (an idle
-- transaction must not stall the worker), and validation refuses an
-- expired key by its expires_at either way.
CREATE OR REPLACE FUNCTION hokusai_auth.expire_keys()
	RETURNS integer
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k	record;
	n	integer := 0;
BEGIN
	FOR k IN
		UPDATE hokusai_auth.api_keys a
		   SET is_active = false
		  FROM (SELECT x.id FROM hokusai_auth.api_keys x
				 WHERE x.is_active AND x.revoked_at IS NULL
				   AND x.expires_at IS NOT NULL AND x.expires_at <= now()
				   FOR NO KEY UPDATE SKIP LOCKED) d
		 WHERE a.id = d.id
		RETURNING a.id, a.user_id, a.key_prefix, a.expires_at
	LOOP
		PERFORM hokusai_auth._audit('expire', k.id, k.user_id,
			jsonb_build_object('key_prefix', k.key_prefix, 'expires_at', k.expires_at));
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

------------------------------------------------------------------------------
-- usage.sql: last_used_at written only when it moves on by a minute.
------------------------------------------------------------------------------

-- last_used_at: one UPDATE per key per flush, never moving it backwards,
-- and only when it moves on by a minute or more: last_used_at is accurate
-- to about a minute (docs/usage.md), and a key used with an endpoint (an
-- event each time) is written once a minute, not at every flush.
-- The cache invalidation triggers ignore last_used_at.
CREATE OR REPLACE FUNCTION hokusai_auth._usage_touch(key_ids uuid[], ats timestamptz[])
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	n	integer;
BEGIN
	UPDATE hokusai_auth.api_keys a
	   SET last_used_at = t.at
	  FROM (SELECT u.k, max(u.t) AS at FROM unnest(key_ids, ats) u(k, t) GROUP BY u.k) t
	 WHERE a.id = t.k
	   AND (a.last_used_at IS NULL
			OR a.last_used_at < t.at - interval '1 minute');
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

------------------------------------------------------------------------------
-- END: nothing new is usable by PUBLIC.
------------------------------------------------------------------------------

DROP FUNCTION hokusai_auth._copy_function_grants(regprocedure, regprocedure);
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA hokusai_auth, hokusai_api FROM PUBLIC;
