"""Camera URLs: credentials are added at connect time and never appear in logs or status topics."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit


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


def with_password(url: str, password: str) -> str:
    """Insert `password` after the url's user name (`rtsp://user@host` -> `rtsp://user:pw@host`)."""
    parts = urlsplit(url)
    if parts.username is None:
        raise ValueError(f"{redact_url(url)}: a camera password needs a user name in the url (rtsp://user@host/...)")
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{parts.username}:{quote(password, safe='')}@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
