/* hokusai_auth 1.0: schema, key lifecycle, audit trail */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION hokusai_auth" to load this file. \quit

-- Names in this script resolve in pg_catalog only: CREATE EXTENSION and
-- ALTER EXTENSION UPDATE otherwise search the schema they install into,
-- where a look-alike operator or function (say =(cidr[],cidr[]), more
-- specific than pg_catalog's anyarray one) would be bound for good into a
-- view, a trigger's WHEN clause or a default (DESIGN.md section 11).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- Created here, not from the control file, so they belong to the extension
-- and DROP EXTENSION removes them.
CREATE SCHEMA hokusai_auth;
CREATE SCHEMA hokusai_api;
COMMENT ON SCHEMA hokusai_auth IS 'API keys: users, keys, usage, audit log and the functions that manage them';
COMMENT ON SCHEMA hokusai_api IS 'What PostgREST exposes over HTTP';

------------------------------------------------------------------------------
-- Tables
------------------------------------------------------------------------------

CREATE TABLE hokusai_auth.users (
	id			uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	username	text NOT NULL UNIQUE
		CONSTRAINT users_username_check
		CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$'),
	email		text
		CONSTRAINT users_email_check
		CHECK (length(email) <= 254 AND email ~ '^[^[:space:][:cntrl:]@]+@[^[:space:][:cntrl:]@]+$'),
	created_at	timestamptz NOT NULL DEFAULT now(),
	is_active	boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE hokusai_auth.users IS 'Owners of API keys';

CREATE TABLE hokusai_auth.api_keys (
	id					uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	key_hash			text NOT NULL,
	key_prefix			text NOT NULL UNIQUE,
	user_id				uuid NOT NULL REFERENCES hokusai_auth.users (id),
	name				text NOT NULL,
	environment			text NOT NULL DEFAULT 'live',
	created_at			timestamptz NOT NULL DEFAULT now(),
	expires_at			timestamptz,
	last_used_at		timestamptz,
	is_active			boolean NOT NULL DEFAULT true,
	rate_limit_per_hour integer NOT NULL,
	burst_limit			integer,
	allowed_ips			cidr[],
	metadata			jsonb NOT NULL DEFAULT '{}',
	revoked_at			timestamptz,
	rotated_from		uuid REFERENCES hokusai_auth.api_keys (id),
	CONSTRAINT api_keys_environment_check CHECK (environment IN ('live', 'test')),
	CONSTRAINT api_keys_key_prefix_check
		CHECK (key_prefix ~ '^hk_(live|test)_[0-9A-Za-z]{8}$'
			   AND substr(key_prefix, 4, 4) = environment),
	CONSTRAINT api_keys_key_hash_check CHECK (key_hash ~ '^\$2a\$[0-9]{2}\$.{53}$'),
	CONSTRAINT api_keys_name_check CHECK (length(name) BETWEEN 1 AND 200),
	CONSTRAINT api_keys_rate_limit_check CHECK (rate_limit_per_hour > 0),
	CONSTRAINT api_keys_burst_limit_check CHECK (burst_limit > 0),
	CONSTRAINT api_keys_metadata_check CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE UNIQUE INDEX api_keys_key_hash_idx ON hokusai_auth.api_keys (key_hash);
CREATE INDEX api_keys_user_id_idx ON hokusai_auth.api_keys (user_id);
CREATE INDEX api_keys_expires_at_idx ON hokusai_auth.api_keys (expires_at)
	WHERE is_active AND expires_at IS NOT NULL;
COMMENT ON TABLE hokusai_auth.api_keys IS 'API keys: only the bcrypt hash and the displayable prefix are stored';
COMMENT ON COLUMN hokusai_auth.api_keys.burst_limit IS 'Requests per rolling second; NULL follows hokusai_auth.default_burst_limit';

CREATE TABLE hokusai_auth.api_key_usage (
	id					uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	api_key_id			uuid NOT NULL REFERENCES hokusai_auth.api_keys (id),
	endpoint			text,
	"timestamp"			timestamptz NOT NULL DEFAULT now(),
	response_time_ms	integer,
	status_code			integer
);
CREATE INDEX api_key_usage_key_time_idx
	ON hokusai_auth.api_key_usage (api_key_id, "timestamp");
COMMENT ON TABLE hokusai_auth.api_key_usage IS 'One row per recorded request';

CREATE SEQUENCE hokusai_auth.audit_log_id_seq;
CREATE TABLE hokusai_auth.audit_log (
	id			bigint PRIMARY KEY,
	at			timestamptz NOT NULL DEFAULT clock_timestamp(),
	action		text NOT NULL
		CONSTRAINT audit_log_action_check
		CHECK (action IN ('create', 'revoke', 'rotate', 'update', 'expire')),
	api_key_id	uuid,
	user_id		uuid,
	actor_role	text NOT NULL,
	actor_sub	text,
	actor_key_id uuid,
	client_addr inet,
	details		jsonb NOT NULL DEFAULT '{}',
	prev_hash	bytea,
	row_hash	bytea NOT NULL
);
ALTER SEQUENCE hokusai_auth.audit_log_id_seq OWNED BY hokusai_auth.audit_log.id;
CREATE INDEX audit_log_api_key_id_idx ON hokusai_auth.audit_log (api_key_id);
COMMENT ON TABLE hokusai_auth.audit_log IS
	'Append-only record of key operations, each row chained to the one before by SHA-256';
COMMENT ON COLUMN hokusai_auth.audit_log.actor_role IS 'Database role that called (SET ROLE identity)';
COMMENT ON COLUMN hokusai_auth.audit_log.actor_sub IS 'JWT subject of an HTTP caller';
COMMENT ON COLUMN hokusai_auth.audit_log.actor_key_id IS 'API key an HTTP caller authenticated with';

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

CREATE FUNCTION hokusai_auth.validate_key(key text, client_ip inet DEFAULT NULL,
	endpoint text DEFAULT NULL,
	OUT valid boolean, OUT status text, OUT key_id uuid, OUT user_id uuid,
	OUT rate_limit integer, OUT remaining integer, OUT reset_seconds integer,
	OUT retry_after integer)
	RETURNS record
	AS 'MODULE_PATHNAME', 'hk_sql_validate_key'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.validate_key(text, inet, text) IS
	'Check an API key: status ok, malformed, unknown, revoked, expired, ip_denied or rate_limited';

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
	IF burst_limit IS NOT NULL AND burst_limit <= 0 THEN
		RAISE EXCEPTION 'burst_limit must be positive'
			USING ERRCODE = 'invalid_parameter_value';
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
-- Audit log: append-only, hash-chained
------------------------------------------------------------------------------

-- The chain's head: the newest row's id and hash.  Writers lock it, so the
-- chain has one writer at a time; a REPEATABLE READ writer that would link
-- to a stale head gets a serialization failure instead.  verify_audit_chain()
-- compares it with the newest row, so deleting the newest rows shows.
CREATE TABLE hokusai_auth.audit_head (
	only_row	boolean PRIMARY KEY DEFAULT true CHECK (only_row),
	last_id		bigint,
	last_hash	bytea
);
INSERT INTO hokusai_auth.audit_head DEFAULT VALUES;
COMMENT ON TABLE hokusai_auth.audit_head IS 'Id and hash of the newest audit_log row';

-- The bytes a row's hash covers: the fields as a JSON array, which keeps
-- them apart unambiguously.  to_char() in UTC keeps it independent of the
-- session's DateStyle and TimeZone.
CREATE FUNCTION hokusai_auth._audit_row_bytes(r hokusai_auth.audit_log)
	RETURNS bytea
	LANGUAGE sql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT convert_to(json_build_array(
		r.id,
		to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
		r.action,
		r.api_key_id,
		r.user_id,
		r.actor_role,
		r.actor_sub,
		r.actor_key_id,
		host(r.client_addr),
		r.details)::text, 'UTF8')
$$;

-- Chains each new row to the last one, under the head's row lock; the id
-- is taken under the lock, so id order is chain order.
CREATE FUNCTION hokusai_auth._audit_chain()
	RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	SELECT h.last_hash INTO NEW.prev_hash
	  FROM hokusai_auth.audit_head h FOR UPDATE;
	NEW.id := nextval('hokusai_auth.audit_log_id_seq');
	NEW.at := clock_timestamp();
	NEW.row_hash := sha256(coalesce(NEW.prev_hash, '\x'::bytea)
						   || hokusai_auth._audit_row_bytes(NEW));
	UPDATE hokusai_auth.audit_head SET last_id = NEW.id, last_hash = NEW.row_hash;
	RETURN NEW;
END
$$;

CREATE FUNCTION hokusai_auth._audit_append_only()
	RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	RAISE EXCEPTION 'hokusai_auth.audit_log is append-only'
		USING ERRCODE = 'insufficient_privilege',
			  DETAIL = format('%s is not allowed on the audit log.', TG_OP);
END
$$;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON hokusai_auth.audit_log
	FOR EACH ROW EXECUTE FUNCTION hokusai_auth._audit_chain();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON hokusai_auth.audit_log
	FOR EACH ROW EXECUTE FUNCTION hokusai_auth._audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON hokusai_auth.audit_log
	FOR EACH STATEMENT EXECUTE FUNCTION hokusai_auth._audit_append_only();

CREATE FUNCTION hokusai_auth.verify_audit_chain()
	RETURNS bigint
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	r		hokusai_auth.audit_log;
	prev	bytea := NULL;
	last	bigint := NULL;
	head_id bigint;
	head_hash bytea;
BEGIN
	FOR r IN SELECT * FROM hokusai_auth.audit_log ORDER BY id LOOP
		IF r.prev_hash IS DISTINCT FROM prev
		   OR r.row_hash IS DISTINCT FROM
			  sha256(coalesce(r.prev_hash, '\x'::bytea) || hokusai_auth._audit_row_bytes(r))
		THEN
			RETURN r.id;
		END IF;
		prev := r.row_hash;
		last := r.id;
	END LOOP;
	-- The newest rows were deleted: the head still names them.
	SELECT h.last_id, h.last_hash INTO head_id, head_hash FROM hokusai_auth.audit_head h;
	IF head_id IS DISTINCT FROM last OR head_hash IS DISTINCT FROM prev THEN
		RETURN coalesce(last, 0) + 1;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION hokusai_auth.verify_audit_chain() IS
	'Id of the first audit row whose hash chain is broken (one past the last row when the newest rows are missing), NULL when intact';

-- One audit row, with the actor taken from the session: the calling role,
-- and for HTTP requests the JWT subject, the API key and the client address
-- that hokusai_auth.pre_request() recorded.
CREATE FUNCTION hokusai_auth._audit(action text, api_key_id uuid, user_id uuid,
	details jsonb)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	claims	text := nullif(current_setting('request.jwt.claims', true), '');
	sub		text;
	key_id	text := current_setting('hokusai.api_key_id', true);
	addr	text := current_setting('hokusai.client_ip', true);
	client	inet;
BEGIN
	IF claims IS NOT NULL AND claims ~ '^\s*\{' THEN
		BEGIN
			sub := claims::jsonb ->> 'sub';
		EXCEPTION WHEN invalid_text_representation THEN
			sub := NULL;
		END;
	END IF;
	-- Recorded only when well formed: a bad value must not fail the operation.
	IF key_id !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
		key_id := NULL;
	END IF;
	IF addr !~ '^[0-9A-Fa-f:.]{2,45}$' THEN
		addr := NULL;
	END IF;
	client := inet_client_addr();
	IF addr IS NOT NULL THEN
		BEGIN
			client := addr::inet;
		EXCEPTION WHEN invalid_text_representation THEN
			NULL;
		END;
	END IF;
	INSERT INTO hokusai_auth.audit_log
		(action, api_key_id, user_id, actor_role, actor_sub, actor_key_id,
		 client_addr, details, row_hash)
	VALUES
		(action, api_key_id, user_id, hokusai_auth._caller_role(), left(sub, 200),
		 key_id::uuid, client,
		 coalesce(details, '{}'), '\x');
END
$$;

------------------------------------------------------------------------------
-- Users and keys
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
			 rate_limit_per_hour, burst_limit, allowed_ips, metadata, rotated_from)
		VALUES
			(nk.key_hash, nk.key_prefix, _insert_key.user_id, _insert_key.name,
			 _insert_key.environment, _insert_key.expires_at,
			 _insert_key.rate_limit_per_hour, _insert_key.burst_limit,
			 _insert_key.allowed_ips, _insert_key.metadata, _insert_key.rotated_from)
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
					'rotated_from', _insert_key.rotated_from)));
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
	metadata jsonb DEFAULT '{}')
	RETURNS record
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	owner_active boolean;
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
	IF expires_at = 'infinity' THEN
		expires_at := NULL;
	END IF;
	PERFORM hokusai_auth._check_key_settings(expires_at, rate_limit_per_hour,
		burst_limit, allowed_ips, metadata);

	SELECT u.is_active INTO owner_active
	  FROM hokusai_auth.users u WHERE u.id = create_key.user_id FOR KEY SHARE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'user % does not exist', user_id
			USING ERRCODE = 'foreign_key_violation';
	END IF;
	IF NOT owner_active THEN
		RAISE EXCEPTION 'user % is not active', user_id
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;

	nk := hokusai_auth._insert_key(user_id, name, environment, expires_at,
		coalesce(rate_limit_per_hour, hokusai_auth._default_rate_limit_per_hour()),
		burst_limit, allowed_ips, coalesce(metadata, '{}'), NULL);
	id := nk.id;
	key := nk.key;
	key_prefix := nk.key_prefix;
END
$$;
COMMENT ON FUNCTION hokusai_auth.create_key(uuid, text, text, timestamptz, integer, integer, cidr[], jsonb) IS
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
	IF grace < interval '0' THEN
		RAISE EXCEPTION 'grace must not be negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF grace > interval '30 days' THEN
		RAISE EXCEPTION 'grace must be at most 30 days'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	k := hokusai_auth._key_for_update(key_id);
	IF k.revoked_at IS NOT NULL OR NOT k.is_active THEN
		RAISE EXCEPTION 'cannot rotate revoked api key %', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF k.expires_at IS NOT NULL AND k.expires_at <= now() THEN
		RAISE EXCEPTION 'cannot rotate expired api key %', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF EXISTS (SELECT FROM hokusai_auth.api_keys a WHERE a.rotated_from = k.id) THEN
		RAISE EXCEPTION 'api key % has already been rotated', k.key_prefix
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Rotate the key that replaced it.';
	END IF;

	-- The new key keeps the old one's lifetime, counted from now.
	IF k.expires_at IS NOT NULL THEN
		expires_at := now() + (k.expires_at - k.created_at);
	END IF;
	nk := hokusai_auth._insert_key(k.user_id, k.name, k.environment, expires_at,
		k.rate_limit_per_hour, k.burst_limit, k.allowed_ips, k.metadata, k.id);
	id := nk.id;
	key := nk.key;
	key_prefix := nk.key_prefix;

	IF grace = interval '0' THEN
		old_end := now();
		UPDATE hokusai_auth.api_keys a
		   SET is_active = false, revoked_at = now()
		 WHERE a.id = k.id;
	ELSE
		old_end := least(coalesce(k.expires_at, 'infinity'), now() + grace);
		UPDATE hokusai_auth.api_keys a SET expires_at = old_end WHERE a.id = k.id;
	END IF;
	PERFORM hokusai_auth._audit('rotate', k.id, k.user_id,
		jsonb_build_object('key_prefix', k.key_prefix, 'new_key_id', nk.id,
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
				ELSE 'active' END AS status
	  FROM hokusai_auth.api_keys k;
COMMENT ON VIEW hokusai_auth.keys IS
	'API keys without their hashes; status is active, expired or revoked';

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

------------------------------------------------------------------------------
-- Privileges: nothing is usable by PUBLIC.  Administrators are granted what
-- they need explicitly (docs/keys.md, Privileges).
------------------------------------------------------------------------------

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA hokusai_auth FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA hokusai_auth FROM PUBLIC;
REVOKE ALL ON SCHEMA hokusai_auth FROM PUBLIC;
REVOKE ALL ON SCHEMA hokusai_api FROM PUBLIC;
