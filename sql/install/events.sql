
------------------------------------------------------------------------------
-- sql/install/events.sql: events, a transactional outbox (docs/events.md).
-- The table events, written in the transaction of each change it describes
-- (_audit() calls _audit_event()) and announced at commit with
-- NOTIFY hokusai_auth_events, payload the event's id; the request path's
-- events, noted in shared memory and written by the worker
-- (_events_from_notes()); key.expiring notices and retention; reading in
-- id order without skipping a late commit (events_after(), the horizon of
-- src/events/outbox.c); the webhook relay's cursors; GET
-- /api/v1/auth/events (hokusai_api.events(), row-level security).
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
