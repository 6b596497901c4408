"""Parse and apply the subset of Cloudinary image transformations the emulator supports.

Supported: crop ``c_`` (scale, fit, limit, fill, thumb, pad, crop), ``w_``/``h_`` (pixels, or a
fraction of the original below 1), gravity ``g_`` (center, faces, face, auto, and the compass
points), format ``f_`` (jpg, png, webp, gif; ``auto`` keeps the original), quality ``q_``
(1-100 or auto), background ``b_`` (for pad: a colour name or ``rgb:RRGGBB``). Components are
chained with ``/`` in delivery URLs; ``eager`` joins several derived versions with ``|`` and may
end each with ``/<format>``.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Callable

from PIL import Image, ImageColor, ImageDraw, ImageFilter, ImageOps, features

CROPS = {"scale", "fit", "limit", "fill", "thumb", "pad", "crop", "lfill", "mfit"}
GRAVITIES = {"center", "faces", "face", "auto", "north", "south", "east", "west",
             "north_east", "north_west", "south_east", "south_west"}
OUTPUT_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}
if features.check("avif"):
    OUTPUT_FORMATS["avif"] = "AVIF"
CONTENT_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png",
                 "webp": "image/webp", "gif": "image/gif", "bmp": "image/bmp", "avif": "image/avif",
                 "heic": "image/heic", "heif": "image/heif",
                 "tiff": "image/tiff", "ico": "image/x-icon"}
# A transformation component: comma-separated ``key_value`` pairs with short lowercase keys.
COMPONENT_RE = re.compile(r"^[a-z]{1,3}_[^,/]+(,[a-z]{1,3}_[^,/]+)*$")
MAX_DIMENSION = 5000


class TransformationError(ValueError):
    """An unknown or invalid transformation; answered with 400."""


@dataclass
class Step:
    """One ``/``-separated component of a transformation."""

    crop: str | None = None
    width: float | None = None
    height: float | None = None
    gravity: str = "center"
    background: str | None = None
    # e_grayscale, e_blur[:strength], e_sharpen[:strength], in the order given.
    effects: list[tuple[str, int]] = field(default_factory=list)
    radius: int | str | None = None  # r_<pixels> or r_max
    angle: float | None = None  # a_<degrees>, clockwise
    opacity: int | None = None  # o_<0..100>

    @property
    def changes_pixels(self) -> bool:
        return any(v is not None for v in (self.width, self.height, self.radius, self.angle,
                                           self.opacity)) or bool(self.effects)


@dataclass
class Transformation:
    """A parsed transformation chain plus the output format and quality it asks for."""

    text: str
    steps: list[Step] = field(default_factory=list)
    format: str | None = None
    quality: int | None = None
    # f_auto: the format is chosen per request from the Accept header.
    auto_format: bool = False
    # Videos: so_ (seconds, "auto" or "<n>p" percent), eo_ and du_ (seconds).
    start_offset: float | str | None = None
    end_offset: float | None = None
    duration: float | None = None

    @property
    def trims(self) -> bool:
        return self.end_offset is not None or self.duration is not None


def _dimension(value: str, key: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise TransformationError(f"Invalid {key} in transformation: {value}") from None
    if not 0 < number <= MAX_DIMENSION:
        raise TransformationError(f"Invalid {key} in transformation: {value}")
    return number


def parse(text: str) -> Transformation:
    """Parse ``c_fill,g_faces,w_200/f_png`` style text, rejecting what is not supported."""
    result = Transformation(text=text)
    if not text:
        return result
    for component in text.split("/"):
        if not COMPONENT_RE.match(component):
            raise TransformationError(f"Invalid transformation component - {component}")
        step = Step()
        for pair in component.split(","):
            key, _, value = pair.partition("_")
            if key == "c":
                if value not in CROPS:
                    raise TransformationError(f"Invalid crop mode - {value}")
                step.crop = value
            elif key == "w":
                step.width = _dimension(value, "width")
            elif key == "h":
                step.height = _dimension(value, "height")
            elif key == "g":
                if value not in GRAVITIES:
                    raise TransformationError(f"Invalid gravity - {value}")
                step.gravity = value
            elif key == "f":
                if value != "auto" and value not in OUTPUT_FORMATS:
                    raise TransformationError(f"Invalid format - {value}")
                result.format = None if value == "auto" else normal_format(value)
                result.auto_format = value == "auto"
            elif key == "q":
                result.quality = _quality(value)
            elif key == "b":
                step.background = _background(value)
            elif key == "so":
                result.start_offset = _offset(value)
            elif key == "eo":
                result.end_offset = _bounded(value, "end offset", 0, 86400)
            elif key == "du":
                result.duration = _bounded(value, "duration", 0, 86400)
            elif key == "e":
                step.effects.append(_effect(value))
            elif key == "r":
                step.radius = "max" if value == "max" else int(_bounded(value, "radius", 0, 5000))
            elif key == "a":
                step.angle = _bounded(value, "angle", -360, 360)
            elif key == "o":
                step.opacity = int(_bounded(value, "opacity", 0, 100))
            else:
                raise TransformationError(f"Invalid transformation parameter - {key}")
        result.steps.append(step)
    return result


def normal_format(fmt: str) -> str:
    return "jpg" if fmt == "jpeg" else fmt


EFFECT_LIMITS = {"grayscale": None, "blur": (1, 2000, 100), "sharpen": (1, 2000, 100)}


def _effect(value: str) -> tuple[str, int]:
    name, _, strength = value.partition(":")
    if name not in EFFECT_LIMITS:
        raise TransformationError(f"Invalid effect - {value}")
    limits = EFFECT_LIMITS[name]
    if limits is None:
        if strength:
            raise TransformationError(f"Invalid effect - {value}")
        return name, 0
    low, high, default = limits
    return name, int(_bounded(strength, f"e_{name} strength", low, high)) if strength else default


def _offset(value: str) -> float | str:
    if value == "auto":
        return value
    if value.endswith("p"):
        _bounded(value[:-1], "start offset", 0, 100)
        return value
    return _bounded(value, "start offset", 0, 86400)


def _bounded(value: str, what: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise TransformationError(f"Invalid {what} - {value}") from None
    if not low <= number <= high:
        raise TransformationError(f"Invalid {what} - {value}")
    return number


def format_of(image: Image.Image) -> str:
    """Cloudinary's format name of a decoded image (``jpg``, ``png`` ...)."""
    return normal_format((image.format or "jpeg").lower())


def _quality(value: str) -> int | None:
    if value.startswith("auto"):
        return None
    if not value.isdigit() or not 1 <= int(value) <= 100:
        raise TransformationError(f"Invalid quality - {value}")
    return int(value)


def _background(value: str) -> str:
    colour = "#" + value[4:] if value.startswith("rgb:") else value
    try:
        ImageColor.getrgb(colour)
    except ValueError:
        raise TransformationError(f"Invalid background - {value}") from None
    return colour


def parse_eager(text: str, video_formats: frozenset[str] = frozenset()) -> list[tuple[str, Transformation]]:
    """Split the SDK's ``eager`` value (``c_fill,w_200|w_100/png``) into (text, parsed) pairs.
    ``video_formats``: the derived-video formats accepted besides the image ones.

    A trailing component without ``_`` is the format; the text kept is the whole entry, as
    Cloudinary echoes it in the answer's ``transformation`` field.
    """
    out = []
    for entry in text.split("|"):
        if not entry:
            continue
        parts = entry.split("/")
        fmt = None
        if parts and "_" not in parts[-1]:
            fmt = parts.pop().lower()
            if fmt and fmt not in OUTPUT_FORMATS and fmt not in video_formats:
                raise TransformationError(f"Invalid format - {fmt}")
        parsed = parse("/".join(parts))
        if fmt:
            parsed.format = normal_format(fmt)
        out.append((entry, parsed))
    if not out:
        raise TransformationError("Invalid eager transformation")
    return out


FaceFinder = Callable[[Image.Image], list[list[int]]]


def apply(image: Image.Image, transformation: Transformation, faces: FaceFinder) -> Image.Image:
    """Apply every step in order; ``faces`` is called only when a gravity needs it."""
    image = ImageOps.exif_transpose(image)
    for step in transformation.steps:
        image = _apply_step(image, step, faces)
    return image


def _target(image: Image.Image, step: Step) -> tuple[int | None, int | None]:
    def px(value: float | None, whole: int) -> int | None:
        if value is None:
            return None
        # Below 1 is a fraction of the original, as on Cloudinary (w_0.5).
        return max(1, round(value * whole)) if value < 1 else max(1, round(value))

    return px(step.width, image.width), px(step.height, image.height)


def _apply_step(image: Image.Image, step: Step, faces: FaceFinder) -> Image.Image:
    image = _resize_step(image, step, faces)
    for name, strength in step.effects:
        image = _apply_effect(image, name, strength)
    if step.radius is not None:
        image = _round_corners(image, step.radius)
    if step.angle:
        # Cloudinary turns clockwise; the corners uncovered take the background (else transparent).
        fill = ImageColor.getrgb(step.background) + (255,) if step.background else (0, 0, 0, 0)
        image = image.convert("RGBA").rotate(-step.angle, expand=True,
                                             resample=Image.Resampling.BICUBIC, fillcolor=fill)
    if step.opacity is not None and step.opacity < 100:
        image = image.convert("RGBA")
        alpha = image.getchannel("A").point(lambda a: a * step.opacity // 100)
        image.putalpha(alpha)
    return image


def _apply_effect(image: Image.Image, name: str, strength: int) -> Image.Image:
    if name == "grayscale":
        grey = ImageOps.grayscale(image)
        return Image.merge("RGBA", (grey,) * 3 + (image.getchannel("A"),)) \
            if "A" in image.getbands() else grey.convert("RGB")
    if name == "blur":
        return image.filter(ImageFilter.GaussianBlur(radius=strength / 20))
    return image.filter(ImageFilter.UnsharpMask(radius=2, percent=strength, threshold=0))


def _round_corners(image: Image.Image, radius: int | str) -> Image.Image:
    """r_<n>: corners rounded with radius n; r_max: an ellipse (a circle for a square)."""
    image = image.convert("RGBA")
    mask = Image.new("L", image.size, 0)
    draw = ImageDraw.Draw(mask)
    box = (0, 0, image.width - 1, image.height - 1)
    if radius == "max":
        draw.ellipse(box, fill=255)
    else:
        draw.rounded_rectangle(box, radius=int(radius), fill=255)
    alpha = Image.composite(image.getchannel("A"), mask, mask)
    image.putalpha(alpha)
    return image


def _resize_step(image: Image.Image, step: Step, faces: FaceFinder) -> Image.Image:
    width, height = _target(image, step)
    if width is None and height is None:
        return image
    crop = step.crop or "scale"
    if crop == "crop":
        w, h = min(width or image.width, image.width), min(height or image.height, image.height)
        cx, cy = _focus(image, step.gravity, faces)
        return image.crop(_window(image.width, image.height, w, h, cx, cy))
    if width is None or height is None:
        # One dimension given: every other mode keeps the aspect ratio.
        ratio = image.width / image.height
        w = width or max(1, round(height * ratio))  # type: ignore[operator]
        h = height or max(1, round(width / ratio))  # type: ignore[operator]
        if crop == "limit" and (w >= image.width or h >= image.height):
            return image
        if crop == "mfit" and (w <= image.width or h <= image.height):
            return image
        return _resize(image, w, h)
    if crop == "scale":
        return _resize(image, width, height)
    if crop in ("fit", "limit", "mfit"):
        factor = min(width / image.width, height / image.height)
        if crop == "limit" and factor >= 1:
            return image
        if crop == "mfit" and factor <= 1:
            return image
        return _resize(image, max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    if crop == "pad":
        factor = min(width / image.width, height / image.height)
        inner = _resize(image, max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        canvas = Image.new(inner.mode if inner.mode in ("RGB", "RGBA") else "RGB", (width, height),
                           ImageColor.getrgb(step.background or "white"))
        canvas.paste(inner, ((width - inner.width) // 2, (height - inner.height) // 2))
        return canvas
    # fill, lfill, thumb: cover the box, then cut the rest around the gravity's focus.
    factor = max(width / image.width, height / image.height)
    if crop == "lfill":
        factor = min(factor, 1.0)
    if crop == "thumb" and step.gravity in ("faces", "face", "auto"):
        # thumb zooms towards the faces: cut a box around them first, then scale it.
        box = _faces_box(image, faces)
        if box is not None:
            image = image.crop(_around(image, box, width / height))
            factor = max(width / image.width, height / image.height)
    scaled = _resize(image, max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    cx, cy = _focus(image, step.gravity, faces)
    cx, cy = cx * scaled.width / image.width, cy * scaled.height / image.height
    w, h = min(width, scaled.width), min(height, scaled.height)
    return scaled.crop(_window(scaled.width, scaled.height, w, h, cx, cy))


def _resize(image: Image.Image, w: int, h: int) -> Image.Image:
    if image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    return image.resize((w, h), Image.Resampling.LANCZOS)


def _faces_box(image: Image.Image, faces: FaceFinder) -> tuple[int, int, int, int] | None:
    found = faces(image)
    if not found:
        return None
    x0 = min(f[0] for f in found)
    y0 = min(f[1] for f in found)
    x1 = max(f[0] + f[2] for f in found)
    y1 = max(f[1] + f[3] for f in found)
    return x0, y0, x1, y1


def _around(image: Image.Image, box: tuple[int, int, int, int], aspect: float) -> tuple[int, int, int, int]:
    """A window of the given aspect around the faces with some margin, inside the image."""
    x0, y0, x1, y1 = box
    w, h = (x1 - x0) * 2, (y1 - y0) * 2
    if w / h < aspect:
        w = h * aspect
    else:
        h = w / aspect
    w, h = min(round(w), image.width), min(round(h), image.height)
    return _window(image.width, image.height, w, h, (x0 + x1) / 2, (y0 + y1) / 2)


def _focus(image: Image.Image, gravity: str, faces: FaceFinder) -> tuple[float, float]:
    w, h = image.width, image.height
    if gravity in ("faces", "face", "auto"):
        box = _faces_box(image, faces)
        if box is not None:
            return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        return w / 2, h / 2
    x = 0.0 if "west" in gravity else w if "east" in gravity else w / 2
    y = 0.0 if "north" in gravity else h if "south" in gravity else h / 2
    return x, y


def _window(full_w: int, full_h: int, w: int, h: int, cx: float, cy: float) -> tuple[int, int, int, int]:
    left = min(max(round(cx - w / 2), 0), full_w - w)
    top = min(max(round(cy - h / 2), 0), full_h - h)
    return left, top, left + w, top + h


def encode(image: Image.Image, fmt: str, quality: int | None) -> bytes:
    """Encode for delivery; JPEG has no alpha, GIF wants a palette."""
    pil_format = OUTPUT_FORMATS.get(fmt)
    if pil_format is None:
        raise TransformationError(f"Unsupported delivery format - {fmt}")
    if pil_format == "JPEG" and image.mode not in ("RGB", "L"):
        # No alpha in JPEG: transparent parts (rounded corners, opacity) become white, as on Cloudinary.
        image = image.convert("RGBA")
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    elif pil_format in ("PNG", "WEBP", "AVIF") and image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        image = image.convert("RGBA")
    buffer = io.BytesIO()
    options: dict[str, object] = {}
    if pil_format in ("JPEG", "WEBP", "AVIF"):
        options["quality"] = quality or 85
    image.save(buffer, pil_format, **options)
    return buffer.getvalue()
