"""On-demand reshape (``batch_size: auto``, ``shape: auto``) against a real daemon, and OVMS's fixed-shape cases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.support.daemon import Daemon, rpc_error, write_config
from tests.support.models import LIGHT_RESNET50, conv_model, reference_outputs, save, save_onnx_resnet, scale_model

RESNET_INPUT, RESNET_OUTPUT = "gpu_0/data_0", "gpu_0/softmax_1"
F32 = {"INFERENCE_PRECISION_HINT": "f32"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reshape")
    save_onnx_resnet(root / "resnet")
    save(conv_model(size=16), root / "conv", 1)
    save(scale_model([1, 4]), root / "scale", 1)
    save(scale_model([], factor=2.0), root / "scalar", 1)
    return root


@pytest.fixture(scope="module")
def daemon(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    logs = tmp_path_factory.mktemp("reshape-logs")
    config = write_config(
        logs / "config.json",
        [
            {"name": "resnet", "base_path": str(repo / "resnet"), "batch_size": "auto", "plugin_config": F32},
            {"name": "detector", "base_path": str(repo / "conv"), "shape": "auto"},
            {"name": "conv_named", "base_path": str(repo / "conv"), "shape": {"data": "(1,3,60,60)"}},
            {"name": "conv_anonymous", "base_path": str(repo / "conv"), "shape": "(1,3,60,60)"},
            {"name": "conv_dynamic", "base_path": str(repo / "conv"), "shape": "(1,3,-1,-1)"},
            {"name": "range_batch", "base_path": str(repo / "scale"), "batch_size": "1:4"},
            {"name": "auto_batch", "base_path": str(repo / "scale"), "batch_size": "auto"},
            {"name": "scalar_auto", "base_path": str(repo / "scalar"), "batch_size": "auto"},
        ],
    )
    with Daemon(["--config", str(config)], logs / "daemon.log") as d:
        d.wait_available(
            "resnet", "detector", "conv_named", "conv_anonymous", "conv_dynamic", "range_batch", "auto_batch"
        )
        yield d
        assert d.stop() == 0, d.log()


def test_batch_auto_classifier_serves_any_batch_with_correct_top1(daemon: Daemon) -> None:
    rng = np.random.default_rng(1)
    images = rng.random((8, 3, 224, 224), dtype=np.float32)
    expected = np.concatenate(
        [reference_outputs(LIGHT_RESNET50, {RESNET_INPUT: images[i : i + 1]})[RESNET_OUTPUT] for i in range(8)]
    )
    for batch in (1, 8, 6, 1, 8):
        out = daemon.predict("resnet", {RESNET_INPUT: images[:batch]})[RESNET_OUTPUT]
        assert out.shape == (batch, 1000)
        np.testing.assert_array_equal(out.argmax(axis=1), expected[:batch].argmax(axis=1))
    dims = daemon.metadata("resnet").metadata["signature_def"]
    assert dims.type_url.endswith("SignatureDefMap")
    assert "compiled shape" in daemon.log() and "gpu_0/data_0(8,3,224,224)" in daemon.log()


DETECTOR_SHAPES = [(1, 3, 300, 300), (1, 3, 500, 500), (1, 3, 224, 224), (4, 3, 224, 224), (8, 3, 312, 142)]


@pytest.mark.parametrize("shape", [*DETECTOR_SHAPES, (1, 3, 1024, 1024)], ids=str)
def test_shape_auto_follows_each_request(daemon: Daemon, shape: tuple[int, ...]) -> None:
    out = daemon.predict("detector", {"data": np.ones(shape, np.float32)})["out"]
    assert out.shape == (shape[0], 1, shape[2], shape[3])


def test_metadata_reports_the_most_recently_compiled_shape(daemon: Daemon) -> None:
    daemon.predict("detector", {"data": np.ones((2, 3, 40, 30), np.float32)})
    signature = _signature(daemon, "detector")
    assert signature.inputs["data"].tensor_shape.dim[0].size == 2
    assert [d.size for d in signature.inputs["data"].tensor_shape.dim] == [2, 3, 40, 30]


@pytest.mark.parametrize("name", ["conv_named", "conv_anonymous"])
def test_fixed_configured_shape_accepts_it_and_rejects_others(daemon: Daemon, name: str) -> None:
    assert daemon.predict(name, {"data": np.ones((1, 3, 60, 60), np.float32)})["out"].shape == (1, 1, 60, 60)
    error = rpc_error(lambda: daemon.predict(name, {"data": np.ones((1, 3, 61, 60), np.float32)}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Invalid input shape - Expected: (1,3,60,60); Actual: (1,3,61,60); input name: data" in error.details()
    error = rpc_error(lambda: daemon.predict(name, {"data": np.ones((2, 3, 60, 60), np.float32)}))
    assert "Invalid input batch size - Expected: 1; Actual: 2; input name: data" in error.details()


def test_native_dynamic_dims_and_ranges_need_no_reload(daemon: Daemon) -> None:
    for h, w in ((10, 10), (33, 17)):
        assert daemon.predict("conv_dynamic", {"data": np.ones((1, 3, h, w), np.float32)})["out"].shape == (1, 1, h, w)
    assert [d.size for d in _signature(daemon, "conv_dynamic").inputs["data"].tensor_shape.dim] == [1, 3, -1, -1]
    for batch in (1, 4):
        assert daemon.predict("range_batch", {"x": np.ones((batch, 4), np.float32)})["y"].shape == (batch, 4)
    error = rpc_error(lambda: daemon.predict("range_batch", {"x": np.ones((5, 4), np.float32)}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Invalid input batch size - Expected: 1:4; Actual: 5; input name: x" in error.details()


def test_batch_auto_still_checks_the_other_dimensions(daemon: Daemon) -> None:
    error = rpc_error(lambda: daemon.predict("auto_batch", {"x": np.ones((3, 5), np.float32)}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Invalid input shape - Expected: (3,4); Actual: (3,5); input name: x" in error.details()
    error = rpc_error(lambda: daemon.predict("auto_batch", {"x": np.ones((3, 4, 1), np.float32)}))
    assert "Invalid number of shape dimensions" in error.details()


def test_impossible_reshape_is_failed_precondition_and_the_model_keeps_serving(daemon: Daemon) -> None:
    error = rpc_error(lambda: daemon.predict("detector", {"data": np.ones((3, 10, 10), np.float32)}))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "Model could not be reshaped with requested shape" in error.details()
    assert daemon.predict("detector", {"data": np.ones((1, 3, 20, 20), np.float32)})["out"].shape == (1, 1, 20, 20)


def test_scalar_input_with_batch_auto_is_a_load_error(daemon: Daemon) -> None:
    [entry] = daemon.status("scalar_auto").model_version_status
    assert entry.status.error_code != 0
    assert "scalar" in entry.status.error_message


@pytest.mark.parametrize("repetition", range(3))
def test_concurrent_clients_with_different_batches_all_succeed(daemon: Daemon, repetition: int) -> None:
    results: dict[int, object] = {}

    def client(batch: int) -> None:
        try:
            for _ in range(3):
                x = np.full((batch, 4), float(batch), np.float32)
                out = daemon.predict("auto_batch", {"x": x})["y"]
                assert out.shape == (batch, 4) and float(out[0, 0]) == 2.0 * batch
            results[batch] = "ok"
        except Exception as exc:  # collected and reported below
            results[batch] = exc

    threads = [threading.Thread(target=client, args=(b,)) for b in range(2, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == dict.fromkeys(range(2, 7), "ok")


def _signature(daemon: Daemon, name: str):
    from ovmsd.api.grpc.proto import get_model_metadata_pb2

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    daemon.metadata(name).metadata["signature_def"].Unpack(signature_map)
    return signature_map.signature_def["serving_default"]


def test_allow_cache_writes_compiled_shapes_to_the_cache_dir(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    config = write_config(
        tmp_path / "config.json",
        [
            {"name": "cached", "base_path": str(repo / "conv"), "shape": "auto", "allow_cache": True},
            {"name": "uncached", "base_path": str(repo / "scale")},
        ],
    )
    with Daemon(["--config", str(config), "--cache-dir", str(cache)], tmp_path / "d.log") as d:
        d.wait_available("cached", "uncached")
        blobs = set(cache.iterdir())
        assert blobs, "the configured shape was compiled through the cache"
        assert d.predict("cached", {"data": np.ones((1, 3, 24, 24), np.float32)})["out"].shape == (1, 1, 24, 24)
        assert len(set(cache.iterdir()) - blobs) >= 1, "a reshaped variant is cached too"
        assert d.stop() == 0
