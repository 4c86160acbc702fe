
------------------------------------------------------------------------------
-- sql/install/backups.sql: backups.  pg_dump and pg_dumpall carry every row
-- of the extension's tables (an extension's tables are otherwise left out of
-- a dump, rows and all), and a restore into a database where CREATE
-- EXTENSION has already made the one-row tables replaces their row.
-- Registered last, once every table exists (docs/backup.md).
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
	ELSE
		RAISE EXCEPTION 'hokusai_auth._singleton_replace() is not for table %', TG_TABLE_NAME;
	END IF;
	IF FOUND THEN
		RETURN NULL;
	END IF;
	RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION hokusai_auth._singleton_replace() FROM PUBLIC;

CREATE TRIGGER audit_head_restore BEFORE INSERT ON hokusai_auth.audit_head
	FOR EACH ROW EXECUTE FUNCTION hokusai_auth._singleton_replace();

-- pg_dump keeps the rows (and the audit and event sequences' positions) of
-- every table that holds what users made.  The usage tables are
-- partitioned: their rows are in partitions that are not members of the
-- extension, which pg_dump dumps as it dumps any table, rows included
-- (registering the parents too says that they hold data).
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.users', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.api_keys', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.api_key_usage', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.audit_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.audit_head', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.api_key_usage_minutely', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.api_key_usage_hourly', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.api_key_usage_daily', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.events', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('hokusai_auth.webhook_cursors', '');
