"""Threads that make OpenVINO's first numpy conversion together do not deadlock the daemon's process.

pyopenvino (2026.4) initialises pybind11's numpy API on its first conversion inside a C++ function-local static; two
threads making that first call at once deadlock on the static and the GIL. The daemon hung that way when two load
workers reached their first compiled signature together. Its loader factory now makes the first call on the main
thread. Without that call, 20 of 30 such processes hung here; so a dozen that all finish cannot pass by luck.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from tests.support.daemon import REPO

THREADS = 32
PROCESSES = 12

SCRIPT = textwrap.dedent(
    f"""
    import threading

    import openvino as ov

    from ovmsd.serving.instance import ServingOptions, instance_loader

    instance_loader(ServingOptions())  # what the daemon does before it starts its load and request threads
    together = threading.Barrier({THREADS})

    def first_conversion() -> None:
        together.wait()
        ov.Type.f32.to_dtype()  # what every load does for its signature

    threads = [threading.Thread(target=first_conversion) for _ in range({THREADS})]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print("done")
    """
)


def test_threads_making_the_first_numpy_conversion_together_all_finish() -> None:
    processes = [
        subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(PROCESSES)
    ]
    hung = 0
    deadline = time.monotonic() + 60  # one minute for all of them: a hang is forever
    try:
        for process in processes:
            try:
                output, _ = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                hung += 1
                continue
            assert process.returncode == 0 and output.strip() == b"done", output.decode(errors="replace")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert hung == 0, f"{hung} of {PROCESSES} processes deadlocked in OpenVINO's first numpy conversion"
