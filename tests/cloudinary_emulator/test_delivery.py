"""Delivery URLs: explicit eager renders, signed URLs, on-the-fly transformations."""
from __future__ import annotations

import io
from pathlib import Path

import cloudinary
import cloudinary.uploader
import cloudinary.utils
import pytest
import requests
from cloudinary.exceptions import BadRequest, NotFound
from PIL import Image

from cloudinary_emulator.signing import url_signature
from cloudinary_emulator.testing import EmulatorProcess


def fetch_image(url: str) -> tuple[requests.Response, Image.Image]:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return response, Image.open(io.BytesIO(response.content))


def test_explicit_thumbnail_is_served(emu: EmulatorProcess, photos: Path) -> None:
    cloudinary.uploader.upload(str(photos / "astronaut.jpg"), public_id="album/p1",
                               type="authenticated")
    result = cloudinary.uploader.explicit(
        "album/p1", type="authenticated",
        eager=[{"crop": "thumb", "gravity": "faces", "width": 150, "height": 150},
               {"crop": "fill", "width": 200, "height": 100, "format": "png"},
               {"crop": "limit", "width": 1000}, {"crop": "pad", "width": 300, "height": 200}])
    thumb, fill, limit, pad = result["eager"]
    assert thumb["transformation"] == "c_thumb,g_faces,h_150,w_150"
    assert (thumb["width"], thumb["height"], thumb["format"]) == (150, 150, "jpg")
    assert "/s--" in thumb["url"]
    response, image = fetch_image(thumb["url"])
    assert response.headers["Content-Type"] == "image/jpeg"
    assert image.size == (150, 150)
    response, image = fetch_image(fill["secure_url"])
    assert response.headers["Content-Type"] == "image/png" and image.size == (200, 100)
    assert fetch_image(limit["url"])[1].size == (512, 512)  # limit never upscales
    assert fetch_image(pad["url"])[1].size == (300, 200)


def test_sdk_built_urls_are_served_and_cached(emu: EmulatorProcess, photos: Path) -> None:
    cloudinary.uploader.upload(str(photos / "rocket.jpg"), public_id="r")
    url = cloudinary.utils.cloudinary_url("r", format="webp", width=320, crop="scale")[0]
    response, image = fetch_image(url)
    assert response.headers["Content-Type"] == "image/webp"
    assert image.size == (320, 213)
    derived = list((emu.data_dir / "derived").rglob("*.webp"))
    assert len(derived) == 1
    again = requests.get(url, timeout=10)
    assert again.content == response.content
    original, image = fetch_image(cloudinary.utils.cloudinary_url("r", format="jpg")[0])
    assert original.content == (photos / "rocket.jpg").read_bytes()


def test_signed_url_served_unsigned_refused(emu: EmulatorProcess, photos: Path) -> None:
    cloudinary.uploader.upload(str(photos / "coffee.jpg"), public_id="secret/c1",
                               type="authenticated")
    signed = cloudinary.utils.cloudinary_url("secret/c1", type="authenticated", sign_url=True,
                                             format="jpg", width=100, crop="scale")[0]
    assert fetch_image(signed)[1].size == (100, 67)
    unsigned = cloudinary.utils.cloudinary_url("secret/c1", type="authenticated", format="jpg",
                                               width=100, crop="scale")[0]
    refused = requests.get(unsigned, timeout=10)
    assert refused.status_code == 401
    assert "message" in refused.json()["error"]
    forged = signed.replace("w_100", "w_101")
    assert requests.get(forged, timeout=10).status_code == 401
    wrong_secret = cloudinary.utils.cloudinary_url("secret/c1", type="authenticated", sign_url=True,
                                                   format="jpg", api_secret="nope")[0]
    assert requests.get(wrong_secret, timeout=10).status_code == 401


def test_private_needs_signature(emu: EmulatorProcess, photos: Path) -> None:
    result = cloudinary.uploader.upload(str(photos / "coffee.jpg"), public_id="pv", type="private")
    assert fetch_image(result["url"])[1].size == (600, 400)
    assert requests.get(result["url"].split("/s--")[0] + "/pv.jpg", timeout=10).status_code == 401


@pytest.mark.parametrize(("public_id", "options", "to_sign"), [
    ("a/b", {"width": 100, "height": 100, "crop": "fill", "format": "jpg"}, "c_fill,h_100,w_100/a/b.jpg"),
    ("a b", {"format": "png"}, "a%20b.png"),
    ("x", {}, "x"),
])
def test_url_signature_matches_the_sdk(public_id: str, options: dict[str, object], to_sign: str) -> None:
    url = cloudinary.utils.cloudinary_url(public_id, sign_url=True, api_secret="s3cret",
                                          cloud_name="c", secure=False, **options)[0]
    assert f"/s--{url_signature(to_sign, 's3cret')}--/" in url


def test_explicit_errors(emu: EmulatorProcess, photos: Path) -> None:
    with pytest.raises(NotFound):
        cloudinary.uploader.explicit("nothing", type="upload", eager=[{"width": 10}])
    cloudinary.uploader.upload(str(photos / "coffee.jpg"), public_id="e1")
    with pytest.raises(BadRequest, match="Invalid"):
        cloudinary.uploader.explicit("e1", type="upload", eager="e_sepia,w_10")
