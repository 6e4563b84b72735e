"""``image_convert_resize`` on real image files: sizes, formats, aspect ratios, EXIF orientation, modes,
Pillow's fast paths, and everything it must refuse (non-images, truncated and corrupt files,
decompression bombs, bad parameters), with sources and outputs on local files, HTTP and S3 (moto)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, JpegImagePlugin

from kondukt_workers import TaskContext, TaskResult, execute, read_uri
from tests.workers.conftest import HttpFiles, encode, photo

CONTEXT = TaskContext(
    workflow_id="wf-img",
    task_id="t-img",
    task_ref="image_convert_resize_ref",
    task_name="image_convert_resize",
)
WriteImage = Callable[..., Path]


def convert(task_input: dict[str, Any], context: TaskContext = CONTEXT) -> TaskResult:
    return execute("image_convert_resize", task_input, context)


def completed_output(result: TaskResult) -> dict[str, Any]:
    assert result.status == "COMPLETED", result.reason_for_incompletion
    return dict(result.output_data)


def open_output(output: dict[str, Any]) -> Image.Image:
    image = Image.open(io.BytesIO(read_uri(output["fileLocation"])))
    image.load()
    return image


def terminal_reason(result: TaskResult) -> str:
    assert result.status == "FAILED_WITH_TERMINAL_ERROR", result
    return result.reason_for_incompletion or ""


# --------------------------------------------------------------------------------------------------
# Formats and sizes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "pillow_format", "extension", "content_type"),
    [
        ("jpg", "JPEG", "jpg", "image/jpeg"),
        ("JPEG", "JPEG", "jpg", "image/jpeg"),
        ("png", "PNG", "png", "image/png"),
        ("WebP", "WEBP", "webp", "image/webp"),
        ("gif", "GIF", "gif", "image/gif"),
        (".tiff", "TIFF", "tiff", "image/tiff"),
        ("bmp", "BMP", "bmp", "image/bmp"),
    ],
)
def test_converts_to_every_format(
    write_image: WriteImage,
    output_dir: Path,
    requested: str,
    pillow_format: str,
    extension: str,
    content_type: str,
) -> None:
    source = write_image("photo.png", 300, 200, "PNG")
    output = completed_output(
        convert(
            {
                "fileLocation": source.as_uri(),
                "outputFormat": requested,
                "outputWidth": 150,
                "outputHeight": 150,
            }
        )
    )
    image = open_output(output)
    assert image.format == pillow_format and image.size == (150, 100)
    assert output["format"] == extension and output["contentType"] == content_type
    assert output["fileLocation"] == (
        f"{output_dir.as_uri()}/wf-img/image_convert_resize_ref/iter0-retry0/photo_150x100.{extension}"
    )
    assert output["bytes"] == len(read_uri(output["fileLocation"]))
    assert (output["width"], output["height"]) == (150, 100)


@pytest.mark.parametrize(
    ("source_size", "parameters", "expected"),
    [
        pytest.param(
            (300, 200), {"outputWidth": 150, "outputHeight": 150}, (150, 100), id="landscape-fits-width"
        ),
        pytest.param(
            (200, 300), {"outputWidth": 150, "outputHeight": 150}, (100, 150), id="portrait-fits-height"
        ),
        pytest.param(
            (300, 200), {"outputWidth": 600, "outputHeight": 600}, (600, 400), id="scales-up-to-fit"
        ),
        pytest.param((300, 200), {"outputWidth": "90"}, (90, 60), id="width-only-as-string"),
        pytest.param((300, 200), {"outputHeight": 50.0}, (75, 50), id="height-only-as-float"),
        pytest.param(
            (300, 200),
            {"outputWidth": 100, "outputHeight": 100, "maintainAspectRatio": False},
            (100, 100),
            id="stretch-when-aspect-ratio-off",
        ),
        pytest.param(
            (300, 200),
            {"outputWidth": 120, "outputHeight": 30, "maintainAspectRatio": "false"},
            (120, 30),
            id="aspect-ratio-flag-as-string",
        ),
        pytest.param(
            (300, 200),
            {"outputWidth": 100, "outputHeight": 100, "maintainAspectRatio": None},
            (100, 67),
            id="null-flag-means-default",
        ),
        pytest.param((300, 200), {}, (300, 200), id="no-size-converts-only"),
    ],
)
def test_sizes_and_aspect_ratios(
    write_image: WriteImage,
    output_dir: Path,
    source_size: tuple[int, int],
    parameters: dict[str, Any],
    expected: tuple[int, int],
) -> None:
    source = write_image("photo.jpg", *source_size)
    output = completed_output(convert({"fileLocation": source.as_uri(), "outputFormat": "png", **parameters}))
    assert open_output(output).size == expected == (output["width"], output["height"])


def test_large_jpegs_use_draft_mode_and_still_get_the_exact_size(
    write_image: WriteImage, output_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requested_drafts: list[tuple[int, int] | None] = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None) -> Any:
        requested_drafts.append(size)
        return original_draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    source = write_image("big.jpg", 3000, 2000)
    output = completed_output(
        convert(
            {"fileLocation": source.as_uri(), "outputFormat": "jpg", "outputWidth": 300, "outputHeight": 300}
        )
    )
    assert requested_drafts == [(300, 200)]  # at least the target: libjpeg decodes at 1/8 scale (375x250)
    assert open_output(output).size == (300, 200)


def test_the_source_format_is_kept_when_no_format_is_given(write_image: WriteImage, output_dir: Path) -> None:
    source = write_image("keep.webp", 100, 100, "WEBP")
    output = completed_output(convert({"fileLocation": source.as_uri(), "outputWidth": 50}))
    assert open_output(output).format == "WEBP" and output["fileLocation"].endswith("/keep_50x50.webp")


def test_exif_orientation_is_applied(tmp_path: Path, output_dir: Path) -> None:
    stored = Image.new("RGB", (300, 200), (255, 0, 0))
    stored.paste((0, 0, 255), (150, 0, 300, 200))  # left half red, right half blue, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90° clockwise to display
    source = tmp_path / "phone.jpg"
    source.write_bytes(encode(stored, "JPEG", exif=exif.tobytes(), quality=95))
    output = completed_output(
        convert(
            {"fileLocation": source.as_uri(), "outputFormat": "png", "outputWidth": 100, "outputHeight": 100}
        )
    )
    upright = open_output(output).convert("RGB")
    assert upright.size == (67, 100)
    top, bottom = upright.getpixel((33, 10)), upright.getpixel((33, 90))
    assert isinstance(top, tuple) and top[0] > 200 and top[2] < 60  # the stored left edge is now on top
    assert isinstance(bottom, tuple) and bottom[2] > 200 and bottom[0] < 60
    assert "exif" not in upright.info or 0x0112 not in upright.getexif()


def test_transparency_is_flattened_on_white_for_jpeg_and_kept_for_png(
    tmp_path: Path, output_dir: Path
) -> None:
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    image.paste((200, 30, 30, 255), (50, 0, 100, 100))
    source = tmp_path / "logo.png"
    source.write_bytes(encode(image, "PNG"))
    jpeg = open_output(completed_output(convert({"fileLocation": source.as_uri(), "outputFormat": "jpg"})))
    assert jpeg.mode == "RGB"
    corner = jpeg.getpixel((5, 5))
    assert isinstance(corner, tuple) and min(corner) > 240
    png = open_output(completed_output(convert({"fileLocation": source.as_uri(), "outputFormat": "png"})))
    assert png.mode == "RGBA" and png.getpixel((5, 5)) == (0, 0, 0, 0)
    gif = open_output(completed_output(convert({"fileLocation": source.as_uri(), "outputFormat": "gif"})))
    assert gif.mode == "P"


def test_palette_and_16_bit_sources_are_resized_with_real_filtering(tmp_path: Path, output_dir: Path) -> None:
    palette = photo(200, 100).convert("P", palette=Image.Palette.ADAPTIVE)
    (tmp_path / "palette.gif").write_bytes(encode(palette, "GIF"))
    smooth = open_output(
        completed_output(
            convert(
                {
                    "fileLocation": (tmp_path / "palette.gif").as_uri(),
                    "outputFormat": "png",
                    "outputWidth": 50,
                }
            )
        )
    )
    assert smooth.mode == "RGB" and smooth.size == (50, 25)

    deep = Image.new("I;16", (64, 64), 60000)
    (tmp_path / "deep.png").write_bytes(encode(deep, "PNG"))
    gray = open_output(
        completed_output(convert({"fileLocation": (tmp_path / "deep.png").as_uri(), "outputFormat": "jpg"}))
    )
    value = gray.getpixel((32, 32))
    assert isinstance(value, int) and 225 <= value <= 240  # 60000/65535 of full scale, not clipped to 255


# --------------------------------------------------------------------------------------------------
# Where files come from and go to
# --------------------------------------------------------------------------------------------------


def test_s3_source_and_s3_output(
    write_image: WriteImage, bucket: str, moto_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto_s3.put_object(
        Bucket=bucket, Key="incoming/cat photo.jpg", Body=write_image("cat.jpg", 400, 300).read_bytes()
    )
    monkeypatch.setenv("KONDUKT_OUTPUT_PREFIX", f"s3://{bucket}/outputs/")
    output = completed_output(
        convert(
            {
                "fileLocation": f"s3://{bucket}/incoming/cat photo.jpg",
                "outputFormat": "webp",
                "outputWidth": 200,
                "outputHeight": 200,
            }
        )
    )
    key = "outputs/wf-img/image_convert_resize_ref/iter0-retry0/cat-photo_200x150.webp"
    assert output["fileLocation"] == f"s3://{bucket}/{key}"
    stored = moto_s3.get_object(Bucket=bucket, Key=key)
    assert stored["ContentType"] == "image/webp"
    assert Image.open(io.BytesIO(stored["Body"].read())).size == (200, 150)


def test_https_style_source_and_output_location_override(
    write_image: WriteImage, http_files: HttpFiles, tmp_path: Path
) -> None:
    http_files.files["remote.png"] = write_image("remote.png", 120, 80, "PNG").read_bytes()
    elsewhere = tmp_path / "elsewhere"
    output = completed_output(
        convert(
            {
                "fileLocation": f"{http_files.url}/files/remote.png",
                "outputFormat": "jpg",
                "outputWidth": 60,
                "outputLocation": elsewhere.as_uri(),
            }
        )
    )
    assert output["fileLocation"].startswith(elsewhere.as_uri() + "/wf-img/")
    assert open_output(output).size == (60, 40)


def test_a_bare_local_path_is_accepted_as_a_file(write_image: WriteImage, output_dir: Path) -> None:
    source = write_image("plain.jpg", 100, 100)
    assert (
        completed_output(convert({"fileLocation": str(source), "outputFormat": "png", "outputWidth": 10}))[
            "width"
        ]
        == 10
    )


def test_outputs_are_named_by_attempt_so_reruns_overwrite_and_retries_do_not(
    write_image: WriteImage, output_dir: Path
) -> None:
    task_input = {"fileLocation": write_image("a.jpg").as_uri(), "outputFormat": "png", "outputWidth": 30}
    first = completed_output(convert(task_input))["fileLocation"]
    again = completed_output(convert(task_input))["fileLocation"]
    retry = TaskContext(
        workflow_id="wf-img", task_id="t-img-2", task_ref="image_convert_resize_ref", retry_count=1
    )
    retried = completed_output(convert(task_input, retry))["fileLocation"]
    assert first == again and retried == first.replace("iter0-retry0", "iter0-retry1")
    assert sorted(p.name for p in output_dir.rglob("*.png")) == ["a_30x20.png", "a_30x20.png"]


def test_without_an_output_location_the_task_says_what_to_configure(write_image: WriteImage) -> None:
    result = convert({"fileLocation": write_image("a.jpg").as_uri(), "outputFormat": "png"})
    assert "KONDUKT_OUTPUT_PREFIX" in terminal_reason(result)


# --------------------------------------------------------------------------------------------------
# What it refuses
# --------------------------------------------------------------------------------------------------


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims ``width`` x ``height`` (a decompression bomb)."""
    data = bytearray(encode(Image.new("1", (8, 8)), "PNG"))
    header = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header) & 0xFFFFFFFF)
    return bytes(data)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path: Path, output_dir: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_with_declared_size(20_000, 20_000))
    assert bomb.stat().st_size < 200
    reason = terminal_reason(
        convert({"fileLocation": bomb.as_uri(), "outputFormat": "jpg", "outputWidth": 100})
    )
    assert "decompression bomb" in reason and "KONDUKT_MAX_IMAGE_PIXELS" in reason and bomb.as_uri() in reason


def test_the_pixel_limit_is_configurable(
    write_image: WriteImage, output_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONDUKT_MAX_IMAGE_PIXELS", "10000")
    reason = terminal_reason(
        convert({"fileLocation": write_image("a.jpg", 300, 200).as_uri(), "outputFormat": "png"})
    )
    assert "300x200 = 60000 pixels" in reason


def test_an_absurd_output_size_is_refused(write_image: WriteImage, output_dir: Path) -> None:
    reason = terminal_reason(
        convert(
            {
                "fileLocation": write_image("a.jpg", 30, 20).as_uri(),
                "outputFormat": "png",
                "outputWidth": 20000,
                "outputHeight": 20000,
                "maintainAspectRatio": False,
            }
        )
    )
    assert "the output would be 20000x20000" in reason


def test_a_truncated_image_is_refused(write_image: WriteImage, output_dir: Path) -> None:
    source = write_image("cut.jpg", 400, 300)
    source.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    reason = terminal_reason(
        convert({"fileLocation": source.as_uri(), "outputFormat": "png", "outputWidth": 100})
    )
    assert "corrupt or truncated" in reason and "truncated" in reason


def test_a_corrupt_image_is_refused(write_image: WriteImage, output_dir: Path) -> None:
    source = write_image("broken.png", 200, 200, "PNG")
    data = bytearray(source.read_bytes())
    start = data.index(b"IDAT") + 4
    data[start : start + 2] = b"\xff\xff"  # the compressed stream's header is garbage
    source.write_bytes(bytes(data))
    reason = terminal_reason(convert({"fileLocation": source.as_uri(), "outputFormat": "jpg"}))
    assert "corrupt" in reason and source.as_uri() in reason


def test_a_text_file_is_not_an_image(tmp_path: Path, output_dir: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n")
    reason = terminal_reason(convert({"fileLocation": text.as_uri(), "outputFormat": "png"}))
    assert "not an image" in reason and "notes.jpg" in reason


def test_a_missing_source_is_terminal(tmp_path: Path, output_dir: Path) -> None:
    missing = (tmp_path / "gone.jpg").as_uri()
    assert missing in terminal_reason(convert({"fileLocation": missing, "outputFormat": "png"}))


def test_an_oversized_input_file_is_refused(
    write_image: WriteImage, output_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONDUKT_MAX_READ_BYTES", "500")
    reason = terminal_reason(convert({"fileLocation": write_image("a.jpg").as_uri(), "outputFormat": "png"}))
    assert "KONDUKT_MAX_READ_BYTES" in reason


@pytest.mark.parametrize(
    ("parameters", "reason"),
    [
        pytest.param({"outputFormat": "tga"}, "unsupported image format 'tga'", id="unknown-format"),
        pytest.param({"outputFormat": 7}, "outputFormat must be one of", id="format-not-a-string"),
        pytest.param({"outputWidth": 0}, "outputWidth must be positive", id="zero-width"),
        pytest.param({"outputHeight": "-5"}, "outputHeight must be positive", id="negative-height"),
        pytest.param({"outputWidth": 20001}, "larger than the maximum of 20000", id="absurd-width"),
        pytest.param(
            {"outputWidth": "wide"}, "outputWidth must be a number of pixels, not 'wide'", id="not-a-number"
        ),
        pytest.param({"outputWidth": 10.5}, "whole number", id="fractional"),
        pytest.param({"outputWidth": True}, "outputWidth must be a number of pixels", id="boolean-width"),
        pytest.param(
            {"maintainAspectRatio": "maybe"}, "maintainAspectRatio must be true or false", id="bad-flag"
        ),
        pytest.param(
            {"outputWidth": 10, "maintainAspectRatio": False},
            "needs both outputWidth and outputHeight",
            id="stretch-needs-both",
        ),
        pytest.param({"quality": 150}, "quality must be between 1 and 100", id="bad-quality"),
        pytest.param({"fileLocation": None}, "fileLocation is required", id="no-file"),
    ],
)
def test_bad_parameters_fail_terminally_naming_field_and_value(
    write_image: WriteImage, output_dir: Path, parameters: dict[str, Any], reason: str
) -> None:
    task_input = {"fileLocation": write_image("a.jpg").as_uri(), "outputFormat": "png", **parameters}
    assert reason in terminal_reason(convert(task_input))
