"""The `search` request: moments from the history that match a query, answered on the response topic.

`{"query": "red car", "since": "1d", "camera": "porch", "kind": "caption", "limit": 10}` -> `{"query",
"count", "moments": [{"time", "ts", "camera", "kind", "trigger", "title", "text", "snapshot", ...}]}`.
The database is opened read-only for each request (WAL: the recorder keeps writing meanwhile); a bad
query is an error response saying what is wrong. Snapshots are named by their path on the board: nothing
but the text leaves it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from edged.config.schema import Config
from edged.control.commands import CommandError, Request
from edged.control.executor import CommandExecutor, Responder
from edged.memory.query import QueryError, build_query
from edged.memory.store import HistoryError, search

ARGS = ("query", "since", "until", "camera", "kind", "limit")


class SearchRequests:
    """The handler of `search`; `config()` is the running config (the history's place and switch)."""

    def __init__(self, config: Callable[[], Config], clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._clock = clock

    def register(self, executor: CommandExecutor) -> None:
        executor.register("search", self.search)

    def search(self, request: Request, _responder: Responder) -> Any:
        config = self._config()
        if not config.history.enabled:
            raise CommandError("history is off (history.enabled: false)")
        unknown = sorted(set(request.args) - set(ARGS))
        if unknown:
            raise CommandError(f"unknown argument {unknown[0]!r} (search takes {', '.join(ARGS)})")
        args = request.args
        if "query" not in args:
            raise CommandError("search needs a \"query\" (the words to look for)")
        try:
            query = build_query(args["query"], since=args.get("since"), until=args.get("until"),
                                camera=args.get("camera"), kind=args.get("kind"), limit=args.get("limit"),
                                now=self._clock())
            moments = search(config.history_path, query)
        except (QueryError, HistoryError) as exc:
            raise CommandError(str(exc)) from None
        return {"query": query.text, "count": len(moments),
                "moments": [m.to_payload(config.history_path) for m in moments]}
