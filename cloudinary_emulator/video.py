"""Videos (and audio, which Cloudinary files under ``video`` too), decoded with PyAV.

PyAV's wheels carry the FFmpeg libraries, so nothing is installed or downloaded at run time.
``probe`` reads what Cloudinary answers about an uploaded video (duration, size, frame rate,
bit rate, codecs); ``frame_at`` takes the still behind ``so_<seconds>``/``so_auto`` delivery
URLs (``.../video/upload/so_2,w_300/<id>.jpg``); ``transcode`` makes the scaled or trimmed
derived videos (``.../video/upload/w_320/<id>.mp4``).
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any

import av
from PIL import Image

from cloudinary_emulator.analysis import ImageInfo

# Output encoders per container, from those PyAV's wheels ship.
ENCODERS = {"mp4": ("mp4", "libx264", "aac"), "mov": ("mov", "libx264", "aac"),
            "webm": ("webm", "libvpx-vp9", "libopus")}
VIDEO_CONTENT_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm",
                       "mkv": "video/x-matroska", "avi": "video/x-msvideo", "m4a": "audio/mp4",
                       "mp3": "audio/mpeg", "wav": "audio/wav", "ogg": "audio/ogg",
                       "flac": "audio/flac", "3gp": "video/3gpp"}
MP4_FAMILY = ("mp4", "mov", "m4a", "3gp", "3g2")


class InvalidVideo(ValueError):
    """The bytes are not a video or audio file FFmpeg can decode."""


def probe(data: bytes, filename: str | None) -> ImageInfo:
    """Decode enough of ``data`` to be sure it plays, and read what Cloudinary answers with."""
    try:
        with av.open(io.BytesIO(data)) as container:
            return _describe(container, data, filename)
    except (av.error.FFmpegError, ValueError, IndexError, StopIteration) as exc:
        raise InvalidVideo("Invalid video file") from exc


def _describe(container: Any, data: bytes, filename: str | None) -> ImageInfo:
    videos, audios = container.streams.video, container.streams.audio
    if not videos and not audios:
        raise InvalidVideo("no audio or video stream")
    stream = videos[0] if videos else audios[0]
    # One decoded frame proves the stream is not just a plausible header.
    next(container.decode(stream))
    duration = (container.duration / av.time_base) if container.duration else (
        float(stream.duration * stream.time_base) if stream.duration else 0.0)
    info = ImageInfo(width=0, height=0, format=container_format(container, filename, videos),
                     bytes=len(data), etag=hashlib.md5(data).hexdigest())
    info.duration = round(duration, 3)
    info.bit_rate = int(container.bit_rate or 0)
    info.is_audio = not videos
    if videos:
        video = videos[0]
        ctx = video.codec_context
        info.width, info.height = ctx.width, ctx.height
        rate = video.average_rate or video.guessed_rate
        info.frame_rate = round(float(rate), 3) if rate else 0.0
        info.nb_frames = video.frames or round(info.duration * info.frame_rate)
        info.video = {k: v for k, v in {
            "pix_format": ctx.pix_fmt, "codec": ctx.name,
            "level": ctx.level if (ctx.level or 0) > 0 else None,
            "profile": ctx.profile, "bit_rate": str(video.bit_rate) if video.bit_rate else None,
            "time_base": f"{video.time_base.numerator}/{video.time_base.denominator}",
        }.items() if v is not None}
    if audios:
        audio = audios[0]
        info.audio = {k: v for k, v in {
            "codec": audio.codec_context.name,
            "bit_rate": str(audio.bit_rate) if audio.bit_rate else None,
            "frequency": audio.sample_rate, "channels": audio.channels,
            "channel_layout": audio.layout.name,
        }.items() if v is not None}
    return info


def container_format(container: Any, filename: str | None, videos: Any) -> str:
    """Cloudinary's format name: the file's extension where FFmpeg names a family of them."""
    names = container.format.name.split(",")
    ext = PurePosixPath(filename).suffix.lstrip(".").lower() if filename else ""
    if ext and ext in names:
        return ext
    if names[0] == "mov":
        brand = (container.metadata or {}).get("major_brand", "").strip()
        return "mov" if brand == "qt" else "mp4"
    if "webm" in names:
        codec = videos[0].codec_context.name if videos else ""
        return "webm" if codec in ("vp8", "vp9", "av1") or not videos else "mkv"
    return names[0]


def frame_at(path: Path, offset: float | str | None) -> Image.Image:
    """The frame shown at ``offset`` seconds (``"auto"``/None: the middle), as an RGB image."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        duration = (container.duration / av.time_base) if container.duration else 0.0
        if offset in (None, "auto"):
            target = duration / 2
        elif isinstance(offset, str) and offset.endswith("p"):
            target = duration * float(offset[:-1]) / 100
        else:
            target = min(float(offset), max(duration - 0.001, 0.0))
        container.seek(int(target * av.time_base))  # to the keyframe at or before target
        chosen = None
        for frame in container.decode(stream):
            if chosen is not None and frame.time is not None and frame.time > target + 1e-6:
                break
            chosen = frame
        if chosen is None:
            raise InvalidVideo("no frame")
        return chosen.to_image()


def transcode(path: Path, fmt: str, width: int | None, height: int | None,
              start: float | None, end: float | None) -> bytes:
    """A derived video: scaled to ``width``x``height`` and/or cut to [start, end), in ``fmt``."""
    container_name, video_codec, audio_codec = ENCODERS[fmt]
    fd, out_name = tempfile.mkstemp(suffix="." + fmt)
    os.close(fd)
    try:
        with av.open(str(path)) as source, av.open(out_name, "w", format=container_name) as out:
            video_in = source.streams.video[0]
            rate = video_in.average_rate or video_in.guessed_rate or Fraction(25)
            video_out = out.add_stream(video_codec, rate=rate)
            w = width or video_in.codec_context.width
            h = height or video_in.codec_context.height
            video_out.width, video_out.height = w - w % 2, h - h % 2  # yuv420p wants even sizes
            video_out.pix_fmt = "yuv420p"
            if start:
                source.seek(int(start * av.time_base))
            count = 0
            for frame in source.decode(video_in):
                if frame.time is None or (start and frame.time < start):
                    continue
                if end is not None and frame.time >= end:
                    break
                scaled = frame.reformat(width=video_out.width, height=video_out.height,
                                        format="yuv420p")
                scaled.pts = count
                scaled.time_base = Fraction(1) / Fraction(rate)
                count += 1
                for packet in video_out.encode(scaled):
                    out.mux(packet)
            for packet in video_out.encode(None):
                out.mux(packet)
        return Path(out_name).read_bytes()
    finally:
        Path(out_name).unlink(missing_ok=True)
