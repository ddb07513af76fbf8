"""Binary image inputs end to end (issue 10): a real daemon, real clients, real photos, real OpenVINO models.

The OVMS resnet flow: photos sent as JPEG files (``tf.make_tensor_proto(list_of_bytes, shape=[N])`` with the real
tensorflow-serving-api, KServe ``BYTES`` with tritonclient over gRPC and REST, TF Serving REST ``{"b64": ...}``) to a
classifier configured ``layout: NHWC:NCHW`` and ``batch_size: auto`` get the same top-1 as decoding the same files
in-process with OpenCV and calling OpenVINO directly on the NCHW model. A fully convolutional "detector" with
``shape: auto`` (and one with -1 height and width) fed photos of two sizes matches in-process OpenVINO reshaped to
each size. Every bad-data case is answered INVALID_ARGUMENT naming the input (and the element, for bad elements),
the daemon keeps serving, and 1,000 bad requests do not grow its memory.

The photos are scikit-image's sample data (shipped inside its wheel: no download). The classifier is built here with
the opset API: a random convolutional feature extractor, then a nearest-class-mean head over the eight photos'
standardized features (cosine similarity x 10, softmax), so each photo's top-1 is its own class by a clear margin
and a decode that got the picture wrong would show. Nothing is mocked.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import openvino as ov
import pytest
import skimage.data
from openvino import opset13 as ops
from PIL import Image

from ovmsd.api.grpc.proto import predict_pb2, types_pb2
from ovmsd.api.grpc.tensors import tensor_to_numpy
from ovmsd.options import OPTIONS
from ovmsd.serving import images as images_module
from tests.support.daemon import Daemon, free_port, rpc_error, write_config
from tests.support.models import named, save
from tests.support.triton import TritonClient, output_array
from tests.test_clients import client_python

CLIENTS = Path(__file__).parent / "clients"
MAX_PIXELS = 1_000_000  # the daemon's --max-image-pixels here: scikit-image's retina (1411x1411) is over it
SIZE = 224


# -- photos --------------------------------------------------------------------------------------------------------


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def sample_file(name: str) -> bytes:
    """A file of scikit-image's sample data as it ships (rocket.jpg is a real camera JPEG)."""
    return (Path(skimage.data.__file__).parent / name).read_bytes()


PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "hubble", "ihc", "motorcycle", "colorwheel")


def photo_files() -> dict[str, bytes]:
    """Eight real photos as JPEG files: the shipped JPEGs as they are, the PNGs encoded by Pillow (quality 90)."""
    return {
        "astronaut": jpeg(skimage.data.astronaut()),
        "chelsea": jpeg(skimage.data.chelsea()),
        "coffee": jpeg(skimage.data.coffee()),
        "rocket": sample_file("rocket.jpg"),
        "hubble": sample_file("hubble_deep_field.jpg"),
        "ihc": jpeg(skimage.data.immunohistochemistry()),
        "motorcycle": jpeg(skimage.data.stereo_motorcycle()[0]),
        "colorwheel": jpeg(skimage.data.colorwheel()),
    }


def opencv_bgr(data: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    """The in-process reference decode: OpenCV's BGR, resized bilinear to (width, height) when given, float32."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if size is not None:
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return image.astype(np.float32)


def nchw(*images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed ~100-byte PNG whose header claims ``width x height`` RGB pixels: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# -- models --------------------------------------------------------------------------------------------------------


def feature_extractor(images: ov.Node, seed: int = 10) -> ov.Node:
    """Two random strided convolutions with ReLU, global average pooling: ``[N,3,H,W]`` 0..255 -> ``[N,32]``."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((16, 3, 7, 7)).astype(np.float32) / np.float32(255 * np.sqrt(147))
    y = ops.relu(ops.convolution(images, ops.constant(w1), [4, 4], [3, 3], [3, 3], [1, 1]))
    w2 = rng.standard_normal((32, 16, 3, 3)).astype(np.float32) / np.float32(12)
    y = ops.relu(ops.convolution(y, ops.constant(w2), [2, 2], [1, 1], [1, 1], [1, 1]))
    return ops.reduce_mean(y, ops.constant(np.array([2, 3], np.int64)), keep_dims=False)


def classifier_model(photos: dict[str, bytes]) -> ov.Model:
    """``images [1,3,224,224]`` f32 (NCHW, as the OVMS resnet) -> ``probs [1,8]``: one class per photo.

    The head is fitted here on the photos' features (decoded in-process as a client would): standardized, L2
    normalized, compared by cosine with each photo's (x10, softmax).
    """
    batch = nchw(*(opencv_bgr(data, (SIZE, SIZE)) for data in photos.values()))
    probe = ops.parameter([len(photos), 3, SIZE, SIZE], np.float32, name="images")
    compiled = ov.Core().compile_model(ov.Model([feature_extractor(probe)], [probe]), "CPU")
    features = np.asarray(compiled(batch)[0])
    mean, std = features.mean(axis=0), features.std(axis=0) + np.float32(1e-6)
    classes = (features - mean) / std
    classes /= np.linalg.norm(classes, axis=1, keepdims=True)

    images = named(ops.parameter([1, 3, SIZE, SIZE], np.float32, name="images"), "images")
    y = ops.divide(ops.subtract(feature_extractor(images), ops.constant(mean)), ops.constant(std.astype(np.float32)))
    y = ops.normalize_l2(y, ops.constant(np.array([1], np.int64)), 1e-12, "add")
    y = ops.matmul(y, ops.constant((classes.T * 10).astype(np.float32)), False, False)
    return ov.Model([named(ops.softmax(y, 1), "probs")], [images], "classifier")


def detector_model(shape: list[int]) -> ov.Model:
    """Fully convolutional: ``images [N,3,H,W]`` -> ``heatmap [N,2,H/4,W/4]`` (sigmoid), any H and W after reshape."""
    rng = np.random.default_rng(3)
    images = named(ops.parameter(shape, np.float32, name="images"), "images")
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) / np.float32(255 * 3)
    y = ops.relu(ops.convolution(images, ops.constant(w1), [2, 2], [1, 1], [1, 1], [1, 1]))
    w2 = rng.standard_normal((2, 4, 3, 3)).astype(np.float32) / np.float32(3)
    y = ops.convolution(y, ops.constant(w2), [2, 2], [1, 1], [1, 1], [1, 1])
    return ov.Model([named(ops.sigmoid(y), "heatmap")], [images], "detector")


def rgba_model() -> ov.Model:
    """An NHWC input of 4 channels: images (1 or 3 channels) cannot be fed to it."""
    x = named(ops.parameter([1, 32, 32, 4], np.float32, name="x"), "x")
    return ov.Model([named(ops.reduce_mean(x, ops.constant(np.array([1, 2], np.int64)), False), "y")], [x], "rgba")


def in_process(model_file: Path, batch: np.ndarray) -> np.ndarray:
    """OpenVINO called directly on the saved model (NCHW), reshaped to the batch, f32 precision."""
    core = ov.Core()
    model = core.read_model(model_file)
    model.reshape({model.inputs[0].get_any_name(): list(batch.shape)})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return np.asarray(compiled(batch)[0])


# -- the daemon ----------------------------------------------------------------------------------------------------


@dataclass
class Served:
    daemon: Daemon
    rest_port: int
    root: Path
    photos: dict[str, bytes]
    classifier: Path  # the model files, for in-process references
    detector: Path
    dynamic: Path

    def file(self, name: str, data: bytes) -> str:
        path = self.root / "elements" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return str(path)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("binary")
    photos = photo_files()
    classifier = save(classifier_model(photos), root / "classifier", 1)
    detector = save(detector_model([1, 3, 64, 64]), root / "detector", 1)
    dynamic = save(detector_model([-1, 3, -1, -1]), root / "dynamic", 1)
    save(rgba_model(), root / "rgba", 1)
    nhwc = "NHWC:NCHW"
    config = write_config(
        root / "config.json",
        [
            {"name": "classifier", "base_path": str(root / "classifier"), "layout": nhwc, "batch_size": "auto"},
            {"name": "classifier_b1", "base_path": str(root / "classifier"), "layout": nhwc},
            {"name": "classifier_nchw", "base_path": str(root / "classifier")},  # no layout: cannot take images
            {"name": "detector", "base_path": str(root / "detector"), "layout": nhwc, "shape": "auto"},
            {"name": "dynamic", "base_path": str(root / "dynamic"), "layout": nhwc},
            {"name": "rgba", "base_path": str(root / "rgba")},
        ],
    )
    rest_port = free_port()
    args = ["--config", str(config), "--max-image-pixels", str(MAX_PIXELS), "--rest-port", str(rest_port)]
    with Daemon(args, root / "daemon.log") as daemon:
        daemon.wait_available("classifier", "classifier_b1", "classifier_nchw", "detector", "dynamic", "rgba")
        yield Served(daemon, rest_port, root, photos, classifier, detector, dynamic)
        assert daemon.stop() == 0, daemon.log()[-3000:]


def tfs_client(served: Served, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs the commands with the real tensorflow-serving-api, in one subprocess of its virtualenv."""
    python = client_python("OVMSCTL_TFS_PYTHON", ".venv-tfs")
    done = subprocess.run(
        [python, str(CLIENTS / "tfs_images_client.py"), served.daemon.address],
        input=json.dumps(commands),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == len(commands)
    return results


def output(result: dict[str, Any], name: str) -> np.ndarray:
    assert "outputs" in result, result
    out = result["outputs"][name]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


def string_request(model: str, input_name: str, elements: list[bytes], shape: list[int] | None = None) -> Any:
    """A Predict request with a DT_STRING input, built on the daemon's own stubs (as the TF client builds it)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    tensor = request.inputs[input_name]
    tensor.dtype = types_pb2.DT_STRING
    for size in shape or [len(elements)]:
        tensor.tensor_shape.dim.add().size = size
    tensor.string_val.extend(elements)
    return request


def assert_alive(served: Served) -> None:
    """The daemon still answers a good binary request with the right class."""
    assert served.daemon.process.poll() is None, served.daemon.log()[-3000:]
    request = string_request("classifier", "images", [served.photos["coffee"]])
    probs = tensor_to_numpy(served.daemon.prediction.Predict(request, timeout=30).outputs["probs"])
    assert int(probs.argmax()) == PHOTO_NAMES.index("coffee")


# -- the OVMS resnet flow ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(served: Served) -> np.ndarray:
    """The eight photos decoded in-process (OpenCV, 224x224 bilinear) through OpenVINO directly: probs [8,8]."""
    batch = nchw(*(opencv_bgr(served.photos[n], (SIZE, SIZE)) for n in PHOTO_NAMES))
    probs = in_process(served.classifier, batch)
    assert probs.argmax(axis=1).tolist() == list(range(8)), "each photo is its own class in-process"
    return probs


@pytest.fixture(scope="module")
def tfs_results(served: Served) -> dict[str, dict[str, Any]]:
    """Every TF Serving gRPC request of this module, sent in one run of the real client (TensorFlow imports once)."""
    files = {name: served.file(f"{name}.jpg", data) for name, data in served.photos.items()}
    chelsea, coffee = files["chelsea"], files["coffee"]
    commands: dict[str, dict[str, Any]] = {
        **{f"b1_{name}": {"model": "classifier", "input": "images", "files": [files[name]]} for name in PHOTO_NAMES},
        "b8": {"model": "classifier", "input": "images", "files": [files[n] for n in PHOTO_NAMES]},
        "png": {
            "model": "classifier",
            "input": "images",
            "files": [served.file("astronaut.png", sample_file("astronaut.png"))],
        },
        "detector_chelsea": {"model": "detector", "input": "images", "files": [chelsea]},
        "detector_coffee": {"model": "detector", "input": "images", "files": [coffee]},
        "dynamic_chelsea": {"model": "dynamic", "input": "images", "files": [chelsea, chelsea]},
        "dynamic_coffee": {"model": "dynamic", "input": "images", "files": [coffee]},
        **{f"bad_{case.name}": case.command(served) for case in BAD_CASES},
    }
    results = tfs_client(served, list(commands.values()))
    return dict(zip(commands, results, strict=True))


def test_jpeg_photos_at_batch_1_get_the_in_process_top1(
    tfs_results: dict[str, dict[str, Any]], reference: np.ndarray
) -> None:
    for index, name in enumerate(PHOTO_NAMES):
        result = tfs_results[f"b1_{name}"]
        probs = output(result, "probs")
        assert result["version"] == 1 and probs.shape == (1, 8)
        assert int(probs.argmax()) == index, (name, probs)
        np.testing.assert_allclose(probs[0], reference[index], atol=0.03)  # the daemon may infer in bf16


def test_jpeg_photos_at_batch_8_with_batch_size_auto(
    tfs_results: dict[str, dict[str, Any]], reference: np.ndarray
) -> None:
    probs = output(tfs_results["b8"], "probs")
    assert probs.shape == (8, 8)
    assert probs.argmax(axis=1).tolist() == reference.argmax(axis=1).tolist() == list(range(8))
    np.testing.assert_allclose(probs, reference, atol=0.03)


def test_a_png_photo_is_decoded_too(served: Served, tfs_results: dict[str, dict[str, Any]]) -> None:
    data = sample_file("astronaut.png")
    expected = in_process(served.classifier, nchw(opencv_bgr(data, (SIZE, SIZE))))
    probs = output(tfs_results["png"], "probs")
    assert int(probs.argmax()) == int(expected.argmax()) == PHOTO_NAMES.index("astronaut")
    np.testing.assert_allclose(probs, expected, atol=0.03)


def test_shape_auto_detector_follows_each_photo_size(served: Served, tfs_results: dict[str, dict[str, Any]]) -> None:
    for name, (height, width) in (("chelsea", (300, 451)), ("coffee", (400, 600))):
        heatmap = output(tfs_results[f"detector_{name}"], "heatmap")
        expected = in_process(served.detector, nchw(opencv_bgr(served.photos[name])))
        assert heatmap.shape == expected.shape == (1, 2, (height + 3) // 4, (width + 3) // 4)
        np.testing.assert_allclose(heatmap, expected, atol=0.02)


def test_dynamic_height_and_width_take_each_photo_size(served: Served, tfs_results: dict[str, dict[str, Any]]) -> None:
    chelsea = opencv_bgr(served.photos["chelsea"])
    for key, batch in (
        ("dynamic_chelsea", nchw(chelsea, chelsea)),
        ("dynamic_coffee", nchw(opencv_bgr(served.photos["coffee"]))),
    ):
        heatmap = output(tfs_results[key], "heatmap")
        expected = in_process(served.dynamic, batch)
        assert heatmap.shape == expected.shape
        np.testing.assert_allclose(heatmap, expected, atol=0.02)


# -- the other front ends ------------------------------------------------------------------------------------------


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode("ascii")}


def test_kserve_bytes_over_grpc_and_rest_binary(served: Served, reference: np.ndarray) -> None:
    inputs = [
        {"name": "images", "datatype": "BYTES", "shape": [8], "data": [b64(served.photos[n]) for n in PHOTO_NAMES]}
    ]
    grpc_client = TritonClient("grpc", served.daemon.address)
    http_client = TritonClient("http", f"127.0.0.1:{served.rest_port}")
    results = grpc_client.run(
        grpc_client.command("infer", model="classifier", inputs=inputs),
        http_client.command("infer", model="classifier", inputs=inputs, binary_data=True),
        grpc_client.command("infer", model="classifier", inputs=[{**inputs[0], "shape": [1], "data": [b64(b"nope")]}]),
    )
    for result in results[:2]:
        probs = output_array(result["result"]["outputs"]["probs"])
        assert probs.argmax(axis=1).tolist() == list(range(8))
        np.testing.assert_allclose(probs, reference, atol=0.03)
    assert results[2]["status"] == "INVALID_ARGUMENT"
    assert "input name: images; element: 0" in results[2]["error"]


def test_tf_serving_rest_b64(served: Served, reference: np.ndarray) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", served.rest_port, timeout=60)
    try:
        for names in ((PHOTO_NAMES[2],), PHOTO_NAMES):
            body = json.dumps({"instances": [b64(served.photos[n]) for n in names]})
            connection.request("POST", "/v1/models/classifier:predict", body, {"Content-Type": "application/json"})
            reply = connection.getresponse()
            answer = json.loads(reply.read())
            assert reply.status == 200, answer
            probs = np.asarray(answer["predictions"], np.float32)
            indices = [PHOTO_NAMES.index(n) for n in names]
            assert probs.argmax(axis=1).tolist() == indices
            np.testing.assert_allclose(probs, reference[indices], atol=0.03)
        body = json.dumps({"instances": [b64(served.photos["coffee"]), b64(b"")]})
        connection.request("POST", "/v1/models/classifier:predict", body, {"Content-Type": "application/json"})
        reply = connection.getresponse()
        answer = json.loads(reply.read())
        assert reply.status == 400 and "input name: images; element: 1" in answer["error"], answer
    finally:
        connection.close()


# -- bad data ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadCase:
    name: str
    model: str
    elements: tuple[str, ...]  # photo names, or "!<kind>" for the bad bytes below
    message: str  # the whole answer, OVMS style
    shape: tuple[int, ...] | None = None
    input: str = "images"

    def data(self, served: Served) -> list[bytes]:
        return [bad_bytes(served, e[1:]) if e.startswith("!") else served.photos[e] for e in self.elements]

    def command(self, served: Served) -> dict[str, Any]:
        files = [served.file(f"{self.name}-{i}", data) for i, data in enumerate(self.data(served))]
        command: dict[str, Any] = {"model": self.model, "input": self.input, "files": files}
        if self.shape is not None:
            command["shape"] = list(self.shape)
        return command


def bad_bytes(served: Served, kind: str) -> bytes:
    if kind == "text":
        return b"this is not an image"
    if kind == "truncated":
        return served.photos["rocket"][: len(served.photos["rocket"]) // 2]
    if kind == "retina":
        return sample_file("retina.jpg")
    if kind == "bomb":
        return png_claiming(100_000, 100_000)
    if kind == "empty":
        return b""
    raise AssertionError(kind)


def _element(sentence: str, expected: str, actual: str, index: int, name: str = "images") -> str:
    return f"{sentence} - Expected: {expected}; Actual: {actual}; input name: {name}; element: {index}"


BAD_CASES = (
    BadCase(
        "not_an_image",
        "classifier",
        ("coffee", "!text"),
        _element("Image parsing failed", "a JPEG or PNG image", "not a JPEG or PNG image", 1),
    ),
    BadCase(
        "truncated_jpeg",
        "classifier",
        ("coffee", "chelsea", "!truncated"),
        _element("Image parsing failed", "a JPEG or PNG image", "a truncated JPEG (no end-of-image marker)", 2),
    ),
    BadCase(
        "over_the_pixel_limit",
        "classifier",
        ("coffee", "!retina"),
        _element("Image is too large", f"at most {MAX_PIXELS} pixels", "1411x1411 (1990921 pixels)", 1),
    ),
    BadCase(
        "decompression_bomb",
        "classifier",
        ("!bomb",),
        _element("Image is too large", f"at most {MAX_PIXELS} pixels", "100000x100000 (10000000000 pixels)", 0),
    ),
    BadCase(
        "zero_byte_element",
        "classifier",
        ("coffee", "chelsea", "!empty"),
        _element("String val is empty", "an encoded JPEG or PNG image", "0 bytes", 2),
    ),
    BadCase(
        "mixed_sizes_for_dynamic_dims",
        "dynamic",
        ("chelsea", "coffee"),
        _element(
            "Binary input images for this endpoint are required to have the same resolution",
            "451x300 (WxH, as element 0, for input shape (-1,-1,-1,3))",
            "600x400",
            1,
        ),
    ),
    BadCase(
        "channel_mismatch",
        "rgba",
        ("coffee",),
        "Invalid number of channels in binary input - Expected: an input of 1 or 3 channels; Actual: 4; input name: x",
        input="x",
    ),
    BadCase(
        "nchw_model_without_layout",
        "classifier_nchw",
        ("coffee",),
        "Received binary image input but resource not configured to accept NHWC layout - Expected: NHWC; Actual: "
        "NCHW (guessed from the shape (1,3,224,224)); input name: images; configure layout NHWC:NCHW for input images",
    ),
    BadCase(
        "batch_of_8_for_batch_1",
        "classifier_b1",
        PHOTO_NAMES,
        "Invalid input batch size - Expected: 1; Actual: 8; input name: images",
    ),
    BadCase(
        "strings_not_shaped_n",
        "classifier",
        ("coffee",),
        "Invalid input precision - Expected: FP32; Actual: STRING; input name: images",
        shape=(1, 1),
    ),
)


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda c: c.name)
def test_bad_data_is_invalid_argument_naming_input_and_element(
    case: BadCase, served: Served, tfs_results: dict[str, dict[str, Any]]
) -> None:
    result = tfs_results[f"bad_{case.name}"]
    assert result == {"code": "INVALID_ARGUMENT", "details": case.message}
    assert_alive(served)


def test_no_memory_growth_over_1000_bad_requests(served: Served) -> None:
    requests = [string_request(c.model, c.input, c.data(served), list(c.shape) if c.shape else None) for c in BAD_CASES]
    stub = served.daemon.prediction

    def send(count: int) -> None:
        for i in range(count):
            error = rpc_error(lambda i=i: stub.Predict(requests[i % len(requests)], timeout=30))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()

    def rss_kib() -> int:
        status = Path(f"/proc/{served.daemon.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])

    send(200)  # warm-up: every path's first allocations (OpenCV, the decode pool, gRPC buffers)
    before = rss_kib()
    started = time.monotonic()
    send(1000)
    after = rss_kib()
    growth_mib = (after - before) / 1024
    assert growth_mib < 24, f"RSS grew {growth_mib:.1f} MiB over 1,000 bad requests ({before} -> {after} KiB)"
    assert time.monotonic() - started < 60
    assert_alive(served)


# -- the pixel limit option ----------------------------------------------------------------------------------------


def test_the_pixel_limit_defaults_to_the_decoders() -> None:
    option = next(o for o in OPTIONS if o.name == "--max-image-pixels")
    assert option.default == images_module.DEFAULT_MAX_PIXELS
