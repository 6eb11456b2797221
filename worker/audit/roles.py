r"""The audit database's PostgreSQL roles and what each may do: named here and nowhere else.

Four roles, one per job (docs/audit.md, Roles):

- ``recstop_audit_owner`` owns the tables: ``recstop audit migrate`` creates and alters them and
  grants the others their privileges (``grant``), which only a table's owner may do.
- ``recstop_audit_sink`` (``recstop audit sink``): ``INSERT`` and ``SELECT`` on the events and the
  digests, never ``UPDATE``, ``DELETE`` or ``TRUNCATE`` of an event. The chain head is one
  bookkeeping row the sink moves forward in the transaction that inserts a batch: it may
  ``UPDATE`` exactly the head's columns an append and a day's close write (``seq``, ``hash``,
  ``recorded_at``, ``day``, ``day_first_seq``), not ``horizon_seq``, which only retention moves.
- ``recstop_audit_retention`` (``recstop audit retention``): ``DELETE`` on the events (a prefix,
  older than the retention) and ``UPDATE`` of the head's ``horizon_seq``, nothing else written.
- ``recstop_audit_reader`` (``recstop audit show/export/verify``): ``SELECT`` only.

``roles_sql()`` is ``deploy/audit-postgres-roles.sql`` (a unit test keeps them equal): what an
administrator runs once per database to create the roles, let them use the schema and hand any
audit table that already exists to the owner. Passwords are never in it: ``\password ROLE`` in
``psql`` sets each one at deploy time. SQLite has no roles; nothing here applies to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, text

from recstop.worker.audit.schema import digests, events, head, versions

#: The schema the audit tables live in (PostgreSQL's default).
SCHEMA: Final = "public"
#: PostgreSQL's SQLSTATE for a statement the role may not run (``insufficient_privilege``).
INSUFFICIENT_PRIVILEGE: Final = "42501"


def refused(exc: BaseException) -> bool:
    """Whether a database error is PostgreSQL refusing the statement to this role."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == INSUFFICIENT_PRIVILEGE


@dataclass(frozen=True)
class Grant:
    """Privileges on one table; ``update_columns``: ``UPDATE`` of those columns only (none: no UPDATE)."""

    table: str
    privileges: tuple[str, ...]
    update_columns: tuple[str, ...] = ()

    def sql(self, role: str) -> str:
        """The ``GRANT`` statement giving ``role`` these privileges."""
        what = list(self.privileges)
        if self.update_columns:
            what.append(f"UPDATE ({', '.join(self.update_columns)})")
        return f"GRANT {', '.join(what)} ON TABLE {SCHEMA}.{self.table} TO {role}"


@dataclass(frozen=True)
class Role:
    """A role: its name, the ``recstop audit`` actions that run as it, and its table privileges."""

    name: str
    actions: tuple[str, ...]
    grants: tuple[Grant, ...]

    @property
    def runs(self) -> str:
        """The commands that run as this role, as an operator types them."""
        return "recstop audit " + ", ".join(self.actions)


#: The head's columns an append and a day's close move (``ledger.append``, ``ledger.close_day``).
SINK_HEAD_COLUMNS: Final = ("seq", "hash", "recorded_at", "day", "day_first_seq")
#: The head's column retention moves (``ledger.prune``).
RETENTION_HEAD_COLUMNS: Final = ("horizon_seq",)
#: Every audit table (``audit_schema`` included): what the owner owns and the grants cover.
TABLES: Final = (events.name, head.name, digests.name, versions.name)

OWNER: Final = Role("recstop_audit_owner", ("migrate",), ())
SINK: Final = Role(
    "recstop_audit_sink",
    ("sink",),
    (
        Grant(events.name, ("SELECT", "INSERT")),
        Grant(head.name, ("SELECT",), SINK_HEAD_COLUMNS),
        Grant(digests.name, ("SELECT", "INSERT")),
        Grant(versions.name, ("SELECT",)),
    ),
)
RETENTION: Final = Role(
    "recstop_audit_retention",
    ("retention",),
    (
        Grant(events.name, ("SELECT", "DELETE")),
        Grant(head.name, ("SELECT",), RETENTION_HEAD_COLUMNS),
        Grant(versions.name, ("SELECT",)),
    ),
)
READER: Final = Role(
    "recstop_audit_reader",
    ("show", "export", "verify"),
    tuple(Grant(table, ("SELECT",)) for table in TABLES),
)
#: The roles the owner grants to (every role but the owner).
GRANTEES: Final = (SINK, RETENTION, READER)
ROLES: Final = (OWNER, *GRANTEES)


def grant_statements(role: Role) -> list[str]:
    """What makes ``role``'s privileges exactly its grants: revoke all on every audit table, grant."""
    revokes = [f"REVOKE ALL ON TABLE {SCHEMA}.{table} FROM {role.name}" for table in TABLES]
    return revokes + [grant.sql(role.name) for grant in role.grants]


def existing_roles(connection: Connection) -> set[str]:
    """Which of the audit roles exist in this PostgreSQL cluster."""
    names = [role.name for role in ROLES]
    found = connection.execute(
        text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:names)"), {"names": names}
    )
    return {str(name) for name in found.scalars()}


def grant(connection: Connection) -> list[str]:
    """Give each audit role that exists exactly its privileges (as the tables' owner); the roles granted."""
    present = existing_roles(connection)
    granted = []
    for role in GRANTEES:
        if role.name in present:
            for statement in grant_statements(role):
                connection.execute(text(statement))
            granted.append(role.name)
    return granted


def roles_sql() -> str:
    """``deploy/audit-postgres-roles.sql``: the roles, their schema privileges, the tables to the owner."""
    lines = [
        "-- The audit database's roles (docs/audit.md, Roles). GENERATED from worker/audit/roles.py:",
        "--   .venv/bin/python -m recstop.worker.audit.roles > deploy/audit-postgres-roles.sql",
        "-- Run once per audit database, as its owner or a superuser (a role with CREATEROLE), e.g.",
        "--   psql -v ON_ERROR_STOP=1 -d recstop_audit -f deploy/audit-postgres-roles.sql",
        "-- then set each role's password in psql (never in a file): \\password recstop_audit_sink ...",
        "-- and run `recstop audit migrate` as recstop_audit_owner: it creates the tables and grants",
        "-- the other roles exactly their privileges on them. Safe to run again.",
        "",
        "DO $$",
        "BEGIN",
    ]
    for role in ROLES:
        lines += [
            f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role.name}') THEN",
            f"    CREATE ROLE {role.name} LOGIN;  -- {role.runs}",
            "  END IF;",
        ]
    lines += ["END", "$$;", ""]
    lines += [
        "-- Only the owner creates objects in the schema (PostgreSQL 15's default; older ones let anyone).",
        f"REVOKE CREATE ON SCHEMA {SCHEMA} FROM PUBLIC;",
        f"GRANT USAGE, CREATE ON SCHEMA {SCHEMA} TO {OWNER.name};",
        f"GRANT USAGE ON SCHEMA {SCHEMA} TO {', '.join(role.name for role in GRANTEES)};",
        "",
        "-- Audit tables an earlier version's sink created under another user go to the owner.",
        "DO $$",
        "DECLARE",
        "  name text;",
        "BEGIN",
        f"  FOREACH name IN ARRAY ARRAY[{', '.join(repr(table) for table in TABLES)}] LOOP",
        f"    IF to_regclass('{SCHEMA}.' || name) IS NOT NULL THEN",
        f"      EXECUTE format('ALTER TABLE {SCHEMA}.%I OWNER TO {OWNER.name}', name);",
        "    END IF;",
        "  END LOOP;",
        "END",
        "$$;",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(roles_sql(), end="")  # noqa: T201 - the generator's output is the file
