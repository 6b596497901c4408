"""Behaviours a client relies on, checked the same way against the emulator and (with
CLOUDINARY_PARITY_URL) a real account: issue 11's items, through the official SDK."""
from __future__ import annotations

import io
import time
from pathlib import Path

import cloudinary
import cloudinary.api
import cloudinary.uploader
import cloudinary.utils
import pytest
import requests
from cloudinary.exceptions import BadRequest, NotFound
from PIL import Image, ImageChops

from tests.cloudinary_emulator.parity.conftest import Cloud

PHOTOS = Path(__file__).resolve().parents[2] / "fixtures" / "photos"
SMALL = str(PHOTOS / "astronaut-small.jpg")


def fetch(url: str, **headers: str) -> requests.Response:
    response = requests.get(url, headers=headers, timeout=30)
    assert response.status_code == 200, (url, response.status_code, response.text[:200])
    return response


def image_of(response: requests.Response) -> Image.Image:
    return Image.open(io.BytesIO(response.content))


def test_upload_applies_transformation_format_and_context(cloud: Cloud) -> None:
    pid = cloud.made_asset(cloud.pid("t1"))
    result = cloudinary.uploader.upload(SMALL, public_id=pid, width=100, crop="scale",
                                        format="png", context={"alt": "a=b|c", "caption": "x"})
    assert (result["width"], result["format"]) == (100, "png")
    assert result["context"] == {"custom": {"alt": "a=b|c", "caption": "x"}}
    assert result["api_key"] == cloudinary.config().api_key
    analysed = cloudinary.uploader.upload(str(PHOTOS / "astronaut.jpg"), public_id=cloud.made_asset(
        cloud.pid("t2")), colors=True, image_metadata=True)
    assert isinstance(analysed["grayscale"], bool) and isinstance(analysed["semi_transparent"], bool)
    assert 0 <= analysed["illustration_score"] <= 1
    assert analysed["image_metadata"]["JFIFVersion"] == "1.01"
    stored = fetch(result["secure_url"])
    assert stored.headers["Content-Type"] == "image/png" and image_of(stored).width == 100
    resource = cloudinary.api.resource(pid)
    assert resource["context"] == result["context"] and resource["bytes"] == len(stored.content)
    listed = cloudinary.api.resources(type="upload", prefix=pid, context=True)["resources"]
    assert [r["context"] for r in listed] == [result["context"]]


def test_async_upload_answers_pending_then_exists(cloud: Cloud) -> None:
    pid = cloud.made_asset(cloud.pid("async"))
    answer = cloudinary.uploader.upload(SMALL, public_id=pid, **{"async": True})
    assert answer["status"] == "pending" and answer["batch_id"]
    deadline = time.monotonic() + 60
    while True:
        try:
            assert cloudinary.api.resource(pid)["public_id"] == pid
            return
        except NotFound:
            assert time.monotonic() < deadline, "the async upload never appeared"
            time.sleep(0.2)


def test_listing_is_newest_first_and_direction_reverses(cloud: Cloud) -> None:
    ids = [cloud.made_asset(cloud.pid(f"l{i}")) for i in range(3)]
    for pid in ids:
        cloudinary.uploader.upload(SMALL, public_id=pid, tags=[cloud.run])
        time.sleep(1.1)  # distinct created_at seconds: the order is then not a tie-break
    newest = [r["public_id"] for r in cloudinary.api.resources_by_tag(cloud.run)["resources"]]
    oldest = [r["public_id"] for r in cloudinary.api.resources_by_tag(
        cloud.run, direction="asc")["resources"]]
    assert newest == ids[::-1] and oldest == ids
    by_prefix = cloudinary.api.resources(type="upload", prefix=cloud.run + "/", max_results=2)
    assert [r["public_id"] for r in by_prefix["resources"]] == ids[:2] and by_prefix["next_cursor"]


@pytest.mark.parametrize("resource_type", ["image", "auto", None])
def test_upload_large_in_chunks(cloud: Cloud, tmp_path: Path, resource_type: str | None) -> None:
    # Cloudinary wants chunks of at least 5 MB; the emulator takes any size, so it is tested
    # with small ones here and the real service with a file just over one chunk.
    chunk = 4_000 if cloud.is_emulator else 5_242_880
    path = tmp_path / "big.png"
    side = 64 if cloud.is_emulator else 1400
    noise = Image.effect_noise((side, side), 64).convert("RGB")
    noise.save(path, "PNG")
    assert path.stat().st_size > chunk
    options = {"resource_type": resource_type} if resource_type else {}
    result = cloudinary.uploader.upload_large(str(path), chunk_size=chunk, tags=[cloud.run],
                                              **options)
    expected_type = resource_type if resource_type in ("image", None) else "image"
    expected_type = expected_type or "raw"  # the SDK posts to raw/upload by default
    cloud.made_asset(result["public_id"], resource_type=expected_type)
    assert result["resource_type"] == expected_type
    assert result["bytes"] == path.stat().st_size
    if expected_type == "image":
        assert (result["width"], result["height"], result["format"]) == (side, side, "png")
    else:
        assert result["public_id"].endswith(".png") and "width" not in result
    assert fetch(result["secure_url"]).content == path.read_bytes()


def test_admin_tags_rename_and_deletion(cloud: Cloud) -> None:
    a, b = cloud.made_asset(cloud.pid("a")), cloud.made_asset(cloud.pid("b"))
    for pid in (a, b):
        cloudinary.uploader.upload(SMALL, public_id=pid, tags=[cloud.run])
    extra = cloud.run + "x"
    assert cloudinary.uploader.add_tag(extra, [a, b])["public_ids"] == [a, b]
    assert cloudinary.api.resource(a)["tags"] == [cloud.run, extra]
    cloudinary.uploader.remove_tag(extra, [a])
    assert cloudinary.api.resource(a)["tags"] == [cloud.run]
    cloudinary.uploader.replace_tag(extra, [b])
    assert cloudinary.api.resource(b)["tags"] == [extra]
    renamed = cloud.made_asset(cloud.pid("renamed"))
    assert cloudinary.uploader.rename(a, renamed)["public_id"] == renamed
    with pytest.raises(NotFound):
        cloudinary.api.resource(a)
    gone = cloudinary.api.delete_resources_by_tag(extra)
    assert gone["deleted"] == {b: "deleted"}
    gone = cloudinary.api.delete_resources_by_prefix(cloud.run + "/")
    assert gone["deleted"] == {renamed: "deleted"} and gone["partial"] is False


def test_derived_are_listed_and_counted(cloud: Cloud) -> None:
    pid = cloud.made_asset(cloud.pid("d"))
    cloudinary.uploader.upload(SMALL, public_id=pid)
    eager = cloudinary.uploader.explicit(pid, type="upload",
                                         eager=[{"width": 50, "crop": "scale"}])["eager"]
    assert eager[0]["width"] == 50
    derived = cloudinary.api.resource(pid)["derived"]
    assert [d["transformation"] for d in derived] == ["c_scale,w_50"]
    assert derived[0]["format"] == "jpg" and derived[0]["bytes"] > 0
    counts = cloudinary.api.delete_resources([pid])["deleted_counts"]
    assert counts == {pid: {"original": 1, "derived": 1}}


def test_unsigned_upload_needs_an_unsigned_preset(cloud: Cloud) -> None:
    with pytest.raises(BadRequest, match="Upload preset must be specified when using unsigned upload"):
        cloudinary.uploader.upload(SMALL, unsigned=True)
    name = cloud.run + "_preset"
    created = cloudinary.api.create_upload_preset(name=name, unsigned=True, folder=cloud.run,
                                                  tags=cloud.run)
    try:
        assert created["name"] == name
        assert cloudinary.api.upload_preset(name)["settings"]["folder"] == cloud.run
        result = cloudinary.uploader.unsigned_upload(SMALL, name, public_id="u1")
        cloud.made_asset(result["public_id"])
        assert result["public_id"] == f"{cloud.run}/u1" and result["tags"] == [cloud.run]
        with pytest.raises(BadRequest, match="not allowed when using unsigned upload"):
            cloudinary.uploader.unsigned_upload(SMALL, name, faces=True)
    finally:
        cloudinary.api.delete_upload_preset(name)
    with pytest.raises(NotFound):
        cloudinary.api.upload_preset(name)


def test_public_id_rules(cloud: Cloud) -> None:
    pid = cloud.made_asset(cloud.pid("slash"))
    assert cloudinary.uploader.upload(SMALL, public_id="/" + pid)["public_id"] == pid
    for bad in ("a?b", "a#b", "a%b", "a<b"):
        with pytest.raises(BadRequest):
            cloudinary.uploader.upload(SMALL, public_id=cloud.pid(bad))


def test_signed_url_of_an_authenticated_asset(cloud: Cloud) -> None:
    pid = cloud.made_asset(cloud.pid("auth"), type_="authenticated")
    cloudinary.uploader.upload(SMALL, public_id=pid, type="authenticated")
    url = cloudinary.utils.cloudinary_url(pid, type="authenticated", sign_url=True, format="jpg",
                                          width=40, crop="scale")[0]
    assert image_of(fetch(url)).width == 40
    unsigned = cloudinary.utils.cloudinary_url(pid, type="authenticated", format="jpg")[0]
    assert requests.get(unsigned, timeout=30).status_code in (401, 404)


def test_f_auto_follows_accept_and_common_effects_render(cloud: Cloud) -> None:
    pid = cloud.made_asset(cloud.pid("fx"))
    cloudinary.uploader.upload(SMALL, public_id=pid)

    def url(**options: object) -> str:
        return cloudinary.utils.cloudinary_url(pid, **options)[0]

    auto = url(fetch_format="auto", width=64, crop="scale")
    assert fetch(auto, Accept="image/avif,image/webp,*/*").headers["Content-Type"] == "image/avif"
    assert fetch(auto, Accept="image/webp,*/*").headers["Content-Type"] == "image/webp"
    assert fetch(auto, Accept="image/*").headers["Content-Type"] == "image/jpeg"
    grey = image_of(fetch(url(effect="grayscale", width=64, crop="scale", format="png"))).convert("RGB")
    red, green, blue = grey.split()
    assert ImageChops.difference(red, green).getbbox() is None
    assert ImageChops.difference(green, blue).getbbox() is None
    for effect in ("blur", "blur:300", "sharpen", "sharpen:50"):
        assert image_of(fetch(url(effect=effect, width=64, crop="scale", format="jpg"))).width == 64
    circle = image_of(fetch(url(radius="max", width=64, height=64, crop="fill", format="png")))
    assert circle.mode == "RGBA" and circle.getpixel((0, 0))[3] == 0 and circle.getpixel((32, 32))[3] == 255
    rounded_jpg = image_of(fetch(url(radius=20, width=64, height=64, crop="fill", format="jpg")))
    assert min(rounded_jpg.getpixel((0, 0))) > 240  # JPEG has no alpha: the corner is white
    turned = image_of(fetch(url(width=60, height=30, crop="fill", angle=90, format="png")))
    assert turned.size == (30, 60)
    faded = image_of(fetch(url(opacity=50, width=32, crop="scale", format="png")))
    assert 120 <= faded.getpixel((16, 16))[3] <= 135
    padded = image_of(fetch(url(width=80, height=40, crop="pad", background="red", format="png")))
    assert padded.convert("RGB").getpixel((0, 20)) == (255, 0, 0)
