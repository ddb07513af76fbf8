"""Binary image inputs (``ovmsd.serving.images``): real JPEG and PNG files, decoded and checked against Pillow.

The photos are made here: a synthetic scene (gradients, discs, sensor-like noise) encoded by Pillow, so the decoder
under test (OpenCV) and the reference (Pillow, its own libjpeg-turbo and zlib) share nothing but the file. No mocks:
the layout cases compile real OpenVINO models through ``ModelInstance``.
"""

from __future__ import annotations

import io
import resource
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import cv2
import ml_dtypes
import numpy as np
import pytest
from PIL import Image

from ovmsd.config.models import BatchSize, Dim, InputShape, ModelConfig, ShapeConfig
from ovmsd.errors import ErrorKind, ServingError
from ovmsd.serving.images import (
    PARALLEL_MIN_PIXELS,
    ImageHeader,
    ImageHeaderError,
    decode_images,
    is_image_batch,
    read_header,
)
from ovmsd.serving.instance import ModelInstance
from ovmsd.serving.signature import TensorSpec
from tests.support.models import conv_model, save

ANY = Dim.dynamic()
T = TypeVar("T")


def S(n: int) -> Dim:
    return Dim.static(n)


def spec(*dims: Dim, dtype: type = np.float32, precision: str = "FP32", layout: str = "NHWC") -> TensorSpec:
    return TensorSpec("x", frozenset({"x", "alias"}), precision, np.dtype(dtype), tuple(dims), layout)


def batch(*items: object) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array


def scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An RGB uint8 'photo': smooth colour gradients, a few hard-edged discs, and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin((x + y) / 9)], axis=-1)
    for _ in range(4):
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(5, max(6, min(height, width) // 3))
        image[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def encode(rgb: np.ndarray, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format=fmt, **options)
    return out.getvalue()


def pillow_bgr(data: bytes) -> np.ndarray:
    """The reference decode: Pillow's RGB, reversed to BGR."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))[:, :, ::-1]


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed 100-byte PNG whose header claims ``width x height`` RGB pixels (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int, jpeg: bytes) -> bytes:
    """``jpeg`` with its frame header's size rewritten (the scan data left as it is)."""
    raw = bytearray(jpeg)
    at = raw.find(b"\xff\xc0")
    struct.pack_into(">HH", raw, at + 5, height, width)
    return bytes(raw)


def refused(array: np.ndarray, input_spec: TensorSpec, **options: object) -> str:
    with pytest.raises(ServingError) as caught:
        decode_images(array, input_spec, **options)
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    return caught.value.message


RGB = scene(96, 128)
PNG = encode(RGB, "PNG")
JPEG = encode(RGB, "JPEG", quality=92)
COLOUR_ANY = spec(ANY, ANY, ANY, S(3))


# -- when it applies -----------------------------------------------------------------------------------------------


def test_a_string_batch_for_a_rank4_numeric_input_is_images() -> None:
    assert is_image_batch(batch(JPEG, PNG), spec(ANY, S(224), S(224), S(3)))


def test_numeric_tensors_and_string_inputs_are_not_images() -> None:
    assert not is_image_batch(np.zeros((1, 4, 4, 3), np.float32), spec(ANY, S(4), S(4), S(3)))
    strings = TensorSpec("s", frozenset({"s"}), "STRING", np.dtype(object), (ANY,))
    assert not is_image_batch(batch(b"text"), strings)


def test_strings_for_a_numeric_input_of_another_rank_are_a_precision_error() -> None:
    with pytest.raises(ServingError) as caught:
        is_image_batch(batch(JPEG), spec(ANY, S(10)))
    assert caught.value.message == "Invalid input precision - Expected: FP32; Actual: STRING; input name: x"
    with pytest.raises(ServingError, match="Invalid input precision - Expected: FP32; Actual: STRING"):
        is_image_batch(batch(JPEG).reshape(1, 1), spec(ANY, S(4), S(4), S(3)))


def test_headers_give_format_size_and_channels_without_decoding() -> None:
    assert read_header(JPEG) == ImageHeader("jpeg", 128, 96, 3)
    assert read_header(memoryview(PNG)) == ImageHeader("png", 128, 96, 3)
    assert read_header(encode(RGB[:, :, 0], "PNG")) == ImageHeader("png", 128, 96, 1)
    assert read_header(encode(RGB[:, :, 0], "JPEG")) == ImageHeader("jpeg", 128, 96, 1)
    assert read_header(encode(RGB, "JPEG", progressive=True)) == ImageHeader("jpeg", 128, 96, 3)
    with pytest.raises(ImageHeaderError, match="not a JPEG or PNG"):
        read_header(encode(RGB, "BMP"))


# -- decode: colour, element types ---------------------------------------------------------------------------------


def test_png_decodes_to_bgr_nhwc_unscaled_exactly_as_pillow() -> None:
    out = decode_images(batch(PNG), COLOUR_ANY)
    assert out.shape == (1, 96, 128, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], pillow_bgr(PNG).astype(np.float32))
    assert out.max() > 200  # 0..255, no scaling


def test_jpeg_matches_pillow_within_decoder_tolerance_and_opencv_exactly() -> None:
    out = decode_images(batch(JPEG), spec(ANY, ANY, ANY, S(3), dtype=np.uint8, precision="U8"))
    reference = pillow_bgr(JPEG).astype(np.int16)
    assert np.abs(out[0].astype(np.int16) - reference).max() <= 3
    assert np.abs(out[0].astype(np.int16) - RGB[:, :, ::-1]).mean() < 6  # and it is the scene (JPEG loss + noise)
    direct = cv2.imdecode(np.frombuffer(JPEG, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(out[0], direct)


@pytest.mark.parametrize(
    ("dtype", "precision"),
    [(np.uint8, "U8"), (np.float16, "FP16"), (np.int32, "I32"), (np.int64, "I64"), (ml_dtypes.bfloat16, "BF16")],
)
def test_images_convert_to_the_input_element_type_without_scaling(dtype: type, precision: str) -> None:
    out = decode_images(batch(PNG), spec(ANY, ANY, ANY, S(3), dtype=dtype, precision=precision))
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out[0].astype(np.float32), pillow_bgr(PNG).astype(np.float32))


def test_int8_inputs_saturate_like_opencv() -> None:
    out = decode_images(batch(PNG), spec(ANY, ANY, ANY, S(3), dtype=np.int8, precision="I8"))
    np.testing.assert_array_equal(out[0], np.minimum(pillow_bgr(PNG), 127).astype(np.int8))


def test_a_boolean_input_cannot_take_images() -> None:
    message = refused(batch(PNG), spec(ANY, ANY, ANY, S(3), dtype=np.bool_, precision="BOOL"))
    assert message.startswith("Invalid input precision - Expected: a numeric precision for binary image input;")
    assert message.endswith("Actual: BOOL; input name: x")


# -- size rules ----------------------------------------------------------------------------------------------------


def test_fixed_height_and_width_resize_bilinear_as_opencv() -> None:
    out = decode_images(batch(PNG, JPEG), spec(ANY, S(64), S(80), S(3)))
    assert out.shape == (2, 64, 80, 3)
    expected = cv2.resize(np.ascontiguousarray(pillow_bgr(PNG)), (80, 64), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out[0], expected.astype(np.float32))


def test_fixed_size_takes_images_of_different_sizes() -> None:
    small = encode(scene(40, 50, seed=1), "PNG")
    out = decode_images(batch(PNG, small), spec(S(2), S(32), S(32), S(3)))
    assert out.shape == (2, 32, 32, 3)
    expected = cv2.resize(np.ascontiguousarray(pillow_bgr(small)), (32, 32), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out[1], expected.astype(np.float32))


def test_dynamic_height_and_width_keep_each_images_own_size() -> None:
    other = encode(scene(96, 128, seed=3), "PNG")
    out = decode_images(batch(PNG, other), COLOUR_ANY)
    assert out.shape == (2, 96, 128, 3)
    np.testing.assert_array_equal(out[1], pillow_bgr(other).astype(np.float32))


def test_dynamic_size_needs_images_of_one_size() -> None:
    small = encode(scene(40, 50, seed=1), "JPEG")
    message = refused(batch(PNG, PNG, small), COLOUR_ANY)
    assert message.startswith("Binary input images for this endpoint are required to have the same resolution - ")
    assert "Expected: 128x96 (WxH, as element 0, for input shape (-1,-1,-1,3)); Actual: 50x40" in message
    assert message.endswith("input name: x; element: 2")


def test_one_dynamic_axis_follows_the_image_and_the_fixed_one_resizes() -> None:
    out = decode_images(batch(PNG), spec(ANY, S(48), ANY, S(3)))
    assert out.shape == (1, 48, 128, 3)


@pytest.mark.parametrize(
    ("h_dim", "w_dim", "expected"),
    [
        (Dim(100, 200), Dim(50, 100), (100, 100)),  # 96 up to 100, 128 down to 100
        (Dim(50, 200), Dim(100, 300), (96, 128)),  # inside both ranges: its own size
        (Dim(10, 64), Dim(200, -1), (64, 200)),  # an unbounded range clamps from below only
        (Dim(0, 90), Dim(0, -1), (90, 128)),
    ],
)
def test_ranges_clamp_the_size_to_the_nearer_bound(h_dim: Dim, w_dim: Dim, expected: tuple[int, int]) -> None:
    out = decode_images(batch(PNG), spec(ANY, h_dim, w_dim, S(3)))
    assert out.shape == (1, *expected, 3)
    if expected != (96, 128):
        reference = cv2.resize(np.ascontiguousarray(pillow_bgr(PNG)), expected[::-1], interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(out[0], reference.astype(np.float32))


def test_auto_shape_keeps_the_images_size_over_the_configured_one() -> None:
    out = decode_images(batch(PNG), spec(S(1), S(224), S(224), S(3)), auto_shape=True)
    assert out.shape == (1, 96, 128, 3)


def test_the_batch_dimension_is_left_to_the_shape_planner() -> None:
    assert decode_images(batch(PNG, PNG, PNG), spec(S(1), S(8), S(8), S(3))).shape == (3, 8, 8, 3)


def test_an_empty_batch_is_refused() -> None:
    message = refused(np.empty(0, dtype=object), COLOUR_ANY)
    assert message == "Invalid input batch size - Expected: at least one binary image; Actual: 0; input name: x"


# -- channels ------------------------------------------------------------------------------------------------------


def test_one_channel_inputs_get_grayscale_images() -> None:
    gray_png = encode(RGB[:, :, 1], "PNG")
    out = decode_images(batch(gray_png, PNG), spec(ANY, ANY, ANY, S(1), dtype=np.uint8, precision="U8"))
    assert out.shape == (2, 96, 128, 1)
    np.testing.assert_array_equal(out[0, :, :, 0], RGB[:, :, 1])  # a gray PNG is lossless
    with Image.open(io.BytesIO(PNG)) as im:
        luma = np.asarray(im.convert("L")).astype(np.int16)
    assert np.abs(out[1, :, :, 0].astype(np.int16) - luma).max() <= 2  # colour -> gray: BT.601 luma either way


def test_three_channel_inputs_get_colour_from_gray_images() -> None:
    gray_jpeg = encode(RGB[:, :, 0], "JPEG", quality=95)
    out = decode_images(batch(gray_jpeg), COLOUR_ANY)
    assert out.shape == (1, 96, 128, 3)
    np.testing.assert_array_equal(out[0, :, :, 0], out[0, :, :, 2])
    with Image.open(io.BytesIO(gray_jpeg)) as im:
        assert np.abs(out[0, :, :, 1] - np.asarray(im).astype(np.float32)).max() <= 3


def test_a_dynamic_channel_count_follows_the_first_image() -> None:
    gray_png = encode(RGB[:, :, 1], "PNG")
    assert decode_images(batch(gray_png, PNG), spec(ANY, ANY, ANY, ANY)).shape == (2, 96, 128, 1)
    assert decode_images(batch(PNG, gray_png), spec(ANY, ANY, ANY, ANY)).shape == (2, 96, 128, 3)
    assert decode_images(batch(gray_png), spec(ANY, ANY, ANY, Dim(2, 3))).shape == (1, 96, 128, 3)


def test_inputs_of_other_channel_counts_cannot_take_images() -> None:
    message = refused(batch(PNG), spec(ANY, ANY, ANY, S(4)))
    assert message == (
        "Invalid number of channels in binary input - Expected: an input of 1 or 3 channels; Actual: 4; input name: x"
    )


def test_alpha_and_palette_pngs_decode_as_colour() -> None:
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 200, np.uint8)])
    out = decode_images(batch(encode(rgba, "PNG")), COLOUR_ANY)
    np.testing.assert_array_equal(out[0], RGB[:, :, ::-1].astype(np.float32))
    palette = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE)
    data = io.BytesIO()
    palette.save(data, format="PNG")
    out = decode_images(batch(data.getvalue()), COLOUR_ANY)
    np.testing.assert_array_equal(out[0], np.asarray(palette.convert("RGB"))[:, :, ::-1].astype(np.float32))


# -- layouts -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["NHWC", "N...", "...", "", "N?WC", "...C", "N,H,W,C"])
def test_nhwc_compatible_layouts_take_images(layout: str) -> None:
    assert decode_images(batch(PNG), spec(ANY, S(8), S(8), S(3), layout=layout)).shape == (1, 8, 8, 3)


@pytest.mark.parametrize("layout", ["NCHW", "NC...", "CHWN", "NCH?"])
def test_other_layouts_are_refused_naming_the_layout_to_configure(layout: str) -> None:
    message = refused(batch(PNG), spec(ANY, S(3), S(8), S(8), layout=layout))
    assert message == (
        "Received binary image input but resource not configured to accept NHWC layout - "
        f"Expected: NHWC; Actual: {layout}; input name: x; configure layout NHWC:NCHW for input x"
    )


def test_an_nchw_looking_shape_without_a_layout_is_refused_too() -> None:
    message = refused(batch(PNG), spec(S(1), S(3), S(224), S(224), layout=""))
    assert "Actual: NCHW (guessed from the shape (1,3,224,224))" in message
    assert message.endswith("configure layout NHWC:NCHW for input x")


def _conv_instance(tmp_path: Path, **config: object) -> ModelInstance:
    import openvino as ov

    model_file = save(conv_model(size=16), tmp_path / "conv", 1)
    return ModelInstance(
        ov.Core(), model_file, ModelConfig(name="conv", base_path=model_file.parent.parent, **config), 1
    )


def test_a_model_with_layout_nhwc_nchw_reports_nhwc_and_serves_decoded_images(tmp_path: Path) -> None:
    instance = _conv_instance(tmp_path, layout="NHWC:NCHW")
    try:
        input_spec = instance.base.signature.inputs[0]
        assert input_spec.layout == "NHWC" and input_spec.shape_text == "(1,16,16,3)"
        images = decode_images(batch(PNG), input_spec)
        assert images.shape == (1, 16, 16, 3)
        with instance.run({"data": images}) as (_, outputs):
            served = np.array(outputs["out"])
        # The same pixels, transposed by hand, through the plain NCHW model.
        plain = _conv_instance(tmp_path / "plain")
        try:
            with plain.run({"data": np.ascontiguousarray(images.transpose(0, 3, 1, 2))}) as (_, outputs):
                np.testing.assert_allclose(served, outputs["out"], rtol=1e-4, atol=1e-3)
        finally:
            plain.close()
    finally:
        instance.close()


@pytest.mark.parametrize(("layout", "reported"), [(None, ""), ("NCHW", "NCHW")])
def test_an_nchw_model_without_the_layout_is_refused(tmp_path: Path, layout: str | None, reported: str) -> None:
    instance = _conv_instance(tmp_path, layout=layout)
    try:
        input_spec = instance.base.signature.inputs[0]
        assert input_spec.layout == reported
        message = refused(batch(PNG), input_spec)
        assert message.endswith("input name: data; configure layout NHWC:NCHW for input data")
    finally:
        instance.close()


def test_auto_shape_passes_the_decoded_size_on_to_a_reshape(tmp_path: Path) -> None:
    shape = ShapeConfig(anonymous=InputShape(auto=True))
    instance = _conv_instance(tmp_path, layout="NHWC:NCHW", shape=shape, batch_size=BatchSize(auto=True))
    try:
        images = decode_images(batch(PNG, PNG), instance.base.signature.inputs[0], auto_shape=True)
        assert images.shape == (2, 96, 128, 3)
        with instance.run({"data": images}) as (signature, outputs):
            assert outputs["out"].shape == (2, 1, 96, 128)
            assert signature.inputs[0].layout == "NHWC"
    finally:
        instance.close()


# -- bad data ------------------------------------------------------------------------------------------------------


def _idat_corrupted(png: bytes) -> bytes:
    raw = bytearray(png)
    at = raw.find(b"IDAT") + 20
    raw[at : at + 16] = bytes(16)
    return bytes(raw)


@pytest.mark.parametrize(
    ("bad", "sentence", "actual"),
    [
        (b"", "String val is empty", "0 bytes"),
        (b"definitely not an image", "Image parsing failed", "not a JPEG or PNG image"),
        (JPEG[: len(JPEG) // 2], "Image parsing failed", "a truncated JPEG (no end-of-image marker)"),
        (JPEG[:300], "Image parsing failed", "a truncated JPEG"),
        (PNG[: len(PNG) // 2], "Image parsing failed", "a truncated PNG (no IEND chunk)"),
        (PNG[:20], "Image parsing failed", "a PNG without its IHDR header"),
        (_idat_corrupted(PNG), "Image parsing failed", "corrupt image data"),
        (encode(RGB, "GIF"), "Image parsing failed", "not a JPEG or PNG image"),
        ("a str, not bytes", "Invalid string input", "str"),
    ],
)
def test_bad_elements_are_refused_naming_the_input_and_the_element(bad: object, sentence: str, actual: str) -> None:
    message = refused(batch(JPEG, bad, PNG), spec(ANY, S(32), S(32), S(3)))
    assert message.startswith(f"{sentence} - Expected: ")
    assert f"Actual: {actual}" in message
    assert message.endswith("; input name: x; element: 1")


@pytest.mark.parametrize("parallel_min_pixels", [0, 1 << 40])
def test_the_first_bad_element_is_named_whatever_thread_finishes_first(parallel_min_pixels: int) -> None:
    bad = _idat_corrupted(PNG)
    array = batch(*([JPEG] * 4), PNG, bad, JPEG, bad)
    message = refused(array, spec(ANY, S(32), S(32), S(3)), parallel_min_pixels=parallel_min_pixels)
    assert message.endswith("element: 5")


def test_a_bomb_header_is_refused_quickly_without_allocating() -> None:
    bomb = png_claiming(100_000, 100_000)  # 30 GB of BGR pixels if it were decoded
    assert len(bomb) < 100 and read_header(bomb) == ImageHeader("png", 100_000, 100_000, 3)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.perf_counter()
    try:
        message = refused(batch(PNG, bomb), spec(ANY, S(224), S(224), S(3)))
        took = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message == (
        "Image is too large - Expected: at most 50000000 pixels; Actual: 100000x100000 (10000000000 pixels); "
        "input name: x; element: 1"
    )
    assert took < 0.5
    assert peak < 1 << 20  # no pixel buffer (numpy's allocations are traced)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 64 * 1024  # KiB: no decoder buffer


def test_a_jpeg_bomb_is_refused_from_its_frame_header() -> None:
    bomb = jpeg_claiming(60_000, 60_000, JPEG)
    message = refused(batch(bomb), COLOUR_ANY)
    assert "Actual: 60000x60000 (3600000000 pixels); input name: x; element: 0" in message


def test_many_small_files_cannot_add_up_to_a_huge_tensor() -> None:
    many = batch(*[png_claiming(5_000, 5_000)] * 40)  # each under the pixel limit; 12 GB of FP32 together
    started = time.perf_counter()
    message = refused(many, COLOUR_ANY)
    assert time.perf_counter() - started < 0.5
    assert message == (
        "Binary input images are too large - Expected: at most 1073741824 bytes decoded; "
        "Actual: 12000000000 bytes of FP32 for shape (40,5000,5000,3); input name: x"
    )
    assert "Actual: 9216 bytes" in refused(batch(PNG, PNG), spec(ANY, S(16), S(24), S(3)), max_output_bytes=9215)
    assert decode_images(batch(PNG, PNG), spec(ANY, S(16), S(24), S(3)), max_output_bytes=9216).nbytes == 9216


def test_the_pixel_limit_is_configurable() -> None:
    message = refused(batch(PNG), COLOUR_ANY, max_pixels=10_000)
    assert "Expected: at most 10000 pixels; Actual: 128x96 (12288 pixels)" in message
    assert decode_images(batch(PNG), COLOUR_ANY, max_pixels=12_288).shape == (1, 96, 128, 3)


# -- batches in parallel -------------------------------------------------------------------------------------------


def test_a_parallel_batch_equals_images_decoded_one_by_one() -> None:
    photos = [encode(scene(96 + 8 * s, 128, seed=s), "JPEG" if s % 2 else "PNG") for s in range(7)]
    target = spec(ANY, S(64), S(64), S(3))
    alone = np.concatenate([decode_images(batch(p), target) for p in photos])
    for threshold in (0, PARALLEL_MIN_PIXELS, 1 << 40):  # forced onto the pool, the default, the calling thread only
        np.testing.assert_array_equal(decode_images(batch(*photos), target, parallel_min_pixels=threshold), alone)


class RecordingPool(ThreadPoolExecutor):
    """A real pool that notes which of its threads ran a share of a batch."""

    def __init__(self) -> None:
        super().__init__(max_workers=2, thread_name_prefix="recorded")
        self.ran_on: set[str] = set()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        def run() -> T:
            self.ran_on.add(threading.current_thread().name)
            return fn(*args, **kwargs)

        return super().submit(run)


def test_large_batches_use_the_pool_and_small_ones_the_calling_thread() -> None:
    big = encode(scene(800, 700, seed=5), "JPEG")  # 4 x 0.56 Mpix: over the default threshold
    with RecordingPool() as pool:
        out = decode_images(batch(big, big, big, big), spec(ANY, S(32), S(32), S(3)), executor=pool)
    assert out.shape == (4, 32, 32, 3)
    assert pool.ran_on and all(name.startswith("recorded") for name in pool.ran_on)
    with RecordingPool() as pool:
        decode_images(batch(PNG, PNG), spec(ANY, S(32), S(32), S(3)), executor=pool)  # 25 kpix: no threads
    assert pool.ran_on == set()


def test_elements_may_be_any_bytes_like_object() -> None:
    out = decode_images(batch(bytearray(PNG), memoryview(JPEG)), spec(ANY, S(16), S(16), S(3)))
    assert out.shape == (2, 16, 16, 3)
