"""Celery's event dispatcher with its task-event buffer locked.

A worker batches its ``task-*`` events (``task.multi``) when it runs an event loop: each event is
appended to a list that the loop later publishes and then empties. Celery appends without a
lock, and with the threads pool (our ``io`` worker) ``task-started``/``task-succeeded`` are sent
from the pool's threads: an event appended between the publish and the emptying is lost, and
Flower shows a finished task as "received" for good. Celery has no option for this, hence this
subclass: the append and the flush take the same lock."""
from __future__ import annotations

from typing import Any

from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher
from celery.events.event import Event, group_from
from celery.utils.time import utcoffset


class LockedEventDispatcher(EventDispatcher):
    def send(self, type: str, blind: bool = False, utcoffset: Any = utcoffset, retry: bool = False,
             retry_policy: Any = None, Event: Any = Event, **fields: Any) -> Any:
        if not self.enabled:
            return None
        group = group_from(type)
        if group not in self.buffer_group or (self.groups and group not in self.groups):
            return super().send(type, blind=blind, utcoffset=utcoffset, retry=retry, retry_policy=retry_policy,
                                Event=Event, **fields)
        event = Event(type, hostname=self.hostname, utcoffset=utcoffset(), pid=self.pid, clock=self.clock.forward(),
                      **fields)
        with self.mutex:
            buffer = self._group_buffer[group]
            buffer.append(event)
            full = len(buffer) >= self.buffer_limit
        if full:
            self.flush()
        elif self.on_send_buffered:
            self.on_send_buffered()
        return None


class LockedEvents(Events):
    dispatcher_cls = "common.celery_events:LockedEventDispatcher"
