
------------------------------------------------------------------------------
-- sql/install/authorization.sql: scopes, disable_key() and enable_key(),
-- require_scope() for pre_request(), and the caller of the current request
-- for row-level security (docs/authorization.md).
------------------------------------------------------------------------------
