"""The real daemon with one load that never ends: everything else goes on, and a stop still wins at once."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np

from ovmsd.serving.states import State
from tests.support.daemon import REPO, Daemon, write_config
from tests.support.models import save, scale_model

DRAIN_S = 2.0
X = {"x": np.ones((1, 4), np.float32)}


def publish(factor: float, base: Path, version: int, staging: Path) -> None:
    staged = save(scale_model([1, 4], factor=factor), staging / f"{base.name}-{version}", 1).parent
    shutil.move(str(staged), str(base / str(version)))


def wait_for_log(daemon: Daemon, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in daemon.log():
        assert daemon.process.poll() is None, f"the daemon exited:\n{daemon.log()}"
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never logged:\n{daemon.log()}")
        time.sleep(0.05)


def test_a_load_that_never_ends_holds_back_no_other_model_no_reload_and_no_stop(tmp_path: Path) -> None:
    models, staging = tmp_path / "models", tmp_path / "staging"
    for name in ("held", "free", "extra"):
        save(scale_model([1, 4], factor=1.0), models / name, 1)
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)
    entries = [{"name": n, "base_path": str(models / n)} for n in ("held", "free")]
    config = write_config(tmp_path / "config.json", entries)
    launcher = [sys.executable, str(REPO / "tests" / "support" / "held_daemon.py"), str(fifo), "held:2"]
    args = ["--config", str(config), "--drain-timeout", str(DRAIN_S), "--file-system-poll-wait-seconds", "0.5"]
    with Daemon(args, tmp_path / "daemon.log", launcher=launcher) as daemon:
        daemon.wait_available("held", "free")
        wait_for_log(daemon, "ready: serving 2/2 models")

        publish(2.0, models / "held", 2, staging)
        wait_for_log(daemon, "model held version 2: LOADING")

        publish(3.0, models / "free", 2, staging)
        daemon.wait_for_states({"free": {1: State.END, 2: State.AVAILABLE}}, timeout=30)
        np.testing.assert_array_equal(daemon.predict("free", X)["y"], 3.0)

        write_config(config, [*entries, {"name": "extra", "base_path": str(models / "extra")}])
        daemon.wait_available("extra", timeout=30)
        daemon.process.send_signal(signal.SIGHUP)
        wait_for_log(daemon, "(SIGHUP)")

        assert daemon.states("held") == {1: State.AVAILABLE, 2: State.LOADING}
        assert daemon.predict_raw("held", X).model_spec.version.value == 1, "the old version serves meanwhile"

        sent = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        code = daemon.process.wait(timeout=DRAIN_S + 10)
        took = time.monotonic() - sent
        daemon.stop()
    log = daemon.log()
    assert code == 0, log
    assert "received SIGTERM: stopping" in log
    assert "abandoning 1 model loads still running" in log
    assert took < DRAIN_S + 5, f"exit took {took:.1f} s with a drain timeout of {DRAIN_S} s"
