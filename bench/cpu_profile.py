"""CPU profiles of a bench's workers, by thread CPU time (``time.thread_time``): where a worker
spends the processor, not where it waits. Loaded with ``celery worker --include cpu_profile``
when ``BENCH_CPU_PROFILE`` names a directory (bench/pipeline_capacity.py ``--cpu-profile DIR``).

What is profiled starts with the first ``album.*`` task, so the bench's no-op baseline stays out:
each task's run in the thread that runs it (prefork children, the threads pool's threads), and
the worker's main thread (its consumer loop: receiving, acknowledging, task events) from the
first ``album.*`` message it receives. Each process writes ``<role>-<pid>.prof`` at shutdown
(read them with ``pstats``)."""
from __future__ import annotations

import cProfile
import os
import threading
import time
from pathlib import Path
from typing import Any

from celery.signals import task_postrun, task_prerun, task_received, worker_process_shutdown, worker_shutdown

OUT = os.environ.get("BENCH_CPU_PROFILE")
#: ``BENCH_CPU_PROFILE_DB_ONLY=1``: only the database calls' times, without cProfile's overhead.
DB_ONLY = os.environ.get("BENCH_CPU_PROFILE_DB_ONLY") == "1"
_local = threading.local()
_profilers: list[cProfile.Profile] = []
_lock = threading.Lock()
_main_loop: dict[str, cProfile.Profile] = {}


def _profiled(name: str | None) -> bool:
    return bool(OUT) and not DB_ONLY and bool(name) and name.startswith("album.")  # type: ignore[union-attr]


def _thread_profiler() -> cProfile.Profile:
    profiler = getattr(_local, "profiler", None)
    if profiler is None:
        profiler = _local.profiler = cProfile.Profile(time.thread_time)
        with _lock:
            _profilers.append(profiler)
    return profiler


@task_prerun.connect
def _start(task: Any = None, **_: Any) -> None:
    # (prefork or threads pool: never the thread that runs the consumer loop)
    if _profiled(getattr(task, "name", None)):
        _thread_profiler().enable()


@task_postrun.connect
def _stop(task: Any = None, **_: Any) -> None:
    if _profiled(getattr(task, "name", None)):
        _thread_profiler().disable()


@task_received.connect
def _start_loop(request: Any = None, **_: Any) -> None:
    """The consumer loop of a worker's main thread, from the first album task it receives."""
    if _profiled(getattr(request, "name", None)) and "loop" not in _main_loop:
        _main_loop["loop"] = profiler = cProfile.Profile(time.thread_time)
        profiler.enable()


def _dump(role: str) -> None:
    if not OUT:
        return
    if _db_times:
        import json

        (Path(OUT) / f"{role}-db-{os.getpid()}.json").write_text(json.dumps(_db_times, indent=1))
    if "loop" in _main_loop:
        _main_loop["loop"].disable()
        _main_loop["loop"].dump_stats(Path(OUT) / f"{role}-loop-{os.getpid()}.prof")
    for index, profiler in enumerate(_profilers):
        profiler.dump_stats(Path(OUT) / f"{role}-tasks-{os.getpid()}-{index}.prof")


@worker_process_shutdown.connect
def _child_exit(**_: Any) -> None:
    _dump("child")


@worker_shutdown.connect
def _worker_exit(sender: Any = None, **_: Any) -> None:
    _dump(str(getattr(sender, "hostname", "worker")).split("-", 1)[0])



# Wall time against CPU time of the database calls (statements and commits), per process: a
# wall time well above the CPU time is waiting (SQLite's write lock and busy handler, fsync).
_db_times: dict[str, float] = {}


def _timed(name: str, call: Any) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return call(*args, **kwargs)
        finally:
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            with _lock:
                _db_times[f"{name} calls"] = _db_times.get(f"{name} calls", 0) + 1
                _db_times[f"{name} wall"] = _db_times.get(f"{name} wall", 0.0) + wall
                _db_times[f"{name} cpu"] = _db_times.get(f"{name} cpu", 0.0) + cpu
                _db_times[f"{name} max"] = max(_db_times.get(f"{name} max", 0.0), wall)
    return timed


if OUT:
    from sqlalchemy.engine.default import DefaultDialect

    for method in ("do_execute", "do_executemany", "do_commit"):
        setattr(DefaultDialect, method, _timed(method, getattr(DefaultDialect, method)))
