"""A throw-away CA, server and client certificates made with the openssl command line."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(directory: Path) -> Certs:
    """CA -> server cert for 127.0.0.1/localhost, and a client cert, all signed by the CA."""
    d = directory
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=edged test CA",
             "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    for name, cn in (("server", "localhost"), ("client", "edged-client")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", str(d / f"{name}.key"),
                 "-out", str(d / f"{name}.csr"))
        ext = d / f"{name}.ext"
        server = name == "server"
        ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n" if server else "basicConstraints=CA:FALSE\n")
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
                 "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(d / f"{name}.crt"))
    return Certs(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")
