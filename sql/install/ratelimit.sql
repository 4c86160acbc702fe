
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

CREATE FUNCTION hokusai_auth._rate_limit_reset(key_id uuid)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'hk_sql_rate_limit_reset'
	LANGUAGE C VOLATILE;

-- One key's current windows, its owner's and its credits, without
-- counting a request.
CREATE FUNCTION hokusai_auth.rate_limit_status(key_id uuid,
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
COMMENT ON FUNCTION hokusai_auth.rate_limit_status(uuid) IS
	'A key''s requests in its current windows, remaining quota, seconds until it can be used again, its live credits and the limits its owner''s keys share';

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


