/* hokusai_auth 1.6: the install script.

   Built by make: sql/hokusai_auth--1.6.sql is the files of sql/install/
   concatenated in the order the Makefile lists (schema, keys, audit, cache,
   ratelimit, authorization, metering, usage, http, events, roles,
   backups).  Edit those files, never the
   built script.  Every object is defined once, in its 1.6 form.  A database
   installed at an earlier version reaches the same objects through the
   update scripts, which are frozen as shipped; the migration regression
   suite compares the two, object by object. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION hokusai_auth" to load this file. \quit

-- Names in this script resolve in pg_catalog only: CREATE EXTENSION and
-- ALTER EXTENSION UPDATE otherwise search the schema they install into,
-- where a look-alike operator or function (say =(cidr[],cidr[]), more
-- specific than pg_catalog's anyarray one) would be bound for good into a
-- view, a trigger's WHEN clause or a default (DESIGN.md section 11).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

------------------------------------------------------------------------------
-- sql/install/schema.sql: the schemas hokusai_auth and hokusai_api, and the
-- tables of section 3 of DESIGN.md (users, api_keys, api_key_usage) with
-- their indexes and comments.  The audit tables are in audit.sql, the
-- usage aggregates in usage.sql, row-level security in http.sql.
------------------------------------------------------------------------------

-- Created here, not from the control file, so they belong to the extension
-- and DROP EXTENSION removes them.
CREATE SCHEMA hokusai_auth;
CREATE SCHEMA hokusai_api;
COMMENT ON SCHEMA hokusai_auth IS 'API keys: users, keys, usage, audit log and the functions that manage them';
COMMENT ON SCHEMA hokusai_api IS 'What PostgREST exposes over HTTP';

CREATE TABLE hokusai_auth.users (
	id			uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	username	text NOT NULL UNIQUE
		CONSTRAINT users_username_check
		CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$'),
	email		text
		CONSTRAINT users_email_check
		CHECK (length(email) <= 254 AND email ~ '^[^[:space:][:cntrl:]@]+@[^[:space:][:cntrl:]@]+$'),
	created_at	timestamptz NOT NULL DEFAULT now(),
	is_active	boolean NOT NULL DEFAULT true,
	-- 1.6: limits shared by the user's keys (set_user_limits(), metering.sql)
	rate_limit_per_hour integer
		CONSTRAINT users_rate_limit_check CHECK (rate_limit_per_hour > 0),
	burst_limit integer
		CONSTRAINT users_burst_limit_check CHECK (burst_limit > 0)
);
COMMENT ON TABLE hokusai_auth.users IS 'Owners of API keys';
COMMENT ON COLUMN hokusai_auth.users.rate_limit_per_hour IS 'Requests per rolling hour for all of the user''s keys together; NULL: no shared limit';
COMMENT ON COLUMN hokusai_auth.users.burst_limit IS 'Requests per rolling second for all of the user''s keys together; NULL: no shared limit';

CREATE TABLE hokusai_auth.api_keys (
	id					uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	key_hash			text NOT NULL,
	key_prefix			text NOT NULL UNIQUE,
	user_id				uuid NOT NULL REFERENCES hokusai_auth.users (id),
	name				text NOT NULL,
	environment			text NOT NULL DEFAULT 'live',
	created_at			timestamptz NOT NULL DEFAULT now(),
	expires_at			timestamptz,
	last_used_at		timestamptz,
	is_active			boolean NOT NULL DEFAULT true,
	rate_limit_per_hour integer NOT NULL,
	burst_limit			integer,
	allowed_ips			cidr[],
	metadata			jsonb NOT NULL DEFAULT '{}',
	revoked_at			timestamptz,
	rotated_from		uuid REFERENCES hokusai_auth.api_keys (id),
	-- 1.6: authorization (docs/authorization.md) and metering
	-- (docs/metering.md).
	scopes				text[] NOT NULL DEFAULT '{}',
	disabled_at			timestamptz,
	credits_remaining	bigint,
	refill_amount		bigint,
	refill_interval		text,
	credits_key_id		uuid REFERENCES hokusai_auth.api_keys (id),
	credits_initial		bigint,
	credits_refilled_at timestamptz,
	CONSTRAINT api_keys_environment_check CHECK (environment IN ('live', 'test')),
	-- 1.6: without bounded repetitions ({8}, {53}), which the regular
	-- expression engine expands into many states: every UPDATE of a row
	-- checks these, the worker's writes too (docs/usage.md).
	CONSTRAINT api_keys_key_prefix_check
		CHECK (key_prefix ~ '^hk_(live|test)_[0-9A-Za-z]+$'
			   AND char_length(key_prefix) = 16
			   AND substr(key_prefix, 4, 4) = environment),
	CONSTRAINT api_keys_key_hash_check
		CHECK (key_hash ~ '^\$2a\$[0-9][0-9]\$' AND char_length(key_hash) = 60),
	CONSTRAINT api_keys_name_check CHECK (length(name) BETWEEN 1 AND 200),
	CONSTRAINT api_keys_rate_limit_check CHECK (rate_limit_per_hour > 0),
	CONSTRAINT api_keys_burst_limit_check CHECK (burst_limit >= 0),
	CONSTRAINT api_keys_metadata_check CHECK (jsonb_typeof(metadata) = 'object'),
	CONSTRAINT api_keys_credits_check CHECK (credits_remaining >= 0),
	CONSTRAINT api_keys_refill_check
		CHECK ((refill_interval IS NULL AND refill_amount IS NULL)
			   OR (refill_interval IN ('day', 'week', 'month') AND refill_amount > 0))
)
-- 1.6: room on each page for new versions of its rows, so that the worker's
-- writes (last_used_at, credit balances) are HOT updates: in place, without
-- new index entries (docs/usage.md).
WITH (fillfactor = 70);
CREATE UNIQUE INDEX api_keys_key_hash_idx ON hokusai_auth.api_keys (key_hash);
CREATE INDEX api_keys_user_id_idx ON hokusai_auth.api_keys (user_id);
CREATE INDEX api_keys_expires_at_idx ON hokusai_auth.api_keys (expires_at)
	WHERE is_active AND expires_at IS NOT NULL;
COMMENT ON TABLE hokusai_auth.api_keys IS 'API keys: only the bcrypt hash and the displayable prefix are stored';
COMMENT ON COLUMN hokusai_auth.api_keys.burst_limit IS 'Requests per rolling second; 0: none; NULL follows hokusai_auth.default_burst_limit';
COMMENT ON COLUMN hokusai_auth.api_keys.scopes IS 'What the key may do: names of [a-z0-9_.:-], a trailing * matches any suffix';
COMMENT ON COLUMN hokusai_auth.api_keys.disabled_at IS 'Set while the key is switched off by disable_key(); enable_key() clears it';
COMMENT ON COLUMN hokusai_auth.api_keys.credits_remaining IS 'Balance as last written back from shared memory; NULL: unlimited';
COMMENT ON COLUMN hokusai_auth.api_keys.refill_amount IS 'Balance set at the start of each refill_interval';
COMMENT ON COLUMN hokusai_auth.api_keys.refill_interval IS 'day, week (from Monday) or month, in UTC; NULL: no refill';
COMMENT ON COLUMN hokusai_auth.api_keys.credits_key_id IS 'The key whose credit balance this key spends (set by rotate_key(): old and new key share one balance); NULL: its own';
COMMENT ON COLUMN hokusai_auth.api_keys.credits_initial IS 'The first balance: credits.low is 10% of it when there is no refill';
COMMENT ON COLUMN hokusai_auth.api_keys.credits_refilled_at IS 'Start of the period the balance was last refilled in, as last written back';
CREATE INDEX api_keys_credits_key_id_idx ON hokusai_auth.api_keys (credits_key_id)
	WHERE credits_key_id IS NOT NULL;

-- Raw usage events, written by the background worker (usage.sql), for the
-- share of requests hokusai_auth.usage_raw_sample keeps.  Partitioned by
-- UTC day; the partitions (api_key_usage_pYYYYMMDD) are made by
-- create_usage_partitions() and dropped by prune_usage(), each with its own
-- indexes: a B-tree on api_key_id (deduplicated: a few bytes a row) and a
-- BRIN on "timestamp".  The parent has no index, key or foreign key of its
-- own: a partitioned index would make pg_dump's restore of the partitions
-- fail, and the worker checks the keys itself (docs/usage.md#partitions).
CREATE TABLE hokusai_auth.api_key_usage (
	id					uuid NOT NULL DEFAULT gen_random_uuid(),
	api_key_id			uuid NOT NULL,
	endpoint			text,
	"timestamp"			timestamptz NOT NULL DEFAULT now(),
	response_time_ms	integer,
	status_code			integer
) PARTITION BY RANGE ("timestamp");
COMMENT ON TABLE hokusai_auth.api_key_usage IS
	'Raw usage events: one row per recorded request that hokusai_auth.usage_raw_sample keeps';
