"""The protocol-free data plane, called directly over a real manager with real OpenVINO models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import pytest

from ovmsd.api.errors import ERROR_CODES
from ovmsd.config.loader import parse_config_text
from ovmsd.errors import ErrorKind, ServingError
from ovmsd.serving.dataplane import DataPlane
from ovmsd.serving.instance import ModelInstance, ServingOptions
from ovmsd.serving.manager import ModelManager
from tests.support.loader import WAIT_S
from tests.support.models import save, scale_model


@pytest.fixture
def phase() -> dict[str, str]:
    return {"now": "serving"}


@pytest.fixture
def plane(tmp_path: Path, phase: dict[str, str]) -> Iterator[DataPlane]:
    core = ov.Core()

    def load(model_file: Path, config: Any, version: int) -> ModelInstance:
        return ModelInstance(core, model_file, config, version, ServingOptions())

    save(scale_model([1, 4], factor=2.0), tmp_path / "double", 1)
    (tmp_path / "empty").mkdir()
    manager = ModelManager(load, settle_s=0.0)
    entries = [
        {"config": {"name": "double", "base_path": str(tmp_path / "double"), "batch_size": "auto"}},
        {"config": {"name": "empty", "base_path": str(tmp_path / "empty")}},
    ]
    manager.apply(parse_config_text(json.dumps({"model_config_list": entries}), fmt="json"), settle=False)
    yield DataPlane(manager, phase=lambda: phase["now"])
    manager.shutdown(timeout=WAIT_S)


def kind_of(call: Any) -> ErrorKind:
    with pytest.raises(ServingError) as caught:
        call()
    return caught.value.kind


def test_infer_serves_named_arrays_with_the_version_and_reshapes(plane: DataPlane) -> None:
    with plane.infer("double", None, {"x": np.ones((3, 4), np.float32)}) as result:
        assert result.version == 1 and set(result.outputs) == {"y"}
        np.testing.assert_array_equal(result.outputs["y"], np.full((3, 4), 2.0))
    with plane.infer("double", 1, {"x": np.ones((1, 4), np.float32)}, ["y"]) as result:
        assert list(result.outputs) == ["y"]


def test_infer_errors_have_their_kinds(plane: DataPlane) -> None:
    x = {"x": np.ones((1, 4), np.float32)}
    assert kind_of(lambda: plane.infer("nope", None, x).__enter__()) == ErrorKind.MODEL_MISSING
    assert kind_of(lambda: plane.infer("double", 5, x).__enter__()) == ErrorKind.VERSION_MISSING
    assert kind_of(lambda: plane.infer("double", None, {}).__enter__()) == ErrorKind.INVALID_INPUT
    assert kind_of(lambda: plane.infer("double", None, x, ["z"]).__enter__()) == ErrorKind.INVALID_INPUT
    bad = {"x": np.ones((1, 4), np.int32)}
    assert kind_of(lambda: plane.infer("double", None, bad).__enter__()) == ErrorKind.INVALID_INPUT


def test_a_failure_after_the_version_was_chosen_names_that_version(plane: DataPlane) -> None:
    with pytest.raises(ServingError) as caught, plane.infer("double", None, {"x": np.ones((1, 5), np.float32)}):
        pass
    assert caught.value.version == 1


def test_metadata_and_status(plane: DataPlane) -> None:
    metadata = plane.metadata("double", None)
    assert metadata.version == 1 and [s.name for s in metadata.signature.inputs] == ["x"]
    assert [s.version for s in plane.status("double", None)] == [1]


def test_readiness_means_every_configured_model_serves_and_not_stopping(
    plane: DataPlane, phase: dict[str, str], tmp_path: Path
) -> None:
    assert plane.model_ready("double", None) and plane.model_ready("double", 1)
    assert not plane.server_ready(), "'empty' has no AVAILABLE version"
    save(scale_model([1, 4]), tmp_path / "empty", 1)
    plane.manager.reconcile().wait(WAIT_S)
    assert plane.server_ready()
    phase["now"] = "stopping"
    assert not plane.server_ready() and not plane.model_ready("double", None)
    assert plane.server_live(), "live during the drain"
    phase["now"] = "starting"
    assert not plane.server_ready()


def test_every_error_kind_has_a_code_for_every_protocol() -> None:
    assert set(ERROR_CODES) == set(ErrorKind)
