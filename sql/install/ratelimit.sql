
------------------------------------------------------------------------------
-- sql/install/ratelimit.sql: rate limits, sliding windows in dynamic shared
-- memory (src/ratelimit/).  validate_key() applies them; here
-- are the functions to inspect and reset a key's windows, the limiter's
-- counters, and the stats view of every counter of the extension.
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
