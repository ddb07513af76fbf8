"""Binary image inputs: a string tensor of N encoded JPEG/PNG images fed to a rank-4 numeric input. Protocol-free.

OVMS lets clients send photos as they are (TF Serving ``DT_STRING`` of shape ``[N]``, KServe ``BYTES``, REST b64)
and decodes them for the model. This module does that, as OVMS documents it:

* the images become one NHWC array in BGR channel order, converted to the input's element type without scaling
  (0..255 values, as the model would get from OpenCV);
* each image is resized (bilinear, ``cv2.resize``'s default, as OVMS) to the input's H and W when they are fixed;
  where they are -1 (or the input is ``shape: auto``) each image keeps its own size, and where they are a range it is
  clamped to the nearer bound. The images of one request must end up the same size (they are one tensor);
* 1-channel inputs get grayscale images, 3-channel inputs colour ones (a gray photo is expanded, a colour one
  converted: the model decides, as for any tensor); inputs with another channel count cannot take images;
* the input must be NHWC on the tensor side: an NCHW model needs ``layout: NHWC:NCHW`` (the message says so).

Why OpenCV (``cv2.imdecode``/``cv2.resize``): measured in ``benchmarks/image_decode.py`` on real photos, it decodes
JPEG about as fast as libjpeg-turbo called directly (simplejpeg, which has no PNG) and 1.3-2x faster than Pillow (3x
with the resize), decodes PNG faster than Pillow, releases the GIL while it works, and is the decoder and resize
OVMS uses, so requests get the tensors they would get from OVMS. As in OVMS, EXIF orientation is not applied.

Bad data is refused before any pixel is decoded: every element's header is read here (JPEG SOF, PNG IHDR) for its
format, size and channels, so a decompression bomb (a 100-byte PNG claiming 100000x100000) costs microseconds and
no memory, and the size rules are settled for the whole batch before the work starts. Only JPEG and PNG are
accepted (what OVMS documents), which also keeps the rest of OpenCV's decoders (TIFF, PXM, HDR, ...) away from
client bytes. A JPEG must end with its EOI marker after the first scan (older OpenCV returns truncated JPEGs
grey-filled instead of failing). Errors are INVALID_INPUT naming the input and the element index.

Large batches decode in parallel on a small shared thread pool plus the calling thread (OpenCV releases the GIL):
measured 1.9x for 8 1200x800 JPEGs with 2 free cores; small batches (under ``PARALLEL_MIN_PIXELS``) stay in the
calling thread, where threads bought nothing.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NoReturn

import numpy as np

from ovmsd.config.models import Dim
from ovmsd.errors import ErrorKind, ServingError, invalid_input
from ovmsd.serving.signature import TensorSpec

# The largest image (width x height) decoded: 50 Mpix is ~150 MB of BGR pixels; photos from 48 Mpix phone cameras
# fit. Checked from the header, before the decoder allocates anything.
DEFAULT_MAX_PIXELS = 50_000_000
# The largest decoded batch, in bytes of the model's element type (as OVMS's 1 GB limit on converted strings): many
# small files each under the pixel limit (a 50 Mpix PNG of one colour is ~50 KB) must not add up to a huge tensor.
DEFAULT_MAX_OUTPUT_BYTES = 1 << 30

# Threads that decode images of a batch in parallel (shared by all requests); the decoders release the GIL. The
# calling thread decodes one share itself, so a batch is split in POOL_WORKERS + 1 interleaved shares at most.
POOL_WORKERS = max(1, min(4, (os.cpu_count() or 1) - 1))
# A batch of fewer pixels (all its images' headers together) decodes in the calling thread: measured on 2 cores,
# 8 small ImageNet JPEGs (0.4 Mpix, ~3 ms) gain nothing from threads and lose up to 25% when a core is busy; 8
# 1200x800 JPEGs (7.7 Mpix) decode 1.9x faster with both cores free.
PARALLEL_MIN_PIXELS = 1_000_000

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xae\x42\x60\x82"  # the IEND chunk type and its fixed CRC
# JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic): not C4/C8/CC.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn carry no length
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 1, 6: 3}  # colour type -> channels OpenCV gives (alpha dropped)


@dataclass(frozen=True)
class ImageHeader:
    """What an encoded image's header says, read without decoding it."""

    format: str  # "jpeg" or "png"
    width: int
    height: int
    channels: int  # 1 for grayscale images, 3 for colour (palette and alpha images count as colour/gray)


Buffer = bytes | bytearray | memoryview


class ImageHeaderError(ValueError):
    """The bytes are not a complete JPEG or PNG image; the message says why, for the client."""


# -- when binary inputs apply --------------------------------------------------------------------------------------


def is_image_batch(array: np.ndarray, spec: TensorSpec) -> bool:
    """Whether ``array`` is a batch of encoded images for ``spec``: a 1-D string tensor to a rank-4 numeric input.

    False for anything else the normal path handles: numeric arrays, and strings for string inputs (they pass
    through as they are). A string tensor to a numeric input that cannot take images (not rank 4, or not shaped
    ``[N]``) raises INVALID_INPUT with OVMS's precision message, as OVMS answers it: the client sent the wrong type.
    """
    if array.dtype != np.dtype(object) or spec.dtype == np.dtype(object):
        return False
    if array.ndim == 1 and len(spec.shape) == 4:
        return True
    raise invalid_input("Invalid input precision", spec.precision, "STRING", spec.name)


# -- decode and fit ------------------------------------------------------------------------------------------------


def decode_images(
    array: np.ndarray,
    spec: TensorSpec,
    *,
    auto_shape: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    executor: Executor | None = None,
    parallel_min_pixels: int = PARALLEL_MIN_PIXELS,
) -> np.ndarray:
    """The images of ``array`` (N encoded JPEG/PNG byte strings) as one ``(N, H, W, C)`` array of ``spec.dtype``.

    ``spec`` is the model input (its H, W and C say the size and colour; its layout must be NHWC on the tensor
    side). ``auto_shape`` (the input is ``shape: auto``): images keep their own size whatever the input's H and W,
    and the caller passes the decoded shape on to the reshape planner. The batch dimension is not checked here:
    N images give N rows, and the shape planner judges N as for any tensor.

    ``max_pixels`` limits each image (width x height, from its header), ``max_output_bytes`` the array returned.
    A batch of at least ``parallel_min_pixels`` (all headers together) decodes in parallel: shares of it on
    ``executor`` (default: a shared pool of ``POOL_WORKERS`` threads), one in the calling thread.

    Raises ServingError (INVALID_INPUT) naming the input and, for bad data, the element index (the lowest bad one).
    """
    if array.ndim != 1:
        raise invalid_input("Invalid input precision", spec.precision, "STRING", spec.name)
    _check_layout(spec)
    dtype = _element_type(spec)
    count = len(array)
    if count == 0:
        raise invalid_input("Invalid input batch size", "at least one binary image", 0, spec.name)
    datas = [_element_bytes(array[i], spec.name, i) for i in range(count)]
    headers = [_checked_header(data, spec.name, i, max_pixels) for i, data in enumerate(datas)]
    channels = _channels(spec, headers[0])
    height, width = _target_size(spec, headers, auto_shape)
    size = count * height * width * channels * dtype.itemsize
    if size > max_output_bytes:
        shape = f"({count},{height},{width},{channels})"
        raise invalid_input(
            "Binary input images are too large",
            f"at most {max_output_bytes} bytes decoded",
            f"{size} bytes of {spec.precision} for shape {shape}",
            spec.name,
        )
    out = np.empty((count, height, width, channels), dtype=dtype)

    def share(indices: range) -> tuple[int, ServingError] | None:
        for index in indices:  # a share stops at its first bad image: the lowest bad index of the share
            try:
                _decode_into(out[index], datas[index], headers[index], spec.name, index)
            except ServingError as exc:
                return index, exc
        return None

    pixels = sum(h.width * h.height for h in headers)
    parts = min(count, POOL_WORKERS + 1) if pixels >= parallel_min_pixels else 1
    shares = [range(start, count, parts) for start in range(parts)]  # interleaved: sizes vary along a batch less
    pool = executor or (_shared_pool() if parts > 1 else None)
    futures = [pool.submit(share, indices) for indices in shares[1:]] if pool is not None else []
    failures = [share(shares[0]), *(f.result() for f in futures)]
    failure = min((f for f in failures if f is not None), key=lambda f: f[0], default=None)
    if failure is not None:
        raise failure[1]
    return out


def read_header(data: Buffer) -> ImageHeader:
    """Format, size and channels of an encoded JPEG or PNG, from its header only (no pixel is decoded).

    Raises ImageHeaderError when the bytes are neither, or are cut short (a JPEG without its EOI marker after the
    first scan, a PNG without its IEND chunk).
    """
    raw = data if isinstance(data, bytes) else bytes(data)
    if raw.startswith(_PNG_SIGNATURE):
        return _png_header(raw)
    if raw.startswith(b"\xff\xd8"):
        return _jpeg_header(raw)
    raise ImageHeaderError("not a JPEG or PNG image")


# -- checks --------------------------------------------------------------------------------------------------------


def _check_layout(spec: TensorSpec) -> None:
    """Images are NHWC: the input's tensor layout must not put H, W or C anywhere but 1, 2 and 3.

    A known layout decides (``layout: NHWC:NCHW`` makes the tensor side NHWC). Where the layout does not say where C
    is (none known, or OVMS's default ``N...``, both treated as NHWC), a shape that can only be NCHW (C of 1 or 3
    second, something else last) is refused too: it would otherwise fail as a puzzling channel count.
    """
    positions = _layout_positions(spec.layout)
    if (
        positions is None
        or positions[0] in ("H", "W", "C")
        or any(x not in ("?", want) for x, want in zip(positions[1:], "HWC", strict=True))
    ):
        _refuse_layout(spec, spec.layout)
    if positions[3] == "C":
        return
    c_second, c_last = spec.shape[1], spec.shape[3]
    if c_second.is_static and c_second.lo in (1, 3) and not (c_last.is_static and c_last.lo in (1, 3)):
        _refuse_layout(spec, f"NCHW (guessed from the shape {spec.shape_text})")


def _layout_positions(layout: str) -> list[str] | None:
    """The layout's dimension names at positions 0..3 ("?" where it says nothing); None when it is not rank 4.

    ``NHWC`` -> N,H,W,C; ``N...`` -> N,?,?,?; ``...C`` -> ?,?,?,C; "" -> ?,?,?,?.
    """
    names = [x.strip().upper() for x in (layout.split(",") if "," in layout else _letters(layout))]
    if not names:
        return ["?"] * 4
    if "..." in names:
        cut = names.index("...")
        head, tail = names[:cut], names[cut + 1 :]
        if len(head) + len(tail) > 4:
            return None
        return [*head, *(["?"] * (4 - len(head) - len(tail))), *tail]
    return names if len(names) == 4 else None


def _letters(layout: str) -> list[str]:
    """``N...C`` -> N, ..., C (letters, with "..." kept whole)."""
    out: list[str] = []
    i = 0
    while i < len(layout):
        if layout.startswith("...", i):
            out.append("...")
            i += 3
        else:
            out.append(layout[i])
            i += 1
    return out


def _refuse_layout(spec: TensorSpec, actual: str) -> NoReturn:
    raise ServingError(
        ErrorKind.INVALID_INPUT,
        message="Received binary image input but resource not configured to accept NHWC layout - "
        f"Expected: NHWC; Actual: {actual}; input name: {spec.name}; "
        f"configure layout NHWC:NCHW for input {spec.name}",
    )


def _element_type(spec: TensorSpec) -> np.dtype:
    """The input's numeric type; images convert to it without scaling (as OpenCV's convertTo, saturating)."""
    dtype = spec.dtype
    if dtype.kind in "fiu" or dtype.name == "bfloat16":
        return dtype
    raise invalid_input(
        "Invalid input precision", "a numeric precision for binary image input", spec.precision, spec.name
    )


def _element_bytes(item: object, name: str, index: int) -> Buffer:
    if not isinstance(item, (bytes, bytearray, memoryview)):
        raise _bad_element("Invalid string input", "encoded image bytes", type(item).__name__, name, index)
    if len(item) == 0:
        raise _bad_element("String val is empty", "an encoded JPEG or PNG image", "0 bytes", name, index)
    return item


def _checked_header(data: Buffer, name: str, index: int, max_pixels: int) -> ImageHeader:
    try:
        header = read_header(data)
    except ImageHeaderError as exc:
        raise _bad_element("Image parsing failed", "a JPEG or PNG image", str(exc), name, index) from None
    pixels = header.width * header.height
    if pixels > max_pixels:
        raise _bad_element(
            "Image is too large",
            f"at most {max_pixels} pixels",
            f"{header.width}x{header.height} ({pixels} pixels)",
            name,
            index,
        )
    return header


def _bad_element(sentence: str, expected: object, actual: object, name: str, index: int) -> ServingError:
    return ServingError(
        ErrorKind.INVALID_INPUT,
        message=f"{sentence} - Expected: {expected}; Actual: {actual}; input name: {name}; element: {index}",
    )


def _channels(spec: TensorSpec, first: ImageHeader) -> int:
    """1 (grayscale) or 3 (BGR) from the input's C; a dynamic C follows the first image, as OVMS."""
    dim = spec.shape[3]
    if dim.is_static:
        if dim.lo in (1, 3):
            return dim.lo
        raise invalid_input(
            "Invalid number of channels in binary input", "an input of 1 or 3 channels", dim.lo, spec.name
        )
    for channels in (first.channels, 3 if first.channels == 1 else 1):  # the image's own, else the other one
        if dim.accepts(channels):
            return channels
    raise invalid_input("Invalid number of channels in binary input", f"1 or 3 within {dim}", "neither", spec.name)


def _target_size(spec: TensorSpec, headers: Sequence[ImageHeader], auto_shape: bool) -> tuple[int, int]:
    """H and W of the batch: fixed by the model, or each image's own (clamped to a range); all must agree."""
    h_dim, w_dim = spec.shape[1], spec.shape[2]
    if not auto_shape and h_dim.is_static and w_dim.is_static:
        return h_dim.lo, w_dim.lo
    sizes = [_fit(h.height, h_dim, auto_shape) for h in headers], [_fit(h.width, w_dim, auto_shape) for h in headers]
    first = (sizes[0][0], sizes[1][0])
    for index in range(1, len(headers)):
        size = (sizes[0][index], sizes[1][index])
        if size != first:
            raise _bad_element(
                "Binary input images for this endpoint are required to have the same resolution",
                f"{_size_text(first)} (WxH, as element 0, for input shape {spec.shape_text})",
                _size_text(size),
                spec.name,
                index,
            )
    return first


def _fit(own: int, dim: Dim, auto_shape: bool) -> int:
    """An image's size along one axis: the model's fixed size, its own, or its own clamped to the range."""
    if auto_shape:
        return own
    if dim.is_static:
        return dim.lo
    low = max(dim.lo, 1)
    return max(low, own) if dim.hi < 0 else min(max(low, own), dim.hi)


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[1]}x{size[0]}"


# -- decoding ------------------------------------------------------------------------------------------------------


def _decode_into(row: np.ndarray, data: Buffer, header: ImageHeader, name: str, index: int) -> None:
    """Decode one image into its row of the batch (H, W, C), resized and converted. Runs on a pool thread.

    OpenCV is imported here, on the first image: a daemon that serves none keeps its ~30 MB and 70 ms out.
    """
    import cv2

    flags = (cv2.IMREAD_GRAYSCALE if row.shape[2] == 1 else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    expected = f"a complete {header.format.upper()} image of {header.width}x{header.height}"
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise _bad_element("Image parsing failed", expected, _cv_reason(exc), name, index) from None
    if image is None:
        raise _bad_element("Image parsing failed", expected, "corrupt image data", name, index)
    if image.shape[:2] != (header.height, header.width):  # cannot happen: the decoders read the same header
        raise _bad_element("Image parsing failed", expected, f"{image.shape[1]}x{image.shape[0]}", name, index)
    height, width = row.shape[0], row.shape[1]
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    if row.dtype == np.int8:
        image = np.minimum(image, 127)  # saturate like OpenCV's convertTo (OVMS), not wrap
    row[...] = image


def _cv_reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else "OpenCV error")[:200]


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _shared_pool() -> ThreadPoolExecutor:
    """The decode threads, started on the first batch (a daemon serving no images starts none)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=POOL_WORKERS, thread_name_prefix="ovmsd-image")
        return _pool


# -- headers -------------------------------------------------------------------------------------------------------


def _png_header(raw: bytes) -> ImageHeader:
    if len(raw) < 33 or raw[12:16] != b"IHDR":
        raise ImageHeaderError("a PNG without its IHDR header")
    width, height, depth, colour = struct.unpack_from(">IIBB", raw, 16)
    if width == 0 or height == 0 or colour not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise ImageHeaderError(f"a PNG with an invalid header ({width}x{height}, depth {depth}, colour {colour})")
    if raw.rfind(_PNG_IEND, 33) < 0:
        raise ImageHeaderError("a truncated PNG (no IEND chunk)")
    return ImageHeader("png", width, height, _PNG_CHANNELS[colour])


def _jpeg_header(raw: bytes) -> ImageHeader:
    """Walk the JPEG markers up to the first scan: the frame header (SOFn) gives size and components."""
    size = len(raw)
    pos = 2
    frame: tuple[int, int, int] | None = None
    while pos < size:
        if raw[pos] != 0xFF:
            raise ImageHeaderError(f"a corrupt JPEG (no marker at byte {pos})")
        while pos < size and raw[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= size:
            break
        marker = raw[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker == 0xD9 or pos + 2 > size:  # EOI before any scan, or cut short
            break
        (length,) = struct.unpack_from(">H", raw, pos)
        if length < 2 or pos + length > size:
            break
        if marker in _JPEG_SOF:
            if length < 8:
                raise ImageHeaderError("a JPEG with a short frame header")
            height, width, components = struct.unpack_from(">HHB", raw, pos + 3)
            if width == 0 or height == 0 or components not in (1, 3, 4):
                raise ImageHeaderError(f"a JPEG with an unsupported frame ({width}x{height}, {components} components)")
            frame = (width, height, 1 if components == 1 else 3)
        elif marker == 0xDA:  # start of scan: the entropy-coded data follows
            if frame is None:
                raise ImageHeaderError("a JPEG scan before its frame header")
            # Entropy-coded data stuffs 0xFF as FF00, so FFD9 after the first scan is the end of the image.
            if raw.rfind(b"\xff\xd9", pos + length) < 0:
                raise ImageHeaderError("a truncated JPEG (no end-of-image marker)")
            return ImageHeader("jpeg", *frame)
        pos += length
    raise ImageHeaderError("a truncated JPEG (no image data)")
