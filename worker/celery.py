"""The entry point of ``celery -A recstop.worker``: read the environment once, set up logs, build the app.

Celery finds the app here: ``-A recstop.worker`` looks for ``recstop.worker.celery:app``. A bad
setting ends the process here, with the one line every ``recstop`` command prints for it and exit
code 2, before Celery could wrap it in its "Unable to load celery application" traceback (the
worker, Flower and every other ``celery -A recstop.worker`` command alike).
"""

from __future__ import annotations

import sys
from typing import Any

import structlog
from celery import signals

from recstop.worker.celeryapp.app import create_app
from recstop.worker.celeryapp.flowerview import install_defaults as install_flower_defaults
from recstop.worker.config.settings import Settings
from recstop.worker.model.errors import ConfigError
from recstop.worker.model.exitcodes import USAGE
from recstop.worker.observability.logs import configure_logging, install_json_say

try:
    settings = Settings.from_env()
except ConfigError as exc:
    # SystemExit is no Exception: Celery's loader lets it through, so nothing else is printed.
    sys.stderr.write(f"recstop: error: {exc}\n")
    raise SystemExit(USAGE) from None


def _setup_logging(**_: Any) -> None:  # noqa: ANN401
    # API tokens and the Redis password: Celery masks the broker URL itself, but errors may echo it.
    configure_logging(
        log_level=settings.log_level,
        log_format=settings.log_format,
        secrets=settings.secrets(),
        background=True,
    )


def _quiet_banner(instance: Any = None, **_: Any) -> None:  # noqa: ANN401
    """Configure logs before Celery's first warning; drop its ASCII banner (see ``worker_ready``)."""
    _setup_logging()
    install_json_say(settings.log_format, sys.stdout)
    if instance is not None:
        instance.quiet = True


def _ready(**_: Any) -> None:  # noqa: ANN401
    """One structured line in place of the banner."""
    if not settings.accounts.tokens:
        structlog.get_logger("recstop.worker").warning(
            "no_credentials", hint="set VOBIZ_AUTH_ID/VOBIZ_AUTH_TOKEN or RECSTOP_CREDENTIALS_FILE"
        )
    structlog.get_logger("recstop.worker").info(
        "worker_ready",
        broker=settings.redis.safe_url,
        api_base=settings.api.base_url,
        accounts=sorted(settings.accounts.auth_ids),
        concurrency=settings.concurrency,
        consumer_timeout_s=settings.redis.consumer_timeout_s,
    )


# Celery sends these signals; connecting explicitly keeps the handlers typed.
signals.setup_logging.connect(_setup_logging, weak=False)
signals.celeryd_init.connect(_quiet_banner, weak=False)
signals.worker_ready.connect(_ready, weak=False)

app = create_app(settings)
# Under `celery -A recstop.worker flower`: the task list's columns and how a stop reads in it.
install_flower_defaults()
