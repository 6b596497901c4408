"""Publishing tasks, after the caller's transaction has committed.

Callers commit first (``session_scope`` exits) and then call ``send``: a task never sees a row
its sender has not committed yet. A broker that cannot take the message within about a second
(see ``celeryconfig``) surfaces as ``BrokerUnavailable``, which the API turns into a 503.
"""
from __future__ import annotations

import socket
from functools import lru_cache
from typing import Any

import redis.exceptions
from celery import Signature
from kombu.exceptions import OperationalError

from common.coordination import Gate, recount_gate, reconcile_gate
from common.config import get_settings


class BrokerUnavailable(RuntimeError):
    """The broker (or the Redis beside it) did not take the work in time."""


_BROKER_ERRORS = (OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, socket.timeout, ConnectionError, TimeoutError)


@lru_cache(maxsize=64)
def _queue_for(name: str) -> str:
    """The queue ``celeryconfig.task_routes`` gives a task (routes are fixed at start)."""
    from worker.app import app

    return app.amqp.router.route({}, name)["queue"].name


def publish_fast(name: str, args: tuple[Any, ...], argsrepr: str) -> None:
    """The hot path's publish (the webhook): one Redis round trip (``common.fast_publish``),
    falling back to Celery's own publish for a broker other than Redis."""
    from common.fast_publish import publisher_for
    from worker.app import app

    queue = _queue_for(name)
    publisher = publisher_for(get_settings().broker_url)
    try:
        if publisher is None:
            app.send_task(name, args=args, argsrepr=argsrepr, kwargsrepr="{}")
        else:
            publisher.publish(name, args, queue, argsrepr)
    except _BROKER_ERRORS as exc:
        raise BrokerUnavailable(str(exc)) from exc


def send(*signatures: Signature) -> None:
    try:
        for sig in signatures:
            sig.apply_async()
    except _BROKER_ERRORS as exc:
        raise BrokerUnavailable(str(exc)) from exc


def _gated(gate: Gate, task_name: str, album_id: str, delay: float) -> bool:
    from worker.app import app

    try:
        if not gate.claim(album_id, ttl=delay + 600):
            return False
        app.signature(task_name, args=(album_id,), countdown=delay).apply_async()
        return True
    except _BROKER_ERRORS as exc:
        # Free the gate, or the next request would think a run is already scheduled.
        try:
            gate.release(album_id)
        except _BROKER_ERRORS:
            pass
        raise BrokerUnavailable(str(exc)) from exc


def request_recount(album_id: str, delay: float | None = None) -> bool:
    """Schedule the album's recount unless one is already waiting (debounce)."""
    wait = get_settings().recount_debounce if delay is None else delay
    return _gated(recount_gate, "album.recount", album_id, wait)


def request_reconcile(album_id: str, delay: float | None = None) -> bool:
    """Schedule the album's reconcile unless one is already waiting (coalesce): the delay also
    gives the webhooks of a batch just uploaded time to arrive first."""
    wait = get_settings().reconcile_coalesce if delay is None else delay
    return _gated(reconcile_gate, "album.reconcile", album_id, wait)


def task(name: str, *args: Any, **options: Any) -> Signature:
    """A signature by task name, so the web side needs no task module import."""
    from worker.app import app

    return app.signature(name, args=args, **options)


def send_reprocess(todo: list[tuple[int, bool, bool]]) -> int:
    """Enqueue the stages ``common.pipeline.reset_for_reprocess`` put back; returns the count."""
    signatures = []
    for image_id, redo_metadata, redo_thumbnails in todo:
        if redo_metadata:
            signatures.append(task("album.fetch_metadata", image_id))
        if redo_thumbnails:
            signatures.append(task("album.generate_thumbnails", image_id))
    send(*signatures)
    return len(signatures)
