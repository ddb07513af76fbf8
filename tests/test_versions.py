"""Version directories and policies: which versions serve, the default version, and NOT_FOUND for the others."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from ovmsd.serving.states import State
from tests.support.daemon import Daemon, rpc_error, write_config
from tests.support.models import save, scale_model

X = np.ones((1, 4), np.float32)
POLICIES = {
    "latest2": ({"latest": {"num_versions": 2}}, {2, 3}),
    "specific13": ({"specific": {"versions": [1, 3]}}, {1, 3}),
    "all": ({"all": {}}, {1, 2, 3}),
    "default": (None, {3}),
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("versions")
    base = root / "model"
    for version in (1, 2, 3):
        save(scale_model([1, 4], factor=float(version)), base, version)
    (base / "3.tmp").mkdir()  # never a version
    (base / "notes.txt").write_text("not a version either")
    models = []
    for name, (policy, _) in POLICIES.items():
        entry = {"name": name, "base_path": str(base)}
        if policy is not None:
            entry["model_version_policy"] = policy
        models.append(entry)
    config = write_config(root / "config.json", models)
    with Daemon(["--config", str(config)], root / "daemon.log") as d:
        d.wait_available(*POLICIES)
        yield d
        assert d.stop() == 0


@pytest.mark.parametrize("name", list(POLICIES))
def test_policy_selects_exactly_the_expected_versions(daemon: Daemon, name: str) -> None:
    _, expected = POLICIES[name]
    daemon.wait_for_states({name: dict.fromkeys(expected, State.AVAILABLE)})
    assert set(daemon.states(name)) == expected, "versions outside the policy are never loaded nor listed"
    for version in (1, 2, 3):
        if version in expected:
            out = daemon.predict(name, {"x": X}, version=version)["y"]
            np.testing.assert_array_equal(out, X * version)  # version N multiplies by N
        else:
            error = rpc_error(lambda v=version: daemon.predict(name, {"x": X}, version=v))
            assert error.code() == grpc.StatusCode.NOT_FOUND
            assert "Model with requested version is not found" in error.details()


@pytest.mark.parametrize("name", list(POLICIES))
def test_no_version_means_the_highest_available(daemon: Daemon, name: str) -> None:
    _, expected = POLICIES[name]
    response = daemon.predict_raw(name, {"x": X})
    assert response.model_spec.version.value == max(expected)
    assert daemon.metadata(name).model_spec.version.value == max(expected)


def test_non_numeric_entries_are_skipped_with_one_warning(daemon: Daemon) -> None:
    log = daemon.log()
    assert "3.tmp" in log
    assert log.count("ignoring entries that are not version numbers") == len(POLICIES)  # once per model, not per poll
