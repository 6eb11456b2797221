"""kombu's own Redis integration tests, fetched from kombu's source distribution, run against recstop.

:func:`suite_dir` downloads the source distribution of the installed kombu once (``pip download``)
into ``.run/kombu-suite/<version>/`` and extracts ``t/integration/test_redis.py`` and what it
imports; nothing of kombu's is copied into the repository. :func:`run_suite` runs those tests in a
pytest process with this module as a plugin (``-p harness.kombusuite``): every test process starts
a private redis-server on a free port and points kombu's tests at it (``REDIS_HOST``,
``REDIS_6379_TCP``), the ``redis``, ``rediss`` and ``sentinel`` aliases name recstop's transports
(or kombu's own, to compare), and each test's outcome goes to a JSON report.

Most of the suite's time is sleeping (queue expiry, health-check deadlines), so its tests run in
many processes, longest first: each run records every test's duration next to the suite
(``durations.json``), and the next run hands the tests out one at a time in that order (the first
run puts the tests that call ``sleep`` first).

``python -m harness.kombusuite [--transport kombu]`` runs it from a shell and prints the outcomes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import inspect
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from harness.procs import ROOT, RedisServer

#: Where the source distribution and the extracted tests are kept, per kombu version.
CACHE: Final = ROOT / ".run" / "kombu-suite"
#: The files of kombu's source distribution the Redis suite needs (``t`` is a package).
SUITE_FILES: Final = ("t/__init__.py", "t/integration/__init__.py", "t/integration/common.py")
SUITE: Final = "t/integration/test_redis.py"
#: What kombu's ``setup.cfg`` gives its test run: test classes are named ``test_*``. Its markers:
#: ``env`` names the broker a test needs, ``flaky`` asks pytest-rerunfailures (not installed here,
#: so a test that fails is not run again) for reruns.
PYTEST_INI: Final = """[pytest]
python_classes = test_*
markers =
    env(name): the broker the test needs
    flaky(reruns, reruns_delay): reruns kombu asks of pytest-rerunfailures (none here)
"""
#: Transport aliases kombu's tests resolve, and recstop's class for each.
RECSTOP_ALIASES: Final = {
    "redis": "recstop.worker.broker.transport:Transport",
    "rediss": "recstop.worker.broker.transport:Transport",
    "sentinel": "recstop.worker.broker.transport:SentinelTransport",
}
#: Environment of a suite run: which transport (``recstop`` or ``kombu``), and the report's path.
TRANSPORT_ENV: Final = "RECSTOP_KOMBU_TRANSPORT"
REPORT_ENV: Final = "RECSTOP_KOMBU_REPORT"
#: Test processes of a run: kombu's tests mostly sleep (queue expiry, health-check deadlines).
DEFAULT_PROCESSES: Final = 12
#: Each test's duration in the last run (seconds), beside the extracted suite.
DURATIONS: Final = "durations.json"
#: Longest a single kombu test may take (its longest sleeps about 9 s), and the whole run.
TEST_TIMEOUT_S: Final = 60
RUN_TIMEOUT_S: Final = 170
#: How much of a failure's error lines a report keeps.
MESSAGE_CHARS: Final = 2000


def kombu_version() -> str:
    """The installed kombu's version: the source distribution whose tests are run."""
    return importlib.metadata.version("kombu")


def suite_dir(version: str | None = None, cache: Path = CACHE) -> Path:
    """The extracted suite of kombu ``version`` (the installed one), downloaded on first use only."""
    version = version or kombu_version()
    target = cache / version
    if (target / SUITE).is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        staging = Path(scratch) / "suite"
        _extract(_download(version, Path(scratch)), version, staging)
        with contextlib.suppress(OSError):  # another process extracted it first: keep theirs
            staging.rename(target)
    return target


def _download(version: str, into: Path) -> Path:
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"),
            *("--no-binary", ":all:", "--no-deps", "--dest", str(into), f"kombu=={version}"),
        ],
        check=True,
        capture_output=True,
        timeout=RUN_TIMEOUT_S,
    )
    return into / f"kombu-{version}.tar.gz"


def _extract(sdist: Path, version: str, staging: Path) -> None:
    """Only the suite's files, each written to its own path (no member path is trusted)."""
    with tarfile.open(sdist) as archive:
        for name in (*SUITE_FILES, SUITE):
            member = archive.extractfile(f"kombu-{version}/{name}")
            if member is None:
                raise FileNotFoundError(f"{name} is not in {sdist.name}")
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(member.read())
    (staging / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")


@dataclass(frozen=True)
class Outcome:
    """One kombu test's result: passed, failed (in any phase) or skipped, and why it failed."""

    outcome: str
    message: str = ""


@dataclass(frozen=True)
class SuiteRun:
    """What a run of the suite reported, and how long it took."""

    outcomes: dict[str, Outcome]
    seconds: float
    output: str

    def with_outcome(self, outcome: str) -> list[str]:
        """The test ids of one outcome, sorted."""
        return sorted(test for test, result in self.outcomes.items() if result.outcome == outcome)


def run_suite(
    report_dir: Path,
    *,
    transport: str = "recstop",
    processes: int = DEFAULT_PROCESSES,
    version: str | None = None,
) -> SuiteRun:
    """Run kombu's Redis suite against ``transport`` (``recstop`` or ``kombu``) in ``processes``."""
    suite = suite_dir(version)
    report = report_dir / f"kombu-{transport}.json"
    env = {
        # Not this session's pytest variables (an xdist worker's id, the current test ...).
        **{name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")},
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        # Only the plugins named below: each test process starts in half the time without the
        # others installed here (hypothesis ...).
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        TRANSPORT_ENV: transport,
        REPORT_ENV: str(report),
    }
    argv = [sys.executable, "-m", "pytest", "-p", "xdist", "-p", "pytest_timeout", "-p", "harness.kombusuite"]
    # One test at a time per process, in the order of the collection (longest first).
    argv += ["-p", "no:cacheprovider", "-q", "-n", str(processes), "--dist", "load", "--maxschedchunk", "1"]
    argv += [f"--timeout={TEST_TIMEOUT_S}", SUITE]
    start = time.monotonic()
    done = subprocess.run(  # noqa: PLW1510 - failures are read from the report
        argv, cwd=suite, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    seconds = time.monotonic() - start
    if not report.is_file():
        raise AssertionError(f"kombu's suite wrote no report:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    raw = json.loads(report.read_text(encoding="utf-8"))
    return SuiteRun({test: Outcome(**result) for test, result in raw.items()}, seconds, done.stdout)


# --- the plugin (loaded in the suite's pytest processes by ``-p harness.kombusuite``) ---------------

_server: RedisServer | None = None
_outcomes: dict[str, dict[str, str]] = {}
_durations: dict[str, float] = {}


def _runs_tests(config: Any) -> bool:  # noqa: ANN401 - pytest's Config
    """Whether this process runs tests (an xdist worker, or pytest without xdist), not only reports."""
    return hasattr(config, "workerinput") or not config.getoption("numprocesses", None)


def pytest_configure(config: Any) -> None:  # noqa: ANN401
    """Map kombu's Redis aliases to the chosen transport; start this process's redis-server."""
    global _server  # noqa: PLW0603 - one server per test process, stopped in pytest_unconfigure
    if os.environ.get(TRANSPORT_ENV) == "recstop":
        import kombu.transport  # noqa: PLC0415 - only inside a suite run

        kombu.transport.TRANSPORT_ALIASES.update(RECSTOP_ALIASES)
    if _runs_tests(config):
        _server = RedisServer(Path(tempfile.mkdtemp(prefix="kombu-suite-redis-"))).start()
        os.environ["REDIS_HOST"] = "127.0.0.1"
        os.environ["REDIS_6379_TCP"] = str(_server.port)


def pytest_unconfigure(config: Any) -> None:  # noqa: ANN401, ARG001 - pytest's hook signature
    """Stop this process's redis-server and remove its directory."""
    if _server is not None:
        _server.stop()
        shutil.rmtree(_server.directory, ignore_errors=True)


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:  # noqa: ANN401
    """Longest first (the last run's durations, else the tests that sleep first), paired for xdist.

    xdist's ``load`` hands each process two tests to start with, in order, then one at a time:
    process k starts with the k-th longest and the (2n-1-k)-th, so no process starts with two
    long ones.
    """
    path = Path(config.rootpath) / DURATIONS
    known: dict[str, float] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    items.sort(key=lambda item: -known.get(item.nodeid, 0.0) if known else -_sleeps(item))
    processes = int(getattr(config, "workerinput", {}).get("workercount", 1))
    first = items[: 2 * processes]
    half = len(first) // 2
    longest, rest = first[:half], first[half:]
    paired = [test for pair in zip(longest, reversed(rest), strict=False) for test in pair]
    items[: len(first)] = paired + rest[: len(rest) - half]  # and the odd one out


def _sleeps(item: Any) -> int:  # noqa: ANN401 - pytest's Item
    """How often a test's function calls ``sleep`` (0 when its source cannot be read)."""
    try:
        return inspect.getsource(item.function).count("sleep(")
    except (AttributeError, OSError, TypeError):
        return 0


def pytest_runtest_logreport(report: Any) -> None:  # noqa: ANN401
    """Keep each test's outcome: its first failure (setup, call or teardown) and its error lines."""
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration
    seen = _outcomes.get(report.nodeid)
    if seen is not None and seen["outcome"] == "failed":
        return
    if report.failed:
        errors = [line[1:].strip() for line in report.longreprtext.splitlines() if line.startswith("E ")]
        _outcomes[report.nodeid] = {"outcome": "failed", "message": " ".join(errors)[:MESSAGE_CHARS]}
    elif report.when == "call" or report.skipped:
        _outcomes[report.nodeid] = {"outcome": report.outcome}


def pytest_sessionfinish(session: Any) -> None:  # noqa: ANN401
    """Write the report (the reporting process only: xdist workers send their reports to it)."""
    path = os.environ.get(REPORT_ENV)
    if path and not hasattr(session.config, "workerinput"):
        Path(path).write_text(json.dumps(_outcomes, indent=1, sort_keys=True), encoding="utf-8")
        known = Path(session.config.rootpath) / DURATIONS
        durations = json.loads(known.read_text(encoding="utf-8")) if known.is_file() else {}
        durations.update({test: round(seconds, 2) for test, seconds in _durations.items()})
        # Written whole, then renamed: every test process of a later run reads the same order.
        staged = known.with_name(f"{DURATIONS}.{os.getpid()}")
        staged.write_text(json.dumps(durations, indent=1), encoding="utf-8")
        staged.replace(known)


def main() -> None:
    """Run the suite from a shell: ``python -m harness.kombusuite [--transport kombu] [-n N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--transport", choices=("recstop", "kombu"), default="recstop")
    parser.add_argument("-n", "--processes", type=int, default=DEFAULT_PROCESSES)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        run = run_suite(Path(scratch), transport=args.transport, processes=args.processes)
    lines = [
        f"{outcome.upper()} {test}: {run.outcomes[test].message}"
        for outcome in ("failed", "skipped")
        for test in run.with_outcome(outcome)
    ]
    counts = {o: len(run.with_outcome(o)) for o in ("passed", "failed", "skipped")}
    lines.append(f"kombu {kombu_version()} against {args.transport}: {counts} in {run.seconds:.1f} s")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
