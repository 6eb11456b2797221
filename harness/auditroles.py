"""An audit database set up with its least-privilege roles, the way docs/audit.md tells an operator to.

``provision`` creates the database, runs ``deploy/audit-postgres-roles.sql`` in it with ``psql`` as
the administrator (the superuser here), then ``recstop audit migrate`` as ``recstop_audit_owner``,
which creates the tables and grants the sink, retention and reader roles their privileges. The
private server trusts local connections, so the role URLs carry no password.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Final

from harness.postgres import PostgresServer
from harness.procs import ROOT
from recstop.worker.audit.roles import OWNER, READER, RETENTION, SINK

ROLES_SQL: Final = ROOT / "deploy" / "audit-postgres-roles.sql"


@dataclass(frozen=True)
class AuditDatabase:
    """The ``RECSTOP_AUDIT_DB`` URL of one audit database for each role (``admin``: the superuser)."""

    admin: str
    owner: str
    sink: str
    retention: str
    reader: str


def provision(server: PostgresServer, name: str, *, migrate: bool = True) -> AuditDatabase:
    """A new database ``name`` with the audit roles; with ``migrate``, its schema migrated and granted."""
    admin = server.create_database(name)
    server.psql(name, "-f", str(ROLES_SQL))
    urls = AuditDatabase(
        admin=admin,
        owner=server.url(name, OWNER.name),
        sink=server.url(name, SINK.name),
        retention=server.url(name, RETENTION.name),
        reader=server.url(name, READER.name),
    )
    if migrate:
        migrate_as_owner(urls)
    return urls


def migrate_as_owner(urls: AuditDatabase) -> str:
    """``recstop audit migrate`` as ``recstop_audit_owner``, a process as an operator runs it; its output."""
    argv = [sys.executable, "-m", "recstop.producers.cli", "audit", "migrate"]
    env = {**os.environ, "RECSTOP_AUDIT_DB": urls.owner}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"recstop audit migrate failed with {done.returncode}: {done.stderr.strip()}")
    return done.stdout
