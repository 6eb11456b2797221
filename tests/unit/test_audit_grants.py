"""The audit database's roles: named once, the deploy file generated from them, events never changed."""

from __future__ import annotations

from harness.auditroles import ROLES_SQL
from recstop.worker.audit import roles
from recstop.worker.audit.schema import events, head, metadata


def privileges(role: roles.Role, table: str) -> set[str]:
    """Every privilege ``role`` gets on ``table`` (``UPDATE (col)`` per column)."""
    found: set[str] = set()
    for grant in role.grants:
        if grant.table == table:
            found |= set(grant.privileges) | {f"UPDATE ({column})" for column in grant.update_columns}
    return found


def test_the_deploy_file_is_generated_from_the_roles():
    """deploy/audit-postgres-roles.sql is roles_sql(): regenerate it when the roles change."""
    assert ROLES_SQL.read_text() == roles.roles_sql(), (
        "regenerate: .venv/bin/python -m recstop.worker.audit.roles > deploy/audit-postgres-roles.sql"
    )
    for role in roles.ROLES:
        assert f"CREATE ROLE {role.name} LOGIN;" in ROLES_SQL.read_text()
    statements = [line for line in ROLES_SQL.read_text().splitlines() if not line.startswith("--")]
    assert not [line for line in statements if "PASSWORD" in line.upper()]  # set at deploy time, never here


def test_no_role_but_retention_may_delete_and_none_may_update_an_event():
    """Events are insert-only for the sink, read-only for the reader, deletable only by retention."""
    assert privileges(roles.SINK, events.name) == {"SELECT", "INSERT"}
    assert privileges(roles.READER, events.name) == {"SELECT"}
    assert privileges(roles.RETENTION, events.name) == {"SELECT", "DELETE"}
    for role in roles.GRANTEES:
        assert not {"UPDATE", "TRUNCATE", "REFERENCES", "TRIGGER"} & privileges(role, events.name), role
        assert not any(p.startswith("UPDATE") for p in privileges(role, events.name)), role


def test_the_head_columns_split_between_the_sink_and_retention():
    """The sink moves the chain's end, retention its start (horizon_seq): no column is both's, none left."""
    sink = set(roles.SINK_HEAD_COLUMNS)
    retention = set(roles.RETENTION_HEAD_COLUMNS)
    assert not sink & retention
    assert sink | retention == {column.name for column in head.columns} - {"id"}
    assert privileges(roles.READER, head.name) == {"SELECT"}


def test_every_table_is_covered_and_the_statements_name_it():
    """Every audit table is in TABLES (revoked, then granted); the GRANTs read as PostgreSQL takes them."""
    assert set(roles.TABLES) == set(metadata.tables) | {"audit_schema"}
    statements = roles.grant_statements(roles.SINK)
    assert statements[: len(roles.TABLES)] == [
        f"REVOKE ALL ON TABLE public.{table} FROM recstop_audit_sink" for table in roles.TABLES
    ]
    assert (
        "GRANT SELECT, UPDATE (seq, hash, recorded_at, day, day_first_seq) ON TABLE public.audit_head "
        "TO recstop_audit_sink"
    ) in statements
