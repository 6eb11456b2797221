"""Vobiz credentials: the default account and the credentials file, combined into ``Accounts``."""

from __future__ import annotations

import json
from pathlib import Path

from recstop.worker.config.secrets import Secret
from recstop.worker.config.settings import Accounts
from recstop.worker.model.errors import ConfigError
from recstop.worker.model.validation import validate_auth_id


def load_accounts(auth_id: str | None, token: str | None, credentials_file: str | None) -> Accounts:
    """Combine the default account with the credentials file (a JSON object auth_id → token)."""
    tokens: dict[str, Secret] = {}
    if credentials_file:
        path = Path(credentials_file)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read RECSTOP_CREDENTIALS_FILE {path}: {type(exc).__name__}") from None
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()
        ):
            raise ConfigError(f"{path} must be a JSON object mapping auth_id to a non-empty token")
        for key, value in data.items():
            tokens[_checked_auth_id(key)] = Secret(value)
    if token and not auth_id:
        raise ConfigError("VOBIZ_AUTH_TOKEN is set but VOBIZ_AUTH_ID is not")
    if auth_id:
        auth_id = _checked_auth_id(auth_id)
        if token:
            tokens[auth_id] = Secret(token)
    return Accounts(default_auth_id=auth_id or None, tokens=tokens)


def _checked_auth_id(auth_id: str) -> str:
    try:
        return validate_auth_id(auth_id)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
