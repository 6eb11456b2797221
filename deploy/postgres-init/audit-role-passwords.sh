#!/bin/sh
# The postgres image runs this once, on an empty volume, after audit-postgres-roles.sql created the
# audit roles (docs/audit.md, Roles): it sets each role's password from the container's environment
# (compose's AUDIT_*_PASSWORD, from deploy/.env). psql reads them with \getenv: no password is ever
# written to a file or a command line.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
\getenv owner_password AUDIT_OWNER_PASSWORD
\getenv sink_password AUDIT_SINK_PASSWORD
\getenv retention_password AUDIT_RETENTION_PASSWORD
\getenv reader_password AUDIT_READER_PASSWORD
ALTER ROLE recstop_audit_owner PASSWORD :'owner_password';
ALTER ROLE recstop_audit_sink PASSWORD :'sink_password';
ALTER ROLE recstop_audit_retention PASSWORD :'retention_password';
ALTER ROLE recstop_audit_reader PASSWORD :'reader_password';
SQL
