"""The README's curl lines work as printed: each one, against the demo models with REST on a free port."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon import REPO, Daemon, free_port, write_config


def readme_curl_commands() -> list[str]:
    """The API section's curl lines: those against the demo's REST port (other sections' need their own files)."""
    text = (REPO / "README.md").read_text()
    commands, current = [], ""
    for line in text.splitlines():
        if current:
            current += " " + line.strip()
        elif line.startswith("curl "):
            current = line
        else:
            continue
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        if "http://127.0.0.1:8000" in current:
            commands.append(re.sub(r"\s+#.*$", "", current))  # drop the trailing comment
        current = ""
    return commands


def test_the_readme_has_a_curl_line_for_every_rest_endpoint() -> None:
    paths = {re.search(r"http://127\.0\.0\.1:8000(\S*)", c).group(1) for c in readme_curl_commands()}  # type: ignore[union-attr]
    for endpoint in ("/v2/health/live", "/v2/health/ready", "/v2", "/v1/config", "/v1/config/reload"):
        assert endpoint in paths, endpoint
    for pattern in (r"^/v1/models/\w+$", r"/metadata$", r":predict$", r"^/v2/models/\w+$", r"/ready$", r"/infer$"):
        assert any(re.search(pattern, p) for p in paths), pattern


def test_every_readme_curl_line_succeeds_against_the_demo(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    subprocess.run(
        [sys.executable, str(REPO / "sample_configs" / "build_demo_models.py"), str(tmp_path / "models")],
        check=True,
        capture_output=True,
    )
    config = write_config(
        tmp_path / "config.json",
        [
            {"name": "classifier", "base_path": str(tmp_path / "models" / "classifier"), "batch_size": "auto"},
            {"name": "segmenter", "base_path": str(tmp_path / "models" / "segmenter"), "shape": "auto"},
        ],
    )
    rest_port = free_port()
    with Daemon(["--config", str(config), "--rest_port", str(rest_port)], tmp_path / "daemon.log") as daemon:
        daemon.wait_available("classifier", "segmenter")
        for command in readme_curl_commands():
            command = command.replace("127.0.0.1:8000", f"127.0.0.1:{rest_port}")
            done = subprocess.run(
                ["bash", "-c", command + " -s -o /dev/null -w '%{http_code}'"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0 and done.stdout in ("200", "201"), (command, done.stdout, done.stderr)
        assert daemon.stop() == 0
