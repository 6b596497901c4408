"""Publishing tasks, after the caller's transaction has committed.

Callers commit first (``session_scope`` exits) and then call ``send``: a task never sees a row
its sender has not committed yet. What a task or request sends is never the only record of the
work: the database holds it too (``common.pipeline``), and the heal task sends again whatever is
overdue. A broker that cannot take the message within about a second (see ``celeryconfig``)
surfaces as ``BrokerUnavailable``; the webhook answers it with a 503 (Cloudinary retries), the
other callers can rely on the heal task.
"""
from __future__ import annotations

import socket
from functools import lru_cache
from typing import Any, Iterable

import redis.exceptions
from celery import Signature
from celery.utils.saferepr import saferepr
from kombu.exceptions import OperationalError

from common.celery_app import app
from common.config import get_settings
from common.coordination import Gate, reconcile_gate, recount_gate
from common.fast_publish import RedisTaskPublisher, publisher_for


class BrokerUnavailable(RuntimeError):
    """The broker (or the Redis beside it) did not take the work in time."""


BROKER_ERRORS = (OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, socket.timeout,
                 ConnectionError, TimeoutError)


@lru_cache(maxsize=64)
def _queue_for(name: str) -> str:
    """The queue ``celeryconfig.task_routes`` gives a task (routes are fixed at start)."""
    return app.amqp.router.route({}, name)["queue"].name


def _fast_publisher() -> RedisTaskPublisher | None:
    return publisher_for(app, get_settings().broker_url)


def publish_fast(name: str, args: tuple[Any, ...], argsrepr: str) -> None:
    """The hot path's publish (the webhook): one Redis round trip (``common.fast_publish``),
    falling back to Celery's own publish for a broker other than Redis."""
    queue = _queue_for(name)
    publisher = _fast_publisher()
    try:
        if publisher is None:
            app.send_task(name, args=args, argsrepr=argsrepr, kwargsrepr="{}")
        else:
            publisher.publish(name, args, queue, argsrepr)
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable(str(exc)) from exc


def task(name: str, *args: Any, **options: Any) -> Signature:
    """A signature by task name, so that publishers need no task module import."""
    return app.signature(name, args=args, **options)


def send(*signatures: Signature) -> None:
    """Publish each signature now. Those without options (no countdown, no explicit queue) take
    the webhook's one-round-trip path: a worker's follow-ups (an ingest's thumbnails, heal's
    re-sends) cost a quarter of what Celery's publish costs (bench/pipeline_capacity.py)."""
    publisher = _fast_publisher()
    try:
        for sig in signatures:
            if publisher is not None and not sig.options:
                args = tuple(sig.args)
                publisher.publish(sig.task, args, _queue_for(sig.task), saferepr(args), dict(sig.kwargs))
            else:
                sig.apply_async()
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable(str(exc)) from exc


def _gated(gate: Gate, signature: Signature, album_id: str, delay: float) -> bool:
    try:
        if not gate.claim(album_id, delay):
            return False
        signature.apply_async(countdown=delay)
        return True
    except BROKER_ERRORS as exc:
        # Free the gate, or the next request would think a run is already scheduled.
        try:
            gate.release(album_id)
        except BROKER_ERRORS:
            pass
        raise BrokerUnavailable(str(exc)) from exc


def request_recount(album_id: str, delay: float | None = None) -> bool:
    """Schedule the album's recount unless one is already waiting (debounce)."""
    wait = get_settings().recount_debounce if delay is None else delay
    return _gated(recount_gate, task("album.recount", album_id), album_id, wait)


def request_reconcile(album_id: str, delay: float | None = None, full: bool = False) -> bool:
    """Schedule the album's reconcile unless one is already waiting or running (coalesce): the
    delay also gives the webhooks of a batch just uploaded time to arrive first."""
    wait = get_settings().reconcile_coalesce if delay is None else delay
    return _gated(reconcile_gate, app.signature("album.reconcile", args=(album_id,), kwargs={"full": full}),
                  album_id, wait)


def stage_tasks(image_id: int, metadata: bool, thumbnails: bool) -> list[Signature]:
    """The tasks that carry out an image's pending stages."""
    signatures = []
    if metadata:
        signatures.append(task("album.fetch_metadata", image_id))
    if thumbnails:
        signatures.append(task("album.generate_thumbnails", image_id))
    return signatures


def send_reprocess(todo: Iterable[tuple[int, bool, bool]]) -> int:
    """Enqueue the stages ``common.pipeline.reset_for_reprocess`` put back; returns the count."""
    signatures = [sig for image_id, meta, thumbs in todo for sig in stage_tasks(image_id, meta, thumbs)]
    send(*signatures)
    return len(signatures)
