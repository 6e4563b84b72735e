"""Regenerate ``sample.jpg``: a small photo-like landscape (1600x1067) drawn with Pillow.

The examples and ``make demo`` resize this image; it is generated rather than photographed so that the
repository carries no third-party picture. It has an EXIF orientation tag (1 = upright), as camera
files do. Run: ``python examples/images/make_sample.py`` (deterministic output).
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 1600, 1067
HERE = Path(__file__).resolve().parent


def sky() -> Image.Image:
    top, horizon = (40, 90, 170), (250, 190, 140)
    image = Image.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(image)
    for y in range(HEIGHT):
        t = min(1.0, y / (HEIGHT * 0.62))
        draw.line(
            [(0, y), (WIDTH, y)],
            fill=tuple(round(a + (b - a) * t) for a, b in zip(top, horizon, strict=True)),
        )
    return image


def ridge(base: float, amplitude: float, waves: tuple[float, ...], phase: float) -> list[tuple[float, float]]:
    points = [(0.0, float(HEIGHT))]
    for x in range(0, WIDTH + 8, 8):
        offset = sum(
            math.sin(x / WIDTH * math.tau * w + phase * (i + 1)) / (i + 1) for i, w in enumerate(waves)
        )
        points.append((float(x), base - amplitude * offset))
    points.append((float(WIDTH), float(HEIGHT)))
    return points


def landscape() -> Image.Image:
    image = sky()
    draw = ImageDraw.Draw(image)
    draw.ellipse((1120, 250, 1260, 390), fill=(255, 236, 180))  # the sun
    glow = image.filter(ImageFilter.GaussianBlur(24))
    image = Image.blend(image, glow, 0.35)
    draw = ImageDraw.Draw(image)
    draw.polygon(ridge(640, 90, (1.3, 2.7, 5.1), 0.4), fill=(118, 104, 150))
    draw.polygon(ridge(740, 70, (1.9, 3.3, 7.7), 1.7), fill=(74, 96, 92))
    draw.polygon(ridge(860, 45, (2.3, 4.9, 9.1), 2.9), fill=(44, 70, 52))
    draw.rectangle((0, 960, WIDTH, HEIGHT), fill=(36, 58, 66))  # a lake
    for i in range(40):  # reflections on the water
        y = 965 + i * 2.5
        x = 1190 + 60 * math.sin(i * 1.7)
        draw.line([(x - 90 + i, y), (x + 90 - i, y)], fill=(200, 170, 130), width=1)
    for x in (180, 240, 420, 470, 1380, 1450):  # a few fir trees
        draw.polygon([(x, 820), (x - 28, 930), (x + 28, 930)], fill=(22, 44, 30))
        draw.rectangle((x - 4, 930, x + 4, 950), fill=(50, 36, 26))
    return image.filter(ImageFilter.SMOOTH)


def main() -> None:
    exif = Image.Exif()
    exif[0x0112] = 1  # Orientation: upright
    exif[0x010F] = "Kondukt"  # Make
    exif[0x0131] = "examples/images/make_sample.py"  # Software
    landscape().save(HERE / "sample.jpg", "JPEG", quality=82, optimize=True, exif=exif.tobytes())


if __name__ == "__main__":
    main()
