"""What an upload is: an image (analysed), a video or audio (probed), or a raw file; ``auto``
decides in that order, as Cloudinary does."""
from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import PurePosixPath
from typing import Callable

from PIL import Image, UnidentifiedImageError

from cloudinary_emulator import video
from cloudinary_emulator.analysis import ImageInfo, InvalidImage, analyse
from cloudinary_emulator.errors import CloudinaryError

ImageStep = Callable[[bytes], bytes]


def identify(resource_type: str, data: bytes, filename: str | None, prepare_image: ImageStep,
             max_megapixels: float) -> tuple[str, ImageInfo, bytes]:
    """``(resource_type, info, bytes to store)``; ``prepare_image`` applies incoming transformations."""
    if resource_type in ("image", "auto"):
        try:
            check_resolution(data, max_megapixels)
            data = prepare_image(data)
            return "image", analyse(data), data
        except InvalidImage:
            if resource_type == "image":
                raise CloudinaryError(400, "Invalid image file") from None
    if resource_type in ("video", "auto"):
        try:
            return "video", video.probe(data, filename), data
        except video.InvalidVideo:
            if resource_type == "video":
                raise CloudinaryError(400, "Invalid video file") from None
    return "raw", raw_info(data, filename), data


def check_resolution(data: bytes, max_megapixels: float) -> None:
    """Refuse images above the account's megapixel limit before decoding their pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                pixels = image.width * image.height
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return  # not an image (or a broken one): the decoder's own error decides
    limit = int(max_megapixels * 1_000_000)
    if pixels > limit:
        raise CloudinaryError(400, f"Resolution too large. Got {pixels} pixels. Maximum is {limit}.")


def raw_info(data: bytes, filename: str | None) -> ImageInfo:
    """A raw file: bytes and etag only (its format is the extension of its public_id)."""
    ext = PurePosixPath(filename).suffix.lstrip(".").lower() if filename else ""
    return ImageInfo(width=0, height=0, format=ext, bytes=len(data),
                     etag=hashlib.md5(data).hexdigest())
