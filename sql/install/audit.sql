
------------------------------------------------------------------------------
-- sql/install/audit.sql: the audit trail.  Tables audit_log (append-only,
-- hash-chained) and audit_head, the row writer _audit() that key operations
-- call, sealing (seal_audit_log()) and verify_audit_chain().
--
-- A key operation appends its row unsealed (seq, prev_hash and row_hash
-- NULL) and takes no shared lock.  seal_audit_log() (the background worker
-- calls it every flush_interval) takes the committed unsealed rows in id
-- order, gives each the next position in the chain (seq) and its hashes,
-- and moves the head.  Chain order is seq order, which follows commit order:
-- a row is sealed only once it is committed, after every row sealed before.
-- (Until 1.4 rows were chained as they were inserted, under a row lock on
-- audit_head held until the inserting transaction ended; rows chained then
-- have seq = id.)
------------------------------------------------------------------------------

-- Columns in the order a database updated from 1.0 has them (seq, added by
-- 1.5, last), so that dumps of either restore into the other alike.
CREATE SEQUENCE hokusai_auth.audit_log_id_seq;
CREATE TABLE hokusai_auth.audit_log (
	id			bigint PRIMARY KEY DEFAULT nextval('hokusai_auth.audit_log_id_seq'),
	at			timestamptz NOT NULL DEFAULT clock_timestamp(),
	action		text NOT NULL
		CONSTRAINT audit_log_action_check
		CHECK (action IN ('create', 'revoke', 'rotate', 'update', 'expire',
						  'disable', 'enable', 'add_credits', 'set_user_limits')),
	api_key_id	uuid,
	user_id		uuid,
	actor_role	text NOT NULL,
	actor_sub	text,
	actor_key_id uuid,
	client_addr inet,
	details		jsonb NOT NULL DEFAULT '{}',
	prev_hash	bytea,
	row_hash	bytea,
	seq			bigint,
	CONSTRAINT audit_log_seal_check
		CHECK ((seq IS NULL) = (row_hash IS NULL) AND (prev_hash IS NULL OR seq IS NOT NULL))
);
ALTER SEQUENCE hokusai_auth.audit_log_id_seq OWNED BY hokusai_auth.audit_log.id;
CREATE INDEX audit_log_api_key_id_idx ON hokusai_auth.audit_log (api_key_id);
CREATE UNIQUE INDEX audit_log_seq_idx ON hokusai_auth.audit_log (seq);
CREATE INDEX audit_log_unsealed_idx ON hokusai_auth.audit_log (id) WHERE seq IS NULL;
COMMENT ON TABLE hokusai_auth.audit_log IS
	'Append-only record of key operations, each row chained to the one before by SHA-256';
COMMENT ON COLUMN hokusai_auth.audit_log.actor_role IS 'Database role that called (SET ROLE identity)';
COMMENT ON COLUMN hokusai_auth.audit_log.actor_sub IS 'JWT subject of an HTTP caller';
COMMENT ON COLUMN hokusai_auth.audit_log.actor_key_id IS 'API key an HTTP caller authenticated with';
COMMENT ON COLUMN hokusai_auth.audit_log.seq IS
	'Position in the hash chain, given when the row is sealed (NULL until then)';
COMMENT ON COLUMN hokusai_auth.audit_log.row_hash IS
	'SHA-256 over prev_hash and the row, given when the row is sealed (NULL until then)';

-- The chain's head: the newest sealed row's id, position and hash.  The
-- sealer locks it, so the chain has one writer at a time.
-- verify_audit_chain() compares it with the newest sealed row, so deleting
-- the newest rows shows.  (last_seq last, as in an updated database.)
CREATE TABLE hokusai_auth.audit_head (
	only_row	boolean PRIMARY KEY DEFAULT true CHECK (only_row),
	last_id		bigint,
	last_hash	bytea,
	last_seq	bigint
);
INSERT INTO hokusai_auth.audit_head DEFAULT VALUES;
COMMENT ON TABLE hokusai_auth.audit_head IS
	'The newest sealed audit_log row: its id, chain position (seq) and hash';

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

-- Append-only, except that an unsealed row may be sealed once: seq,
-- prev_hash and row_hash go from NULL to values and nothing else changes.
-- (Only the table's owner may UPDATE it at all; a wrong seal is caught by
-- verify_audit_chain(), which recomputes every hash.)
CREATE FUNCTION hokusai_auth._audit_append_only()
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

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON hokusai_auth.audit_log
	FOR EACH ROW EXECUTE FUNCTION hokusai_auth._audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON hokusai_auth.audit_log
	FOR EACH STATEMENT EXECUTE FUNCTION hokusai_auth._audit_append_only();

-- One audit row, unsealed, with the actor taken from the session: the
-- calling role, and for HTTP requests the JWT subject, the API key and the
-- client address that hokusai_auth.pre_request() recorded.  And the event
-- of the operation (events.sql).
CREATE FUNCTION hokusai_auth._audit(action text, api_key_id uuid, user_id uuid,
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

-- Walk the sealed rows in chain order; the id of the first row that fails,
-- NULL when intact.  Unsealed rows are not part of the chain yet.
CREATE FUNCTION hokusai_auth.verify_audit_chain()
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
