"""The long fuzz run (issue 12, item 7): the properties of ``tests/test_fuzz.py`` and ``tests/test_fuzz_daemon.py``
(strategies and checks in ``tests/support/fuzz.py``) with many more examples, every failure kept instead of the
first: a failure is grouped by its exception and where it was raised, and each group is shrunk to a minimal input
with hypothesis at the end. Prints a table of cases tried, outcomes and failures per property; writes JSON.

    .venv/bin/python benchmarks/fuzz.py [--examples 5000] [--seed N] [--only tensor,config] [--no-daemon]

The daemon properties (``rest``, ``grpc``) start a daemon serving two small fixed-shape models. Exit status 1 when any
property failed (known bugs, ``tests/support/fuzz.py`` KNOWN_BUGS, are counted but are no failure).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package: the strategies and properties

import grpc
from common import (
    Children,
    DaemonProcess,
    free_port,
    machine_info,
    named,
    print_table,
    save_ir,
    tiny_model,
    write_config,
    write_json,
)
from hypothesis import HealthCheck, Phase, find, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from tests.support import fuzz

Check = Callable[..., str]


@dataclass
class Property:
    name: str
    strategy: st.SearchStrategy[Any]
    check: Check  # called with the generated value (a tuple is spread into arguments)
    weight: float = 1.0  # share of --examples (daemon round trips cost more than parsing)
    daemon: bool = False


@dataclass
class Outcome:
    tried: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)  # signature -> first/minimal example
    seconds: float = 0.0


def _call(check: Check, value: Any) -> str:
    return check(*value) if isinstance(value, tuple) else check(value)


def signature(exc: BaseException) -> str:
    """What groups failures: the exception type, the innermost frame of the daemon's code (or the test's), the line."""
    frames = traceback.extract_tb(exc.__traceback__)
    cause = exc.__cause__ or exc
    frames = traceback.extract_tb(cause.__traceback__) or frames
    inner = next((f for f in reversed(frames) if "/ovmsd/" in f.filename), frames[-1] if frames else None)
    where = f"{Path(inner.filename).name}:{inner.lineno}" if inner else "?"
    first = str(exc).splitlines()[0][:80] if str(exc) else ""
    return f"{type(cause).__name__} at {where}: {first}"


def run_property(prop: Property, examples: int, run_seed: int, shrink: bool) -> Outcome:
    outcome = Outcome()
    started = time.perf_counter()

    @seed(run_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(prop.strategy)
    def explore(value: Any) -> None:
        outcome.tried += 1
        try:
            outcome.labels[_call(prop.check, value)] += 1
        except Exception as exc:
            key = signature(exc)
            outcome.labels["FAILED"] += 1
            entry = outcome.failures.setdefault(key, {"count": 0, "example": None, "error": None})
            entry["count"] += 1
            text = repr(value)
            if entry["example"] is None or len(text) < len(entry["example"]):
                entry["example"], entry["error"] = text[:2000], f"{type(exc).__name__}: {str(exc)[:500]}"

    explore()
    if shrink:
        for key, entry in outcome.failures.items():
            entry["minimal"] = minimal_example(prop, key)
    outcome.seconds = time.perf_counter() - started
    return outcome


def minimal_example(prop: Property, key: str) -> str | None:
    """The smallest input hypothesis finds that fails with the same signature (None when it finds none again)."""

    def fails_the_same(value: Any) -> bool:
        try:
            _call(prop.check, value)
        except Exception as exc:
            return signature(exc) == key
        return False

    try:
        found = find(prop.strategy, fails_the_same, settings=settings(max_examples=2000, deadline=None, database=None))
    except NoSuchExample:
        return None
    return repr(found)[:2000]


def parser_properties() -> list[Property]:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-config-"))
    return [
        Property("tensor", fuzz.tensor_protos(), fuzz.check_tensor),
        Property("kserve raw", fuzz.raw_tensors(), fuzz.check_from_raw),
        Property("kserve values", fuzz.typed_tensors(), fuzz.check_from_values),
        Property("kserve round trip", fuzz.output_arrays(), fuzz.check_raw_round_trip),
        Property("kserve grpc request", fuzz.infer_requests(), fuzz.check_infer_request),
        Property(
            "config",
            fuzz.config_texts(),
            lambda suffix, text: fuzz.check_config_text(folder, suffix, text),
            weight=0.5,
        ),
        Property(
            "json tensor",
            st.tuples(st.builds(fuzz.as_received, fuzz.tensor_values()), st.sampled_from(fuzz.NUMERIC_DTYPES)),
            fuzz.check_json_tensor,
        ),
        Property("kserve rest body", fuzz.kserve_rest_bodies(), fuzz.check_kserve_rest),
        Property(
            "tfs rest body",
            st.tuples(st.builds(fuzz.as_received, fuzz.tfs_rest_bodies()), fuzz.signatures()),
            fuzz.check_tfs_rest,
        ),
    ]


@contextmanager
def fuzz_daemon(children: Children, root: Path) -> Iterator[tuple[DaemonProcess, int]]:
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    save_ir(tiny_model(1), root / "scale")  # x [1,4] f32 -> y = 2x
    x = named(ops.parameter([1, 4], np.int32, name="x"), "x")
    y = named(ops.multiply(x, ops.constant(np.array(2, dtype=np.int32))), "y")
    save_ir(ov.Model([y], [x], "ints"), root / "ints")
    config = write_config(
        root / "config.json",
        [{"name": "scale", "base_path": str(root / "scale")}, {"name": "ints", "base_path": str(root / "ints")}],
    )
    rest_port = free_port()
    daemon = DaemonProcess(children, config, root / "daemon.log", ["--rest_port", str(rest_port)], label="fuzzed")
    try:
        daemon.wait_available(["scale", "ints"])
        yield daemon, rest_port
    finally:
        daemon.stop()


def daemon_properties(daemon: DaemonProcess, rest_port: int) -> list[Property]:
    from tests.support.rest import Rest

    client = Rest(rest_port, timeout=20)
    channel = grpc.insecure_channel(daemon.address)

    def rest_check(path: str, headers: dict[str, str], body: bytes, known: str | None) -> str:
        reply = client.request("POST", path, body, headers)
        label = fuzz.check_rest_answer(reply.status, reply.body, known)
        assert daemon.process.poll() is None, "the daemon exited"
        return label

    def grpc_check(method: str, data: bytes, known: str | None) -> str:
        label = fuzz.check_grpc_answer(*fuzz.raw_call(channel, method, data), known)
        assert daemon.process.poll() is None, "the daemon exited"
        return label

    return [
        Property("rest (daemon)", fuzz.rest_requests(), rest_check, weight=0.3, daemon=True),
        Property("grpc (daemon)", fuzz.grpc_requests(), grpc_check, weight=0.3, daemon=True),
    ]


def after_fuzzing(daemon: DaemonProcess, rest_port: int) -> dict[str, Any]:
    """A good request on each front end, and the daemon's log: still serving, and no traceback."""
    from tests.support.rest import Rest

    with grpc.insecure_channel(daemon.address) as channel:
        predict = fuzz.raw_call(channel, fuzz.PREDICT, fuzz.valid_predict())[0].name
        infer = fuzz.raw_call(channel, fuzz.MODEL_INFER, fuzz.valid_infer())[0].name
    client = Rest(rest_port)
    document = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    rest = client.post_json("/v2/models/scale/infer", document).status
    client.close()
    log = daemon.log()
    return {
        "alive": daemon.process.poll() is None,
        "predict": predict,
        "model_infer": infer,
        "rest_infer": rest,
        "tracebacks_in_log": log.count("Traceback"),
        "log_lines": log.count("\n"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=5000, help="examples per parser property (default 5000)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random, printed)")
    parser.add_argument("--only", default="", help="comma-separated property names (prefixes) to run")
    parser.add_argument("--no-daemon", action="store_true", help="skip the properties against a real daemon")
    parser.add_argument("--no-shrink", action="store_true", help="keep the smallest example seen, do not shrink")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "fuzz.json")
    args = parser.parse_args()
    run_seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"fuzz: seed {run_seed}, {args.examples} examples per parser property", flush=True)
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]

    def selected(prop: Property) -> bool:
        return not wanted or any(prop.name.startswith(w) for w in wanted)

    results: dict[str, Outcome] = {}
    after: dict[str, Any] | None = None

    def run(props: list[Property]) -> None:
        for prop in filter(selected, props):
            count = max(1, int(args.examples * prop.weight))
            print(f"  {prop.name}: {count} examples ...", flush=True)
            results[prop.name] = run_property(prop, count, run_seed, not args.no_shrink)

    run(parser_properties())
    if not args.no_daemon and (not wanted or any(w.startswith(("rest", "grpc")) for w in wanted)):
        with (
            tempfile.TemporaryDirectory(prefix="fuzz-daemon-") as folder,
            Children() as children,
            fuzz_daemon(children, Path(folder)) as (daemon, rest_port),
        ):
            run(daemon_properties(daemon, rest_port))
            after = after_fuzzing(daemon, rest_port)

    rows = []
    for name, outcome in results.items():
        top = ", ".join(f"{label} {n}" for label, n in outcome.labels.most_common(3) if label != "FAILED")
        known = sum(n for label, n in outcome.labels.items() if label.startswith("known bug"))
        failed = outcome.labels.get("FAILED", 0)
        rows.append([name, outcome.tried, failed, len(outcome.failures), known, f"{outcome.seconds:.1f}", top[:90]])
    print_table(
        ["property", "cases", "failed", "distinct", "known bugs", "s", "most common outcomes"],
        rows,
        title=f"fuzz, seed {run_seed}",
    )
    for name, outcome in results.items():
        for key, entry in outcome.failures.items():
            print(f"\nFAILED {name} ({entry['count']}x): {key}\n  smallest seen: {entry['example'][:400]}")
            if entry.get("minimal"):
                print(f"  shrunk: {entry['minimal'][:400]}")
    if after is not None:
        print(f"\nafter fuzzing: {after}")
    write_json(
        args.json,
        {
            "seed": run_seed,
            "examples": args.examples,
            "properties": {
                name: {
                    "cases": o.tried,
                    "seconds": o.seconds,
                    "outcomes": dict(o.labels.most_common()),
                    "failures": o.failures,
                }
                for name, o in results.items()
            },
            "after_fuzzing": after,
            "machine": machine_info(),
        },
    )
    print(f"\nwrote {args.json}")
    healthy = after is None or (
        after["alive"] and after["tracebacks_in_log"] == 0 and after["predict"] == after["model_infer"] == "OK"
    )
    return 1 if any(o.failures for o in results.values()) or not healthy else 0


if __name__ == "__main__":
    sys.exit(main())
