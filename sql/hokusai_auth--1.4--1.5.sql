/* hokusai_auth 1.4 -> 1.5: backups keep everything, an audit chain without a
   lock held to commit, rotate_key() follows create_key()'s rule for
   deactivated users, pg_cron jobs with schema-qualified bodies */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION hokusai_auth UPDATE TO '1.5'" to load this file. \quit

-- Names in this script resolve in pg_catalog only: CREATE EXTENSION and
-- ALTER EXTENSION UPDATE otherwise search the schema they install into,
-- where a look-alike operator or function (say =(cidr[],cidr[]), more
-- specific than pg_catalog's anyarray one) would be bound for good into a
-- view, a trigger's WHEN clause or a default (DESIGN.md section 11).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

------------------------------------------------------------------------------
-- Backups: pg_dump and pg_dumpall carry every row of the extension's tables
-- (an extension's tables are otherwise left out of a dump, rows and all).
------------------------------------------------------------------------------

-- Tables that hold exactly one row, which the install script inserts: a
-- restore's COPY (which runs after CREATE EXTENSION has inserted that row)
-- replaces the row instead of failing on a second one.
CREATE FUNCTION hokusai_auth._singleton_replace()
	RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'audit_head' THEN
		UPDATE hokusai_auth.audit_head h
		   SET last_id = NEW.last_id, last_hash = NEW.last_hash, last_seq = NEW.last_seq;
	ELSIF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'usage_rollup_state' THEN
		UPDATE hokusai_auth.usage_rollup_state s
		   SET rolled_until = NEW.rolled_until, rolled_at = NEW.rolled_at;
	ELSE
		RAISE EXCEPTION 'hokusai_auth._singleton_replace() is not for table %', TG_TABLE_NAME;
	END IF;
	IF FOUND THEN
		RETURN NULL;
	END IF;
	RETURN NEW;
END
$$;

------------------------------------------------------------------------------
-- The audit chain, sealed after commit.
--
-- Until 1.4 every audit row was chained as it was inserted, under a row
-- lock on audit_head held until the inserting transaction ended: one idle
-- transaction that had created a key stopped every other key operation.
-- Now a key operation appends its row unsealed (seq, prev_hash and row_hash
-- NULL) and takes no shared lock.  seal_audit_log() (the background worker
-- calls it every flush_interval) takes the committed unsealed rows in id
-- order, gives each the next position in the chain (seq) and its hashes,
-- and moves the head.  Chain order is seq order, which follows commit order:
-- a row is sealed only once it is committed, after every row sealed before.
------------------------------------------------------------------------------

ALTER TABLE hokusai_auth.audit_head ADD COLUMN last_seq bigint;
UPDATE hokusai_auth.audit_head SET last_seq = last_id;
COMMENT ON TABLE hokusai_auth.audit_head IS
	'The newest sealed audit_log row: its id, chain position (seq) and hash';
CREATE TRIGGER audit_head_restore BEFORE INSERT ON hokusai_auth.audit_head
	FOR EACH ROW EXECUTE FUNCTION hokusai_auth._singleton_replace();
CREATE TRIGGER usage_rollup_state_restore BEFORE INSERT ON hokusai_auth.usage_rollup_state
	FOR EACH ROW EXECUTE FUNCTION hokusai_auth._singleton_replace();

DROP TRIGGER audit_log_chain ON hokusai_auth.audit_log;
DROP FUNCTION hokusai_auth._audit_chain();

-- Rows written before 1.5 were chained in id order: their position is
-- their id (positions need only ascend; gaps are not damage).
ALTER TABLE hokusai_auth.audit_log ADD COLUMN seq bigint;
ALTER TABLE hokusai_auth.audit_log DISABLE TRIGGER audit_log_append_only;
UPDATE hokusai_auth.audit_log SET seq = id;
ALTER TABLE hokusai_auth.audit_log ENABLE TRIGGER audit_log_append_only;
ALTER TABLE hokusai_auth.audit_log ALTER COLUMN row_hash DROP NOT NULL;
ALTER TABLE hokusai_auth.audit_log
	ALTER COLUMN id SET DEFAULT nextval('hokusai_auth.audit_log_id_seq');
ALTER TABLE hokusai_auth.audit_log ADD CONSTRAINT audit_log_seal_check
	CHECK ((seq IS NULL) = (row_hash IS NULL) AND (prev_hash IS NULL OR seq IS NOT NULL));
CREATE UNIQUE INDEX audit_log_seq_idx ON hokusai_auth.audit_log (seq);
CREATE INDEX audit_log_unsealed_idx ON hokusai_auth.audit_log (id) WHERE seq IS NULL;
COMMENT ON COLUMN hokusai_auth.audit_log.seq IS
	'Position in the hash chain, given when the row is sealed (NULL until then)';
COMMENT ON COLUMN hokusai_auth.audit_log.row_hash IS
	'SHA-256 over prev_hash and the row, given when the row is sealed (NULL until then)';

-- Append-only, except that an unsealed row may be sealed once: seq,
-- prev_hash and row_hash go from NULL to values and nothing else changes.
-- (Only the table's owner may UPDATE it at all; a wrong seal is caught by
-- verify_audit_chain(), which recomputes every hash.)
CREATE OR REPLACE FUNCTION hokusai_auth._audit_append_only()
	RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
BEGIN
	IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE'
	   AND OLD.seq IS NULL AND NEW.seq IS NOT NULL
	   AND (NEW.id, NEW.at, NEW.action, NEW.api_key_id, NEW.user_id, NEW.actor_role,
			NEW.actor_sub, NEW.actor_key_id, NEW.client_addr, NEW.details)
		   IS NOT DISTINCT FROM
		   (OLD.id, OLD.at, OLD.action, OLD.api_key_id, OLD.user_id, OLD.actor_role,
			OLD.actor_sub, OLD.actor_key_id, OLD.client_addr, OLD.details)
	THEN
		RETURN NEW;
	END IF;
	RAISE EXCEPTION 'hokusai_auth.audit_log is append-only'
		USING ERRCODE = 'insufficient_privilege',
			  DETAIL = format('%s is not allowed on the audit log.', TG_OP);
END
$$;

-- One audit row, unsealed, with the actor taken from the session: the
-- calling role, and for HTTP requests the JWT subject, the API key and the
-- client address that hokusai_auth.pre_request() recorded.
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
END
$$;

-- Seal the committed unsealed rows, oldest id first, at most max_rows of
-- them; returns how many.  One sealer at a time: a second one returns 0 at
-- once instead of waiting (the other is sealing).  The head row's lock is
-- held only for this short transaction.
CREATE FUNCTION hokusai_auth.seal_audit_log(max_rows integer DEFAULT 10000)
	RETURNS integer
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	h		hokusai_auth.audit_head;
	r		hokusai_auth.audit_log;
	prev	bytea;
	pos		bigint;
	hash	bytea;
	n		integer := 0;
BEGIN
	IF max_rows IS NULL OR max_rows OPERATOR(pg_catalog.<) 1 THEN
		RAISE EXCEPTION 'max_rows must be at least 1'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT * INTO h FROM hokusai_auth.audit_head FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN
		RETURN 0;
	END IF;
	prev := h.last_hash;
	pos := coalesce(h.last_seq, 0);
	FOR r IN
		SELECT * FROM hokusai_auth.audit_log a
		 WHERE a.seq IS NULL
		 ORDER BY a.id
		 LIMIT max_rows
	LOOP
		pos := pos OPERATOR(pg_catalog.+) 1;
		hash := pg_catalog.sha256(coalesce(prev, '\x'::bytea)
								  OPERATOR(pg_catalog.||) hokusai_auth._audit_row_bytes(r));
		UPDATE hokusai_auth.audit_log a
		   SET seq = pos, prev_hash = prev, row_hash = hash
		 WHERE a.id OPERATOR(pg_catalog.=) r.id;
		prev := hash;
		h.last_id := r.id;
		n := n OPERATOR(pg_catalog.+) 1;
	END LOOP;
	IF n OPERATOR(pg_catalog.>) 0 THEN
		UPDATE hokusai_auth.audit_head
		   SET last_id = h.last_id, last_seq = pos, last_hash = prev;
	END IF;
	RETURN n;
END
$$;
COMMENT ON FUNCTION hokusai_auth.seal_audit_log(integer) IS
	'Chain the committed unsealed audit rows (at most max_rows), oldest id first; returns how many (the worker calls it every flush_interval)';
REVOKE ALL ON FUNCTION hokusai_auth.seal_audit_log(integer) FROM PUBLIC;

-- Walk the sealed rows in chain order; the id of the first row that fails,
-- NULL when intact.  Unsealed rows are not part of the chain yet.
CREATE OR REPLACE FUNCTION hokusai_auth.verify_audit_chain()
	RETURNS bigint
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	r		hokusai_auth.audit_log;
	prev	bytea := NULL;
	last	bigint := NULL;
	last_pos bigint := NULL;
	h		hokusai_auth.audit_head;
BEGIN
	FOR r IN SELECT * FROM hokusai_auth.audit_log a WHERE a.seq IS NOT NULL ORDER BY a.seq LOOP
		IF r.prev_hash IS DISTINCT FROM prev
		   OR r.row_hash IS DISTINCT FROM
			  pg_catalog.sha256(coalesce(r.prev_hash, '\x'::bytea)
								OPERATOR(pg_catalog.||) hokusai_auth._audit_row_bytes(r))
		THEN
			RETURN r.id;
		END IF;
		prev := r.row_hash;
		last := r.id;
		last_pos := r.seq;
	END LOOP;
	-- The newest sealed rows were deleted: the head still names them.
	SELECT * INTO h FROM hokusai_auth.audit_head;
	IF h.last_id IS DISTINCT FROM last OR h.last_seq IS DISTINCT FROM last_pos
	   OR h.last_hash IS DISTINCT FROM prev THEN
		RETURN coalesce(last, 0) OPERATOR(pg_catalog.+) 1;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION hokusai_auth.verify_audit_chain() IS
	'Id of the first sealed audit row whose hash chain is broken (one past the last row when the newest sealed rows are missing), NULL when intact';

------------------------------------------------------------------------------
-- Users: one rule for create_key() and rotate_key()
------------------------------------------------------------------------------

-- Lock the user's row against a concurrent deactivation (FOR SHARE
-- conflicts with the UPDATE that would deactivate it) and refuse a user
-- that does not exist or is not active.
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

CREATE OR REPLACE FUNCTION hokusai_auth.create_key(user_id uuid, name text,
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
		burst_limit, allowed_ips, coalesce(metadata, '{}'), NULL);
	id := nk.id;
	key := nk.key;
	key_prefix := nk.key_prefix;
END
$$;

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
		k.rate_limit_per_hour, k.burst_limit, k.allowed_ips, k.metadata, k.id);
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

------------------------------------------------------------------------------
-- pg_cron job bodies: schema-qualified, nothing resolved through the
-- search_path of whoever runs them.
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION hokusai_auth.schedule_housekeeping(retention interval DEFAULT '30 days',
	rollup_schedule text DEFAULT '*/5 * * * *',
	prune_schedule text DEFAULT '17 3 * * *')
	RETURNS TABLE (jobid bigint, jobname text, schedule text, command text)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	rollup_cmd	text := 'SELECT hokusai_auth.rollup_usage()';
	prune_cmd	text;
BEGIN
	IF retention IS NULL OR retention OPERATOR(pg_catalog.<) interval '1 hour' THEN
		RAISE EXCEPTION 'retention must be at least 1 hour'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM hokusai_auth._check_text(rollup_schedule, 'rollup_schedule', 100);
	PERFORM hokusai_auth._check_text(prune_schedule, 'prune_schedule', 100);
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e
					WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron') THEN
		RAISE EXCEPTION 'pg_cron is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart, and run CREATE EXTENSION pg_cron.';
	END IF;
	prune_cmd := pg_catalog.format('SELECT hokusai_auth.prune_usage(CAST(%L AS pg_catalog.interval))',
								   retention::text);
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
	EXECUTE 'SELECT cron.schedule($1, $2, $3)'
		USING 'hokusai_auth.rollup', rollup_schedule, rollup_cmd;
	EXECUTE 'SELECT cron.schedule($1, $2, $3)'
		USING 'hokusai_auth.prune', prune_schedule, prune_cmd;
	RETURN QUERY EXECUTE
		'SELECT j.jobid, j.jobname::text, j.schedule::text, j.command::text FROM cron.job j
		  WHERE j.jobname IN (''hokusai_auth.rollup'', ''hokusai_auth.prune'')
		  ORDER BY j.jobname';
END
$$;

REVOKE ALL ON FUNCTION hokusai_auth._singleton_replace() FROM PUBLIC;
REVOKE ALL ON FUNCTION hokusai_auth._active_user(uuid) FROM PUBLIC;

------------------------------------------------------------------------------
-- HTTP errors never carry a key.  Messages quote what the client sent (an
-- unknown field's name, an allowed_ips item that is not a network), and a
-- client may put a key there: such a token is replaced before the error
-- is raised, so it reaches neither the response nor the server log.
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION hokusai_auth._http_error(status integer, code text, message text,
	details text DEFAULT NULL, hint text DEFAULT NULL, headers jsonb DEFAULT '{}')
	RETURNS void
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	key_token constant text := '(hk_(live|test)_)[0-9a-z]{9,}';
BEGIN
	-- For track_request(), which records the status when the transaction ends.
	PERFORM pg_catalog.set_config('response.status', status::text, true);
	RAISE SQLSTATE 'PGRST'
		USING MESSAGE = pg_catalog.json_build_object('code', code,
				'message', pg_catalog.regexp_replace(message, key_token, '\1(redacted)', 'gi'),
				'details', pg_catalog.regexp_replace(details, key_token, '\1(redacted)', 'gi'),
				'hint', pg_catalog.regexp_replace(hint, key_token, '\1(redacted)', 'gi'))::text,
			  DETAIL = pg_catalog.json_build_object('status', status,
										 'headers', coalesce(headers, '{}'))::text;
END
$$;

------------------------------------------------------------------------------
-- 201 answers name the created key: Location /keys/{id} (nginx maps it to
-- /api/v1/auth/keys/{id}).
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth._http_location(key_id uuid)
	RETURNS void
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	h	text := nullif(current_setting('response.headers', true), '');
BEGIN
	PERFORM set_config('response.headers',
		(coalesce(h::jsonb, '[]') || jsonb_build_array(jsonb_build_object('Location', '/keys/' || key_id)))::text,
		true);
END
$$;

CREATE OR REPLACE FUNCTION hokusai_api.create_key(jsonb)
	RETURNS jsonb
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	body	jsonb := hokusai_auth._http_body($1, ARRAY['name', 'environment',
				'expires_at', 'rate_limit_per_hour', 'burst_limit', 'allowed_ips', 'metadata']);
	caller	uuid := hokusai_auth._http_caller();
	name	text := hokusai_auth._http_text(body, 'name', 200);
	env		text := coalesce(hokusai_auth._http_text(body, 'environment', 4), 'live');
	expires timestamptz := hokusai_auth._http_timestamp(hokusai_auth._http_text(body, 'expires_at', 64), 'expires_at');
	hourly	integer := hokusai_auth._http_int(body, 'rate_limit_per_hour', 1, 1000000000);
	burst	integer := hokusai_auth._http_int(body, 'burst_limit', 1, 1000000);
	ips		cidr[];
	meta	jsonb := body -> 'metadata';
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

	nk := hokusai_auth.create_key(caller, name, environment => env, expires_at => expires,
		rate_limit_per_hour => hourly, burst_limit => burst, allowed_ips => ips, metadata => meta);
	SELECT * INTO k FROM hokusai_auth.keys WHERE id = nk.id;
	PERFORM set_config('response.status', '201', true);
	PERFORM hokusai_auth._http_location(nk.id);
	RETURN jsonb_build_object('key', nk.key) || hokusai_auth._http_key_json(k);
END
$$;

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

REVOKE ALL ON FUNCTION hokusai_auth._http_location(uuid) FROM PUBLIC;

------------------------------------------------------------------------------
-- Bound again, with names resolved in pg_catalog only: objects whose
-- expressions were bound when an earlier version was installed, when the
-- installing schema came first on search_path.  A look-alike planted there
-- then (=(cidr[],cidr[]), count(integer), /(numeric,bigint)) would have
-- been bound into them; these definitions replace whatever was bound.
------------------------------------------------------------------------------

DROP TRIGGER api_keys_invalidate_update ON hokusai_auth.api_keys;
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
CREATE OR REPLACE VIEW hokusai_auth.usage_hourly AS
	SELECT h.api_key_id, h.hour, h.endpoint, h.status_code, h.requests,
		   CASE WHEN h.status_code >= 400 THEN h.requests ELSE 0 END AS errors,
		   h.timed_requests, h.response_ms_sum,
		   round(h.response_ms_sum::numeric / nullif(h.timed_requests, 0), 1) AS avg_response_ms,
		   h.max_response_ms
	  FROM hokusai_auth.api_key_usage_hourly h
	UNION ALL
	SELECT u.api_key_id, date_trunc('hour', u."timestamp", 'UTC'), u.endpoint, u.status_code,
		   count(*),
		   CASE WHEN u.status_code >= 400 THEN count(*) ELSE 0 END,
		   count(u.response_time_ms), coalesce(sum(u.response_time_ms), 0),
		   round(avg(u.response_time_ms), 1), max(u.response_time_ms)
	  FROM hokusai_auth.api_key_usage u
	 WHERE u."timestamp" >= (SELECT s.rolled_until FROM hokusai_auth.usage_rollup_state s)
	 GROUP BY u.api_key_id, date_trunc('hour', u."timestamp", 'UTC'), u.endpoint, u.status_code;
COMMENT ON VIEW hokusai_auth.usage_hourly IS
	'Requests per key, UTC hour, endpoint and status code; errors are status >= 400';

CREATE OR REPLACE VIEW hokusai_auth.usage_daily AS
	SELECT h.api_key_id, date_trunc('day', h.hour) AS day,
		   sum(h.requests)::bigint AS requests, sum(h.errors)::bigint AS errors,
		   round(sum(h.response_ms_sum)::numeric / nullif(sum(h.timed_requests), 0), 1) AS avg_response_ms,
		   max(h.max_response_ms) AS max_response_ms
	  FROM hokusai_auth.usage_hourly h
	 GROUP BY h.api_key_id, date_trunc('day', h.hour);

CREATE OR REPLACE VIEW hokusai_auth.usage_by_endpoint AS
	SELECT h.api_key_id, h.endpoint,
		   sum(h.requests)::bigint AS requests, sum(h.errors)::bigint AS errors,
		   round(sum(h.response_ms_sum)::numeric / nullif(sum(h.timed_requests), 0), 1) AS avg_response_ms,
		   max(h.max_response_ms) AS max_response_ms,
		   max(h.hour) AS last_hour
	  FROM hokusai_auth.usage_hourly h
	 GROUP BY h.api_key_id, h.endpoint;

CREATE OR REPLACE VIEW hokusai_auth.usage_by_status AS
	SELECT h.api_key_id, h.status_code, sum(h.requests)::bigint AS requests
	  FROM hokusai_auth.usage_hourly h
	 GROUP BY h.api_key_id, h.status_code;

CREATE OR REPLACE VIEW hokusai_auth.usage_per_minute AS
	SELECT u.api_key_id, date_trunc('minute', u."timestamp") AS minute,
		   count(*) AS requests, count(*) FILTER (WHERE u.status_code >= 400) AS errors,
		   round(avg(u.response_time_ms), 1) AS avg_response_ms,
		   max(u.response_time_ms) AS max_response_ms
	  FROM hokusai_auth.api_key_usage u
	 GROUP BY u.api_key_id, date_trunc('minute', u."timestamp");

------------------------------------------------------------------------------
-- Registered last: pg_dump keeps the rows (and the audit sequence's
-- position) of every table that holds what users made.
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.users', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.api_keys', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.api_key_usage', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.audit_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.audit_head', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.api_key_usage_hourly', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.api_key_latency_hourly', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.usage_rollup_state', '');
