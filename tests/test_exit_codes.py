"""Each exit status of ``ovmsctl`` means one thing: "applied with errors" (5) is not "not answering" (4)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ovmsctl.cli import cli
from ovmsctl.control import (
    EXIT_APPLIED_WITH_ERRORS,
    EXIT_FAILED,
    EXIT_NOT_ANSWERING,
    EXIT_NOT_RUNNING,
    EXIT_USAGE,
)
from tests.support.ctl import Ctl, wait_until
from tests.support.daemon import write_config
from tests.support.models import save, scale_model

QUIET = ("--port", "0", "--file-system-poll-wait-seconds", "0")

# Runs as "ovmsd" (its argv names it), ignores SIGTERM and never opens the control socket.
SILENT = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], "w").write(f"{os.getpid()}\\n")
time.sleep(120)
"""


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[Ctl]:
    control = Ctl(tmp_path / "state")
    yield control
    control.cleanup()


def test_the_codes_are_distinct() -> None:
    codes = [EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_NOT_ANSWERING, EXIT_APPLIED_WITH_ERRORS]
    assert codes == [1, 2, 3, 4, 5], "documented in docs/operations.md and every command's --help"


def test_reload_applied_with_errors_exits_5(ctl: Ctl, tmp_path: Path) -> None:
    save(scale_model([1, 4]), tmp_path / "good", 1)
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.onnx").write_bytes(b"not a model")
    config = write_config(tmp_path / "config.json", [{"name": "good", "base_path": str(tmp_path / "good")}])
    ctl.start("--config", str(config), *QUIET)
    write_config(
        config,
        [
            {"name": "good", "base_path": str(tmp_path / "good")},
            {"name": "broken", "base_path": str(tmp_path / "broken")},
        ],
    )
    done = ctl.run("reload")
    assert done.returncode == EXIT_APPLIED_WITH_ERRORS, done.stdout + done.stderr
    assert "broken" in done.stdout
    assert ctl.run("stop").returncode == 0
    stopped = ctl.run("reload")
    assert stopped.returncode == EXIT_NOT_RUNNING and "not running" in stopped.stderr


def test_reload_and_status_of_a_daemon_that_does_not_answer_exit_4(ctl: Ctl) -> None:
    ctl.state_dir.create()
    silent = subprocess.Popen([sys.executable, "-c", SILENT, str(ctl.state_dir.pidfile), "ovmsd"])
    try:
        wait_until(ctl.state_dir.pidfile.exists, 30, "pidfile written")
        for command in ("reload", "status"):
            done = ctl.run(command)
            assert done.returncode == EXIT_NOT_ANSWERING, (command, done.stdout, done.stderr)
            assert "does not answer" in done.stderr
    finally:
        silent.kill()
        silent.wait()


@pytest.mark.parametrize(
    ("command", "codes"),
    [
        (["validate"], ["0", "1", "2"]),
        (["start"], ["0", "1", "2", "4"]),
        (["stop"], ["0", "1"]),
        (["status"], ["0", "3", "4"]),
        (["reload"], ["0", "1", "3", "4", "5"]),
        (["service", "print"], ["0", "1", "2"]),
        (["service", "install"], ["0", "1", "2"]),
    ],
)
def test_every_command_lists_its_exit_codes_in_help(command: list[str], codes: list[str]) -> None:
    text = " ".join(CliRunner().invoke(cli, [*command, "--help"]).output.split())
    assert "Exits " in text, text
    listed = text.split("Exits ", 1)[1]
    for code in codes:
        assert f" {code} " in f" {listed}", (command, code, listed)
