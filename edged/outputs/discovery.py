"""Publishes Home Assistant discovery: at start-up, after a reload, and when Home Assistant restarts.

The topics published are remembered in `<state_dir>/discovery.json`, so a camera removed from the
config has its entities removed from Home Assistant (an empty retained config) at the next start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from edged.config.schema import Config
from edged.control.features import Feature
from edged.events import Message
from edged.logs import get_logger
from edged.outputs.homeassistant import discovery_messages, removal_messages


class Discovery:
    """Keeps Home Assistant's view of edged's devices in step with the config."""

    def __init__(self, config: Config, send: Callable[[Message], None]) -> None:
        self.config = config
        self._send = send
        self._path = config.state_dir / "discovery.json"
        self.log = get_logger(component="discovery")

    def publish(self, features: Sequence[Feature], keywords: Mapping[str, Sequence[str]]) -> int:
        """Send every config (and removals of stale ones); returns how many messages."""
        if not self.config.mqtt.discovery.enabled:
            return 0
        messages = discovery_messages(self.config, features, keywords)
        stale = removal_messages(self._previous(), messages)
        for message in [*stale, *messages]:
            self._send(message)
        self._remember([m.topic for m in messages])
        self.log.info("discovery_published", configs=len(messages), removed=len(stale),
                      mode=self.config.mqtt.discovery.mode)
        return len(messages) + len(stale)

    def _previous(self) -> list[str]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        topics = data.get("topics", []) if isinstance(data, dict) else []
        prefix = self.config.mqtt.discovery.prefix + "/"
        return [t for t in topics if isinstance(t, str) and t.startswith(prefix)]

    def _remember(self, topics: list[str]) -> None:
        tmp: Path = self._path.with_suffix(".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"topics": sorted(topics)}), encoding="utf-8")
            os.replace(tmp, self._path)
        except OSError as exc:
            self.log.warning("discovery_state_not_saved", path=str(self._path), error=str(exc))
