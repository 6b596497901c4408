"""Publishing a task in one Redis round trip: the webhook's hot path, and the follow-ups that
tasks send (``common.enqueue.send``).

Why not ``apply_async``: on the 2-core machine a Celery publish costs about 0.6 ms (producer
pool, a Redis client object per publish, a second publish for Flower's ``task-sent`` event),
which made it most of the webhook's cost (bench/webhook_ack.py). Here Celery still builds the
message (``app.amqp.as_task_v2``: protocol 2 headers, body and sent-event fields); only the last
step is by hand: the envelope that kombu's Redis transport stores (the same keys kombu writes,
checked by tests/common/test_fast_publish.py) and one pipelined LPUSH + PUBLISH for the task
and its sent event. Brokers other than Redis go through ``apply_async``. Unlike Celery's
publish it does not retry: a refused publish is a 503 for the webhook, and for a task's
follow-up the work is still due in the database, so heal sends it again.
"""
from __future__ import annotations

import base64
import json
import os
import time
import uuid
from functools import lru_cache
from typing import Any

from celery import Celery, signals
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.redis_conn import ThreadConnections, is_redis_url, redis_client


def _envelope(body: bytes, headers: dict[str, Any], properties: dict[str, Any], exchange: str, routing_key: str) -> str:
    """kombu's Redis message: base64 body, content type, headers, properties with delivery info."""
    return json.dumps({
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            **properties,
            "delivery_info": {"exchange": exchange, "routing_key": routing_key},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    })


class RedisTaskPublisher:
    def __init__(self, app: Celery, redis_url: str) -> None:
        self.app = app
        # Short timeouts, no retries: a dead broker must become a 503 within about a second.
        self.client = redis_client(
            redis_url, socket_timeout=0.8, socket_connect_timeout=0.8, retry=Retry(NoBackoff(), 0), retry_on_timeout=False,
        )
        # One connection per thread driven directly: redis-py's pipeline (pool checkout, retry
        # wrapper, hooks) cost about as much CPU as the rest of the publish (bench/webhook_ack.py).
        self.connections = ThreadConnections(lambda: self.client)
        db = self.client.connection_pool.connection_kwargs.get("db", 0)
        # kombu's fanout topic for the "celeryev" exchange (fanout_prefix and fanout_patterns on).
        self.event_topic = f"/{db}.celeryev/task.sent"
        self.hostname = anon_nodename()
        self.send_sent_event = bool(app.conf.task_send_sent_event)

    def publish(self, name: str, args: tuple[Any, ...], queue: str, argsrepr: str,
                kwargs: dict[str, Any] | None = None) -> str:
        task_id = str(uuid.uuid4())
        kwargs = kwargs or {}
        # Sent from inside a task (a worker's follow-ups): parent and root ids, as apply_async sets them.
        parent = self.app.current_worker_task
        parent_id = root_id = None
        if parent is not None:
            parent_id = parent.request.id
            root_id = parent.request.root_id or parent.request.id
        message = self.app.amqp.as_task_v2(
            task_id, name, args, kwargs, argsrepr=argsrepr, kwargsrepr=saferepr(kwargs) if kwargs else "{}",
            origin=self.hostname, create_sent_event=self.send_sent_event, parent_id=parent_id, root_id=root_id,
        )
        headers = dict(message.headers)
        # Celery's own publish signals, so their receivers (the request id header in
        # worker/signals.py, tests counting publishes) see this path like any other.
        signals.before_task_publish.send(
            sender=name, body=message.body, exchange="", routing_key=queue, headers=headers,
            properties=message.properties, declare=[], retry_policy=None,
        )
        task_json = _envelope(json.dumps(message.body).encode(), headers, {**message.properties, "delivery_mode": 2}, "", queue)
        commands: list[tuple[Any, ...]] = [("LPUSH", queue, task_json)]
        if message.sent_event:
            event = {
                "hostname": self.hostname, "utcoffset": -time.timezone / 3600, "pid": os.getpid(),
                "clock": self.app.clock.forward(), **message.sent_event,
                "queue": queue, "exchange": "", "routing_key": queue,
                "timestamp": time.time(), "type": "task-sent",
            }
            commands.append(("PUBLISH", self.event_topic, _envelope(json.dumps(event).encode(), {"hostname": self.hostname},
                                                                    {"delivery_mode": 1}, "celeryev", "task.sent")))
        self.connections.pipeline(*commands)
        signals.after_task_publish.send(sender=name, body=message.body, headers=headers, exchange="", routing_key=queue)
        return task_id


@lru_cache(maxsize=4)
def publisher_for(app: Celery, broker_url: str) -> RedisTaskPublisher | None:
    """The fast publisher of ``app`` for a Redis broker; None for any other broker."""
    if not is_redis_url(broker_url):  # redis:// or sentinel:// (common/redis_conn.py)
        return None
    return RedisTaskPublisher(app, broker_url)
