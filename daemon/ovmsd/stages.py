"""Per-stage timers of the request path (``--stage-timers``): where a request's time goes, as Prometheus counters.

Off by default; a call site then costs one attribute read (``if stages.on:``; 0.2 µs for a gRPC request's 13). On,
the 13 marks of a gRPC request cost about 4 µs. Every request thread keeps a
clock: :func:`start` where the server first touches a request, then :func:`lap` at the end of each stage adds the
time since the previous mark to that stage. :func:`add` counts a span measured on another thread (the REST event
loop's parts, the hand-offs between the loop and the request threads). Totals live per thread, so the request path
takes no lock; they are summed when Prometheus scrapes (``ovmsd.observe.metrics.StageCollector``):

* ``ovmsctl_request_stage_seconds_total{stage}``: time spent in the stage, all requests together;
* ``ovmsctl_request_stage_count_total{stage}``: how many times it ended (once per request for most stages).

The stages, in the order a request passes them (:data:`STAGES`): ``http-read`` (REST: headers and body received,
the route matched), ``handoff`` (REST: from the event loop to a request thread and back), ``parse`` (gRPC: the
message deserialised, on grpcio's polling thread), ``admit`` (API key, request gate), ``decode`` (wire tensors to
numpy), ``lookup`` (the model version, request limits, a place in the model, image decoding), ``plan`` (the inputs
matched to the signature, the compiled shape chosen), ``wait`` (an infer request of that shape), ``copy`` (the
inputs into the infer request), ``infer``, ``encode`` (the outputs to the wire format), ``release`` (infer request,
place and version handed back), ``metrics``, ``respond`` (gRPC: from the handler's return to the serialiser),
``serialize`` (gRPC), ``http-send`` (REST). KServe REST binary inference served on the event loop has no
``handoff`` and counts ``decode``, ``lookup``, ``infer`` (the input copy included) and ``encode`` as spans. What
the server spends before its first mark and after its last (the
transport's own work) is the difference between a client's latency and their sum.
"""

from __future__ import annotations

import threading
import time

STAGES = (
    "http-read", "handoff", "parse", "admit", "decode", "lookup", "plan", "wait", "copy", "infer", "encode",
    "release", "metrics", "respond", "serialize", "http-send",
)  # fmt: skip

on = False  # set once at start-up by enable(), before any request

_clock_ns = time.perf_counter_ns
_all_totals: list[dict[str, list[int]]] = []  # every thread's totals: stage -> [nanoseconds, count]


class _ThreadClock(threading.local):
    def __init__(self) -> None:
        self.last = _clock_ns()
        self.totals: dict[str, list[int]] = {}
        _all_totals.append(self.totals)


_clock = _ThreadClock()


def enable() -> None:
    global on
    on = True


def start() -> None:
    """A request begins on this thread: the next lap counts from now."""
    _clock.last = _clock_ns()


def lap(stage: str) -> None:
    """``stage`` ended now: the time since this thread's previous mark is its."""
    now = _clock_ns()
    add(stage, now - _clock.last)
    _clock.last = now


def add(stage: str, elapsed_ns: int) -> None:
    """A span of ``stage`` measured by the caller (a hand-off between threads, the event loop's part)."""
    totals = _clock.totals
    spent = totals.get(stage)
    if spent is None:
        spent = totals[stage] = [0, 0]
    spent[0] += elapsed_ns
    spent[1] += 1


def now_ns() -> int:
    return _clock_ns()


def totals() -> dict[str, tuple[int, int]]:
    """Every stage's (nanoseconds, count), all threads summed."""
    summed: dict[str, list[int]] = {}
    for per_thread in list(_all_totals):
        for stage, (ns, count) in list(per_thread.items()):
            into = summed.setdefault(stage, [0, 0])
            into[0] += ns
            into[1] += count
    return {stage: (ns, count) for stage, (ns, count) in summed.items()}
