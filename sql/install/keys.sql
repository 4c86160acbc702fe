
------------------------------------------------------------------------------
-- sql/install/keys.sql: keys and their owners.  The C functions that make
-- and check keys (src/keys, src/validate), the input checks shared
-- by the management functions, create_user(), create_key(), revoke_key(),
-- rotate_key(), update_key(), expire_keys(), the keys view and list_keys().
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- C functions
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth._new_key(environment text,
	OUT key text, OUT key_prefix text, OUT key_hash text)
	RETURNS record
	AS 'MODULE_PATHNAME', 'hk_sql_new_key'
	LANGUAGE C VOLATILE;

CREATE FUNCTION hokusai_auth._default_rate_limit_per_hour()
	RETURNS integer
	AS 'MODULE_PATHNAME', 'hk_sql_default_rate_limit'
	LANGUAGE C STABLE;

CREATE FUNCTION hokusai_auth._caller_role()
	RETURNS text
	AS 'MODULE_PATHNAME', 'hk_sql_caller_role'
	LANGUAGE C STABLE;

CREATE FUNCTION hokusai_auth.key_is_well_formed(key text)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'hk_sql_key_is_well_formed'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION hokusai_auth.key_is_well_formed(text) IS
	'Does the text have the shape and checksum of a hokusai key? No table or bcrypt work.';

CREATE FUNCTION hokusai_auth.key_prefix(key text)
	RETURNS text
	AS 'MODULE_PATHNAME', 'hk_sql_key_prefix'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION hokusai_auth.key_prefix(text) IS
	'The displayable key_prefix of a well-formed key, NULL otherwise';

-- What validate_key() returns.  A named type, not OUT parameters: the
-- executor then finds the result's row descriptor in the type cache instead
-- of building it again from pg_proc for every statement.
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

------------------------------------------------------------------------------
-- Input checks shared by the management functions.  Messages never repeat
-- the offending value: it may be huge, hostile, or a secret.
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth._check_text(value text, what text, max_length integer)
	RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	IF value IS NULL THEN
		RAISE EXCEPTION '% must not be null', what
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF btrim(value) = '' THEN
		RAISE EXCEPTION '% must not be empty', what
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF length(value) > max_length THEN
		RAISE EXCEPTION '% is too long', what
			USING ERRCODE = 'string_data_right_truncation',
				  DETAIL = format('The limit is %s characters.', max_length);
	END IF;
	IF value ~ '[[:cntrl:]]' THEN
		RAISE EXCEPTION '% must not contain control characters', what
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;

CREATE FUNCTION hokusai_auth._check_not_null(value anyelement, what text)
	RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	IF value IS NULL THEN
		RAISE EXCEPTION '% must not be null', what
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
END
$$;

-- Checks the per-key settings create_key() and update functions accept.
CREATE FUNCTION hokusai_auth._check_key_settings(expires_at timestamptz,
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

------------------------------------------------------------------------------
-- Users and keys.  Every change writes an audit row (hokusai_auth._audit(),
-- audit.sql); keys are never deleted: revocation is soft.
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth.create_user(username text, email text DEFAULT NULL)
	RETURNS uuid
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	new_id	uuid;
BEGIN
	PERFORM hokusai_auth._check_text(username, 'username', 64);
	IF username !~ '^[A-Za-z0-9][A-Za-z0-9._@+-]*$' THEN
		RAISE EXCEPTION 'invalid username'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A username starts with a letter or digit and contains only letters, digits and . _ @ + -.';
	END IF;
	IF email IS NOT NULL THEN
		PERFORM hokusai_auth._check_text(email, 'email', 254);
		IF email !~ '^[^[:space:]@]+@[^[:space:]@]+$' THEN
			RAISE EXCEPTION 'invalid email address'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END IF;

	INSERT INTO hokusai_auth.users (username, email)
		VALUES (create_user.username, create_user.email)
		ON CONFLICT DO NOTHING
		RETURNING id INTO new_id;
	IF new_id IS NULL THEN
		RAISE EXCEPTION 'user "%" already exists', username
			USING ERRCODE = 'unique_violation';
	END IF;
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION hokusai_auth.create_user(text, text) IS 'Create an owner of API keys; returns its id';

-- Lock the user's row against a concurrent deactivation (FOR SHARE
-- conflicts with the UPDATE that would deactivate it) and refuse a user
-- that does not exist or is not active.  One rule for create_key() and
-- rotate_key().
CREATE FUNCTION hokusai_auth._active_user(user_id uuid)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	owner_active boolean;
BEGIN
	SELECT u.is_active INTO owner_active
	  FROM hokusai_auth.users u WHERE u.id OPERATOR(pg_catalog.=) _active_user.user_id FOR SHARE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'user % does not exist', user_id
			USING ERRCODE = 'foreign_key_violation';
	END IF;
	IF NOT owner_active THEN
		RAISE EXCEPTION 'user % is not active', user_id
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
END
$$;

-- Lock and return a key's row; a missing key is an error (HTTP 404).
CREATE FUNCTION hokusai_auth._key_for_update(key_id uuid)
	RETURNS hokusai_auth.api_keys
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k	hokusai_auth.api_keys;
BEGIN
	PERFORM hokusai_auth._check_not_null(key_id, 'key_id');
	SELECT * INTO k FROM hokusai_auth.api_keys a WHERE a.id = key_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'api key % does not exist', key_id
			USING ERRCODE = 'no_data_found';
	END IF;
	RETURN k;
END
$$;

-- Insert a new key row and return the plaintext key once.
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

CREATE FUNCTION hokusai_auth.revoke_key(key_id uuid, reason text DEFAULT NULL)
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
	IF k.revoked_at IS NOT NULL THEN
		RETURN false;
	END IF;
	UPDATE hokusai_auth.api_keys a
	   SET is_active = false, revoked_at = now()
	 WHERE a.id = k.id;
	PERFORM hokusai_auth._audit('revoke', k.id, k.user_id,
		jsonb_strip_nulls(jsonb_build_object('key_prefix', k.key_prefix, 'reason', reason)));
	RETURN true;
END
$$;
COMMENT ON FUNCTION hokusai_auth.revoke_key(uuid, text) IS
	'Revoke a key (soft: the row stays); false when it was already revoked';

-- The new key copies the old one's settings; the old one ends at
-- now() + grace, never later than its own expiry.  A deactivated user gets
-- no new key, as with create_key().
CREATE FUNCTION hokusai_auth.rotate_key(key_id uuid, grace interval DEFAULT '0',
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

-- Key rows as anyone may see them: no key_hash, and a computed status.
CREATE VIEW hokusai_auth.keys AS
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

CREATE FUNCTION hokusai_auth.list_keys(user_id uuid)
	RETURNS SETOF hokusai_auth.keys
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	PERFORM hokusai_auth._check_not_null(user_id, 'user_id');
	IF NOT EXISTS (SELECT FROM hokusai_auth.users u WHERE u.id = list_keys.user_id) THEN
		RAISE EXCEPTION 'user % does not exist', user_id
			USING ERRCODE = 'no_data_found';
	END IF;
	RETURN QUERY
		SELECT * FROM hokusai_auth.keys k
		 WHERE k.user_id = list_keys.user_id
		 ORDER BY k.created_at, k.id;
END
$$;
COMMENT ON FUNCTION hokusai_auth.list_keys(uuid) IS
	'A user''s keys, newest last, without hashes; status is active, expired or revoked';

-- Change a key's settings; takes effect on the next validation (the cache
-- invalidation triggers of cache.sql see the change at commit).
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

-- Deactivate expired keys, with an audit row each (the background worker
-- calls it every flush_interval).  A key whose row another transaction
-- holds is left for a later call: it never waits for a row lock (an idle
-- transaction must not stall the worker), and validation refuses an
-- expired key by its expires_at either way.
CREATE FUNCTION hokusai_auth.expire_keys()
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
COMMENT ON FUNCTION hokusai_auth.expire_keys() IS
	'Deactivate keys whose expires_at has passed, with an audit row each; returns how many (the worker calls it every flush_interval)';
