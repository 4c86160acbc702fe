/* hokusai_auth 1.0 -> 1.1: the shared-memory key cache */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION hokusai_auth UPDATE TO '1.1'" to load this file. \quit

-- Names in this script resolve in pg_catalog only: CREATE EXTENSION and
-- ALTER EXTENSION UPDATE otherwise search the schema they install into,
-- where a look-alike operator or function (say =(cidr[],cidr[]), more
-- specific than pg_catalog's anyarray one) would be bound for good into a
-- view, a trigger's WHEN clause or a default (DESIGN.md section 11).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

------------------------------------------------------------------------------
-- Cache invalidation: changes that validation reads register the key (or
-- user) for removal from the cache when the transaction commits.
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth._invalidate_cache()
	RETURNS trigger
	AS 'MODULE_PATHNAME', 'hk_sql_invalidate_trigger'
	LANGUAGE C;

CREATE TRIGGER api_keys_invalidate_update AFTER UPDATE ON hokusai_auth.api_keys
	FOR EACH ROW
	WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active
		  OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
		  OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
		  OR OLD.rate_limit_per_hour IS DISTINCT FROM NEW.rate_limit_per_hour
		  OR OLD.burst_limit IS DISTINCT FROM NEW.burst_limit
		  OR OLD.allowed_ips IS DISTINCT FROM NEW.allowed_ips
		  OR OLD.key_hash IS DISTINCT FROM NEW.key_hash
		  OR OLD.key_prefix IS DISTINCT FROM NEW.key_prefix
		  OR OLD.user_id IS DISTINCT FROM NEW.user_id
		  OR OLD.id IS DISTINCT FROM NEW.id)
	EXECUTE FUNCTION hokusai_auth._invalidate_cache('key');
CREATE TRIGGER api_keys_invalidate_delete AFTER DELETE ON hokusai_auth.api_keys
	FOR EACH ROW EXECUTE FUNCTION hokusai_auth._invalidate_cache('key');
CREATE TRIGGER api_keys_invalidate_truncate AFTER TRUNCATE ON hokusai_auth.api_keys
	FOR EACH STATEMENT EXECUTE FUNCTION hokusai_auth._invalidate_cache('key');

CREATE TRIGGER users_invalidate_update AFTER UPDATE ON hokusai_auth.users
	FOR EACH ROW
	WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active OR OLD.id IS DISTINCT FROM NEW.id)
	EXECUTE FUNCTION hokusai_auth._invalidate_cache('user');
CREATE TRIGGER users_invalidate_delete AFTER DELETE ON hokusai_auth.users
	FOR EACH ROW EXECUTE FUNCTION hokusai_auth._invalidate_cache('user');
CREATE TRIGGER users_invalidate_truncate AFTER TRUNCATE ON hokusai_auth.users
	FOR EACH STATEMENT EXECUTE FUNCTION hokusai_auth._invalidate_cache('user');

------------------------------------------------------------------------------
-- Statistics
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth.cache_stats(
	OUT hits bigint, OUT misses bigint, OUT negative_hits bigint,
	OUT evictions bigint, OUT bcrypt_verifications bigint, OUT throttled bigint,
	OUT invalidations bigint, OUT malformed bigint, OUT entries bigint,
	OUT capacity bigint, OUT stats_reset timestamptz)
	RETURNS record
	AS 'MODULE_PATHNAME', 'hk_sql_cache_stats'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.cache_stats() IS
	'Key cache counters since the last reset, with current and maximum entries';

CREATE VIEW hokusai_auth.cache_stats AS SELECT * FROM hokusai_auth.cache_stats();
COMMENT ON VIEW hokusai_auth.cache_stats IS 'Key cache counters (hokusai_auth.cache_stats())';

CREATE FUNCTION hokusai_auth.cache_stats_reset()
	RETURNS void
	AS 'MODULE_PATHNAME', 'hk_sql_cache_stats_reset'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.cache_stats_reset() IS 'Zero the key cache counters';

------------------------------------------------------------------------------
-- update_key: change a key's settings; takes effect on the next validation.
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth.update_key(key_id uuid,
	name text DEFAULT NULL,
	expires_at timestamptz DEFAULT NULL,
	rate_limit_per_hour integer DEFAULT NULL,
	burst_limit integer DEFAULT NULL,
	allowed_ips cidr[] DEFAULT NULL,
	metadata jsonb DEFAULT NULL,
	clear_expires_at boolean DEFAULT false,
	clear_burst_limit boolean DEFAULT false,
	clear_allowed_ips boolean DEFAULT false)
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
	IF (clear_expires_at AND expires_at IS NOT NULL)
	   OR (clear_burst_limit AND burst_limit IS NOT NULL)
	   OR (clear_allowed_ips AND allowed_ips IS NOT NULL) THEN
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
			metadata = coalesce(update_key.metadata, a.metadata)
		 WHERE a.id = k.id;
		-- Keep the audit trail free of the values of metadata: it may be large.
		PERFORM hokusai_auth._audit('update', k.id, k.user_id,
			jsonb_build_object('key_prefix', k.key_prefix, 'changes', changes));
	END IF;
	RETURN QUERY SELECT * FROM hokusai_auth.keys WHERE id = k.id;
END
$$;
COMMENT ON FUNCTION hokusai_auth.update_key(uuid, text, timestamptz, integer, integer, cidr[], jsonb, boolean, boolean, boolean) IS
	'Change a key''s name, expiry, limits, allowed_ips or metadata; NULL leaves a setting as it is';

REVOKE ALL ON FUNCTION hokusai_auth._invalidate_cache() FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth.cache_stats() FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth.cache_stats_reset() FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth.update_key(uuid, text, timestamptz, integer, integer, cidr[], jsonb, boolean, boolean, boolean) FROM PUBLIC;
REVOKE ALL ON hokusai_auth.cache_stats FROM PUBLIC;

------------------------------------------------------------------------------
-- Rate limits: sliding windows in dynamic shared memory (rate_limiter.c)
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth._rate_limit_replay(at timestamptz[], per_hour integer,
	burst integer)
	RETURNS boolean[]
	AS 'MODULE_PATHNAME', 'hk_sql_rate_limit_replay'
	LANGUAGE C IMMUTABLE;
COMMENT ON FUNCTION hokusai_auth._rate_limit_replay(timestamptz[], integer, integer) IS
	'Tests only: the limiter''s decisions for requests at the given times, from an empty state';

CREATE FUNCTION hokusai_auth._rate_limit_inspect(key_id uuid, per_hour integer, burst integer,
	OUT tracked boolean, OUT hour_count bigint, OUT burst_count bigint,
	OUT remaining integer, OUT reset_seconds integer)
	RETURNS record
	AS 'MODULE_PATHNAME', 'hk_sql_rate_limit_inspect'
	LANGUAGE C VOLATILE;

CREATE FUNCTION hokusai_auth._rate_limit_reset(key_id uuid)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'hk_sql_rate_limit_reset'
	LANGUAGE C VOLATILE;

-- One key's current windows, without counting a request.
CREATE FUNCTION hokusai_auth.rate_limit_status(key_id uuid,
	OUT rate_limit_per_hour integer, OUT burst_limit integer,
	OUT requests_last_hour bigint, OUT requests_last_second bigint,
	OUT remaining integer, OUT reset_seconds integer, OUT tracked boolean)
	RETURNS record
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k		hokusai_auth.api_keys;
	burst	integer;
	s		record;
BEGIN
	PERFORM hokusai_auth._check_not_null(rate_limit_status.key_id, 'key_id');
	SELECT * INTO k FROM hokusai_auth.api_keys a WHERE a.id = rate_limit_status.key_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'api key % does not exist', rate_limit_status.key_id
			USING ERRCODE = 'no_data_found';
	END IF;
	burst := coalesce(k.burst_limit,
					  current_setting('hokusai_auth.default_burst_limit')::integer);
	s := hokusai_auth._rate_limit_inspect(k.id, k.rate_limit_per_hour, burst);
	rate_limit_per_hour := k.rate_limit_per_hour;
	burst_limit := nullif(burst, 0);
	requests_last_hour := s.hour_count;
	requests_last_second := s.burst_count;
	remaining := s.remaining;
	reset_seconds := s.reset_seconds;
	tracked := s.tracked;
	RETURN;
END
$$;
COMMENT ON FUNCTION hokusai_auth.rate_limit_status(uuid) IS
	'A key''s requests in its current windows, remaining quota and seconds until it can be used again';

-- Forget a key's windows (administrators only); audited.
CREATE FUNCTION hokusai_auth.rate_limit_reset(key_id uuid)
	RETURNS boolean
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	k		hokusai_auth.api_keys;
	had		boolean;
BEGIN
	PERFORM hokusai_auth._check_not_null(key_id, 'key_id');
	SELECT * INTO k FROM hokusai_auth.api_keys a WHERE a.id = rate_limit_reset.key_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'api key % does not exist', key_id
			USING ERRCODE = 'no_data_found';
	END IF;
	had := hokusai_auth._rate_limit_reset(k.id);
	PERFORM hokusai_auth._audit('update', k.id, k.user_id,
		jsonb_build_object('key_prefix', k.key_prefix,
						   'changes', jsonb_build_object('rate_limit_reset', true)));
	RETURN had;
END
$$;
COMMENT ON FUNCTION hokusai_auth.rate_limit_reset(uuid) IS
	'Clear a key''s rate-limit windows (it can use its full quota again); true when it had any';

CREATE FUNCTION hokusai_auth.rate_limit_stats(
	OUT admitted bigint, OUT rejected_hourly bigint, OUT rejected_burst bigint,
	OUT entries bigint, OUT created bigint, OUT reclaimed bigint,
	OUT entry_bytes integer)
	RETURNS record
	AS 'MODULE_PATHNAME', 'hk_sql_rate_limit_stats'
	LANGUAGE C VOLATILE;
COMMENT ON FUNCTION hokusai_auth.rate_limit_stats() IS
	'Rate limiter counters since server start and the keys it tracks now';

-- Every counter of the extension in one row.
CREATE VIEW hokusai_auth.stats AS
	SELECT c.*, r.admitted AS rate_admitted, r.rejected_hourly AS rate_rejected_hourly,
		   r.rejected_burst AS rate_rejected_burst, r.entries AS rate_entries,
		   r.created AS rate_entries_created, r.reclaimed AS rate_entries_reclaimed,
		   r.entry_bytes AS rate_entry_bytes
	  FROM hokusai_auth.cache_stats() c, hokusai_auth.rate_limit_stats() r;
COMMENT ON VIEW hokusai_auth.stats IS 'Key cache and rate limiter counters';

REVOKE ALL ON FUNCTION hokusai_auth._rate_limit_replay(timestamptz[], integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth._rate_limit_inspect(uuid, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth._rate_limit_reset(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth.rate_limit_status(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth.rate_limit_reset(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth.rate_limit_stats() FROM PUBLIC;
REVOKE ALL ON hokusai_auth.stats FROM PUBLIC;

------------------------------------------------------------------------------
-- The client address behind trusted proxies (forwarded.c)
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth.client_ip(forwarded_for text, peer inet DEFAULT NULL)
	RETURNS inet
	AS 'MODULE_PATHNAME', 'hk_sql_client_ip'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION hokusai_auth.client_ip(text, inet) IS
	'The right-most X-Forwarded-For address outside hokusai_auth.trusted_proxies (peer when it is untrusted or the header is empty; NULL when the header is malformed)';
REVOKE ALL ON FUNCTION hokusai_auth.client_ip(text, inet) FROM PUBLIC;
