"""Component tests of the manager: real directories, real lifecycle and threads, loads controlled by the test.

Synchronisation is by events and by waiting for passes (``Pending.wait``, ``wait_idle``), never by sleeping: each
test fails when the behaviour is wrong, not when the machine is slow.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import pytest

from ovmsd.config.loader import parse_config_text
from ovmsd.config.models import ServerConfig
from ovmsd.errors import ErrorKind, ServingError
from ovmsd.serving.instance import ModelInstance, ServingOptions
from ovmsd.serving.lifecycle import LEGAL, Lifecycle
from ovmsd.serving.manager import ModelManager
from ovmsd.serving.states import State
from ovmsd.serving.version import ModelVersion
from tests.support.loader import WAIT_S, HeldLoader, make_version
from tests.support.models import save, scale_model


def config(root: Path, *models: str | dict[str, Any]) -> ServerConfig:
    entries = []
    for model in models:
        entry = {"name": model, "base_path": str(root / model)} if isinstance(model, str) else model
        entries.append({"config": entry})
    return parse_config_text(json.dumps({"model_config_list": entries}), fmt="json")


def states(manager: ModelManager, name: str) -> dict[int, State]:
    return {s.version: s.state for s in manager.statuses(name)}


@pytest.fixture
def loader() -> HeldLoader:
    return HeldLoader()


@pytest.fixture
def manager(loader: HeldLoader) -> Iterator[ModelManager]:
    # settle_s=0: every directory counts as complete, so passes load what they see
    built = ModelManager(loader, drain_timeout_s=WAIT_S, settle_s=0.0, load_workers=4)
    yield built
    built.shutdown(timeout=1)


def test_a_held_load_of_one_model_holds_back_no_other_model_nor_a_reload(
    tmp_path: Path, loader: HeldLoader, manager: ModelManager
) -> None:
    for name in ("a", "b", "c"):
        make_version(tmp_path / name, 1)
    manager.apply(config(tmp_path, "a", "b"), settle=False)
    assert states(manager, "a") == {1: State.AVAILABLE} and states(manager, "b") == {1: State.AVAILABLE}

    release_a = loader.hold("a", 2)
    make_version(tmp_path / "a", 2)
    manager.reconcile(["a"])
    loader.wait_started("a", 2)

    make_version(tmp_path / "b", 2)
    assert manager.reconcile(["b"]).wait(WAIT_S) is not None, "b's pass waited for a's load"
    assert states(manager, "b") == {1: State.END, 2: State.AVAILABLE}

    outcomes = manager.apply(config(tmp_path, "a", "b", "c"))  # returns while a's load is still held
    by_model = {o.model: o for o in outcomes}
    assert by_model["c"].action == "added" and by_model["c"].available == (1,)
    assert by_model["a"].pending, "a is busy: reported as it is, not waited for"
    assert states(manager, "a") == {1: State.AVAILABLE, 2: State.LOADING}

    release_a.set()
    assert manager.wait_idle(WAIT_S)
    assert states(manager, "a") == {1: State.END, 2: State.AVAILABLE}


def test_a_request_holding_an_old_version_blocks_no_transition(
    tmp_path: Path, loader: HeldLoader, manager: ModelManager
) -> None:
    make_version(tmp_path / "old", 1)
    make_version(tmp_path / "other", 1)
    manager.apply(config(tmp_path, "old", "other"), settle=False)
    with manager.acquire("old") as (number, instance):
        assert number == 1
        make_version(tmp_path / "old", 2)
        assert manager.reconcile(["old"]).wait(WAIT_S) is not None, "the retire waited for the request"
        assert states(manager, "old") == {1: State.UNLOADING, 2: State.AVAILABLE}
        with manager.acquire("old") as (newer, _):
            assert newer == 2, "new requests go to the new version at once"

        make_version(tmp_path / "other", 2)
        other = {"name": "other", "base_path": str(tmp_path / "other"), "nireq": 2}  # a loading field changed
        outcomes = manager.apply(config(tmp_path, "old", other))
        assert {o.model: o.action for o in outcomes} == {"old": "unchanged", "other": "reloaded"}
        assert states(manager, "other")[2] == State.AVAILABLE
        make_version(tmp_path / "old", 3)
        assert manager.reconcile(["old"]).wait(WAIT_S) is not None
        assert states(manager, "old") == {1: State.UNLOADING, 2: State.END, 3: State.AVAILABLE}
        assert not instance.closed, "a held instance is never closed under its request"
    assert states(manager, "old")[1] == State.END, "the last release ends the version"
    assert instance.closed, "a drained instance is freed"


def test_the_drain_timeout_ends_a_version_whose_request_never_finishes(tmp_path: Path, loader: HeldLoader) -> None:
    manager = ModelManager(loader, drain_timeout_s=0.2, settle_s=0.0)
    try:
        make_version(tmp_path / "m", 1)
        manager.apply(config(tmp_path, "m"), settle=False)
        with manager.acquire("m") as (_, instance):
            make_version(tmp_path / "m", 2)
            manager.reconcile().wait(WAIT_S)
            assert manager.lifecycle.wait_drained(WAIT_S), "ended by the drain timeout"
            assert states(manager, "m") == {1: State.END, 2: State.AVAILABLE}
            assert not instance.closed, "the request still running keeps a usable instance"
    finally:
        manager.shutdown(timeout=1)


def test_loads_of_different_models_run_at_once_on_a_bounded_pool(tmp_path: Path, loader: HeldLoader) -> None:
    manager = ModelManager(loader, settle_s=0.0, load_workers=2)
    names = ["m0", "m1", "m2"]
    releases = [loader.hold(n, 1) for n in names]
    for name in names:
        make_version(tmp_path / name, 1)
    applied = threading.Thread(target=manager.apply, args=(config(tmp_path, *names),), kwargs={"settle": False})
    applied.start()
    try:
        loader.wait_started("m0", 1)
        loader.wait_started("m1", 1)
        assert loader.started.count(("m2", 1)) == 0, "a third load waits for a free worker"
        releases[0].set()
        loader.wait_started("m2", 1)
        for release in releases:
            release.set()
        applied.join(WAIT_S)
        assert not applied.is_alive()
        assert loader.most_running == 2
    finally:
        for release in releases:
            release.set()
        manager.shutdown(timeout=1)


def test_versions_of_one_model_load_in_order_one_at_a_time(
    tmp_path: Path, loader: HeldLoader, manager: ModelManager
) -> None:
    for version in (1, 2, 3):
        make_version(tmp_path / "m", version)
    policy = {"name": "m", "base_path": str(tmp_path / "m"), "model_version_policy": {"all": {}}}
    manager.apply(config(tmp_path, policy), settle=False)
    assert loader.started == [("m", 1), ("m", 2), ("m", 3)]
    assert loader.most_running_per_model["m"] == 1


def test_a_stop_abandons_a_held_load_and_registers_nothing(
    tmp_path: Path, loader: HeldLoader, manager: ModelManager
) -> None:
    make_version(tmp_path / "m", 1)
    release = loader.hold("m", 1)
    applied = threading.Thread(target=manager.apply, args=(config(tmp_path, "m"),), kwargs={"settle": False})
    applied.start()
    loader.wait_started("m", 1)
    assert manager.loads_running == 1
    assert manager.shutdown(timeout=WAIT_S), "a stop does not wait for a load"
    applied.join(WAIT_S)
    assert not applied.is_alive(), "apply returns once the manager stops"
    assert states(manager, "m") == {1: State.END}
    release.set()
    loader.wait_finished("m", 1)
    assert manager.wait_idle(WAIT_S)
    assert states(manager, "m") == {1: State.END}, "the abandoned load's result was dropped"
    assert manager.lifecycle.illegal_transitions == 0


def test_a_failed_version_leaves_the_previous_one_serving_and_is_retried_on_change(
    tmp_path: Path, loader: HeldLoader, manager: ModelManager
) -> None:
    make_version(tmp_path / "m", 1)
    manager.apply(config(tmp_path, "m"), settle=False)
    loader.fail("m", 2, "broken model file")
    make_version(tmp_path / "m", 2)
    [outcome] = manager.reconcile().wait(WAIT_S) or []
    assert outcome.errors == ("version 2: broken model file",)
    assert states(manager, "m") == {1: State.AVAILABLE, 2: State.LOADING}
    [status] = [s for s in manager.statuses("m") if s.version == 2]
    assert status.error_message == "broken model file"
    manager.reconcile().wait(WAIT_S)
    assert loader.started.count(("m", 2)) == 1, "not retried while the files stay the same"

    loader.heal("m", 2)
    (tmp_path / "m" / "2" / "model.onnx").write_bytes(b"fixed, and longer than before")
    manager.reconcile().wait(WAIT_S)
    assert states(manager, "m") == {1: State.END, 2: State.AVAILABLE}


def test_a_removed_model_retires_and_a_returning_directory_loads_again(
    tmp_path: Path, loader: HeldLoader, manager: ModelManager
) -> None:
    make_version(tmp_path / "m", 1)
    make_version(tmp_path / "keep", 1)
    manager.apply(config(tmp_path, "m", "keep"), settle=False)
    outcomes = manager.apply(config(tmp_path, "keep"))
    assert [o.action for o in outcomes if o.model == "m"] == ["removed"]
    assert states(manager, "m") == {1: State.END}
    with pytest.raises(ServingError) as error:
        manager.acquire("m").__enter__()
    assert error.value.kind == ErrorKind.VERSION_MISSING

    manager.apply(config(tmp_path, "m", "keep"))
    assert states(manager, "m") == {1: State.AVAILABLE}, "END -> LOADING -> AVAILABLE"
    assert manager.lifecycle.illegal_transitions == 0


def test_requests_during_the_first_load_hear_not_loaded_yet(
    tmp_path: Path, loader: HeldLoader, manager: ModelManager
) -> None:
    make_version(tmp_path / "m", 1)
    release = loader.hold("m", 1)
    applied = threading.Thread(target=manager.apply, args=(config(tmp_path, "m"),), kwargs={"settle": False})
    applied.start()
    loader.wait_started("m", 1)
    with pytest.raises(ServingError) as error:
        manager.acquire("m").__enter__()
    assert error.value.kind == ErrorKind.VERSION_NOT_LOADED_YET
    release.set()
    applied.join(WAIT_S)


# -- the lifecycle's rules ------------------------------------------------------------------------------------------


def test_only_legal_transitions_change_a_state(caplog: pytest.LogCaptureFixture) -> None:
    lifecycle = Lifecycle(drain_timeout_s=1)
    version = ModelVersion("m", 1, Path("/nowhere"))
    assert not lifecycle.make_available(version, object())  # type: ignore[arg-type]  # START -> AVAILABLE
    assert version.state == State.START
    assert lifecycle.illegal_transitions == 1
    assert "BUG: illegal lifecycle transition START -> AVAILABLE for model m version 1" in caplog.text
    assert lifecycle.start_loading(version) and lifecycle.load_failed(version, "boom")
    assert version.state == State.LOADING and version.status.error_message == "boom"
    lifecycle.retire(version)
    assert version.state == State.END, "a version that never served ends at once"
    assert lifecycle.start_loading(version), "END -> LOADING when the directory comes back"


def test_the_transition_table_is_the_documented_one() -> None:
    edges = {(a.name, b.name) for a, targets in LEGAL.items() for b in targets}
    assert edges == {
        ("START", "LOADING"),
        ("LOADING", "LOADING"),
        ("LOADING", "AVAILABLE"),
        ("LOADING", "END"),
        ("AVAILABLE", "AVAILABLE"),
        ("AVAILABLE", "UNLOADING"),
        ("UNLOADING", "END"),
        ("END", "LOADING"),
    }


def test_retire_marks_unloading_at_once_and_the_last_release_ends_it() -> None:
    lifecycle = Lifecycle(drain_timeout_s=WAIT_S)
    version = ModelVersion("m", 1, Path("/nowhere"))
    instance = _Closable()
    lifecycle.start_loading(version)
    lifecycle.make_available(version, instance)  # type: ignore[arg-type]
    assert version.try_acquire() is instance
    lifecycle.retire(version)
    assert version.state == State.UNLOADING and lifecycle.unloading() == 1
    assert version.try_acquire() is None, "no new request once UNLOADING"
    version.release()
    assert version.state == State.END and instance.closed and lifecycle.unloading() == 0


def test_observers_hear_of_each_end_once_and_a_failing_one_stops_nothing(caplog: pytest.LogCaptureFixture) -> None:
    lifecycle = Lifecycle(drain_timeout_s=WAIT_S)
    heard: list[tuple[str, int]] = []

    def broken(model: str, version: int) -> None:
        raise RuntimeError("observer bug")

    lifecycle.ended.extend([broken, lambda model, version: heard.append((model, version))])
    draining, never_served = ModelVersion("m", 1, Path("/nowhere")), ModelVersion("m", 2, Path("/nowhere"))
    lifecycle.start_loading(draining)
    lifecycle.make_available(draining, _Closable())  # type: ignore[arg-type]
    assert draining.try_acquire() is not None
    lifecycle.retire(draining)
    assert heard == [], "UNLOADING is not the end"
    draining.release()
    lifecycle.start_loading(never_served)
    lifecycle.retire(never_served)
    lifecycle.retire(never_served)  # already END: no second word
    assert heard == [("m", 1), ("m", 2)]
    assert draining.state == State.END and never_served.state == State.END
    assert caplog.text.count("an observer of its end failed") == 2


class _Closable:
    closed = False

    def close(self) -> None:
        self.closed = True


# -- a real instance replaced in place ------------------------------------------------------------------------------


def test_an_instance_replaced_in_place_answers_a_new_shape_request_held_across_the_swap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    core = ov.Core()
    options = ServingOptions()

    def load(model_file: Path, model_config: Any, version: int) -> ModelInstance:
        return ModelInstance(core, model_file, model_config, version, options)

    manager = ModelManager(load, settle_s=0.0)
    try:
        save(scale_model([1, 4], factor=2.0), tmp_path / "m", 1)
        entry = {"name": "m", "base_path": str(tmp_path / "m"), "batch_size": "auto"}
        manager.apply(config(tmp_path, entry), settle=False)
        with manager.acquire("m") as (_, held):
            replacement = save(scale_model([1, 4], factor=5.0), tmp_path / "staging", 1).parent
            for name in ("model.xml", "model.bin"):
                (tmp_path / "m" / "1" / name).write_bytes((replacement / name).read_bytes())
            with caplog.at_level(logging.INFO):
                manager.reconcile().wait(WAIT_S)
            with manager.acquire("m") as (_, current):
                assert current is not held, "reloaded in place"
            with held.run({"x": np.ones((3, 4), np.float32)}) as (_, outputs):  # a new batch size: a compile
                np.testing.assert_array_equal(outputs["y"], np.full((3, 4), 2.0, np.float32))
        assert states(manager, "m") == {1: State.AVAILABLE}
    finally:
        manager.shutdown(timeout=1)
