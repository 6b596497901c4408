"""Real analysis of an uploaded photo: size, format, pHash, colours, faces and EXIF."""
from __future__ import annotations

import hashlib
import io
import logging
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import cv2
import imagehash
import numpy as np
import pillow_heif
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

# Phones upload HEIC/HEIF: Pillow reads them once pillow-heif registers its opener.
pillow_heif.register_heif_opener()

log = logging.getLogger(__name__)

# Cloudinary's format names for what Pillow detects.
FORMAT_NAMES = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp",
                "TIFF": "tiff", "ICO": "ico", "MPO": "jpg", "HEIF": "heic", "AVIF": "avif"}

# Reference colours of the "google" predominant palette (the names Cloudinary answers with).
GOOGLE_PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20), "gray": (128, 128, 128), "white": (240, 240, 240),
    "red": (200, 30, 30), "orange": (240, 140, 20), "yellow": (240, 220, 40),
    "green": (50, 160, 50), "teal": (0, 128, 128), "blue": (40, 80, 210),
    "purple": (120, 50, 160), "pink": (240, 140, 180), "brown": (120, 75, 35),
}

# Analysis reads one reduced copy, decoded once: faces, colours and pHash all come from it.
# 512 px keeps every fixture's faces and pHash exactly as at full size (checked for all six),
# and bounds the cost of a large photo: Haar face detection dominates and grows with the
# pixels it scans (bench/emulator_upload.py). JPEGs are decoded straight at
# a reduced scale (libjpeg's DCT scaling, 1/2 to 1/8): a 2 MP photo never exists at full size.
ANALYSIS_MAX_SIDE = 512
FACE_MAX_SIDE = ANALYSIS_MAX_SIDE
COLOR_MAX_SIDE = 128
#: Step between the face detector's scales (see ``detect_faces``).
FACE_SCALE_FACTOR = 1.2
MAX_COLORS = 32

# EXIF tags that are pointers or binary blobs, not values a client could read as text.
_SKIPPED_EXIF = {"ExifOffset", "GPSInfo", "MakerNote", "InteropOffset", "PrintImageMatching",
                 "UserComment", "ComponentsConfiguration"}


class InvalidImage(ValueError):
    """The bytes are not an image Pillow can decode."""


@dataclass
class ImageInfo:
    """Everything the emulator knows about one original image."""

    width: int
    height: int
    format: str
    bytes: int
    etag: str
    pages: int = 1
    phash: str = ""
    colors: list[list[Any]] = field(default_factory=list)
    predominant: dict[str, list[list[Any]]] = field(default_factory=dict)
    faces: list[list[int]] = field(default_factory=list)
    image_metadata: dict[str, str] = field(default_factory=dict)
    illustration_score: float = 0.0
    semi_transparent: bool = False
    grayscale: bool = False
    # Videos (and audio) only: what Cloudinary answers about them (see video.py).
    duration: float | None = None
    frame_rate: float | None = None
    bit_rate: int | None = None
    nb_frames: int | None = None
    is_audio: bool | None = None
    video: dict[str, Any] = field(default_factory=dict)
    audio: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageInfo:
        return cls(**data)


def open_image(data: bytes) -> Image.Image:
    """Open and fully decode ``data``; truncated or non-image bytes raise InvalidImage."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage("Invalid image file") from exc
    return image


def format_name(image: Image.Image) -> str:
    """Cloudinary's name for the image's format (``jpg``, ``png`` ...)."""
    return FORMAT_NAMES.get(image.format or "", (image.format or "jpg").lower())


def analyse(data: bytes) -> ImageInfo:
    """Decode ``data`` once and compute every figure Cloudinary can answer with."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            full_width, full_height = image.size
            if image.format == "JPEG":
                # Decoding at 1/2..1/8 scale still reads every block, so a truncated file fails.
                image.draft("RGB", (ANALYSIS_MAX_SIDE, ANALYSIS_MAX_SIDE))
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage("Invalid image file") from exc
    info = ImageInfo(
        width=full_width, height=full_height, format=format_name(image), bytes=len(data),
        etag=hashlib.md5(data).hexdigest(), pages=getattr(image, "n_frames", 1) or 1,
    )
    try:
        info.image_metadata = {**container_metadata(image), **exif_strings(image)}
    except Exception:  # noqa: BLE001 - a mangled EXIF block must not fail the upload
        log.warning("unreadable EXIF ignored", exc_info=True)
    info.semi_transparent = semi_transparent(image)
    decoded_scale = full_width / image.width
    # EXIF orientation is applied by Cloudinary before analysis, so faces match what is seen.
    rgb = ImageOps.exif_transpose(image).convert("RGB")
    work, scale = _reduced(rgb, ANALYSIS_MAX_SIDE)
    info.phash = str(imagehash.phash(work))
    info.colors = dominant_colors(work)
    info.grayscale, info.illustration_score = colour_character(work)
    info.predominant = {"google": predominant_palette(info.colors)}
    info.faces = detect_faces(work, scale * decoded_scale)
    return info


# Pillow's modes in the words of Cloudinary's image_metadata "Colorspace".
COLORSPACES = {"RGB": "RGB", "RGBA": "RGB", "L": "Gray", "LA": "Gray", "1": "Gray", "P": "RGB",
               "CMYK": "CMYK", "YCbCr": "YCbCr", "I;16": "Gray"}


def container_metadata(image: Image.Image) -> dict[str, str]:
    """The non-EXIF keys Cloudinary's ``image_metadata`` has: JFIFVersion, Colorspace, DPI."""
    out: dict[str, str] = {}
    jfif = image.info.get("jfif_version")
    if jfif:
        out["JFIFVersion"] = f"{jfif[0]}.{jfif[1]:02d}"
    out["Colorspace"] = COLORSPACES.get(image.mode, image.mode)
    dpi = image.info.get("dpi")
    if dpi and dpi[0]:
        out["DPI"] = str(round(float(dpi[0])))
    return out


def semi_transparent(image: Image.Image) -> bool:
    """True when some pixel is partly or wholly transparent."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = image.convert("RGBA").getchannel("A")
        return alpha.getextrema()[0] < 255
    return False


def colour_character(rgb: Image.Image) -> tuple[bool, float]:
    """``grayscale`` and an ``illustration_score`` (0 photo .. 1 illustration).

    Cloudinary's score comes from a trained model; this one is a stated heuristic: flat
    drawings use few distinct colours, photos many, on a 64 px copy.
    """
    small, _ = _reduced(rgb, 64)
    pixels = np.asarray(small, dtype=np.int16)
    grayscale = bool(np.abs(pixels[..., 0] - pixels[..., 1]).max() <= 2
                     and np.abs(pixels[..., 1] - pixels[..., 2]).max() <= 2)
    distinct = len(np.unique((pixels // 8).reshape(-1, 3), axis=0))
    share = distinct / max(1, min(pixels.shape[0] * pixels.shape[1], 4096))
    return grayscale, round(max(0.0, 1.0 - min(1.0, share * 4)), 2)


def exif_strings(image: Image.Image) -> dict[str, str]:
    """EXIF tags by name with string values (base IFD plus the Exif sub-IFD)."""
    exif = image.getexif()
    tags: dict[int, Any] = dict(exif.items())
    try:
        tags.update(exif.get_ifd(ExifTags.IFD.Exif))
    except (KeyError, ValueError, OSError):
        pass
    out: dict[str, str] = {}
    for tag_id, value in tags.items():
        name = ExifTags.TAGS.get(tag_id)
        if not name or name in _SKIPPED_EXIF:
            continue
        text = _exif_text(value)
        if text is not None:
            out[name] = text
    return out


def _exif_text(value: Any) -> str | None:
    if isinstance(value, bytes):
        try:
            text = value.decode("ascii").rstrip("\x00")
        except UnicodeDecodeError:
            return None
        return text if text.isprintable() else None
    if isinstance(value, dict):
        return None
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    return str(value).rstrip("\x00")


def _reduced(image: Image.Image, max_side: int) -> tuple[Image.Image, float]:
    scale = max(image.width, image.height) / max_side
    if scale <= 1:
        return image, 1.0
    size = (max(1, round(image.width / scale)), max(1, round(image.height / scale)))
    return image.resize(size, Image.Resampling.BILINEAR), scale


def dominant_colors(rgb: Image.Image) -> list[list[Any]]:
    """Up to 32 ``["#RRGGBB", percent]`` pairs, largest share first."""
    small, _ = _reduced(rgb, COLOR_MAX_SIDE)
    quantised = small.quantize(colors=MAX_COLORS, method=Image.Quantize.MEDIANCUT)
    palette = quantised.getpalette() or []
    counts = quantised.getcolors(MAX_COLORS) or []
    total = sum(c for c, _ in counts) or 1
    merged: dict[str, float] = {}
    for count, index in counts:
        r, g, b = palette[index * 3: index * 3 + 3]
        key = f"#{r:02X}{g:02X}{b:02X}"
        merged[key] = merged.get(key, 0.0) + count * 100.0 / total
    ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
    return [[hex_, round(pct, 1)] for hex_, pct in ranked if round(pct, 1) > 0][:MAX_COLORS]


def colour_name(hex_colour: str) -> str:
    """Nearest name of the google palette (weighted RGB distance, cheap and good enough)."""
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))

    def distance(ref: tuple[int, int, int]) -> float:
        # "Redmean" weighting approximates perceived difference without a colour-space library.
        mean_r = (r + ref[0]) / 2
        dr, dg, db = r - ref[0], g - ref[1], b - ref[2]
        return (2 + mean_r / 256) * dr * dr + 4 * dg * dg + (2 + (255 - mean_r) / 256) * db * db

    return min(GOOGLE_PALETTE, key=lambda name: distance(GOOGLE_PALETTE[name]))


def predominant_palette(colors: list[list[Any]]) -> list[list[Any]]:
    """Sum the colour shares by palette name: ``[[name, percent], ...]``, largest first."""
    shares: dict[str, float] = {}
    for hex_colour, pct in colors:
        name = colour_name(hex_colour)
        shares[name] = shares.get(name, 0.0) + pct
    ranked = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))
    return [[name, round(pct, 1)] for name, pct in ranked]


# Each request thread runs its own detection; OpenCV's own worker threads on top only fight
# them for the cores (measured: 0.3 MP analysis median 915 -> 576 ms on a loaded 2-core machine).
cv2.setNumThreads(1)
_cascades = threading.local()


def _face_cascade() -> cv2.CascadeClassifier:
    # One classifier per thread: OpenCV does not promise detectMultiScale is thread-safe.
    cascade = getattr(_cascades, "face", None)
    if cascade is None:
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if cascade.empty():
            raise RuntimeError("OpenCV's Haar cascade files are missing (opencv 4.x ships them)")
        _cascades.face = cascade
    return cascade


def detect_faces(rgb: Image.Image, scale_to_original: float = 1.0) -> list[list[int]]:
    """Frontal faces as ``[x, y, w, h]`` in the original's pixels (``rgb`` being the original
    shrunk by ``scale_to_original``), top-left first."""
    small, scale = _reduced(rgb, FACE_MAX_SIDE)
    scale *= scale_to_original
    grey = cv2.cvtColor(np.asarray(small), cv2.COLOR_RGB2GRAY)
    # scaleFactor 1.2 / minNeighbors 5 give exactly one face on astronaut.jpg and none on the
    # other fixtures (1.05 finds a false second face there). 1.2 scans half the pyramid levels
    # of 1.1: faces 71 -> 39 ms CPU per fixture photo, the box moving by 1-2 px
    # (bench/emulator_upload.py; tests/cloudinary_emulator/test_analysis.py checks the box).
    found = _face_cascade().detectMultiScale(grey, scaleFactor=FACE_SCALE_FACTOR, minNeighbors=5, minSize=(30, 30))
    faces = [[round(int(v) * scale) for v in box] for box in found]
    return sorted(faces, key=lambda f: (f[1], f[0]))
