"""The face detector against the fixtures' known faces: what the other tests take from it."""
from __future__ import annotations

import pytest

from tests.cloudinary_emulator.conftest import detected_faces

#: Eileen Collins' face in astronaut.jpg (512x512), [x, y, w, h], as OpenCV's frontal-face
#: cascade boxes it at its finest scale step (1.1).
ASTRONAUT_FACE = (177, 67, 95, 95)


def overlap(a: tuple[int, ...] | list[int], b: tuple[int, ...] | list[int]) -> float:
    """Intersection over union of two [x, y, w, h] boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_the_astronaut_has_one_face_where_she_is():
    faces = detected_faces("astronaut.jpg")
    assert len(faces) == 1
    assert overlap(faces[0], ASTRONAUT_FACE) > 0.9


def test_the_half_size_astronaut_has_the_same_face_at_half_the_coordinates():
    (face,) = detected_faces("astronaut-small.jpg")
    assert overlap([2 * v for v in face], ASTRONAUT_FACE) > 0.75  # recompressed at quality 60: a few px looser


@pytest.mark.parametrize("name", ["chelsea.jpg", "coffee.jpg", "rocket.jpg", "hubble.jpg"])
def test_no_faces_where_there_are_none(name):
    assert detected_faces(name) == []
