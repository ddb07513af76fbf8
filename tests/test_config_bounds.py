"""Config input is bounded (issue 12, item 1): nesting depth, document size and YAML alias expansion are config errors
with a position, never a traceback; JSON is parsed once, fast; no reload, however it fails, stops the daemon, and a
stop always wins over a reload in progress.

Each reproduction of the issue is here: the 100,000-level config from ``validate``, ``start`` and SIGHUP; the
"billion laughs" YAML (rejected in under a second and under 100 MB: the bug grew by ~90 MB/s without end) from
``validate``, start-up and the config watcher; a reload that raises anything at all; SIGTERM during a reload that
never ends.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from ovmsctl.control import call
from ovmsd.api.grpc.proto import model_management_pb2
from ovmsd.config import loader
from ovmsd.config.loader import (
    MAX_ALIAS_NODES,
    MAX_CONFIG_BYTES,
    MAX_DEPTH,
    ConfigError,
    ConfigIssue,
    check_config,
    check_config_bytes,
    check_config_text,
    load_config,
)
from ovmsd.config.quickcheck import compile_check
from ovmsd.options import default_of
from ovmsd.runtime.statedir import StateDir
from ovmsd.serving.states import ErrorCode
from tests.support.ctl import Ctl, wait_until
from tests.support.daemon import REPO, Daemon, write_config
from tests.support.models import save, scale_model

DEEP = 100_000  # the issue's reproduction
X = np.ones((1, 4), np.float32)


def deep_json(levels: int = DEEP) -> str:
    """A config whose model_config_list holds lists ``levels`` deep (the whole document: ``levels`` + 1)."""
    return '{"model_config_list": ' + "[" * levels + "]" * levels + "}"


def laughs(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs" YAML: each anchor a list of ``width`` aliases of the one before (9^9 leaves)."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefghijklmnop", "bcdefghijklmnopq", strict=False):
        if len(lines) == levels:
            break
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * width) + "]")
    return "model_config_list:\n  - config: {name: m, base_path: /m}\n" + "\n".join(lines) + "\n"


def only_issue(text: str, fmt: str) -> ConfigIssue:
    result = check_config_text(text, fmt=fmt, source=Path("/srv/config." + fmt))  # type: ignore[arg-type]
    assert result.config is None and len(result.issues) == 1, result.issues
    return result.issues[0]


def nested(levels: int) -> Any:
    """A JSON value ``levels`` lists deep."""
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


# ---------------------------------------------------------------------------------------------------------------------
# Nesting depth


def test_a_config_nested_100000_levels_is_a_config_error_with_its_position() -> None:
    issue = only_issue(deep_json(), "json")
    assert issue.message == f"the config is nested more than {MAX_DEPTH} levels deep"
    # the root object is level 1 and the first list, at column 23, level 2: level MAX_DEPTH + 1 opens at column 86
    assert (issue.line, issue.column) == (1, 22 + MAX_DEPTH)

    yaml_text = "model_config_list: " + "[" * DEEP + "]" * DEEP + "\n"
    issue = only_issue(yaml_text, "yaml")
    assert issue.message == f"the config is nested more than {MAX_DEPTH} levels deep"
    assert (issue.line, issue.column) == (1, 19 + MAX_DEPTH)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_nesting_up_to_the_limit_is_served_and_one_level_more_is_refused(fmt: str) -> None:
    """Pipeline definitions are accepted, not served, and free-form: the place for a legal deep document."""

    def config(pipeline_levels: int) -> str:
        doc = {"model_config_list": [], "pipeline_config_list": [{"nodes": nested(pipeline_levels)}]}
        return json.dumps(doc)  # JSON is YAML too: the same document in both parsers

    deepest = MAX_DEPTH - 3  # root object, pipeline_config_list, the pipeline object
    result = check_config_text(config(deepest), fmt=fmt)  # type: ignore[arg-type]
    assert result.valid, result.issues
    issue = only_issue(config(deepest + 1), fmt)
    assert issue.message.startswith(f"the config is nested more than {MAX_DEPTH} levels deep")
    prefix = len('{"model_config_list": [], "pipeline_config_list": [{"nodes": ')  # its first list is level 4
    assert (issue.line, issue.column) == (1, prefix + 1 + MAX_DEPTH - 3)


def test_a_yaml_alias_cannot_nest_deeper_than_the_limit_or_contain_itself() -> None:
    levels = MAX_DEPTH - 1  # level 2 to MAX_DEPTH where it is written; through the alias, at level 3
    text = f"x: &deep {'[' * levels}{']' * levels}\nmodel_config_list:\n  - [*deep]\n"
    issue = only_issue(text, "yaml")
    assert issue.message == f"the config is nested more than {MAX_DEPTH} levels deep (through this alias)"
    assert (issue.line, issue.column) == (3, 6)

    issue = only_issue("model_config_list: &loop [*loop]\n", "yaml")
    assert issue.message == "this alias is inside the node it refers to (a recursive structure)"
    assert (issue.line, issue.column) == (1, 27)


def test_deep_command_line_json_is_an_error_not_a_traceback() -> None:
    with pytest.raises(ConfigError, match=f"nested more than {MAX_DEPTH} levels deep"):
        loader.single_model_config("m", "/m", shape=json.dumps({"x": nested(MAX_DEPTH + 1)}))
    with pytest.raises(ConfigError, match="shape is not usable JSON: nested more than"):
        loader.single_model_config("m", "/m", shape='{"x": ' + "[" * DEEP + "]" * DEEP + "}")


# ---------------------------------------------------------------------------------------------------------------------
# YAML aliases


def test_the_billion_laughs_is_refused_where_its_aliases_pass_the_bound() -> None:
    text = laughs()
    assert len(text.encode()) < 600
    issue = only_issue(text, "yaml")
    assert issue.message == f"YAML aliases expand the config by more than {MAX_ALIAS_NODES:,} nodes"
    # a: 10 nodes, b: 91, c: 820, d: 7,381, e: 66,430: b to e's aliases add 74,682 nodes, f's first *e 66,429 more
    assert (issue.line, issue.column) == (8, 8)


def test_aliases_within_the_bound_are_served_and_positions_inside_them_are_the_anchors() -> None:
    text = textwrap.dedent(
        """\
        model_config_list:
          - config:
              name: a
              base_path: /a
              plugin_config: &common
                NUM_STREAMS: 2
                PERFORMANCE_HINT: [LATENCY]
          - config:
              name: b
              base_path: /b
              plugin_config: *common
        """
    )
    result = check_config_text(text, fmt="yaml")
    pointers = {(i.pointer, i.line, i.column) for i in result.issues}
    # one mistake, reached twice: once where it is written, once through the alias (positions: the anchor's)
    assert pointers == {
        ("/model_config_list/0/config/plugin_config/PERFORMANCE_HINT", 7, 27),
        ("/model_config_list/1/config/plugin_config/PERFORMANCE_HINT", 7, 27),
    }
    a, b = loader.parse_config_text(text.replace("[LATENCY]", "LATENCY"), fmt="yaml").models
    assert a.plugin_config == b.plugin_config == {"NUM_STREAMS": 2, "PERFORMANCE_HINT": "LATENCY"}


def test_merge_keys_overridden_in_place_are_no_duplicates() -> None:
    text = textwrap.dedent(
        """\
        model_config_list:
          - config: &base {name: a, base_path: /m, nireq: 2}
          - config:
              <<: *base
              name: b
              nireq: 4
        """
    )
    config = loader.parse_config_text(text, fmt="yaml")
    assert [(m.name, m.nireq) for m in config.models] == [("a", 2), ("b", 4)]


# The peak is this process's own (VmHWM): ru_maxrss would carry over the forking parent's peak across exec, and
# pytest's process holds OpenVINO by then (a 253 MB "peak" for a check that used 25 MB).
BOMB_CHECK = """
import sys, time
from ovmsd.config.loader import check_config
started = time.perf_counter()
result = check_config(sys.argv[1])
took = time.perf_counter() - started
peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(took, peak_kb // 1024, result.issues[0].format("bomb.yaml"))
"""

# runs a command and reports its peak RSS (from this intermediate process, whose only child it is)
PEAK_OF = """
import json, resource, subprocess, sys, time
started = time.monotonic()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"code": done.returncode, "out": done.stdout + done.stderr, "seconds": time.monotonic() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def peak_of(*command: str, timeout: float = 60) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PEAK_OF, *command], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_billion_laughs_is_rejected_in_under_a_second_and_100_mb(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(laughs())
    # the check alone, timed in its process (the bug: never ends, ~90 MB/s more); the timeout catches it
    done = subprocess.run(
        [sys.executable, "-c", BOMB_CHECK, str(bomb)], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    took, peak_mb, issue = done.stdout.split(" ", 2)
    assert float(took) < 1.0
    assert int(peak_mb) < 100
    assert issue.startswith("bomb.yaml:8:8: YAML aliases expand the config by more than")
    # and ovmsctl validate, whole: a config error, no traceback, little memory
    run = peak_of(sys.executable, "-m", "ovmsctl", "validate", str(bomb))
    assert run["code"] == 1, run
    assert f"{bomb}:8:8: YAML aliases expand the config by more than 100,000 nodes" in run["out"]
    assert "Traceback" not in run["out"]
    assert run["peak_mb"] < 100, run


# ---------------------------------------------------------------------------------------------------------------------
# Document size


def test_the_size_limit_is_an_issue_at_the_first_byte_past_it_and_the_rest_is_never_read(tmp_path: Path) -> None:
    assert MAX_CONFIG_BYTES == default_of("max_config_bytes") == 16 * 1024 * 1024
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:
        f.write(b'{\n  "model_config_list": []\n}\n')
        f.truncate(1 << 40)  # a sparse terabyte: only the first 16 MiB + 1 byte may be read
    (issue,) = check_config(huge).issues
    assert issue.message == (
        f"the config is 1,099,511,627,776 bytes, over the limit of {MAX_CONFIG_BYTES:,} bytes "
        "(raise it with --max-config-bytes)"
    )
    assert (issue.line, issue.column) == (4, MAX_CONFIG_BYTES - 30 + 1)

    text = '{"model_config_list": [\n{"config": {"name": "a", "base_path": "/a"}}\n]}\n'
    small = len(text.encode())
    (issue,) = check_config_bytes(text.encode(), max_bytes=30).issues
    assert (
        issue.message
        == "the config is more than 30 bytes, over the limit of 30 bytes (raise it with --max-config-bytes)"
    )
    assert (issue.line, issue.column) == (2, 7)
    assert check_config_bytes(text.encode(), max_bytes=small).valid
    assert not check_config_text(text, max_bytes=small - 1).valid
    with pytest.raises(ConfigError, match="over the limit of 30 bytes"):
        load_config(write_config(tmp_path / "one.json", [{"name": "a", "base_path": "/a"}]), max_bytes=30)


def test_validate_takes_the_daemons_size_option(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.json", [{"name": "a", "base_path": str(tmp_path)}])
    size = config.stat().st_size

    def validate(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "ovmsctl", "validate", str(config), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)

    refused = validate("--max-config-bytes", str(size - 1))
    assert refused.returncode == 1
    assert f"over the limit of {size - 1:,} bytes (raise it with --max-config-bytes)" in refused.stdout
    assert validate("--max-config-bytes", str(size)).returncode == 0
    assert validate("--max-config-bytes", "0").returncode == 2


# ---------------------------------------------------------------------------------------------------------------------
# JSON: one parse by json, positions from the text, only for the nodes an issue names


def big_config(models: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"model_{i}",
            "base_path": f"/models/m{i}",
            "batch_size": "auto",
            "shape": {"data": "(1,3,224,224)"},
            "plugin_config": {"NUM_STREAMS": "2"},
            "model_version_policy": {"latest": {"num_versions": 2}},
        }
        for i in range(models)
    ]


def test_json_is_never_composed_as_yaml_and_still_has_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_yaml(*args: object) -> None:
        raise AssertionError("JSON went through the YAML composer")

    monkeypatch.setattr(loader, "_BoundedLoader", no_yaml)
    models = big_config(5000)
    models[4321]["batch_size"] = "fast"
    models[4999]["nireq"] = -1
    text = json.dumps({"model_config_list": [{"config": m} for m in models]}, indent=2)
    lines = text.splitlines()
    batch, nireq = check_config_text(text, fmt="json").issues
    assert batch.pointer == "/model_config_list/4321/config/batch_size"
    assert lines[batch.line - 1][batch.column - 1 :].startswith('"fast"')
    assert nireq.pointer == "/model_config_list/4999/config/nireq"
    assert lines[nireq.line - 1][nireq.column - 1 :] == "-1"
    assert check_config_text(json.dumps({"model_config_list": [{"config": m} for m in big_config(5000)]})).valid


def test_json_positions_on_one_long_line_and_inside_strings_with_escapes() -> None:
    entries = [{"config": m} for m in big_config(2000)]
    entries[1500]["config"]["shape"] = {'da"ta/~x': "(1,a)"}
    text = json.dumps({"model_config_list": entries})  # one line, about 300 KB
    (issue,) = check_config_text(text, fmt="json").issues
    assert issue.pointer == '/model_config_list/1500/config/shape/da"ta~1~0x'
    assert issue.line == 1
    assert text[issue.column - 1 :].startswith('"(1,a)"')


def test_json_duplicate_keys_are_found_and_escaped_quotes_are_no_keys() -> None:
    text = '{"model_config_list": [{"config": {"name": "a\\": b", "base_path": "/m", "nireq": 1}}]}'
    assert check_config_text(text, fmt="json").valid  # a \": inside a string is no key
    text = '{"model_config_list": [{"config": {"name": "a\\": b", "base_path": "/m",\n "nireq": 1, "nireq": 2}}]}'
    (issue,) = check_config_text(text, fmt="json").issues
    assert (issue.pointer, issue.line, issue.column, issue.message) == (
        "/model_config_list/0/config/nireq",
        2,
        14,
        "duplicate key 'nireq' (first at line 2)",
    )


def test_values_python_cannot_make_are_issues_at_their_place() -> None:
    digits = "9" * 5000
    issue = only_issue('{"model_config_list": [],\n "x": ' + digits + "}", "json")
    assert issue.message.startswith("invalid JSON: a number with more than")
    assert (issue.line, issue.column) == (2, 7)
    issue = only_issue(f"model_config_list: []\nx: {digits}\n", "yaml")
    assert (issue.line, issue.column) == (2, 4)
    assert "cannot read this value" in issue.message
    issue = only_issue("model_config_list:\n  - config: {name: a, base_path: /m, nireq: 2023-02-30}\n", "yaml")
    assert (issue.line, issue.column) == (2, 45)
    assert issue.message.startswith("invalid YAML: cannot read this value: day is out of range")


def test_an_integral_float_batch_size_is_the_integer() -> None:
    text = '{"model_config_list": [{"config": {"name": "a", "base_path": "/m", "batch_size": 4.0}}]}'
    (model,) = loader.parse_config_text(text).models
    assert model.batch_size is not None and str(model.batch_size) == "4"


# The quick schema check must never call valid what jsonschema calls invalid, and the errors found on the failing
# model entries alone must be those of the whole document.

ODD_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 2.0, 2.5, float("nan"), "", "auto", "AUTO", "-1", "1:8", "(1,3,224,224)", "(1,a)",
    "NCHW", "NHWC:NCHW", "N C", [], [1], [1, 2.0], ["x"], [True], {}, {"x": 1}, {"latest": {}}, {"all": {}},
    {"specific": {"versions": [1]}}, {"specific": {"versions": []}}, {"data": "auto"}, {"data": [1, -1]},
]  # fmt: skip


def mutations(rng: random.Random, doc: Any, count: int) -> list[Any]:
    """``count`` copies of ``doc``, each with one node replaced, deleted or given an extra key."""

    def nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        found = [path]
        children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, child in children:
            found += nodes(child, (*path, key))
        return found

    result = []
    paths = nodes(doc)
    for _ in range(count):
        copy = json.loads(json.dumps(doc))
        path = rng.choice(paths[1:])
        parent = copy
        for key in path[:-1]:
            parent = parent[key]
        action = rng.random()
        if action < 0.7:
            parent[path[-1]] = rng.choice(ODD_VALUES)
        elif action < 0.85 and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(["extra", "nam", "shape", "stateful", "all"])] = rng.choice(ODD_VALUES)
        else:
            parent.append(rng.choice(ODD_VALUES))
        result.append(copy)
    return result


def test_the_quick_schema_check_agrees_with_jsonschema() -> None:
    schema = loader._schema()
    quick = compile_check(schema)
    assert quick is not None, "config.schema.json uses a keyword quickcheck does not compile"
    validator = jsonschema.Draft202012Validator(schema)
    base = {
        "model_config_list": [
            {"config": {**m, "layout": {"data": "NCHW"}, "nireq": 2, "allow_cache": True}} for m in big_config(2)
        ]
        + [{"config": {"name": "s", "base_path": "/s", "shape": "(1,3,-1,-1)", "model_version_policy": {"all": {}}}}],
        "monitoring": {"metrics": {"enable": True, "metrics_list": ["ovms_requests_success"]}},
        "pipeline_config_list": [{"name": "p"}],
    }
    docs = [base, *mutations(random.Random(12), base, 1000)]
    disagree = [d for d in docs if quick(d) != validator.is_valid(d)]
    assert not disagree, json.dumps(disagree[0])
    invalid = [d for d in docs if not quick(d)]
    assert len(invalid) > 500

    def described(errors: Any) -> list[tuple[str, str]]:
        return sorted((json.dumps(list(e.absolute_path)), e.message) for e in errors)

    for doc in invalid[:100]:
        assert described(loader._schema_errors(doc)) == described(validator.iter_errors(doc)), json.dumps(doc)


# ---------------------------------------------------------------------------------------------------------------------
# The CLI and start-up: config errors, never tracebacks


def test_validate_and_start_report_the_deep_config_and_the_bomb_as_config_errors(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text(deep_json())
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(laughs())
    where = {deep: f"{deep}:1:{22 + MAX_DEPTH}: the config is nested more than", bomb: f"{bomb}:8:8: YAML aliases"}
    for config, expected in where.items():
        validate = peak_of(sys.executable, "-m", "ovmsctl", "validate", str(config))
        assert validate["code"] == 1 and expected in validate["out"], validate
        daemon = peak_of(sys.executable, "-m", "ovmsd", "--config", str(config), "--port", "0")
        assert daemon["code"] == 1, daemon
        assert f"invalid configuration: {config}: 1 error in the config\n{expected}" in daemon["out"], daemon
        for run in (validate, daemon):
            assert "Traceback" not in run["out"] and run["peak_mb"] < 400, run
    ctl = Ctl(tmp_path / "s")
    try:
        started = ctl.run("start", "--config", str(deep), "--port", "0", timeout=120)
    finally:
        ctl.cleanup()
    assert started.returncode == 1, started
    assert "ovmsd did not start (exit status 1): invalid configuration:" in started.stderr
    assert where[deep] in started.stderr and "Traceback" not in started.stderr + started.stdout


def test_the_daemon_takes_max_config_bytes(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.json", [{"name": "a", "base_path": str(tmp_path)}])
    run = peak_of(sys.executable, "-m", "ovmsd", "--config", str(config), "--max-config-bytes", "10", "--port", "0")
    assert run["code"] == 1
    assert f"{config}:2:9: the config is {config.stat().st_size:,} bytes, over the limit of 10 bytes" in run["out"]


# ---------------------------------------------------------------------------------------------------------------------
# The config watcher: the bomb written over a served config


def wait_for_log(daemon: Daemon, text: str, count: int = 1, timeout: float = 30) -> None:
    def logged() -> bool:
        assert daemon.process.poll() is None, f"the daemon exited:\n{daemon.log()}"
        return daemon.log().count(text) >= count

    wait_until(logged, timeout, f"{text!r} logged {count} times\n{daemon.log()}")


def test_the_watcher_rejects_the_billion_laughs_in_bounded_memory(tmp_path: Path) -> None:
    save(scale_model([1, 4]), tmp_path / "m", 1)
    config = tmp_path / "config.yaml"
    config.write_text(f"model_config_list:\n  - config: {{name: m, base_path: {tmp_path / 'm'}}}\n")
    args = ["--config", str(config), "--file-system-poll-wait-seconds", "0.2"]
    with Daemon(args, tmp_path / "daemon.log") as daemon:
        daemon.wait_available("m")
        wait_for_log(daemon, "ready: serving 1/1 models")
        before = peak_rss_mb(daemon.process.pid)
        config.write_text(laughs().replace("/m}", f"{tmp_path / 'm'}}}"))
        wait_for_log(daemon, "config reload (config file change) rejected, keeps serving generation 1:")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for_log(daemon, "config reload (SIGHUP) rejected, keeps serving generation 1:")
        assert "config.yaml:8:8: YAML aliases expand the config by more than 100,000 nodes" in daemon.log()
        np.testing.assert_array_equal(daemon.predict("m", {"x": X})["y"], 2 * X)
        grown = peak_rss_mb(daemon.process.pid) - before
    log = daemon.log()
    assert grown < 100, f"peak RSS grew by {grown:.0f} MB"
    assert daemon.exit_code == 0, log
    assert log.count("config reload (config file change) rejected") == 1
    assert "Traceback" not in log


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# ---------------------------------------------------------------------------------------------------------------------
# Reloads: rejected, logged once, the old config serving; a stop always wins

# The real daemon, except that reading a config file holding RAISE raises whatever its text names, and reading one
# holding SPIN computes forever (a parse that never ends, holding the GIL most of the time, as the bomb's did).
LAUNCHER = """
import sys
from pathlib import Path

from ovmsd import app

real_load_config = app.load_config


def load_config(path, **kwargs):
    text = Path(path).read_text()
    if "RAISE" in text:
        raise {"RecursionError": RecursionError, "MemoryError": MemoryError}.get(text.split()[1], RuntimeError)(text)
    while "SPIN" in text:
        sum(range(10_000))
    return real_load_config(path, **kwargs)


app.load_config = load_config
sys.exit(app.main(sys.argv[1:]))
"""


def grpc_reload(daemon: Daemon, timeout: float = 60) -> model_management_pb2.ReloadConfigResponse:
    return daemon.models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), timeout=timeout)


@pytest.fixture
def served(tmp_path: Path) -> dict[str, Path]:
    """A model ``m`` (y = 2x) and a config serving it."""
    save(scale_model([1, 4]), tmp_path / "m", 1)
    return {"config": write_config(tmp_path / "config.json", [{"name": "m", "base_path": str(tmp_path / "m")}])}


def start_patched(tmp_path: Path, config: Path, *extra: str) -> Daemon:
    launcher = tmp_path / "launcher.py"
    launcher.write_text(LAUNCHER)
    args = ["--config", str(config), "--file-system-poll-wait-seconds", "0", "--state-dir", str(tmp_path / "s"), *extra]
    return Daemon(args, tmp_path / "daemon.log", launcher=[sys.executable, str(launcher)])


def test_no_reload_failure_stops_the_daemon(tmp_path: Path, served: dict[str, Path]) -> None:
    config = served["config"]
    valid = config.read_text()
    ctl = Ctl(tmp_path / "s")
    with start_patched(tmp_path, config) as daemon:
        daemon.wait_available("m")
        wait_for_log(daemon, "ready: serving 1/1 models")

        config.write_text(deep_json())  # the issue's reproduction: SIGHUP on a config 100,000 levels deep
        daemon.process.send_signal(signal.SIGHUP)
        wait_for_log(daemon, "config reload (SIGHUP) rejected, keeps serving generation 1:")
        assert f"{config}:1:{22 + MAX_DEPTH}: the config is nested more than {MAX_DEPTH} levels deep" in daemon.log()
        np.testing.assert_array_equal(daemon.predict("m", {"x": X})["y"], 2 * X)

        for what in ("RecursionError", "MemoryError", "RuntimeError"):
            config.write_text(f"RAISE {what}")  # anything at all escaping the config reader
            daemon.process.send_signal(signal.SIGHUP)
            wait_for_log(daemon, f"config reload (SIGHUP) rejected, keeps serving generation 1: {what}: RAISE")
            np.testing.assert_array_equal(daemon.predict("m", {"x": X})["y"], 2 * X)

        reloaded = ctl.run("reload", timeout=60)  # ovmsctl reload: the same rejection, the daemon stays
        assert reloaded.returncode == 1, reloaded
        assert "RuntimeError: RAISE RuntimeError" in reloaded.stdout + reloaded.stderr
        answer = grpc_reload(daemon)  # gRPC HandleReloadConfigRequest: an answer, not INTERNAL
        assert answer.status.error_code == int(ErrorCode.FAILED_PRECONDITION)
        assert "config rejected: RuntimeError: RAISE RuntimeError" in answer.status.error_message

        config.write_text(valid)
        assert grpc_reload(daemon).status.error_code == int(ErrorCode.OK)
        wait_for_log(daemon, "config generation 2 applied (API reload)")
        np.testing.assert_array_equal(daemon.predict("m", {"x": X})["y"], 2 * X)
        assert daemon.process.poll() is None
    log = daemon.log()
    assert daemon.exit_code == 0, log
    assert "Traceback" not in log
    assert log.count("config reload (SIGHUP) rejected") == 4  # each rejection logged once
    assert log.count("config reload (ovmsctl reload) rejected") == 1
    assert log.count("config reload (API reload) rejected") == 1


def test_sigterm_wins_over_a_reload_that_never_ends(tmp_path: Path, served: dict[str, Path]) -> None:
    config = served["config"]
    drain = 30.0
    with start_patched(tmp_path, config, "--drain-timeout", str(drain)) as daemon:
        daemon.wait_available("m")
        wait_for_log(daemon, "ready: serving 1/1 models")
        config.write_text("SPIN")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for_log(daemon, "received SIGHUP: reloading the config")

        answers: dict[str, Any] = {}

        def ask(name: str, call: Any) -> None:
            try:
                answers[name] = call()
            except Exception as exc:
                answers[name] = exc

        control = StateDir(tmp_path / "s")
        waiting = [
            threading.Thread(target=ask, args=("grpc", lambda: grpc_reload(daemon, timeout=drain + 30))),
            threading.Thread(target=ask, args=("ctl", lambda: call(control, "reload", timeout=drain + 30))),
        ]
        for thread in waiting:
            thread.start()
        time.sleep(1.0)  # both wait behind the reload that spins
        assert not answers
        np.testing.assert_array_equal(daemon.predict("m", {"x": X})["y"], 2 * X)  # serving meanwhile

        sent = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        code = daemon.process.wait(timeout=drain + 30)
        took = time.monotonic() - sent
        for thread in waiting:
            thread.join(timeout=30)
        daemon.stop()
    log = daemon.log()
    assert code == 0, log
    assert took < 10, f"SIGTERM took {took:.1f} s during a reload (drain timeout {drain:.0f} s)\n{log}"
    # both answered at once, while the reload still spins: rejected because the daemon is stopping
    assert answers["grpc"].status.error_code == int(ErrorCode.FAILED_PRECONDITION), answers["grpc"]
    assert answers["grpc"].status.error_message == "the daemon is stopping"
    assert answers["ctl"]["reload"]["outcome"] == "rejected", answers["ctl"]
    assert answers["ctl"]["reload"]["message"] == "the daemon is stopping"
    assert "Traceback" not in log
