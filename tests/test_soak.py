"""benchmarks/soak.py: its growth test tells a leak from noise, and a one-minute soak of a real daemon under mixed load
(version churn, reshapes, bad requests, reconnects on every front end) passes it with no unexpected answer."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.support.daemon import REPO


def soak_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak", REPO / "benchmarks" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # dataclasses look their module up
    sys.path.insert(0, str(REPO / "benchmarks"))  # soak.py imports its neighbour common.py
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module


def samples(rss_mib: np.ndarray, fds: np.ndarray, threads: np.ndarray) -> list[dict[str, float]]:
    return [
        {
            "t": 5.0 * i,
            "rss_kib": float(r) * 1024,
            "fds": float(f),
            "python_threads": float(t),
            "versions_published": i // 3,
        }
        for i, (r, f, t) in enumerate(zip(rss_mib, fds, threads, strict=True))
    ]


def test_the_growth_test_passes_noise_and_steps_and_fails_leaks() -> None:
    soak = soak_module()
    rng = np.random.default_rng(0)
    n = 360  # 30 minutes of 5-s samples
    noisy = 300 + rng.normal(0, 3, n)
    noisy[::37] += 40  # a compile in progress at some samples
    fds = 30 + rng.integers(-1, 2, n)
    threads = np.full(n, 44.0)
    threads[::50] += 3
    verdicts = {v["series"]: v for v in soak.growth(samples(noisy, fds, threads), 8.0)}
    assert all(v["ok"] for v in verdicts.values()), verdicts

    leaking = noisy + np.linspace(0, 30, n)  # 1 MiB a minute: 15 MiB over the second half
    fd_leak = fds + np.arange(n) // 40  # one descriptor every 200 s: 4-5 over the second half
    thread_leak = threads + np.arange(n) // 30
    verdicts = {v["series"]: v for v in soak.growth(samples(leaking, fd_leak, thread_leak), 8.0)}
    assert not any(v["ok"] for v in verdicts.values()), verdicts

    churned = noisy + np.arange(n) // 3 * 44 / 1024  # 44 KiB per version, a version every 15 s: allowed for
    verdicts = {v["series"]: v for v in soak.growth(samples(churned, fds, threads), 8.0)}
    assert verdicts["rss_kib"]["ok"], verdicts


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_one_minute_soak_is_flat_with_no_unexpected_answer(tmp_path: Path) -> None:
    results = tmp_path / "soak.json"
    command = [sys.executable, str(REPO / "benchmarks" / "soak.py"), "--minutes", "1", "--warmup-s", "15"]
    command += ["--sample-s", "2", "--report-s", "15", "--churn-s", "6", "--json", str(results)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        output, _ = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the soak then stops its daemon and reports
        output, _ = process.communicate(timeout=60)
        raise AssertionError(f"the soak did not finish in 300 s:\n{output[-6000:]}") from None
    assert process.returncode == 0, output[-6000:]
    result = json.loads(results.read_text())
    counts = result["counts"]
    assert counts.get("unexpected", 0) == 0, result["unexpected"]
    assert min(counts.get(k, 0) for k in ("good", "bad", "reshape", "reconnect", "metadata")) > 0, counts
    assert result["versions_published"] >= 8, "a new version every 6 s"
    assert result["daemon_alive_at_end"] and result["daemon_exit_code"] == 0
    assert {v["series"] for v in result["growth"]} == {"rss_kib", "fds", "python_threads"}
    assert all(v["ok"] for v in result["growth"]), result["growth"]
