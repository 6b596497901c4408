"""A small closed-loop HTTP load generator (keep-alive connections in worker processes), so the
benchmarks need nothing but Python. Each process runs ``connections`` threads for ``seconds``
and reports every request's latency. ``headers`` is one dict, or a list that each connection
goes round (e.g. one token per user)."""
from __future__ import annotations

import http.client
import multiprocessing as mp
import statistics
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]

    def line(self, name: str) -> str:
        return (f"{name:<10} {self.throughput:8.0f} req/s   p50 {self.percentile(50):6.2f} ms   "
                f"p99 {self.percentile(99):6.2f} ms   errors {self.errors}")


Headers = dict[str, str] | list[dict[str, str]]


def _worker(url: str, body: bytes | None, headers: Headers, connections: int, seconds: float, out: mp.Queue,
            method: str, slot: int, slots: int) -> None:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    rounds = headers if isinstance(headers, list) else [headers]

    def loop(start: int) -> None:
        nonlocal errors
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        mine: list[float] = []
        bad = 0
        turn = start
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            turn += 1
            try:
                conn.request(method, path, body=body, headers=rounds[turn % len(rounds)])
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    bad += 1
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
                continue
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)
            errors += bad

    # The connections of all processes start evenly spread over the list of headers.
    starts = [(slot * connections + i) * len(rounds) // (slots * connections) for i in range(connections)]
    threads = [threading.Thread(target=loop, args=(start,)) for start in starts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((latencies, errors))


def run(url: str, body: bytes | None, headers: Headers, seconds: float = 10.0, processes: int = 2, connections: int = 4,
        method: str = "POST") -> Result:
    out: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_worker, args=(url, body, headers, connections, seconds, out, method, p, processes))
             for p in range(processes)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    latencies: list[float] = []
    errors = 0
    for _ in procs:
        lat, err = out.get()
        latencies += lat
        errors += err
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    return Result(len(latencies), errors, max(elapsed, seconds), latencies)


__all__ = ["Result", "run", "statistics"]
