/* hokusai_auth 1.1 -> 1.2: usage analytics, the background worker, housekeeping */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION hokusai_auth UPDATE TO '1.2'" to load this file. \quit
