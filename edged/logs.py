"""structlog setup: JSON lines under systemd (or any non-terminal), readable console lines on a TTY.

Components bind their stream id once (`log.bind(camera="porch")`) and log snake_case event names
with key-value context. A redaction processor blanks values of secret-looking keys, so a careless
`log.info("x", password=...)` cannot leak one.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SECRET_KEYS = ("password", "passwd", "secret", "token", "api_key", "apikey", "authorization", "private_key")
# OpenCV's LOG_LEVEL_* values by the names OPENCV_LOG_LEVEL takes
_OPENCV_LEVELS = {"OFF": 0, "SILENT": 0, "DISABLED": 0, "FATAL": 1, "ERROR": 2, "WARNING": 3, "WARN": 3, "INFO": 4,
                  "DEBUG": 5, "VERBOSE": 6}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of any key that names a secret."""
    for key in list(event_dict):
        if any(s in key.lower() for s in _SECRET_KEYS):
            event_dict[key] = "***"
    return event_dict


def use_json(fmt: str, stream: TextIO) -> bool:
    """Whether to write JSON lines: asked for, or `auto` and not a terminal (e.g. the journal)."""
    if fmt != "auto":
        return fmt == "json"
    return not (hasattr(stream, "isatty") and stream.isatty()) or "JOURNAL_STREAM" in os.environ


def quiet_native_logs(level: str) -> None:
    """Keep OpenCV and FFmpeg from writing raw lines into the log stream (they would break JSON lines);
    edged reports their failures itself. At debug level FFmpeg's own errors are shown.

    OpenCV reads OPENCV_LOG_LEVEL once, when it is imported, and the command line imports it before any
    command configures logging: then its level is set directly (else a warning such as FFmpeg's
    "isThreadSafe", when a camera and its microphone open at once, lands in the journal as raw text)."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR" if level == "debug" else "OFF")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "16" if level == "debug" else "-8")
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        wanted = _OPENCV_LEVELS.get(os.environ["OPENCV_LOG_LEVEL"].strip().upper())
        if wanted is not None:
            cv2.utils.logging.setLogLevel(wanted)


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog (and route the standard library's logging through it)."""
    quiet_native_logs(level)
    out = stream or sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Any = (structlog.processors.JSONRenderer() if use_json(fmt, out)
                     else structlog.dev.ConsoleRenderer(colors=out.isatty()))
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), structlog.processors.format_exc_info,
                    renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(_LEVELS[level], logging.INFO))


def get_logger(**context: Any) -> Any:
    """A logger with `context` bound (e.g. `camera="porch"`)."""
    return structlog.get_logger("edged").bind(**context)
