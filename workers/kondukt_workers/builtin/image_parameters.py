"""Validation of the image workers' input fields (formats, sizes, flags), without importing Pillow.

Workflow inputs arrive through expressions such as ``${workflow.input.recipeParameters.outputSize.width}``,
so numbers often come as strings (``"300"``) and a missing field arrives as ``null``. Each function here
accepts those forms and raises :class:`TerminalError` naming the field and the value for anything else:
a bad parameter must fail the task once, clearly, not be retried.

The dynamic-fork generator uses these checks too, so it rejects a bad recipe before fanning out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from kondukt_workers.results import TerminalError

#: The largest width or height the workers accept, in pixels.
MAX_DIMENSION: Final = 20_000


@dataclass(frozen=True)
class ImageFormat:
    """An output format: its canonical file extension, Pillow's name for it and its MIME type."""

    extension: str
    pillow_name: str
    content_type: str


_JPEG = ImageFormat("jpg", "JPEG", "image/jpeg")
_TIFF = ImageFormat("tiff", "TIFF", "image/tiff")

#: Accepted ``outputFormat`` values (case-insensitive, a leading dot allowed).
IMAGE_FORMATS: Final[dict[str, ImageFormat]] = {
    "jpg": _JPEG,
    "jpeg": _JPEG,
    "png": ImageFormat("png", "PNG", "image/png"),
    "webp": ImageFormat("webp", "WEBP", "image/webp"),
    "gif": ImageFormat("gif", "GIF", "image/gif"),
    "tiff": _TIFF,
    "tif": _TIFF,
    "bmp": ImageFormat("bmp", "BMP", "image/bmp"),
    "avif": ImageFormat("avif", "AVIF", "image/avif"),
}

#: Pillow's name of a source format → the output format that keeps it (when outputFormat is omitted).
FORMAT_BY_PILLOW_NAME: Final[dict[str, ImageFormat]] = {
    **{f.pillow_name: f for f in IMAGE_FORMATS.values()},
    "MPO": _JPEG,  # multi-picture JPEG, as written by many phone cameras
}


def normalise_format_name(value: object, field: str = "outputFormat") -> str:
    """``" .JPG "`` → ``"jpg"``; raises for anything that is not a known format name."""
    if not isinstance(value, str) or not value.strip():
        raise TerminalError(f"{field} must be one of {', '.join(IMAGE_FORMATS)}, not {value!r}")
    name = value.strip().lower().lstrip(".")
    if name not in IMAGE_FORMATS:
        raise TerminalError(
            f"{field}: unsupported image format {value!r} (supported: {', '.join(IMAGE_FORMATS)})"
        )
    return name


def parse_format(value: object, field: str = "outputFormat") -> ImageFormat:
    return IMAGE_FORMATS[normalise_format_name(value, field)]


def parse_dimension(value: object, field: str) -> int | None:
    """A width or height: a positive int, or a string / float holding one; None when absent."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number: float
    if isinstance(value, bool):
        raise TerminalError(f"{field} must be a number of pixels, not {value!r}")
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise TerminalError(f"{field} must be a number of pixels, not {value!r}") from None
    else:
        raise TerminalError(f"{field} must be a number of pixels, not {type(value).__name__} {value!r}")
    if number != number or not float(number).is_integer():
        raise TerminalError(f"{field} must be a whole number of pixels, not {value!r}")
    pixels = int(number)
    if pixels <= 0:
        raise TerminalError(f"{field} must be positive, not {value!r}")
    if pixels > MAX_DIMENSION:
        raise TerminalError(f"{field}={value!r} is larger than the maximum of {MAX_DIMENSION} pixels")
    return pixels


def parse_flag(value: object, field: str, default: bool) -> bool:
    """A boolean given as true/false, "true"/"false", "yes"/"no", 1/0; ``default`` when absent."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
    raise TerminalError(f"{field} must be true or false, not {value!r}")


def parse_quality(value: object, field: str = "quality") -> int | None:
    """An encoder quality between 1 and 100; None when absent."""
    if value is None:
        return None
    quality = parse_dimension(value, field)
    if quality is None or quality > 100:
        raise TerminalError(f"{field} must be between 1 and 100, not {value!r}")
    return quality


def require_location(value: object, field: str = "fileLocation") -> str:
    """A non-empty URI or path string."""
    if not isinstance(value, str) or not value.strip():
        raise TerminalError(
            f"{field} is required: the URI (s3://, https://, file://) of the source image, not {value!r}"
        )
    return value.strip()
