"""Secrets kept out of reprs, logs and messages: the ``Secret`` string, and URLs with the password masked."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

MASK_TEXT: Final = "***"


class Secret:
    """A string that never shows itself in a repr, a log line or an exception text."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value; call only where it is sent to the API."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def url_password(url: str) -> str | None:
    """The password in ``url`` as written (percent-encoded), or None (also for an unparsable URL)."""
    try:
        return urlsplit(url).password
    except ValueError:  # an unparsable port: no password can be told apart
        return None


def mask_url(url: str) -> str:
    """``url`` with the password (if any) replaced by ``***``; user, host and path stay."""
    if not url_password(url):
        return url
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK_TEXT}@{hostport}"))
