"""Fixtures of the web tests: the app served by gunicorn with gunicorn.conf.py, as in production."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Iterator

import pytest
import requests

from tests.conftest import ROOT
from tests.e2e.stack import free_port, wait_for

#: The Cloudinary API secret of the served app (its CLOUDINARY_URL), to sign webhooks with.
CLOUD_SECRET = "gunicorn-test-cloudinary-secret"
CLOUDINARY_URL = f"cloudinary://key:{CLOUD_SECRET}@cloud"


class Server:
    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def raw(self, head: bytes, body: Iterable[bytes] = ()) -> tuple[int, dict[str, str], bytes]:
        """Send bytes as they are; read one response (status, headers, body)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(head)
            try:
                for chunk in body:
                    sock.sendall(chunk)
            except OSError:
                pass  # the server may answer (and stop reading) before the body is all sent
            data = b""
            while b"\r\n\r\n" not in data:
                received = sock.recv(65536)
                if not received:
                    break
                data += received
            head_bytes, _, rest = data.partition(b"\r\n\r\n")
            lines = head_bytes.decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:])
            length = int(headers.get("Content-Length", "0"))
            while len(rest) < length:
                received = sock.recv(65536)
                if not received:
                    break
                rest += received
        return int(lines[0].split()[1]), headers, rest[:length]


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One gunicorn (one worker, two threads) per test module, on the suite's database and Redis;
    its access and error log in ``.log``."""
    port = free_port()
    log = tmp_path_factory.mktemp("gunicorn") / "web.log"
    env = {**os.environ, "CLOUDINARY_URL": CLOUDINARY_URL, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "--threads", "2", "web:create_app()"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    running = Server(port, log)
    try:
        wait_for(lambda: _up(running.url), 30, what="gunicorn")
        yield running
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _up(url: str) -> bool:
    try:
        return requests.get(url + "/health", timeout=1).ok
    except requests.RequestException:
        return False
