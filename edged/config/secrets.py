"""Secrets (MQTT password, API keys) live in files or systemd credentials, never inline in YAML.

A `SecretRef` says where a secret is; `reveal()` reads it when a connection needs it. Its repr never
shows the value, so a config object can be logged or dumped safely.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


class SecretError(ValueError):
    """A secret could not be read; the message names the file or credential, never the value."""


@dataclass(frozen=True, repr=False)
class SecretRef:
    """Where to read a secret: a file path, or a systemd credential name (`LoadCredential=`)."""

    file: Path | None = None
    credential: str | None = None

    def __repr__(self) -> str:
        return f"SecretRef({self.describe()})"

    def describe(self) -> str:
        """Where the secret comes from, safe to log."""
        if self.credential:
            return f"credential {self.credential!r}"
        return f"file {str(self.file)!r}"

    def path(self) -> Path:
        """The file that holds the secret."""
        if self.credential:
            directory = os.environ.get(CREDENTIALS_ENV)
            if not directory:
                raise SecretError(
                    f"credential {self.credential!r} needs ${CREDENTIALS_ENV} (set by systemd's LoadCredential=)"
                )
            return Path(directory) / self.credential
        assert self.file is not None
        return self.file

    def reveal(self) -> str:
        """Read the secret (trailing newline stripped)."""
        path = self.path()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SecretError(f"secret {self.describe()}: {path} does not exist") from None
        except PermissionError:
            raise SecretError(f"secret {self.describe()}: {path} is not readable by this user") from None
        except UnicodeDecodeError:
            raise SecretError(f"secret {self.describe()}: {path} is not UTF-8 text") from None
        value = text.rstrip("\r\n")
        if not value:
            raise SecretError(f"secret {self.describe()}: {path} is empty")
        return value


def secret_ref(file: Path | None, credential: str | None) -> SecretRef | None:
    """A reference from a `*_file` / `*_credential` pair of config keys (at most one is set)."""
    if file is None and credential is None:
        return None
    return SecretRef(file=file, credential=credential)
