"""The Redis users: the shipped ACL file is the key layout's, each role has only what it uses, rendering."""

from __future__ import annotations

import os
import re
import subprocess
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from recstop.worker.state import acl, keys
from recstop.worker.state.acl import Access, Role
from recstop.worker.state.scripts import source

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "redis-users.acl"
RENDER = ROOT / "deploy" / "redis-acl-render.sh"
#: Commands no role that a recstop process runs as may have (beside every ``@dangerous`` one, which
#: ``test_redis_acl`` checks against the server's own category).
FORBIDDEN = ("keys", "flushall", "flushdb", "config", "debug", "shutdown", "monitor", "acl", "module", "save")
#: Which scripts each role runs (the worker runs every one).
SCRIPTS_RUN = {
    Role.PRODUCER: ("enqueue", "cancel", "dlq_remove"),
    Role.MONITOR: (),
}


def user_rules(role: Role) -> list[str]:
    """The rules of ``role``'s line in the shipped file."""
    for line in TEMPLATE.read_text(encoding="utf-8").splitlines():
        if line.startswith(f"user {role.value} "):
            return line.split()
    raise AssertionError(f"no user {role} in {TEMPLATE}")


def commands(role: Role) -> set[str]:
    """The commands (``name``, ``name|sub``) a role's line allows."""
    return {rule[1:] for rule in user_rules(role) if rule.startswith("+")}


def may_touch(role: Role, key: str, *, write: bool) -> bool:
    """Whether one of the role's key patterns covers ``key`` (for writing, a read-write one)."""
    grant = acl.grants()[role]
    return any(
        fnmatchcase(key, pattern)
        for group in grant.keys
        if not write or group.access is Access.READ_WRITE
        for pattern in group.patterns
    )


def test_the_shipped_file_is_the_one_the_layout_generates():
    """deploy/redis-users.acl is exactly what state.acl generates (placeholders for the passwords)."""
    assert TEMPLATE.read_text(encoding="utf-8") == acl.acl_file()


def test_the_default_user_is_off_and_has_no_password():
    """The first line turns Redis' default user off with no password, so no client is ever it."""
    first = TEMPLATE.read_text(encoding="utf-8").splitlines()[0].split()
    assert first[:4] == ["user", "default", "off", "resetpass"]
    assert "nopass" not in first
    assert not any(rule.startswith((">", "#")) for rule in first)


@pytest.mark.parametrize("role", acl.PROCESS_ROLES)
def test_no_process_role_may_run_an_administrative_command(role):
    """No role a recstop process runs as has a category, KEYS, FLUSH*, CONFIG, DEBUG, SHUTDOWN, ACL ..."""
    allowed = commands(role)
    assert not [name for name in allowed if name.startswith("@")]
    assert not [name for name in allowed if name.split("|")[0] in FORBIDDEN]
    assert "~*" not in user_rules(role)
    assert "&*" not in user_rules(role)
    assert "allkeys" not in user_rules(role)
    assert "allchannels" not in user_rules(role)


@pytest.mark.parametrize("script", sorted(p.stem for p in (ROOT / "worker/state/lua").glob("*.lua")))
def test_each_role_may_run_every_command_of_the_scripts_it_runs(script):
    """Redis checks a script's commands against its caller: each role running a script has them all."""
    if script == "common":
        return
    used = {name.lower() for name in re.findall(r"redis\.p?call\('(\w+)'", source(script))}
    assert used, script
    runners = [Role.WORKER, *(role for role, names in SCRIPTS_RUN.items() if script in names)]
    for role in runners:
        assert used <= commands(role), (role, script, used - commands(role))


#: Each key of the layout, and the roles that write it and only read it.
LAYOUT = [
    (keys.call_key("c0ffee"), {Role.WORKER, Role.PRODUCER}, {Role.MONITOR}),
    (keys.SCHEDULE, {Role.WORKER, Role.PRODUCER}, {Role.MONITOR}),
    (keys.CONFIRMS, {Role.WORKER}, {Role.MONITOR}),
    (keys.task_key("t-1"), {Role.WORKER, Role.PRODUCER}, {Role.MONITOR}),
    (keys.revoked_key("t-1"), {Role.WORKER, Role.PRODUCER}, {Role.MONITOR}),
    (keys.DLQ_INDEX, {Role.WORKER, Role.PRODUCER}, {Role.MONITOR}),
    (keys.DLQ_ENTRIES, {Role.WORKER, Role.PRODUCER}, {Role.MONITOR}),
    (keys.METRICS, {Role.WORKER, Role.PRODUCER}, {Role.MONITOR}),
    (keys.WORKERS, {Role.WORKER}, {Role.MONITOR}),
    (keys.CONSUMERS, {Role.WORKER}, {Role.MONITOR}),
    (keys.ANNOUNCING, {Role.WORKER}, {Role.MONITOR}),
    (keys.inflight_key("c1", keys.QUEUE), {Role.WORKER}, {Role.MONITOR}),
    (keys.rate_key("MA_X"), {Role.WORKER}, {Role.MONITOR}),
    (keys.AUDIT_STREAM, {Role.WORKER, Role.PRODUCER, Role.AUDIT_SINK}, {Role.MONITOR}),
    (keys.result_key("t-1"), {Role.WORKER, Role.PRODUCER}, {Role.MONITOR}),
    *(
        (lane, {Role.WORKER, Role.PRODUCER}, {Role.MONITOR})
        for name in keys.LANES
        for lane in keys.lane_lists(name)
    ),
]


@pytest.mark.parametrize(("key", "writers", "readers"), LAYOUT, ids=[repr(row[0]) for row in LAYOUT])
def test_each_key_of_the_layout_is_covered_for_the_roles_that_use_it_and_no_other(key, writers, readers):
    """Each role that writes a key may write it, each that reads it may read it, the rest may not touch it."""
    for role in acl.PROCESS_ROLES:
        assert may_touch(role, key, write=True) == (role in writers), (role, key)
        assert may_touch(role, key, write=False) == (role in writers | readers), (role, key)


def test_the_audit_sink_touches_nothing_but_the_audit_stream():
    """The sink's only key is the audit stream, and it has no command outside streams and connecting."""
    grant = acl.grants()[Role.AUDIT_SINK]
    assert [p for group in grant.keys for p in group.patterns] == [keys.AUDIT_STREAM]
    assert not grant.channels
    assert {name for name in commands(Role.AUDIT_SINK) if not name.startswith("x")} <= set(acl.CONNECTION)


def render(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run deploy/redis-acl-render.sh on the shipped template into ``tmp_path/users.acl``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECSTOP_REDIS_PASSWORD_")}
    return subprocess.run(
        ["/bin/sh", str(RENDER), str(TEMPLATE), str(tmp_path / "users.acl")],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_render_script_writes_each_password_as_its_hash_from_env_or_file(tmp_path):
    """The rendered file is state.acl's, each password as its SHA-256 (from a variable or a file)."""
    passwords = {role: f"Pw {role.value} $'\"`!" for role in Role}
    env = {acl.password_env(role): passwords[role] for role in Role if role is not Role.MONITOR}
    secret_file = tmp_path / "monitor.pw"
    secret_file.write_text(passwords[Role.MONITOR] + "\n", encoding="utf-8")
    env[acl.password_env(Role.MONITOR) + "_FILE"] = str(secret_file)
    done = render(tmp_path, env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    rendered = (tmp_path / "users.acl").read_text(encoding="utf-8")
    assert rendered == acl.acl_file(passwords)
    assert not [role for role in Role if passwords[role] in rendered]
    assert (tmp_path / "users.acl").stat().st_mode & 0o777 == 0o600


def test_the_render_script_leaves_out_the_optional_users_and_refuses_a_missing_required_one(tmp_path):
    """The replica and sentinel users are left out without passwords; a missing required one fails, named."""
    required = [role for role in Role if role not in {Role.REPLICA, Role.SENTINEL}]
    passwords = {role: f"pw-{role.value}" for role in required}
    done = render(tmp_path, {acl.password_env(role): passwords[role] for role in required})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "users.acl").read_text(encoding="utf-8") == acl.acl_file(passwords)
    for missing in required:
        out = tmp_path / missing.value
        out.mkdir()
        others = {acl.password_env(role): passwords[role] for role in required if role is not missing}
        done = render(out, others)
        assert done.returncode == 1
        assert acl.password_env(missing) in done.stderr
        assert not [p for p in passwords.values() if p in done.stderr]
        assert not (out / "users.acl").exists()
