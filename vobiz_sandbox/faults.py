"""Fault rules: validated, frozen descriptions of how the API misbehaves, and their plan.

A rule's ``endpoint`` says which requests it may hit: ``stop`` (the default: the Stop Recording DELETE and
any request that matches no route, which is every request a rule could hit before the sandbox had other
endpoints), ``start`` (Start Recording's POST), ``recordings`` (the Recordings API's GETs) or ``any``.
``kind="answer"`` rules make the Recordings API answer badly (:data:`recstop.sandbox.listing.ANSWERS`); their
endpoint is always ``recordings``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Final, Literal, cast, overload

from recstop.sandbox.bodies import Reply, default_code, html_page, phrase, v1_error, v2_error
from recstop.sandbox.listing import ANSWERS, Answer

Kind = Literal["status", "hang", "reset", "latency", "answer"]
KINDS: Final = ("status", "hang", "reset", "latency", "answer")
Shape = Literal["v1", "v2", "html"]
SHAPES: Final = ("v1", "v2", "html")
#: The endpoints a request can aim at (``None``: it matches no route).
Endpoint = Literal["stop", "start", "recordings"]
RuleEndpoint = Literal["stop", "start", "recordings", "any"]
ENDPOINTS: Final = ("stop", "start", "recordings", "any")
DEFAULT_ENDPOINT: Final = "stop"
ANSWER_ENDPOINT: Final = "recordings"
MAX_LATENCY_MS: Final = 600_000.0
MAX_HANG_S: Final = 3_600.0


class FaultConfigError(ValueError):
    """A fault configuration that cannot be used, with the reason."""


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One way to misbehave; ``times=None`` fires without limit."""

    kind: Kind
    status: int = 503
    times: int | None = None
    probability: float = 1.0
    call_uuid: str | None = None
    retry_after: str | None = None
    retry_after_body: int | None = None
    shape: Shape | None = None
    message: str | None = None
    code: str | None = None
    latency_ms: float = 100.0
    hang_s: float = 30.0
    endpoint: RuleEndpoint = DEFAULT_ENDPOINT
    answer: Answer | None = None

    @classmethod
    def from_json(cls, data: object, where: str = "rule") -> FaultRule:
        """Validate one JSON rule; raise :class:`FaultConfigError` naming the bad field."""
        if not isinstance(data, Mapping):
            raise FaultConfigError(f"{where}: must be an object")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise FaultConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
        field = _Fields(data, where)
        kind = field.choice("kind", KINDS, required=True)
        answer = field.choice("answer", ANSWERS, required=kind == "answer")
        if answer is not None and kind != "answer":
            raise FaultConfigError(f"{where}.answer: only a rule of kind answer has one")
        endpoint = field.choice("endpoint", ENDPOINTS) or (ANSWER_ENDPOINT if answer else DEFAULT_ENDPOINT)
        if answer is not None and endpoint != ANSWER_ENDPOINT:
            raise FaultConfigError(f"{where}.endpoint: an answer rule only hits {ANSWER_ENDPOINT}")
        return cls(
            kind=cast("Kind", kind),
            status=field.integer("status", 400, 599, 503),
            times=field.integer("times", 0, None, None),
            probability=field.number("probability", 0.0, 1.0, 1.0),
            call_uuid=field.text("call_uuid"),
            retry_after=field.text("retry_after", allow_int=True),
            retry_after_body=field.integer("retry_after_body", 0, None, None),
            shape=cast("Shape | None", field.choice("shape", SHAPES)),
            message=field.text("message"),
            code=field.text("code"),
            latency_ms=field.number("latency_ms", 0.0, MAX_LATENCY_MS, 100.0),
            hang_s=field.number("hang_s", 0.0, MAX_HANG_S, 30.0),
            endpoint=cast("RuleEndpoint", endpoint),
            answer=cast("Answer | None", answer),
        )

    def to_json(self) -> dict[str, object]:
        """Return the rule as JSON, readable back by :meth:`from_json`."""
        return asdict(self)

    def targets(self, endpoint: Endpoint | None) -> bool:
        """Whether this rule may hit a request to ``endpoint`` (``None``: one that matches no route)."""
        if self.endpoint == "any":
            return True
        if self.endpoint == DEFAULT_ENDPOINT:
            return endpoint in {DEFAULT_ENDPOINT, None}
        return self.endpoint == endpoint

    def reply(self) -> Reply:
        """Build the error answer of a ``kind="status"`` rule."""
        headers = (("Retry-After", self.retry_after),) if self.retry_after is not None else ()
        if self.shape == "html":
            return html_page(self.status, headers)
        shape = self.shape or ("v1" if self.status == 404 else "v2")  # noqa: PLR2004
        if shape == "v1":
            default = "Recording not found" if self.status == 404 else phrase(self.status)  # noqa: PLR2004
            reply = v1_error(self.status, self.message or default)
            return Reply(reply.status, reply.body, headers)
        details = {} if self.retry_after_body is None else {"retryAfter": self.retry_after_body}
        code = self.code or default_code(self.status)
        return v2_error(self.status, code, self.message or phrase(self.status), details, headers)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """The whole fault configuration: ordered rules, global latency and the random seed."""

    rules: tuple[FaultRule, ...] = ()
    latency_ms: float = 0.0
    seed: int | None = None

    @classmethod
    def from_json(cls, data: object) -> FaultConfig:
        """Validate ``{"rules": [...], "latency_ms": 0, "seed": null}``."""
        if not isinstance(data, Mapping):
            raise FaultConfigError("fault config must be an object")
        unknown = sorted(set(data) - {"rules", "latency_ms", "seed"})
        if unknown:
            raise FaultConfigError(f"unknown field(s) {', '.join(unknown)}")
        field = _Fields(data, "config")
        return cls(
            rules=parse_rules(data.get("rules", [])),
            latency_ms=field.number("latency_ms", 0.0, MAX_LATENCY_MS, 0.0),
            seed=field.integer("seed", None, None, None),
        )


def parse_rules(rules: object) -> tuple[FaultRule, ...]:
    """Validate a JSON list of rules."""
    if not isinstance(rules, list):
        raise FaultConfigError("rules: must be a list")
    return tuple(FaultRule.from_json(rule, f"rules[{i}]") for i, rule in enumerate(rules))


class FaultPlan:
    """Rules with their remaining ``times`` and a seeded roll (callers hold the state lock)."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()
        self._rules = list(self.config.rules)
        self._random = random.Random(self.config.seed)  # noqa: S311 - reproducible, not secret

    def pick(self, call_uuid: str | None, endpoint: Endpoint | None) -> FaultRule | None:
        """Return the first live, matching rule whose roll succeeds; firing uses one ``times``."""
        for index, rule in enumerate(self._rules):
            if rule.times == 0 or (rule.call_uuid is not None and rule.call_uuid != call_uuid):
                continue
            if not rule.targets(endpoint):
                continue
            if rule.probability < 1.0 and self._random.random() >= rule.probability:
                continue
            if rule.times is not None:
                self._rules[index] = replace(rule, times=rule.times - 1)
            return rule
        return None

    def add(self, rules: tuple[FaultRule, ...]) -> None:
        """Append rules after the current ones (the roll's sequence goes on)."""
        self._rules.extend(rules)

    def to_json(self) -> dict[str, object]:
        """Return the configuration with each rule's remaining ``times``."""
        rules = [rule.to_json() for rule in self._rules]
        return {"rules": rules, "latency_ms": self.config.latency_ms, "seed": self.config.seed}


class _Fields:
    """Typed readers of one JSON object's fields, raising :class:`FaultConfigError`."""

    def __init__(self, data: Mapping[str, object], where: str) -> None:
        self._data = data
        self._where = where

    def _fail(self, key: str, expected: str) -> FaultConfigError:
        return FaultConfigError(f"{self._where}.{key}: expected {expected}, got {self._data[key]!r}")

    def choice(self, key: str, options: tuple[str, ...], *, required: bool = False) -> str | None:
        value = self._data.get(key)
        if value is None and not required:
            return None
        if value not in options:
            raise FaultConfigError(f"{self._where}.{key}: expected one of {', '.join(options)}")
        return str(value)

    @overload
    def integer(self, key: str, low: int | None, high: int | None, default: int) -> int: ...
    @overload
    def integer(self, key: str, low: int | None, high: int | None, default: None) -> int | None: ...
    def integer(self, key: str, low: int | None, high: int | None, default: int | None) -> int | None:
        value = self._data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self._fail(key, f"an integer in [{low}, {high if high is not None else '...'}]")
        return value

    def number(self, key: str, low: float, high: float, default: float) -> float:
        value = self._data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise self._fail(key, f"a number in [{low:g}, {high:g}]")
        return float(value)

    def text(self, key: str, *, allow_int: bool = False) -> str | None:
        value = self._data.get(key)
        if value is None:
            return None
        if allow_int and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return str(value)
        if not isinstance(value, str) or not value or not value.isprintable():
            raise self._fail(key, "a non-empty printable string")
        return value
