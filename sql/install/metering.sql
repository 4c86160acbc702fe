
------------------------------------------------------------------------------
-- sql/install/metering.sql: credits with refills, add_credits(), limits
-- shared by a user's keys (set_user_limits()) (docs/metering.md).
------------------------------------------------------------------------------
