"""Videos and HEIC photos through the SDK: upload, details, listing, frames, derived videos,
Range requests, notifications (issue 14's emulator side)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import av
import cloudinary
import cloudinary.api
import cloudinary.uploader
import cloudinary.utils
import pytest
import requests
from cloudinary.exceptions import BadRequest
from PIL import Image

from cloudinary_emulator.testing import EmulatorProcess, NotificationReceiver

MEDIA = Path(__file__).resolve().parent.parent / "fixtures" / "media"
CLIPS = {"clip.mp4": ("mp4", "h264", "aac"), "clip.mov": ("mov", "h264", "aac"),
         "clip.webm": ("webm", "vp9", "opus")}
# The fixture's top bar is red in second 0, green in second 1, blue in second 2.
BAR = {0: (255, 0, 0), 1: (0, 255, 0), 2: (0, 0, 255)}


def video_url(public_id: str, **options: object) -> str:
    return cloudinary.utils.cloudinary_url(public_id, resource_type="video", **options)[0]


def get(url: str, **headers: str) -> requests.Response:
    response = requests.get(url, headers=headers, timeout=30)
    assert response.status_code in (200, 206), (url, response.status_code, response.text[:200])
    return response


def bar_colour(image: Image.Image) -> tuple[int, int, int]:
    r, g, b = image.convert("RGB").resize((1, 1), box=(0, 0, image.width, 4)).getpixel((0, 0))
    return min(BAR.values(), key=lambda c: sum(abs(x - y) for x, y in zip(c, (r, g, b))))


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_video_upload_answers_what_cloudinary_does(emu: EmulatorProcess, name: str) -> None:
    fmt, video_codec, audio_codec = CLIPS[name]
    path = MEDIA / name
    result = cloudinary.uploader.upload(str(path), resource_type="video", public_id="v/" + fmt,
                                        tags=["clips"])
    assert result["resource_type"] == "video" and result["format"] == fmt
    assert (result["width"], result["height"]) == (160, 120)
    assert result["duration"] == pytest.approx(3.0, abs=0.05)
    assert result["frame_rate"] == 10 and result["bytes"] == path.stat().st_size
    assert isinstance(result["bit_rate"], int) and result["bit_rate"] > 0
    assert result["video"]["codec"] == video_codec and result["video"]["pix_format"] == "yuv420p"
    assert result["audio"] == {**result["audio"], "codec": audio_codec, "frequency": 48000,
                               "channels": 1, "channel_layout": "mono"}
    assert result["is_audio"] is False and result["nb_frames"] == 30
    assert result["url"].startswith(f"{emu.base_url}/demo/video/upload/v")
    assert "faces" not in result and "pages" not in result
    resource = cloudinary.api.resource("v/" + fmt, resource_type="video")
    for key in ("duration", "frame_rate", "bit_rate", "video", "audio", "width", "format"):
        assert resource[key] == result[key], key


def test_auto_upload_lists_and_destroys_videos(emu: EmulatorProcess, photos: Path,
                                               receiver: NotificationReceiver) -> None:
    video = cloudinary.uploader.upload(str(MEDIA / "clip.mp4"), resource_type="auto",
                                       public_id="a/clip", tags=["album"], faces=True,
                                       notification_url=receiver.url)
    assert video["resource_type"] == "video" and "faces" not in video
    cloudinary.uploader.upload(str(photos / "coffee.jpg"), resource_type="auto", public_id="a/photo",
                               tags=["album"])
    [(headers, body)] = receiver.wait_for(1)
    payload = json.loads(body)
    assert cloudinary.utils.verify_notification_signature(
        body, headers["X-Cld-Timestamp"], headers["X-Cld-Signature"])
    assert (payload["notification_type"], payload["resource_type"]) == ("upload", "video")
    assert payload["duration"] == video["duration"]
    listed = cloudinary.api.resources_by_tag("album", resource_type="video")["resources"]
    assert [r["public_id"] for r in listed] == ["a/clip"] and listed[0]["resource_type"] == "video"
    images = cloudinary.api.resources_by_tag("album")["resources"]
    assert [r["public_id"] for r in images] == ["a/photo"]
    assert cloudinary.uploader.destroy("a/clip", resource_type="video")["result"] == "ok"
    assert cloudinary.api.resources_by_tag("album", resource_type="video")["resources"] == []


def test_video_served_with_range_requests(emu: EmulatorProcess) -> None:
    data = (MEDIA / "clip.mp4").read_bytes()
    result = cloudinary.uploader.upload(str(MEDIA / "clip.mp4"), resource_type="video",
                                        public_id="r/clip", type="authenticated")
    whole = get(result["url"])
    assert whole.content == data and whole.headers["Content-Type"] == "video/mp4"
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = get(result["url"], Range="bytes=100-199")
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert requests.get(result["url"].split("/s--")[0] + "/r/clip.mp4", timeout=10).status_code == 401


def test_frames_of_a_video_as_images(emu: EmulatorProcess) -> None:
    cloudinary.uploader.upload(str(MEDIA / "clip.webm"), resource_type="video", public_id="f/clip")
    for offset, second in ((0.5, 0), (2.5, 2), ("auto", 1)):
        response = get(video_url("f/clip", start_offset=offset, width=80, crop="scale", format="jpg"))
        image = Image.open(io.BytesIO(response.content))
        assert response.headers["Content-Type"] == "image/jpeg" and image.size == (80, 60)
        assert bar_colour(image) == BAR[second], offset
    # Without so_, the middle frame; png and f_auto work as for images.
    middle = Image.open(io.BytesIO(get(video_url("f/clip", format="png")).content))
    assert middle.size == (160, 120) and bar_colour(middle) == BAR[1]
    auto = get(video_url("f/clip", fetch_format="auto", width=40, crop="scale", format="jpg"),
               Accept="image/webp,*/*")
    assert auto.headers["Content-Type"] == "image/webp"


def test_derived_videos_scaled_and_trimmed(emu: EmulatorProcess) -> None:
    cloudinary.uploader.upload(str(MEDIA / "clip.mp4"), resource_type="video", public_id="d/clip")
    scaled = get(video_url("d/clip", width=80, crop="scale", format="mp4"))
    with av.open(io.BytesIO(scaled.content)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (80, 60)
        assert container.duration / av.time_base == pytest.approx(3.0, abs=0.2)
    trimmed = get(video_url("d/clip", start_offset=1, duration=1, format="webm"))
    assert trimmed.headers["Content-Type"] == "video/webm"
    with av.open(io.BytesIO(trimmed.content)) as container:
        assert container.duration / av.time_base == pytest.approx(1.0, abs=0.2)
        first = next(container.decode(video=0)).to_image()
    assert bar_colour(first) == BAR[1]
    refused = requests.get(video_url("d/clip", width=80, height=80, crop="fill", format="mp4"), timeout=30)
    assert refused.status_code == 400 and "scaling" in refused.json()["error"]["message"]


def test_explicit_poster_for_a_video(emu: EmulatorProcess) -> None:
    cloudinary.uploader.upload(str(MEDIA / "clip.mov"), resource_type="video", public_id="p/clip")
    answer = cloudinary.uploader.explicit(
        "p/clip", type="upload", resource_type="video",
        eager=[{"start_offset": 2, "width": 64, "height": 64, "crop": "fill", "format": "jpg"}])
    [poster] = answer["eager"]
    assert (poster["width"], poster["height"], poster["format"]) == (64, 64, "jpg")
    assert "/video/upload/" in poster["url"] and poster["url"].endswith(".jpg")
    assert bar_colour(Image.open(io.BytesIO(get(poster["url"]).content))) == BAR[2]
    derived = cloudinary.api.resource("p/clip", resource_type="video")["derived"]
    assert [d["format"] for d in derived] == ["jpg"]


def test_explicit_eager_derived_video_and_poster_together(emu: EmulatorProcess, photos: Path) -> None:
    """What the pipeline asks for a video: a poster and a bounded MP4 in one ``explicit``."""
    cloudinary.uploader.upload(str(MEDIA / "clip.webm"), resource_type="video", public_id="e/clip")
    answer = cloudinary.uploader.explicit(
        "e/clip", type="upload", resource_type="video",
        eager=[{"start_offset": "auto", "width": 32, "height": 32, "crop": "fill", "format": "jpg"},
               {"crop": "limit", "width": 80, "height": 80, "format": "mp4"}])
    poster, preview = answer["eager"]
    assert (poster["format"], poster["width"], poster["height"]) == ("jpg", 32, 32)
    assert (preview["format"], preview["width"], preview["height"]) == ("mp4", 80, 60)
    with av.open(io.BytesIO(get(preview["url"]).content)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    # A photo has no video to derive: asked for an MP4, it is a 400, not a crash.
    cloudinary.uploader.upload(str(photos / "coffee.jpg"), public_id="e/photo")
    with pytest.raises(BadRequest):
        cloudinary.uploader.explicit("e/photo", type="upload", eager=[{"width": 80, "format": "mp4"}])


def test_not_a_video_is_400_and_auto_keeps_it_raw(emu: EmulatorProcess, tmp_path: Path) -> None:
    junk = tmp_path / "notes.mp4"
    junk.write_bytes(b"definitely not a video" * 50)
    with pytest.raises(BadRequest, match="Invalid video file"):
        cloudinary.uploader.upload(str(junk), resource_type="video")
    truncated = tmp_path / "half.mp4"
    truncated.write_bytes((MEDIA / "clip.mp4").read_bytes()[:3000])
    with pytest.raises(BadRequest, match="Invalid video file"):
        cloudinary.uploader.upload(str(truncated), resource_type="video")
    assert cloudinary.uploader.upload(str(junk), resource_type="auto")["resource_type"] == "raw"


def test_heic_is_analysed_like_jpeg_and_delivered_as_jpeg_or_webp(emu: EmulatorProcess, photos: Path) -> None:
    heic = cloudinary.uploader.upload(str(MEDIA / "astronaut.heic"), public_id="h/astro",
                                      faces=True, phash=True, colors=True)
    jpeg = cloudinary.uploader.upload(str(photos / "astronaut-small.jpg"), phash=True)
    assert (heic["format"], heic["width"], heic["height"]) == ("heic", 256, 256)
    assert heic["resource_type"] == "image" and len(heic["faces"]) == 1 and heic["colors"]
    differing_bits = bin(int(heic["phash"], 16) ^ int(jpeg["phash"], 16)).count("1")
    assert differing_bits <= 4  # the same picture, re-encoded
    assert get(heic["url"]).headers["Content-Type"] == "image/heic"
    as_jpeg = get(cloudinary.utils.cloudinary_url("h/astro", format="jpg")[0])
    assert as_jpeg.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(as_jpeg.content)).size == (256, 256)
    auto = cloudinary.utils.cloudinary_url("h/astro", fetch_format="auto", width=100, crop="scale")[0]
    assert get(auto, Accept="image/webp,*/*").headers["Content-Type"] == "image/webp"
    assert get(auto, Accept="image/*").headers["Content-Type"] == "image/jpeg"
    assert cloudinary.uploader.upload(str(MEDIA / "astronaut.heic"), resource_type="auto")[
        "resource_type"] == "image"


def test_upload_large_video_in_chunks(emu: EmulatorProcess) -> None:
    path = MEDIA / "clip.mp4"
    result = cloudinary.uploader.upload_large(str(path), resource_type="video", chunk_size=20_000,
                                              public_id="big/clip")
    assert result["public_id"] == "big/clip" and result["resource_type"] == "video"
    assert result["bytes"] == path.stat().st_size and result["duration"] == pytest.approx(3.0, abs=0.05)
    assert get(result["url"]).content == path.read_bytes()
