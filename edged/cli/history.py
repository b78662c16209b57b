"""`edged history search "red car" --since 1d`: the daemon's memory, searched on the board.

Reads the same database the daemon writes (read-only; WAL lets both run at once). `--json` prints one
JSON line per moment, best match first, with the keys of the MQTT `search` response's moments.
Exit status: 0 (even with no match), 1 no history to read, 2 a bad query or config.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edged.config import ConfigError, load_config
from edged.memory.query import DEFAULT_LIMIT, KINDS, QueryError, build_query
from edged.memory.store import HistoryError, Moment, search

DEFAULT_CONFIG = "/etc/edged/config.yaml"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("history", help="search what the cameras saw and were asked")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    s = verbs.add_parser("search", help="moments matching words, best first",
                         description="Words must all appear (any word form); \"a phrase\", word*, "
                                     "cat OR dog and -word (without) work too.")
    s.add_argument("query", help='what to look for, e.g. "red car"')
    s.add_argument("--since", help="how far back (30m, 1d) or from when (2026-05-01, 2026-05-01T08:00)")
    s.add_argument("--until", help="up to when, in the same forms")
    s.add_argument("--camera", help="only this camera")
    s.add_argument("--kind", choices=KINDS, help="only captions, answers to questions, or watch changes")
    s.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"most moments shown (default {DEFAULT_LIMIT})")
    s.add_argument("--json", action="store_true", help="one JSON line per moment")
    s.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"the daemon's config (default {DEFAULT_CONFIG})")
    s.add_argument("--dir", type=Path, help="the history directory itself (instead of the config's)")
    s.set_defaults(func=run_search)


def run_search(args: argparse.Namespace) -> int:
    try:
        root = args.dir if args.dir is not None else _history_dir(args.config)
        query = build_query(args.query, since=args.since, until=args.until, camera=args.camera, kind=args.kind,
                            limit=args.limit, now=time.time())
    except (ConfigError, QueryError) as exc:
        print(f"edged history: {exc}", file=sys.stderr)
        return 2
    try:
        moments = search(root, query)
    except QueryError as exc:
        print(f"edged history: {exc}", file=sys.stderr)
        return 2
    except HistoryError as exc:
        print(f"edged history: {exc}", file=sys.stderr)
        return 1
    for moment in moments:
        print(json.dumps(moment.to_payload(root), ensure_ascii=False) if args.json else describe(moment, root))
    if not moments and not args.json:
        print("no moments match", file=sys.stderr)
    return 0


def _history_dir(config_path: str) -> Path:
    config = load_config(config_path)
    if not config.history.enabled:
        print(f"edged history: history is off in {config_path}; searching what an earlier run kept",
              file=sys.stderr)
    return config.history_path


def describe(moment: Moment, root: Path) -> str:
    """One readable line (then the snapshot's path, indented)."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment.ts))
    threat = f" threat {moment.threat_level}" if moment.threat_level is not None else ""
    asked = f"{moment.question} -> " if moment.question else ""
    line = f"{when}  {moment.camera}  {moment.kind} [{moment.trigger}]{threat}  {asked}{moment.text or moment.title}"
    return line + (f"\n    {root / moment.snapshot}" if moment.snapshot else "")
