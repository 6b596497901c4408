"""``/changes`` reports a change to anything ``/images`` shows: every column whose value moves
the serializer's output is one ``common.changes`` watches (computed from the serializer, so a
field added to the answer and forgotten there fails here)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text

from common.changes import VISIBLE
from common.models import STAGE_DONE, STAGE_PENDING, Image
from common.serializers import image_json


def _values(column: Any) -> tuple[Any, Any]:
    if column.name.endswith("_status"):
        return STAGE_PENDING, STAGE_DONE
    kind = column.type
    if isinstance(kind, DateTime):
        return datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 2, tzinfo=timezone.utc)
    if isinstance(kind, Boolean):
        return False, True
    if isinstance(kind, Integer):
        return 1, 2
    if isinstance(kind, Float):
        return 1.5, 2.5
    if isinstance(kind, JSON):
        return [1], [2]
    assert isinstance(kind, (String, Text)), column
    return "a", "b"


def test_every_column_the_images_answer_shows_is_watched_for_changes():
    columns = [c for c in Image.__table__.columns if c.name != "id"]
    shown = set()
    for column in columns:
        answers = []
        for value in _values(column):
            image = Image(**{c.name: _values(c)[0] for c in columns})
            image.id = 1
            setattr(image, column.name, value)
            answers.append(image_json(image))
        if answers[0] != answers[1]:
            shown.add(column.name)
    assert shown, "the serializer shows no column at all?"
    assert shown <= set(VISIBLE), sorted(shown - set(VISIBLE))
