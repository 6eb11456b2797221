"""Vobiz credentials: the default account and the credentials file, combined into ``Accounts``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from recstop.worker.config.secrets import Secret
from recstop.worker.model.errors import ConfigError
from recstop.worker.model.validation import validate_auth_id


@dataclass(frozen=True)
class Accounts:
    """Vobiz credentials: the default account plus any from the credentials file."""

    default_auth_id: str | None = None
    tokens: Mapping[str, Secret] = field(default_factory=dict)

    def token_for(self, auth_id: str) -> Secret | None:
        """Return the token for an account, or None when the account is unknown."""
        return self.tokens.get(auth_id)

    @property
    def auth_ids(self) -> frozenset[str]:
        """Every account this process knows: those with a token, and the default account.

        A producer needs no tokens: ``VOBIZ_AUTH_ID`` alone names the default account.
        """
        known = set(self.tokens)
        if self.default_auth_id:
            known.add(self.default_auth_id)
        return frozenset(known)

    def secrets(self) -> frozenset[str]:
        """Every token value, for the log redaction processor."""
        return frozenset(token.reveal() for token in self.tokens.values())


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
