"""Keeps the README's promise about the ``slow`` marker: a test slower than ``SLOW_S`` without it is named at the end.

Only a note in the summary, never a failure: durations depend on how loaded the machine is.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

SLOW_S = 10.0

_unmarked_slow: list[tuple[str, float]] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.duration > SLOW_S and item.get_closest_marker("slow") is None:
        _unmarked_slow.append((item.nodeid, report.duration))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _unmarked_slow:
        return
    terminalreporter.section(f"tests over {SLOW_S:g} s without @pytest.mark.slow")
    for nodeid, seconds in sorted(_unmarked_slow, key=lambda entry: -entry[1]):
        terminalreporter.write_line(f"{seconds:6.1f} s  {nodeid}")
