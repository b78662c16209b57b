"""Is a network source's host there at all? One TCP connect to its port tells a peer that is down
(refused, timed out, no route) from one that answers, for the cost of a handshake on both ends.

Sources check this before an expensive open (an RTSP open takes seconds, an ffmpeg process is
spawned), so a dead camera says "Connection refused" at once, and their supervisors poll it while
backing off so the open starts as soon as the peer is back.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
PROBE_TIMEOUT = 0.5  # a camera on the LAN answers a connect in milliseconds


def network_address(url: str) -> tuple[str, int] | None:
    """The host and TCP port of an rtsp(s):// or http(s):// url; None for anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.hostname, parts.port or DEFAULT_PORTS[scheme]


def connect_error(url: str, timeout: float) -> str | None:
    """Why a TCP connect to the url's host and port fails ("Connection refused", "connection timed out"),
    or None when it succeeds (or the url names no network address)."""
    address = network_address(url)
    if address is None:
        return None
    try:
        with socket.create_connection(address, timeout=timeout):
            return None
    except TimeoutError:
        return "connection timed out"
    except OSError as exc:
        return exc.strerror or str(exc)


def port_answers(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the url's host accepts a TCP connection now (a supervisor's cheap probe)."""
    return network_address(url) is not None and connect_error(url, timeout) is None
