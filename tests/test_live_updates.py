"""Live updates: version directories and config edits applied while serving, with zero failed requests."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from ovmsd.serving.states import State
from tests.support.daemon import Daemon, rpc_error, write_config
from tests.support.models import save, scale_model

TRANSITION_S = 3.0  # every status transition happens within this long after the change


def wait_for(condition: Callable[[], bool], timeout: float = TRANSITION_S, what: str = "condition") -> float:
    """Poll until ``condition`` holds; returns how long it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def states_are(daemon: Daemon, name: str, expected: dict[int, State]) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return daemon.states(name) == expected
        except grpc.RpcError:
            return False

    return check


def publish(model_factor: float, base: Path, version: int, staging: Path) -> None:
    """Write a version elsewhere, then rename it into place: the atomic way to publish."""
    staged = save(scale_model([1, 4], factor=model_factor), staging / f"{base.name}-{version}", 1).parent
    shutil.move(str(staged), str(base / str(version)))


class Clients:
    """Client threads sending requests continuously to a model's default version, counting failures."""

    def __init__(self, daemon: Daemon, model: str, threads: int = 4) -> None:
        self.daemon = daemon
        self.model = model
        self.ok = 0
        self.failures: list[str] = []
        self.versions_seen: set[int] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def __enter__(self) -> Clients:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def _run(self, index: int) -> None:
        batch = 1 + index % 3  # mixed batch sizes on a batch_size: auto model
        x = np.ones((batch, 4), np.float32)
        while not self._stop.is_set():
            try:
                response = self.daemon.predict_raw(self.model, {"x": x}, timeout=30)
                with self._lock:
                    self.ok += 1
                    self.versions_seen.add(response.model_spec.version.value)
            except grpc.RpcError as exc:
                with self._lock:
                    self.failures.append(f"{exc.code().name}: {exc.details()}")


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    paths = {name: tmp_path / name for name in ("models", "staging", "logs")}
    for p in paths.values():
        p.mkdir()
    return paths


def start_daemon(config: Path, logs: Path) -> Daemon:
    # DEBUG: each pass over a model is logged, so a test can wait for rescans instead of sleeping through them
    args = ["--config", str(config), "--file-system-poll-wait-seconds", "0.5", "--log-level", "DEBUG"]
    return Daemon(args, logs / "daemon.log")


def passes(daemon: Daemon, model: str) -> int:
    """How many passes (rescans) over ``model`` the daemon has finished."""
    return daemon.log().count(f"model {model}: pass ")


def wait_for_passes(daemon: Daemon, model: str, more: int = 2) -> None:
    """Until the daemon looked at ``model`` ``more`` more times: what "nothing happened" is then checked against."""
    target = passes(daemon, model) + more
    wait_for(lambda: passes(daemon, model) >= target, what=f"{more} more passes over {model}")


def test_versions_and_config_edits_go_live_with_zero_failed_requests(layout: dict[str, Path]) -> None:
    models, staging, logs = layout["models"], layout["staging"], layout["logs"]
    base = models / "live"
    save(scale_model([1, 4], factor=1.0), base, 1)
    save(scale_model([1, 4], factor=7.0), models / "other", 1)
    entry = {"name": "live", "base_path": str(base), "batch_size": "auto"}
    other = {"name": "other", "base_path": str(models / "other")}
    config = write_config(logs / "config.json", [entry])
    with start_daemon(config, logs) as daemon:
        daemon.wait_available("live")
        with Clients(daemon, "live") as clients:
            publish(2.0, base, 2, staging)  # latest 1: v2 loads, then v1 retires
            wait_for(states_are(daemon, "live", {1: State.END, 2: State.AVAILABLE}), what="v2 live, v1 retired")
            np.testing.assert_array_equal(daemon.predict("live", {"x": np.ones((1, 4), np.float32)})["y"], 2.0)

            shutil.rmtree(base / "1")  # already retired by the policy: nothing changes
            corrupt = staging / "corrupt"
            shutil.copytree(base / "2", corrupt)
            weights = (corrupt / "model.bin").read_bytes()
            (corrupt / "model.bin").write_bytes(weights[: len(weights) // 2])  # truncated: the weights do not fit
            shutil.move(str(corrupt), str(base / "3"))
            wait_for(lambda: daemon.states("live").get(3) == State.LOADING, what="v3 load failure recorded")
            [v3] = daemon.status("live", 3).model_version_status
            assert v3.status.error_code != 0 and v3.status.error_message
            assert daemon.states("live")[2] == State.AVAILABLE, "the previous version keeps serving"

            write_config(config, [entry, other])  # add a model
            wait_for(states_are(daemon, "other", {1: State.AVAILABLE}), what="model added by a config edit")

            config.write_text('{"model_config_list": [ {"config": {"name": "live", "base_path": 3}} ]')  # invalid
            wait_for(
                lambda: "rejected, keeps serving generation" in daemon.log(), what="invalid config seen and rejected"
            )
            assert daemon.states("other") == {1: State.AVAILABLE}, "an invalid config changes nothing"
            assert daemon.states("live")[2] == State.AVAILABLE

            write_config(config, [entry, other])  # restored
            write_config(config, [entry])  # remove a model
            wait_for(states_are(daemon, "other", {1: State.END}), what="model removed by a config edit")
            assert rpc_error(lambda: daemon.predict("other", {"x": np.ones((1, 4), np.float32)})).code() == (
                grpc.StatusCode.NOT_FOUND
            )
    assert clients.failures == [], clients.failures[:5]
    assert clients.ok > 50
    assert 3 not in clients.versions_seen, "the corrupt version never serves"
    assert clients.versions_seen <= {1, 2}


def test_a_slowly_copied_version_is_never_loaded_half_written(layout: dict[str, Path]) -> None:
    models, staging, logs = layout["models"], layout["staging"], layout["logs"]
    base = models / "slow"
    save(scale_model([1, 4], factor=1.0), base, 1)
    source = save(scale_model([1, 4], factor=5.0), staging / "src", 1).parent
    config = write_config(logs / "config.json", [{"name": "slow", "base_path": str(base)}])
    with start_daemon(config, logs) as daemon:
        daemon.wait_available("slow")
        target = base / "2"
        target.mkdir()
        for name in ("model.xml", "model.bin"):  # written in chunks over ~2 s
            data = (source / name).read_bytes()
            chunks = [data[i : i + max(1, len(data) // 4)] for i in range(0, len(data), max(1, len(data) // 4))]
            with (target / name).open("wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    out.flush()
                    time.sleep(0.25)  # a slow copy: the writer's pace, not synchronisation
                    assert daemon.states("slow").get(2) is None, "version 2 looked at while still being written"
        assert "model slow version 2: files still being written" in daemon.log(), "seen while written, and waited"
        wait_for(states_are(daemon, "slow", {1: State.END, 2: State.AVAILABLE}), what="v2 loaded once complete")
        np.testing.assert_array_equal(daemon.predict("slow", {"x": np.ones((1, 4), np.float32)})["y"], 5.0)
        assert "version 2: LOADING:" not in daemon.log(), "no failed load of a half-written version"


def test_renamed_directory_loads_once_and_tmp_names_are_ignored(layout: dict[str, Path]) -> None:
    models, logs = layout["models"], layout["logs"]
    base = models / "renamed"
    save(scale_model([1, 4], factor=1.0), base, 1)
    config = write_config(
        logs / "config.json", [{"name": "renamed", "base_path": str(base), "model_version_policy": {"all": {}}}]
    )
    with start_daemon(config, logs) as daemon:
        daemon.wait_available("renamed")
        save(scale_model([1, 4], factor=3.0), base, 3)
        shutil.move(str(base / "3"), str(base / "3.tmp"))
        wait_for(lambda: "'3.tmp'" in daemon.log(), what="3.tmp seen and skipped")
        wait_for_passes(daemon, "renamed")
        assert set(daemon.states("renamed")) == {1}, "3.tmp is never a version"
        shutil.move(str(base / "3.tmp"), str(base / "3"))
        wait_for(states_are(daemon, "renamed", {1: State.AVAILABLE, 3: State.AVAILABLE}), what="v3 loaded")
        wait_for_passes(daemon, "renamed")
        assert daemon.log().count("model renamed version 3: AVAILABLE") == 1


def test_ovms_update_scenario_specific_and_latest(layout: dict[str, Path]) -> None:
    models, staging, logs = layout["models"], layout["staging"], layout["logs"]
    specific, latest = models / "specific", models / "latest"
    specific.mkdir()
    save(scale_model([1, 4], factor=1.0), latest, 1)
    config = write_config(
        logs / "config.json",
        [
            {
                "name": "specific",
                "base_path": str(specific),
                "model_version_policy": {"specific": {"versions": [1, 3, 4]}},
            },
            {"name": "latest", "base_path": str(latest)},
        ],
    )
    with start_daemon(config, logs) as daemon:
        daemon.wait_available("latest")
        assert daemon.states("specific") == {}
        publish(1.0, specific, 1, staging)
        publish(4.0, specific, 4, staging)
        wait_for(states_are(daemon, "specific", {1: State.AVAILABLE, 4: State.AVAILABLE}), what="v1 and v4")
        assert daemon.predict_raw("specific", {"x": np.ones((1, 4), np.float32)}).model_spec.version.value == 4

        shutil.rmtree(specific / "4")
        publish(3.0, specific, 3, staging)
        expected = {1: State.AVAILABLE, 3: State.AVAILABLE, 4: State.END}
        wait_for(states_are(daemon, "specific", expected), what="v4 END, v1 v3 available")
        assert daemon.predict_raw("specific", {"x": np.ones((1, 4), np.float32)}).model_spec.version.value == 3

        publish(4.0, specific, 4, staging)
        expected = {1: State.AVAILABLE, 3: State.AVAILABLE, 4: State.AVAILABLE}
        wait_for(states_are(daemon, "specific", expected), what="v4 available again")

        publish(2.0, latest, 2, staging)
        wait_for(states_are(daemon, "latest", {1: State.END, 2: State.AVAILABLE}), what="latest: v2 replaces v1")
        assert daemon.metadata("latest").model_spec.version.value == 2


def test_replaced_files_reload_the_version_in_place(layout: dict[str, Path]) -> None:
    models, staging, logs = layout["models"], layout["staging"], layout["logs"]
    base = models / "inplace"
    save(scale_model([1, 4], factor=1.0), base, 1)
    config = write_config(logs / "config.json", [{"name": "inplace", "base_path": str(base)}])
    with start_daemon(config, logs) as daemon:
        daemon.wait_available("inplace")
        replacement = save(scale_model([1, 4], factor=9.0), staging / "new", 1).parent
        for name in ("model.bin", "model.xml"):
            shutil.copyfile(replacement / name, base / "1" / name)
        x = np.ones((1, 4), np.float32)
        wait_for(lambda: float(daemon.predict("inplace", {"x": x})["y"][0, 0]) == 9.0, what="v1 reloaded in place")
        assert daemon.states("inplace") == {1: State.AVAILABLE}


def test_deleted_base_path_keeps_serving_and_a_broken_version_is_retried_only_on_change(
    layout: dict[str, Path],
) -> None:
    models, staging, logs = layout["models"], layout["staging"], layout["logs"]
    base = models / "fragile"
    save(scale_model([1, 4], factor=1.0), base, 1)
    config = write_config(logs / "config.json", [{"name": "fragile", "base_path": str(base)}])
    with start_daemon(config, logs) as daemon:
        daemon.wait_available("fragile")
        broken = staging / "broken"
        broken.mkdir()
        (broken / "model.onnx").write_bytes(b"not a model")
        shutil.move(str(broken), str(base / "2"))
        wait_for(lambda: daemon.states("fragile").get(2) == State.LOADING, what="v2 failure recorded")
        wait_for_passes(daemon, "fragile", more=3)
        assert daemon.log().count("model fragile version 2: LOADING: ") == 1, "no retry while the files stay the same"
        np.testing.assert_array_equal(daemon.predict("fragile", {"x": np.ones((1, 4), np.float32)})["y"], 1.0)

        (base / "2" / "model.onnx").unlink()  # fixed: a good model replaces the broken file
        fixed = save(scale_model([1, 4], factor=2.0), staging / "fixed", 1).parent
        for f in fixed.iterdir():
            shutil.copyfile(f, base / "2" / f.name)
        wait_for(states_are(daemon, "fragile", {1: State.END, 2: State.AVAILABLE}), what="v2 retried after change")

        moved = models / "moved-away"
        shutil.move(str(base), str(moved))
        wait_for(lambda: "cannot read base path" in daemon.log(), what="the vanished base path noticed")
        wait_for_passes(daemon, "fragile")
        assert daemon.states("fragile")[2] == State.AVAILABLE, "a vanished base path does not unload anything"
        np.testing.assert_array_equal(daemon.predict("fragile", {"x": np.ones((1, 4), np.float32)})["y"], 2.0)
        assert daemon.log().count("cannot read base path") == 1, "logged once, not every poll"


def test_config_with_json_written_by_rename_is_seen(layout: dict[str, Path]) -> None:
    models, logs = layout["models"], layout["logs"]
    save(scale_model([1, 4]), models / "a", 1)
    save(scale_model([1, 4]), models / "b", 1)
    config = write_config(logs / "config.json", [{"name": "a", "base_path": str(models / "a")}])
    with start_daemon(config, logs) as daemon:
        daemon.wait_available("a")
        temporary = logs / ".config.json.swp"
        temporary.write_text(
            json.dumps(
                {
                    "model_config_list": [
                        {"config": {"name": "a", "base_path": str(models / "a")}},
                        {"config": {"name": "b", "base_path": str(models / "b")}},
                    ]
                }
            )
        )
        temporary.replace(config)  # how editors save
        wait_for(states_are(daemon, "b", {1: State.AVAILABLE}), what="model b added")


def test_poll_mode_sees_new_versions_and_config_edits(layout: dict[str, Path]) -> None:
    models, staging, logs = layout["models"], layout["staging"], layout["logs"]
    base = models / "polled"
    save(scale_model([1, 4], factor=1.0), base, 1)
    save(scale_model([1, 4]), models / "extra", 1)
    entry = {"name": "polled", "base_path": str(base)}
    config = write_config(logs / "config.json", [entry])
    args = ["--config", str(config), "--file-system-poll-wait-seconds", "0.5", "--poll"]
    with Daemon(args, logs / "daemon.log") as daemon:
        daemon.wait_available("polled")
        assert "watching for changes by polling" in daemon.log()
        publish(2.0, base, 2, staging)
        wait_for(states_are(daemon, "polled", {1: State.END, 2: State.AVAILABLE}), what="v2 seen by polling")
        write_config(config, [entry, {"name": "extra", "base_path": str(models / "extra")}])
        wait_for(states_are(daemon, "extra", {1: State.AVAILABLE}), what="config edit seen by polling")
