"""Images made safe to send: the type read from the bytes, the size checked before decoding, upright, downscaled,
re-encoded from the pixels alone (no EXIF, GPS, XMP, IPTC, ICC profile, comment or text chunk survives)."""

from __future__ import annotations

import base64
import io
import math
from typing import Literal

from PIL import ExifTags, Image, ImageCms

from services.attachments.parts import ImagePart, Limits
from services.errors import AttachmentError

__all__ = ["IMAGE_KINDS", "JPEG_QUALITY", "THUMBNAIL_SIDE", "read_image", "sniff_image"]

# What the bytes start with, for each kind accepted. Pillow is then told to try that one plugin only, so that a
# file is never decoded by a plugin its name or its first bytes did not choose.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
IMAGE_KINDS = ("PNG", "JPEG", "WEBP", "GIF")
JPEG_QUALITY = 85
THUMBNAIL_SIDE = 128
THUMBNAIL_QUALITY = 60
# A PNG or GIF under this many bytes a pixel was drawn (a screenshot, a chart): it stays lossless, as a PNG. Above
# it, it is a photograph saved losslessly, and a JPEG is a tenth of the size.
_DRAWN_BYTES_PER_PIXEL = 1.0
# A lossless result past this many bytes goes as a JPEG instead: a data URL is a third larger again, and
# providers cap a request's size.
_MAX_PNG_BYTES = 3_000_000
# EXIF orientation -> the transposition that makes the image upright (as PIL.ImageOps.exif_transpose does).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SRGB = ImageCms.createProfile("sRGB")


def sniff_image(head: bytes) -> str | None:
    """The accepted image kind the first bytes announce ("PNG", "JPEG", "WEBP", "GIF"), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((kind for signature, kind in _SIGNATURES if head.startswith(signature)), None)


def read_image(data: bytes, *, name: str, kind: str, limits: Limits) -> ImagePart:
    """The image in `data` (of `kind`, from `sniff_image`) made safe; raises `AttachmentError` with a sentence."""
    try:
        return _read(data, name=name, kind=kind, limits=limits)
    except AttachmentError:
        raise
    except (Image.DecompressionBombError, MemoryError):
        raise _too_large(name, limits) from None
    except Exception:
        # Pillow reports damaged or hostile data with many types (OSError, ValueError, SyntaxError, EOFError,
        # struct.error, ...): every one of them means the same to the visitor.
        raise AttachmentError(
            name, f"{name} could not be read as an image; it may be damaged: save it again as PNG or JPEG."
        ) from None


def _read(data: bytes, *, name: str, kind: str, limits: Limits) -> ImagePart:
    with Image.open(io.BytesIO(data), formats=[kind]) as opened:
        # `open` has read the header only: the size is known before a single pixel is decoded.
        width, height = opened.size
        if width * height > limits.max_image_pixels:
            raise _too_large(name, limits, width=width, height=height)
        if kind == "JPEG" and max(width, height) > limits.max_image_side:
            # libjpeg decodes at 1/2, 1/4 or 1/8 scale for a fraction of the work; ask for no less than 3/4 of
            # the final size, so that what is left is at most one more light step.
            scale = max(1, math.floor(max(width, height) / (0.75 * limits.max_image_side)))
            opened.draft("RGB", (max(1, width // scale), max(1, height // scale)))
        opened.load()
        lossless = kind in {"PNG", "GIF"} and len(data) < _DRAWN_BYTES_PER_PIXEL * width * height
        orientation = _orientation(opened)
        icc = opened.info.get("icc_profile")
        image = _fit(_normal_mode(opened), limits.max_image_side)
    image = _upright(_flatten(_to_srgb(image, icc)), orientation)
    # Only the pixels go on: every metadata key the encoders read from `info` (comment, icc_profile, exif, xmp,
    # transparency, dpi, text chunks) is dropped, and no `exif=` or `icc_profile=` is passed below.
    image.info = {}
    media_type, encoded = _encode(image, lossless=lossless)
    return ImagePart(
        name=name,
        media_type=media_type,
        data_url=_data_url(media_type, encoded),
        width=image.width,
        height=image.height,
        thumbnail=_thumbnail(image),
    )


def _too_large(name: str, limits: Limits, *, width: int = 0, height: int = 0) -> AttachmentError:
    what = f"{width:,} x {height:,} pixels" if width else "too large an image"
    return AttachmentError(
        name,
        f"{name} is {what}: images of at most {limits.max_image_pixels / 1_000_000:g} megapixels are accepted; "
        "make it smaller and attach it again.",
    )


def _orientation(image: Image.Image) -> int:
    """The EXIF (or XMP) orientation, 1 (upright) when absent or unreadable."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and value in _UPRIGHT else 1


def _normal_mode(image: Image.Image) -> Image.Image:
    """The image as RGB, RGBA, L (grey) or CMYK (converted through its profile later)."""
    mode = image.mode
    if mode in {"RGB", "L", "CMYK"} and "transparency" not in image.info:
        return image
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        # Sixteen bits a sample: scaled down to eight, where a plain conversion would clip all but the darkest.
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if mode == "1":
        return image.convert("L")
    return image.convert("RGBA" if image.has_transparency_data else "RGB")


def _fit(image: Image.Image, max_side: int) -> Image.Image:
    """At most `max_side` on the long side, and at least three quarters of it when the image was larger: an
    integer box reduction when one lands in that range (fast, and as sharp), else a bicubic resize."""
    long_side = max(image.size)
    if long_side <= max_side:
        return image
    factor = math.ceil(long_side / max_side)
    if long_side / factor >= 0.75 * max_side:
        return image.reduce(factor)
    ratio = max_side / long_side
    size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
    return image.resize(size, Image.Resampling.BICUBIC)


def _to_srgb(image: Image.Image, icc: object) -> Image.Image:
    """Colours as sRGB: an embedded profile (Display P3 from a phone, Adobe RGB, a CMYK press profile) is applied
    here, because the profile itself is not sent on. A profile that cannot be read is ignored."""
    if isinstance(icc, bytes) and icc and image.mode in {"RGB", "RGBA", "CMYK"}:
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if image.mode == "CMYK" or "sRGB" not in ImageCms.getProfileDescription(profile):
                output: Literal["RGB", "RGBA"] = "RGBA" if image.mode == "RGBA" else "RGB"
                converted = ImageCms.profileToProfile(image, profile, _SRGB, outputMode=output)
                if converted is not None:
                    return converted
        except Exception:
            pass
    return image.convert("RGB") if image.mode == "CMYK" else image


def _flatten(image: Image.Image) -> Image.Image:
    """Transparency laid on white. Sent as is, transparent areas become whatever colour the hidden pixels hold
    (often black) in the many vision pipelines that drop the alpha channel; white is what a light page shows."""
    if image.mode != "RGBA":
        return image
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image).convert("RGB")


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    method = _UPRIGHT.get(orientation)
    return image if method is None else image.transpose(method)


def _encode(image: Image.Image, *, lossless: bool) -> tuple[Literal["image/jpeg", "image/png"], bytes]:
    if lossless:
        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=6)
        if buffer.tell() <= _MAX_PNG_BYTES:
            return "image/png", buffer.getvalue()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return "image/jpeg", buffer.getvalue()


def _thumbnail(image: Image.Image) -> str:
    """A WebP of at most THUMBNAIL_SIDE px a side: a few KB, for saved chats kept in the browser."""
    small = image.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BICUBIC)
    if small.mode != "RGB":
        small = small.convert("RGB")
    buffer = io.BytesIO()
    small.save(buffer, "WEBP", quality=THUMBNAIL_QUALITY)
    return _data_url("image/webp", buffer.getvalue())


def _data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
