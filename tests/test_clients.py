"""Unmodified real clients against the daemon: tensorflow-serving-api and ovmsclient, each in its own virtualenv.

They run in subprocesses: TensorFlow's protos and ours would clash in one process's descriptor pool, and the daemon's
environment must never hold tensorflow. ``make test`` installs both virtualenvs.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.daemon import REPO, Daemon, write_config
from tests.support.models import save, scale_model

CLIENTS = Path(__file__).parent / "clients"


def client_python(env_var: str, venv: str) -> str:
    python = os.environ.get(env_var) or str(REPO / venv / "bin" / "python")
    if not Path(python).exists():
        pytest.fail(f"{python} is missing: run `make test` (or `make venv-clients`) to install the client virtualenvs")
    return python


def run_client(python: str, script: str, *args: str) -> dict:
    done = subprocess.run([python, str(CLIENTS / script), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("clients")
    save(scale_model([1, 4], factor=2.0), root / "scale", 1)
    save(scale_model([1, 4], factor=5.0), root / "scale", 2)
    config = write_config(root / "config.json", [{"name": "scale", "base_path": str(root / "scale")}])
    with Daemon(["--config", str(config)], root / "daemon.log") as d:
        d.wait_available("scale")
        yield d
        assert d.stop() == 0


@pytest.fixture
def input_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    array = np.array([[1.0, -2.5, 3.0, 0.5]], dtype=np.float32)
    path = tmp_path / "input.npy"
    np.save(path, array)
    return path, array


def test_tensorflow_serving_api_client(daemon: Daemon, input_file: tuple[Path, np.ndarray]) -> None:
    python = client_python("OVMSCTL_TFS_PYTHON", ".venv-tfs")
    path, array = input_file
    result = run_client(python, "tfs_client.py", daemon.address, "scale", "x", str(path))
    assert result["version"] == 2, "the default version is the highest"
    np.testing.assert_array_equal(result["outputs"]["y"], array * 5)
    np.testing.assert_array_equal(result["typed_outputs"]["y"], array * 5)
    assert result["metadata_version"] == 2
    assert result["inputs"] == {"x": [1, 4]} and result["outputs_meta"] == {"y": [1, 4]}
    assert result["input_dtypes"] == {"x": "float32"}
    # latest-1 policy: version 1 is on disk but never loaded, so it is not listed
    assert result["status"] == [{"version": 2, "state": 30, "code": 0, "message": "OK"}]
    assert result["unknown_model"] == "NOT_FOUND"


def test_ovmsclient(daemon: Daemon, input_file: tuple[Path, np.ndarray]) -> None:
    python = client_python("OVMSCTL_OVMSCLIENT_PYTHON", ".venv-ovmsclient")
    path, array = input_file
    result = run_client(python, "ovmsclient_client.py", daemon.address, "scale", "x", str(path))
    [output] = result["outputs"].values()
    np.testing.assert_array_equal(output, array * 5)
    assert result["metadata"]["model_version"] == 2
    assert result["metadata"]["inputs"]["x"]["shape"] == [1, 4]
    assert result["metadata"]["outputs"]["y"]["shape"] == [1, 4]
    assert result["status"]["2"]["state"] == "AVAILABLE"
    assert result["unknown_model"] == "ModelNotFoundError"
