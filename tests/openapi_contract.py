"""pytest plugin: no response the suite receives may disagree with ``web/openapi.yaml``.

Registered from ``tests/conftest.py`` (``pytest_plugins = ["tests.openapi_contract"]``). With
``OPENAPI_VALIDATE_RESPONSES=1`` in the environment, ``web.create_app`` checks every response
against the document (``web.openapi.install_response_validation``) and appends each mismatch as
a JSON line to ``OPENAPI_VIOLATIONS_FILE``. This plugin points that variable at a fresh file
before any app or subprocess starts (gunicorn servers of the end-to-end tests inherit it), fails
the test during which a violation was written, and fails the run at the end if the file holds
any — so an endpoint added without documenting it, or a response that drifted, cannot pass.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

# Set at import, i.e. while conftest loads: before any app is built or process spawned.
os.environ.setdefault("OPENAPI_VALIDATE_RESPONSES", "1")
_DIR = Path(tempfile.mkdtemp(prefix="openapi-contract-"))
VIOLATIONS_FILE = _DIR / "violations.jsonl"
os.environ["OPENAPI_VIOLATIONS_FILE"] = str(VIOLATIONS_FILE)


_START = pytest.StashKey[int]()


def _size() -> int:
    try:
        return VIOLATIONS_FILE.stat().st_size
    except FileNotFoundError:
        return 0


def _entries(start: int = 0) -> list[dict[str, Any]]:
    if not VIOLATIONS_FILE.exists():
        return []
    with VIOLATIONS_FILE.open("rb") as handle:
        handle.seek(start)
        return [json.loads(line) for line in handle.read().decode("utf-8", "replace").splitlines() if line.strip()]


def _describe(entry: dict[str, Any]) -> str:
    problems = "\n      ".join(entry.get("problems", []))
    return f"{entry.get('method')} {entry.get('url')} -> {entry.get('status')} ({entry.get('operation')}):\n      {problems}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    item.stash[_START] = _size()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not report.passed:
        return
    new = _entries(item.stash.get(_START, 0))
    if new:
        report.outcome = "failed"
        report.longrepr = (
            f"{len(new)} response(s) during this test do not match web/openapi.yaml:\n  "
            + "\n  ".join(_describe(e) for e in new[:20])
        )
    item.stash[_START] = _size()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    entries = _entries()
    if entries:
        terminalreporter.section("responses that do not match web/openapi.yaml", red=True)
        for entry in entries[:50]:
            terminalreporter.line(_describe(entry))
        terminalreporter.line(f"{len(entries)} in all; every one is in {VIOLATIONS_FILE}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _entries() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
