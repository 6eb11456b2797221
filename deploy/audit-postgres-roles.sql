-- The audit database's roles (docs/audit.md, Roles). GENERATED from worker/audit/roles.py:
--   .venv/bin/python -m recstop.worker.audit.roles > deploy/audit-postgres-roles.sql
-- Run once per audit database, as its owner or a superuser (a role with CREATEROLE), e.g.
--   psql -v ON_ERROR_STOP=1 -d recstop_audit -f deploy/audit-postgres-roles.sql
-- then set each role's password in psql (never in a file): \password recstop_audit_sink ...
-- and run `recstop audit migrate` as recstop_audit_owner: it creates the tables and grants
-- the other roles exactly their privileges on them. Safe to run again.

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'recstop_audit_owner') THEN
    CREATE ROLE recstop_audit_owner LOGIN;  -- recstop audit migrate
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'recstop_audit_sink') THEN
    CREATE ROLE recstop_audit_sink LOGIN;  -- recstop audit sink
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'recstop_audit_retention') THEN
    CREATE ROLE recstop_audit_retention LOGIN;  -- recstop audit retention
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'recstop_audit_reader') THEN
    CREATE ROLE recstop_audit_reader LOGIN;  -- recstop audit show, export, verify
  END IF;
END
$$;

-- Only the owner creates objects in the schema (PostgreSQL 15's default; older ones let anyone).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO recstop_audit_owner;
GRANT USAGE ON SCHEMA public TO recstop_audit_sink, recstop_audit_retention, recstop_audit_reader;

-- Audit tables an earlier version's sink created under another user go to the owner.
DO $$
DECLARE
  name text;
BEGIN
  FOREACH name IN ARRAY ARRAY['audit_events', 'audit_head', 'audit_digests', 'audit_schema'] LOOP
    IF to_regclass('public.' || name) IS NOT NULL THEN
      EXECUTE format('ALTER TABLE public.%I OWNER TO recstop_audit_owner', name);
    END IF;
  END LOOP;
END
$$;
