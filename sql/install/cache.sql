
------------------------------------------------------------------------------
-- sql/install/cache.sql: the shared-memory key cache (src/validate/
-- cache.c, invalidate.c, stats.c).  Changes that validation reads register the
-- key (or user) for removal from the cache when the transaction commits:
-- the invalidation triggers on api_keys and users.  Its counters:
-- cache_stats(), the view of the same name, cache_stats_reset().
------------------------------------------------------------------------------

CREATE FUNCTION hokusai_auth._invalidate_cache()
	RETURNS trigger
	AS 'MODULE_PATHNAME', 'hk_sql_invalidate_trigger'
	LANGUAGE C;

-- last_used_at and credits_remaining, which the worker writes back, are not
-- among the columns watched.
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
CREATE TRIGGER api_keys_invalidate_delete AFTER DELETE ON hokusai_auth.api_keys
	FOR EACH ROW EXECUTE FUNCTION hokusai_auth._invalidate_cache('key');
CREATE TRIGGER api_keys_invalidate_truncate AFTER TRUNCATE ON hokusai_auth.api_keys
	FOR EACH STATEMENT EXECUTE FUNCTION hokusai_auth._invalidate_cache('key');

CREATE TRIGGER users_invalidate_update AFTER UPDATE ON hokusai_auth.users
	FOR EACH ROW
	WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active OR OLD.id IS DISTINCT FROM NEW.id
		  OR OLD.rate_limit_per_hour IS DISTINCT FROM NEW.rate_limit_per_hour
		  OR OLD.burst_limit IS DISTINCT FROM NEW.burst_limit)
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
