"""Camera URLs, for the config and the sources: credentials are added at connect time, never logged."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit, urlunsplit

# `scheme://user:password@` anywhere in a text (a child process's error line quotes urls mid-sentence).
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://[^\s/@:'\"]*):[^\s/@'\"]*@")


def has_inline_password(url: str) -> bool:
    """True when `url` carries `user:password@`."""
    parts = urlsplit(url)
    return bool(parts.scheme) and parts.password is not None


def redact_url(url: str) -> str:
    """The url with any password replaced by `***` (safe to log)."""
    parts = urlsplit(url)
    if not parts.scheme or parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, parts.fragment))


def url_secrets(url: str) -> tuple[str, ...]:
    """The password of `url` as written in it (percent-encoded) and decoded; empty when it has none."""
    password = urlsplit(url).password
    if not password:
        return ()
    return tuple(sorted({password, unquote(password)}))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the password of every `scheme://user:password@` in it, and every one of `secrets`
    wherever it appears, replaced by `***` (for lines written by child processes)."""
    text = _USERINFO.sub(r"\1:***@", text)
    for secret in sorted(secrets, key=len, reverse=True):  # a longer form may contain a shorter one
        if secret:
            text = text.replace(secret, "***")
    return text


def with_password(url: str, password: str) -> str:
    """Insert `password` after the url's user name (`rtsp://user@host` -> `rtsp://user:pw@host`)."""
    parts = urlsplit(url)
    if parts.username is None:
        raise ValueError(f"{redact_url(url)}: a camera password needs a user name in the url (rtsp://user@host/...)")
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{parts.username}:{quote(password, safe='')}@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
