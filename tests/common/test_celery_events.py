"""Task events sent from many threads while the event loop flushes the buffer: none is lost.
(Celery's own dispatcher loses some, which is why Flower showed io-worker tasks stuck at
"received"; see common/celery_events.py. tests/e2e/test_flower.py failed about one run in two
without the lock.)"""
from __future__ import annotations

import sys
import threading

from celery.events.dispatcher import EventDispatcher
from kombu import Connection

from common.celery_app import app
from common.celery_events import LockedEventDispatcher


def _sent_and_published(cls: type[EventDispatcher], threads: int = 8, each: int = 3000) -> tuple[int, int]:
    dispatcher = cls(connection=Connection("memory://"), app=app, hostname="test@host",
                     buffer_group=["task"], buffer_limit=10 ** 9)
    published: list[object] = []

    def publish(events, producer, routing_key, **_):  # what flush() hands to the broker
        published.extend(events if isinstance(events, list) else [events])

    dispatcher._publish = publish
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            dispatcher.flush()

    def sender(n: int) -> None:
        for i in range(each):
            dispatcher.send("task-succeeded", uuid=f"{n}-{i}")

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: the race shows within a few thousand events
    loop = threading.Thread(target=flusher)
    loop.start()
    senders = [threading.Thread(target=sender, args=(n,)) for n in range(threads)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    stop.set()
    loop.join()
    sys.setswitchinterval(switch)
    dispatcher.flush()
    return threads * each, len(published)


def test_no_task_event_is_lost_between_a_flush_and_the_buffers_emptying():
    # Celery's own EventDispatcher loses some of these 24,000 events in most runs.
    for _ in range(3):
        sent, published = _sent_and_published(LockedEventDispatcher)
        assert published == sent
