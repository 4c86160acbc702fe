/* hokusai_auth 1.2 -> 1.3: the HTTP API for PostgREST (schema hokusai_api) */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION hokusai_auth UPDATE TO '1.3'" to load this file. \quit
