--
-- install: CREATE EXTENSION builds the fixed schema, owned by the extension.
--
CREATE EXTENSION hokusai_auth CASCADE;
-- CREATE EXTENSION runs the default version's install script (built by
-- make from sql/install/; the update scripts are for older databases).
SELECT e.extversion = a.default_version AS at_default_version
  FROM pg_extension e JOIN pg_available_extensions a ON a.name = e.extname
 WHERE e.extname = 'hokusai_auth';

-- Both schemas belong to the extension (so DROP EXTENSION removes them).
SELECT n.nspname, d.deptype
  FROM pg_namespace n
  JOIN pg_depend d ON d.classid = 'pg_namespace'::regclass AND d.objid = n.oid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hokusai_auth')
 ORDER BY 1;

-- The fixed tables and columns.
SELECT table_name, column_name, data_type, is_nullable, column_default
  FROM information_schema.columns
 WHERE table_schema = 'hokusai_auth'
   AND table_name IN ('users', 'api_keys', 'api_key_usage', 'audit_log')
 ORDER BY table_name, ordinal_position;

-- Indexes: key_prefix and key_hash unique, usage by key and time.
SELECT indexname, indexdef FROM pg_indexes
 WHERE schemaname = 'hokusai_auth' ORDER BY indexname;

-- The public functions: names, parameter names (callers use named
-- notation) and result columns are fixed interface.
\x on
SELECT p.proname, pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result
  FROM pg_proc p
 WHERE p.pronamespace = 'hokusai_auth'::regnamespace AND p.proname !~ '^_'
 ORDER BY p.proname;
\x off

-- Nothing is usable by PUBLIC: no function grants EXECUTE to it.
SELECT p.proname
  FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE p.pronamespace = 'hokusai_auth'::regnamespace AND a.grantee = 0
 ORDER BY 1;

-- Every SECURITY DEFINER function pins search_path.
SELECT p.proname
  FROM pg_proc p
 WHERE p.pronamespace = 'hokusai_auth'::regnamespace AND p.prosecdef
   AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')
 ORDER BY 1;
