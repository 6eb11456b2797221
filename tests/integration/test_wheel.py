"""``pip install recstop`` is the producer: the wheel, installed bare, enqueues against a live stack.

The wheel is built from a copy of the source (``pip wheel --no-deps``), installed with nothing but
its own dependencies (redis-py and hiredis, from wheels of the pinned versions kept in
``.run/wheelhouse``: fetched once, then offline) into a fresh virtualenv, and used there: the
Python API sync and async, the ``recstop`` command, and ``mypy --strict`` on an example service.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ROOT, as_role, final

from recstop.producers import State
from recstop.worker.state.acl import Role

# One test process runs the module: one wheel, one virtualenv, one writer of the wheelhouse.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300), pytest.mark.xdist_group("wheel")]

WHEELHOUSE = ROOT / ".run" / "wheelhouse"
EXAMPLE = ROOT / "tests" / "example_service.py"
SOURCES = ("pyproject.toml", "README.md", "recstop", "worker", "producers", "vobiz_sandbox")
PIP = (sys.executable, "-m", "pip")


def run(*argv: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command; fail the test with its output when it fails."""
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=240, check=False, **kwargs
    )  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


def bare_pins() -> dict[str, str]:
    """The distributions a bare install of recstop needs, at the versions the suite runs with."""
    spec = importlib.util.spec_from_file_location("freeze", ROOT / "deploy" / "freeze_requirements.py")
    assert spec
    assert spec.loader
    freezer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(freezer)
    return dict(freezer.closure("recstop", frozenset()).values())


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtualenv holding the wheel of recstop and its own dependencies, nothing else (no pip)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    run(*PIP, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", work / "dist", source)
    pins = [f"{name}=={version}" for name, version in bare_pins().items()]
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    run(*PIP, "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", WHEELHOUSE, *pins)
    venv = work / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(*PIP, "--python", python, "install", "--quiet", "--no-index", "--find-links", WHEELHOUSE,
        "--find-links", work / "dist", "recstop")  # fmt: skip
    return venv


def test_a_bare_install_is_the_producer_and_nothing_else(bare):
    """Three distributions (recstop, redis, hiredis), a few MB; the producer imports, Celery does not."""
    python = bare / "bin" / "python"
    code = (
        "import importlib.metadata as m, json, pathlib, sys, time\n"
        "started = time.perf_counter(); import recstop.producers; took = time.perf_counter() - started\n"
        "site = pathlib.Path(recstop.__file__).parents[1]\n"
        "size = sum(p.stat().st_size for p in site.rglob('*') if p.is_file())\n"
        "names = sorted(d.metadata['Name'].lower() for d in m.distributions())\n"
        "print(json.dumps({'names': names, 'mb': size / 2**20, 'import_ms': took * 1000,"
        " 'loaded': sorted({k.split('.')[0] for k in sys.modules})}))\n"
    )
    found = json.loads(run(python, "-c", code, cwd=bare).stdout)
    assert found["names"] == ["hiredis", "recstop", "redis"]
    assert found["mb"] < 20
    assert not {"celery", "kombu", "structlog", "requests", "sqlalchemy", "tqdm"} & set(found["loaded"])
    refused = subprocess.run([python, "-c", "import celery"], capture_output=True, text=True, check=False)
    assert "No module named 'celery'" in refused.stderr
    print(
        f"\nbare install: {len(found['names'])} distributions, {found['mb']:.1f} MB; "
        f"import recstop.producers {found['import_ms']:.0f} ms"
    )


def test_the_bare_install_enqueues_sync_and_async_and_the_worker_stops_them(
    bare, env, producer, start_worker, call
):
    """The example service, run by the bare install's Python, enqueues; the stops end ``stopped``."""
    start_worker()
    for mode in ("sync", "async"):
        call_uuid = call()
        done = run(
            bare / "bin" / "python",
            EXAMPLE,
            mode,
            call_uuid,
            env={**os.environ, **as_role(env, Role.PRODUCER)},
            cwd=bare,
        )
        task_id, state = done.stdout.split()
        assert state == "queued"
        record = final(producer, call_uuid)
        assert (record.state, record.task_id) == (State.STOPPED, task_id)


def test_the_bare_command_line_enqueues_and_names_the_extra_a_command_needs(
    bare, env, producer, start_worker, call
):
    """enqueue, status, dlq and cancel work bare; health, metrics, audit and sandbox name their extra."""
    start_worker()
    recstop = bare / "bin" / "recstop"
    environ = {**os.environ, **as_role(env, Role.PRODUCER)}  # the bare commands are a producer's
    call_uuid = call()
    assert run(recstop, "enqueue", call_uuid, env=environ, cwd=bare).stdout.startswith("queued task_id=")
    assert final(producer, call_uuid).state is State.STOPPED
    assert run(recstop, "status", call_uuid, env=environ, cwd=bare).stdout.startswith("call_uuid")
    assert run(recstop, "dlq", "list", env=environ, cwd=bare).stdout == "0 dead letter(s)\n"
    later = call()
    run(recstop, "enqueue", later, "--delay", "60", env=environ, cwd=bare)
    assert run(recstop, "cancel", later, env=environ, cwd=bare).stdout == "cancelled\n"
    needs = {
        ("health",): "worker",
        ("metrics", "--port", "0"): "worker",
        ("audit", "verify"): "audit",
        ("sandbox", "show", call_uuid): "sandbox",
    }
    for argv, extra in needs.items():
        done = subprocess.run(
            [recstop, *argv], env=environ, cwd=bare, capture_output=True, text=True, check=False
        )
        assert done.returncode == 2, (argv, done.stderr)
        assert f"pip install 'recstop[{extra}]'" in done.stderr


def test_mypy_strict_passes_on_an_example_service_against_the_wheel_and_the_editable_install(bare, tmp_path):
    """`mypy --strict` from a directory outside the repository finds recstop's types in both installs."""
    shutil.copy2(EXAMPLE, tmp_path / "service.py")
    (tmp_path / "wrong.py").write_text("from recstop.producers import State\n\nwrong: int = State.STOPPED\n")
    mypy = (sys.executable, "-m", "mypy", "--strict", "--no-incremental", "service.py", "wrong.py")
    for python in (bare / "bin" / "python", Path(sys.executable)):
        checked = subprocess.run(
            [*mypy, "--python-executable", python], cwd=tmp_path, capture_output=True, text=True, check=False
        )
        errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
        wrong = 'wrong.py:3: error: Incompatible types in assignment (expression has type "State", variable'
        assert [line.startswith(wrong) for line in errors] == [True], checked.stdout
