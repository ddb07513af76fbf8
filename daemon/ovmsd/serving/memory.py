"""What a compiled variant holds in memory, for the shape cache's byte budget.

OpenVINO reports no memory figure for a compiled model. What it holds is measured instead: the C heap in use
(glibc's ``mallinfo2``: bytes in allocated chunks plus mmapped ones, over every arena) just before the variant is
compiled and just after its infer requests are created. The CPU plugin allocates a variant's repacked weights and
every intermediate buffer then (its memory plan is made at compile time; the first inference only touches the pages),
so the difference is the variant's size. Measured for ResNet-50 on the CPU plugin (2 infer requests): 163 MB at
batch 1, 273 MB at 16, 390 MB at 32, 620 MB at 64; a 3x3 convolution on 2048x2048 (1 request's I/O is 64 MB):
304 MB. The process's RSS grows by less once the variants have run (ResNet-50 at batch 200: a 1,614 MB variant,
RSS +1,016 MB): the heap figure counts what the plan reserved, some of which a run never touches.

The measure is of the whole process, so allocations by other threads during the compile (other requests) count too;
each instance compiles one variant at a time, and the result is never taken below the bytes of the variant's own
inputs and outputs for each infer request, which it must hold whatever else happens. Where ``mallinfo2`` is missing
(not glibc, or glibc before 2.33), that lower bound is the size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections.abc import Callable

from ovmsd.serving.signature import Signature


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    function.argtypes = []
    return function


_MALLINFO2 = _mallinfo2()


def heap_in_use() -> int | None:
    """Bytes of the C heap in use now (allocated chunks and mmapped blocks); None where it cannot be read."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return int(info.uordblks + info.hblkhd)


def io_bytes(signature: Signature) -> int:
    """The bytes of one infer request's inputs and outputs (dimensions that are not static count as 0)."""
    total = 0
    for spec in (*signature.inputs, *signature.outputs):
        if all(d.is_static for d in spec.shape):
            total += math.prod(d.lo for d in spec.shape) * spec.dtype.itemsize
    return total


def variant_bytes(signature: Signature, infer_requests: int, before: int | None, after: int | None) -> int:
    """A variant's size: the heap it added, never less than its infer requests' inputs and outputs."""
    floor = io_bytes(signature) * infer_requests
    measured = after - before if before is not None and after is not None else 0
    return max(floor, measured)
