"""The hot path's publisher writes what kombu's Redis transport writes, so a Celery worker
cannot tell the two apart (the end-to-end tests then run every webhook through it)."""
from __future__ import annotations

import base64
import json

import redis

from common.fast_publish import RedisTaskPublisher
from common.celery_app import app


def _pop(r: redis.Redis, queue: str) -> dict:
    raw = r.rpop(queue)
    assert raw is not None
    return json.loads(raw)


def test_envelope_matches_kombus(redis_url):
    r = redis.Redis.from_url(redis_url)
    r.delete("shape-a", "shape-b")
    args = ("ALB", {"public_id": "p"}, "u")
    app.send_task("album.ingest", args=args, queue="shape-a", argsrepr="x", kwargsrepr="{}")
    RedisTaskPublisher(app, redis_url).publish("album.ingest", args, "shape-b", "x")
    theirs, ours = _pop(r, "shape-a"), _pop(r, "shape-b")

    assert set(ours) == set(theirs)
    assert set(ours["headers"]) == set(theirs["headers"])
    # send_task also copies its extra options (argsrepr, kwargsrepr) into the properties.
    assert set(ours["properties"]) == set(theirs["properties"]) - {"argsrepr", "kwargsrepr"}
    for key in ("content-type", "content-encoding"):
        assert ours[key] == theirs[key]
    assert ours["properties"]["delivery_info"] == {"exchange": "", "routing_key": "shape-b"}
    assert ours["properties"]["body_encoding"] == theirs["properties"]["body_encoding"] == "base64"
    assert ours["headers"]["task"] == "album.ingest"
    assert json.loads(base64.b64decode(ours["body"])) == json.loads(base64.b64decode(theirs["body"]))


def test_the_sent_event_goes_to_celerys_event_topic(redis_url):
    r = redis.Redis.from_url(redis_url)
    sub = r.pubsub()
    sub.psubscribe("*celeryev/task.sent")
    sub.get_message(timeout=1)
    task_id = RedisTaskPublisher(app, redis_url).publish("album.ingest", ("A", {}, None), "shape-c", "x")
    r.delete("shape-c")
    # Pub/sub spans every db of a shared Redis: skip other suites' events, find ours.
    event: dict = {}
    while event.get("uuid") != task_id:
        message = sub.get_message(timeout=2)
        assert message is not None, "our task-sent event never came"
        if message["type"] == "pmessage":
            event = json.loads(base64.b64decode(json.loads(message["data"])["body"]))
    assert event["type"] == "task-sent" and event["uuid"] == task_id and event["name"] == "album.ingest"
    sub.close()


def test_only_a_redis_broker_gets_the_fast_path(redis_url):
    from common.fast_publish import publisher_for

    assert publisher_for(app, "amqp://guest@127.0.0.1//") is None  # other brokers: Celery's send_task
    assert isinstance(publisher_for(app, redis_url), RedisTaskPublisher)


def test_follow_ups_take_the_fast_path_with_their_parent(redis_url):
    """``enqueue.send`` (what tasks send after a commit) writes through the fast publisher to the
    task's routed queue, and a task sent from inside a task names its parent and root, as
    ``apply_async`` does."""
    from types import SimpleNamespace
    from unittest import mock

    from common import enqueue

    r = redis.Redis.from_url(redis_url)
    r.delete("io")
    parent = SimpleNamespace(request=SimpleNamespace(id="parent-id", root_id="root-id"))
    with mock.patch.object(type(app), "current_worker_task", new_callable=mock.PropertyMock, return_value=parent), \
            mock.patch.object(RedisTaskPublisher, "publish", autospec=True, side_effect=RedisTaskPublisher.publish) as fast:
        enqueue.send(enqueue.task("album.generate_thumbnails", 42))
    assert fast.call_count == 1
    message = _pop(r, "io")
    assert message["headers"]["task"] == "album.generate_thumbnails"
    assert message["headers"]["parent_id"] == "parent-id" and message["headers"]["root_id"] == "root-id"
    assert message["headers"]["argsrepr"] == "(42,)"
    assert json.loads(base64.b64decode(message["body"]))[0] == [42]
