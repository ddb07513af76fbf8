"""s3:// base paths in a real daemon, against a real S3 API (moto's server on 127.0.0.1): live updates with zero
failed requests, no half-uploaded version ever loaded, and a store that goes away and comes back."""

from __future__ import annotations

import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ovmsctl.control import call
from ovmsd.runtime.statedir import StateDir
from ovmsd.serving.states import State
from tests.support.daemon import Daemon, write_config
from tests.support.models import save, scale_model
from tests.support.s3 import Bucket, S3Server, s3
from tests.test_live_updates import Clients, states_are, wait_for

__all__ = ["s3"]  # the fixture

X = np.ones((1, 4), np.float32)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """Short (a Unix socket's path has at most 107 bytes), so not under tmp_path."""
    path = Path(tempfile.mkdtemp(prefix="ovs3-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def upload_version(bucket: Bucket, tmp_path: Path, prefix: str, version: int, factor: float) -> None:
    staged = save(scale_model([1, 4], factor=factor), tmp_path / f"staged-{version}-{factor}", 1).parent
    bucket.upload_dir(staged, f"{prefix}/{version}")


def start(config: Path, tmp_path: Path, state_dir: Path, poll_s: float = 0.5, *extra: str) -> Daemon:
    args = [
        "--config", str(config),
        "--file-system-poll-wait-seconds", str(poll_s),
        "--log-level", "DEBUG",
        "--state-dir", str(state_dir),
        "--object-store-cache-dir", str(tmp_path / "cache"),
        *extra,
    ]  # fmt: skip
    return Daemon(args, tmp_path / "daemon.log")


def model_status(state_dir: Path, name: str) -> dict[str, Any]:
    report = call(StateDir(state_dir), "status")
    return next(m for m in report["models"] if m["name"] == name)


def output(daemon: Daemon, name: str) -> float:
    return float(daemon.predict(name, {"x": X})["y"][0, 0])


@pytest.mark.slow
def test_versions_appear_change_and_disappear_in_the_bucket_with_zero_failed_requests(
    s3: S3Server, tmp_path: Path, state_dir: Path
) -> None:
    bucket = Bucket(s3)
    upload_version(bucket, tmp_path, "live", 1, 1.0)
    config = write_config(
        tmp_path / "config.json", [{"name": "live", "base_path": bucket.url("live"), "batch_size": "auto"}]
    )
    with start(config, tmp_path, state_dir) as daemon:
        daemon.wait_available("live")
        assert output(daemon, "live") == 1.0
        with Clients(daemon, "live") as clients:
            upload_version(bucket, tmp_path, "live", 2, 2.0)  # latest 1: v2 loads, then v1 retires
            wait_for(states_are(daemon, "live", {1: State.END, 2: State.AVAILABLE}), 20, "v2 live, v1 retired")
            assert output(daemon, "live") == 2.0

            upload_version(bucket, tmp_path, "live", 2, 3.0)  # the same version, other weights: reloaded in place
            wait_for(lambda: output(daemon, "live") == 3.0, 20, "v2 replaced")
            assert "version 2: downloaded again and swapped in" in daemon.log()

            bucket.delete_prefix("live/2/")  # v1 is the latest again: it loads before v2 retires
            wait_for(states_are(daemon, "live", {1: State.AVAILABLE, 2: State.END}), 20, "v2 gone, v1 back")
            assert output(daemon, "live") == 1.0
        status = model_status(state_dir, "live")
        assert status["object_store"]["url"] == bucket.url("live")
        assert status["object_store"]["versions"] == [1] and status["object_store"]["error"] is None
        assert status["base_path"].startswith(str(tmp_path / "cache"))
    assert clients.failures == [], clients.failures[:5]
    assert clients.ok > 50
    assert clients.versions_seen == {1, 2}


@pytest.mark.slow
def test_a_version_uploaded_object_by_object_never_loads_half_way(
    s3: S3Server, tmp_path: Path, state_dir: Path
) -> None:
    bucket = Bucket(s3)
    upload_version(bucket, tmp_path, "slow", 1, 1.0)
    source = save(scale_model([1, 4], factor=5.0), tmp_path / "source", 1).parent
    config = write_config(tmp_path / "config.json", [{"name": "slow", "base_path": bucket.url("slow")}])
    with start(config, tmp_path, state_dir, 1.0) as daemon:
        daemon.wait_available("slow")
        # The model file first, its weights last, assets between: about 3 s, an object every 0.3 s (faster than
        # the listings, every 1 s), so that no two listings agree before the last object is there.
        objects = [("model.xml", (source / "model.xml").read_bytes())]
        objects += [(f"assets/part{i}.txt", f"part {i}".encode()) for i in range(8)]
        objects += [("model.bin", (source / "model.bin").read_bytes())]
        for path, data in objects:
            bucket.put(f"slow/2/{path}", data)
            time.sleep(0.3)  # the uploader's pace, not synchronisation
            assert daemon.states("slow").get(2) is None, f"version 2 looked at after {path}"
        wait_for(states_are(daemon, "slow", {1: State.END, 2: State.AVAILABLE}), 20, "v2 loaded once complete")
        assert output(daemon, "slow") == 5.0
        log = daemon.log()
    assert f"object store {bucket.url('slow')} version 2: objects still changing" in log, "seen unstable, waited"
    assert log.count("version 2: downloaded (10 objects") == 1, "downloaded once, whole"
    assert "version 2: LOADING:" not in log and "holds no model file" not in log, "no failed load"


def test_a_store_that_goes_away_keeps_serving_shows_the_error_and_recovers(
    s3: S3Server, tmp_path: Path, state_dir: Path
) -> None:
    bucket = Bucket(s3)
    upload_version(bucket, tmp_path, "m", 1, 1.0)
    config = write_config(tmp_path / "config.json", [{"name": "m", "base_path": bucket.url("m")}])
    with start(config, tmp_path, state_dir, 0.5, "--metrics-port", "0") as daemon:
        daemon.wait_available("m")
        s3.stop()
        wait_for(lambda: model_status(state_dir, "m")["object_store"]["error"] is not None, 20, "the error shown")
        status = model_status(state_dir, "m")
        assert "cannot list" in status["object_store"]["error"]
        assert status["problem"].startswith("object store: cannot list"), "ovmsctl status shows it for the model"
        assert output(daemon, "m") == 1.0, "what is loaded keeps serving"
        metrics_address = call(StateDir(state_dir), "status")["metrics_address"]
        with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10) as response:
            text = response.read().decode()
        assert 'ovmsctl_object_store_errors_total{name="m"}' in text

        s3.start()  # the same port, the same buckets
        upload_version(bucket, tmp_path, "m", 2, 2.0)
        wait_for(lambda: model_status(state_dir, "m")["object_store"]["error"] is None, 40, "recovered")
        wait_for(states_are(daemon, "m", {1: State.END, 2: State.AVAILABLE}), 40, "syncing again")
        assert model_status(state_dir, "m")["problem"] in ("", None)
        log = daemon.log()
    assert log.count("the cached copy keeps serving, retrying") == 1, "one error line, not one per retry"
    assert "reachable again" in log
