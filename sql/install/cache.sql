
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
