"""The signed delivery URLs and eager entries the workers build from cached transformation texts
(common/cloudinary_client.py) are the ones the SDK builds from the transformation dicts."""
from __future__ import annotations

from typing import Any, Iterator

import cloudinary
import cloudinary.utils
import pytest

from common import cloudinary_client
from common.cloudinary_client import PREVIEW, THUMBNAIL, VIDEO_POSTER, VIDEO_PREVIEW

TRANSFORMATIONS = [THUMBNAIL, PREVIEW, VIDEO_POSTER, VIDEO_PREVIEW,
                   {"crop": "fill", "width": 10, "height": 20, "gravity": "auto", "quality": "auto"}]


@pytest.fixture(autouse=True)
def sdk() -> Iterator[None]:
    cloudinary.reset_config()
    cloudinary.config(cloud_name="demo-cloud", api_key="123", api_secret="not-a-real-secret")
    yield
    cloudinary.reset_config()


def _sdk_url(public_id: str, transformation: dict[str, Any], asset_type: str, resource_type: str) -> str:
    options = {k: v for k, v in transformation.items() if k != "format"}
    url, _ = cloudinary.utils.cloudinary_url(public_id, type=asset_type, resource_type=resource_type, sign_url=True,
                                             format=transformation.get("format"), transformation=[options])
    return str(url)


@pytest.mark.parametrize("transformation", TRANSFORMATIONS)
@pytest.mark.parametrize("public_id, asset_type, resource_type", [
    ("album/2024 trip/é 1", "authenticated", "image"), ("a/b", "upload", "image"), ("clip", "authenticated", "video")])
def test_delivery_url_is_the_sdks(transformation: dict[str, Any], public_id: str, asset_type: str,
                                  resource_type: str) -> None:
    for _ in range(2):  # the second time from the cache
        assert cloudinary_client.delivery_url(public_id, transformation, asset_type, resource_type) == \
            _sdk_url(public_id, transformation, asset_type, resource_type)


def test_eager_entries_are_the_sdks() -> None:
    for pair in ((THUMBNAIL, PREVIEW), (VIDEO_POSTER, VIDEO_PREVIEW)):
        assert "|".join(cloudinary_client.eager_texts(*pair)) == cloudinary.utils.build_eager(list(pair))
