"""A model hub on a loopback port, for testing `edged models pull` without the internet.

This is a fake, and the only one in the pull tests: the real hub cannot be reached from the test
machine. It speaks the hub's public HTTP API as far as huggingface_hub uses it to download a
snapshot: repository info (with LFS metadata), the file tree, and `resolve` URLs answering HEAD
(commit, etag, size headers) and GET (with byte ranges, which resumed downloads use). It advertises
no Xet storage, so clients use plain HTTP. Files named in `lfs` are described as LFS files whose
sha256 the hub vouches for; `corrupt` serves different bytes than that sha256 says.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubRepo:
    repo: str
    root: Path
    lfs: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)

    def files(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())

    def body(self, name: str) -> bytes:
        data = (self.root / name).read_bytes()
        if name in self.corrupt:
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        return data

    def entry(self, name: str) -> dict[str, object]:
        """One file as the tree and repository-info endpoints describe it."""
        data = (self.root / name).read_bytes()
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        item: dict[str, object] = {"type": "file", "path": name, "size": len(data), "oid": blob}
        if name in self.lfs:
            item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return item

    def etag(self, name: str) -> str:
        item = self.entry(name)
        lfs = item.get("lfs")
        return str(lfs["oid"]) if isinstance(lfs, dict) else str(item["oid"])


def _handler(hub: HubRepo) -> type[BaseHTTPRequestHandler]:
    repo = re.escape(hub.repo)
    info_re = re.compile(rf"^/api/models/{repo}(?:/revision/[^/]+)?$")
    tree_re = re.compile(rf"^/api/models/{repo}/tree/[^/]+(?:/.*)?$")
    file_re = re.compile(rf"^/{repo}/resolve/[^/]+/(?P<name>.+)$")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet: tests read `requests`
            pass

        def do_GET(self) -> None:
            self._serve(head=False)

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def _serve(self, head: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append(f"{self.command} {path}")
            if info_re.match(path):
                siblings = []
                for name in hub.files():
                    item = hub.entry(name)
                    sib: dict[str, object] = {"rfilename": name, "size": item["size"], "blobId": item["oid"]}
                    if isinstance(item.get("lfs"), dict):
                        lfs = item["lfs"]
                        assert isinstance(lfs, dict)
                        sib["lfs"] = {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": 134}
                    siblings.append(sib)
                self._json({"id": hub.repo, "modelId": hub.repo, "sha": COMMIT, "siblings": siblings}, head)
            elif tree_re.match(path):
                self._json([hub.entry(name) for name in hub.files()], head)
            elif (m := file_re.match(path)) and (hub.root / m["name"]).is_file():
                self._file(m["name"], head)
            else:
                self._send(404, b'{"error": "Entry not found"}', {"X-Error-Code": "EntryNotFound"}, head)

        def _json(self, obj: object, head: bool) -> None:
            self._send(200, json.dumps(obj).encode(), {"Content-Type": "application/json"}, head)

        def _file(self, name: str, head: bool) -> None:
            data = hub.body(name)
            headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hub.etag(name)}"', "Accept-Ranges": "bytes"}
            status = 200
            if (rng := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))) is not None:
                start = int(rng[1])
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                data, status = data[start:], 206
            self._send(status, data, headers, head)

        def _send(self, status: int, data: bytes, headers: dict[str, str], head: bool) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)

    return Handler


@contextmanager
def serve_hub(hub: HubRepo) -> Iterator[str]:
    """Serve `hub` on a free loopback port; yields the endpoint URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    thread = threading.Thread(target=server.serve_forever, name="fake-hub", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
