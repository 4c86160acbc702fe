
------------------------------------------------------------------------------
-- sql/install/metering.sql: credits with refills, add_credits(), limits
-- shared by a user's keys (set_user_limits()) (docs/metering.md).
------------------------------------------------------------------------------

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

-- Every counter of the extension in one row (the cache's, the rate
-- limiter's, then metering's).
CREATE VIEW hokusai_auth.stats AS
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
