"""Run the emulator as a subprocess from tests: ``with EmulatorProcess(tmp_path) as emu: ...``."""
from __future__ import annotations

import base64
import http.server
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Sequence
from urllib.parse import parse_qs, urlparse

import requests

from cloudinary_emulator.settings import DEFAULT_API_KEY, DEFAULT_API_SECRET, DEFAULT_CLOUD_NAME

PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


class EmulatorProcess:
    """``python -m cloudinary_emulator`` on a free port, started and stopped by a test.

    ``faults`` keyword arguments (``latency_ms=50``, ``admin_budget=3`` ...) become start-up
    flags; ``extra_args`` are passed through (``["--notification-retry-delay", "0.05"]``).
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, *,
                 cloud_name: str = DEFAULT_CLOUD_NAME, api_key: str = DEFAULT_API_KEY,
                 api_secret: str = DEFAULT_API_SECRET, port: int = 0,
                 extra_args: Sequence[str] = (), startup_timeout: float = 30.0,
                 **faults: float) -> None:
        if data_dir is None:
            data_dir = tempfile.mkdtemp(prefix="cloudinary-emulator-")
        self.data_dir = Path(data_dir)
        self.cloud_name = cloud_name
        self.api_key = api_key
        self.api_secret = api_secret
        self.port = port
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.faults = dict(faults)
        self.cloudinary_url = ""
        self._process: subprocess.Popen[str] | None = None
        self._http = requests.Session()

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> EmulatorProcess:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _command(self) -> list[str]:
        cmd = [sys.executable, "-m", "cloudinary_emulator", "--host", "127.0.0.1",
               "--port", str(self.port), "--data-dir", str(self.data_dir),
               "--cloud-name", self.cloud_name, "--api-key", self.api_key,
               "--api-secret", self.api_secret, "--print-secret"]
        for name, value in self.faults.items():
            cmd += ["--" + name.replace("_", "-"), str(value)]
        return cmd + self.extra_args

    def start(self) -> None:
        """Start the server and wait until it answers; the first start picks the port."""
        if self._process is not None:
            raise RuntimeError("emulator already running")
        env = dict(os.environ)
        # The child must import this very package, whatever the test's working directory.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_PARENT, env.get("PYTHONPATH")]))
        env.pop("CLOUDINARY_URL", None)  # credentials come from the flags only
        env["PYTHONUNBUFFERED"] = "1"
        self._process = subprocess.Popen(self._command(), stdout=subprocess.PIPE, text=True,
                                         env=env)
        line = self._read_url_line()
        self.cloudinary_url = line.split("=", 1)[1]
        prefix = parse_qs(urlparse(self.cloudinary_url).query)["upload_prefix"][0]
        self.port = int(urlparse(prefix).port or 0)
        # Keep draining stdout so a chatty child can never block on a full pipe.
        threading.Thread(target=self._drain, args=(self._process,), daemon=True).start()
        self._wait_ready()

    def _read_url_line(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        result: list[str] = []
        reader = threading.Thread(
            target=lambda: result.append(self._process.stdout.readline()),  # type: ignore[union-attr]
            daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        line = result[0].strip() if result else ""
        if not line.startswith("CLOUDINARY_URL="):
            self._kill()
            raise RuntimeError(f"emulator did not start (first line: {line!r})")
        return line

    @staticmethod
    def _drain(process: subprocess.Popen[str]) -> None:
        if process.stdout is not None:
            for _ in process.stdout:
                pass

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError("emulator exited during start-up")
            try:
                if self._http.get(self.base_url + "/_emulator/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self._kill()
        raise RuntimeError("emulator did not answer in time")

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 10 s)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def restart(self) -> None:
        """Stop and start again on the same port and data dir."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- client helpers --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cloudinary_config(self) -> dict[str, Any]:
        """Keyword arguments for ``cloudinary.config(**...)``.

        ``secure`` is a real False here: the SDK keeps ``secure=false`` from a CLOUDINARY_URL
        as the string "false", which is truthy and makes it build https://res.cloudinary.com URLs.
        """
        host = f"127.0.0.1:{self.port}"
        return {"cloud_name": self.cloud_name, "api_key": self.api_key,
                "api_secret": self.api_secret, "upload_prefix": f"http://{host}",
                "cname": host, "secure": False}

    def set_faults(self, **faults: float) -> dict[str, Any]:
        """Change faults at run time; returns the full current settings."""
        response = self._http.post(self.base_url + "/_emulator/faults", json=faults, timeout=10)
        response.raise_for_status()
        return response.json()

    def get_faults(self) -> dict[str, Any]:
        response = self._http.get(self.base_url + "/_emulator/faults", timeout=10)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        response = self._http.get(self.base_url + "/_emulator/stats", timeout=10)
        response.raise_for_status()
        return response.json()

    def reset(self, faults: bool = False) -> dict[str, Any]:
        """Forget all assets, counters and budget use; faults too when ``faults``."""
        response = self._http.post(self.base_url + "/_emulator/reset",
                                   json={"faults": faults}, timeout=30)
        response.raise_for_status()
        return response.json()

    def seed(self, count: int, *, tags: Sequence[str] = (), prefix: str = "seed/",
             type: str = "upload", start: float | None = None, interval: float = 1.0,
             image: bytes | None = None) -> dict[str, Any]:
        """Bulk-write ``count`` assets sharing one image (a test aid, not Cloudinary behaviour).

        Public ids are ``<prefix>0`` .. ``<prefix><count-1>``, created ``interval`` seconds apart
        from ``start`` (default: so that the last is about now).
        """
        body: dict[str, Any] = {"count": count, "tags": list(tags), "prefix": prefix,
                                "type": type, "interval": interval}
        if start is not None:
            body["start"] = start
        if image is not None:
            body["file"] = base64.b64encode(image).decode("ascii")
        response = self._http.post(self.base_url + "/_emulator/seed", json=body, timeout=600)
        response.raise_for_status()
        return response.json()

    def wait_for_stats(self, predicate: Callable[[dict[str, Any]], bool],
                       timeout: float = 10.0) -> dict[str, Any]:
        """Poll ``stats()`` until ``predicate`` holds (notifications are sent asynchronously)."""
        deadline = time.monotonic() + timeout
        stats = self.stats()
        while not predicate(stats) and time.monotonic() < deadline:
            time.sleep(0.02)
            stats = self.stats()
        return stats


class NotificationReceiver:
    """A webhook endpoint in a thread for tests: records what arrives.

    ``statuses`` are answered in turn (e.g. ``[500, 200]``); once empty it answers 200. Only
    200-answered deliveries are recorded in ``received`` as ``(headers, raw body)``.
    """

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], str]] = []
        self.statuses: list[int] = []
        self.attempts = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8")
                with receiver._lock:
                    receiver.attempts += 1
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    if status == 200:
                        receiver.received.append((dict(self.headers.items()), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/notify"
        # A short poll interval keeps shutdown() (and so each test's teardown) quick.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    def __enter__(self) -> NotificationReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[dict[str, str], str]]:
        """Wait until ``count`` deliveries arrived (or the timeout); returns what arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        with self._lock:
            return list(self.received)
