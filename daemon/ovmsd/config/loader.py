"""Read an OVMS ``config.json`` (or its YAML equivalent), check it, and turn it into a :class:`ServerConfig`.

Checking happens in three passes over the parsed document, and every problem found is reported at once:

1. syntax: JSON errors come from :mod:`json`, YAML errors from :mod:`yaml`; either is a single issue;
2. structure: the document is validated against ``schemas/config.schema.json`` with :mod:`jsonschema`, and each
   schema error is turned into a plain sentence;
3. meaning: shape and batch strings must parse, model names must be unique, base paths must be local or ``s3://``
   URLs (with boto3 installed), metric names in ``monitoring`` must be metrics this server exports.

Each issue carries a JSON pointer into the document and the 1-based line and column of the offending node, found by
composing the text with a YAML loader (JSON is, for this purpose, YAML).
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml

from ovmsd.config.models import (
    METRIC_FAMILIES,
    BatchSize,
    InputShape,
    ModelConfig,
    MonitoringConfig,
    ServerConfig,
    ShapeConfig,
    StoreUrl,
    VersionPolicy,
    is_remote,
)

Format = Literal["json", "yaml"]
Position = tuple[int, int]

SCHEMA_NAME = "config.schema.json"
STDIN_NAME = "<stdin>"
COMMAND_LINE_NAME = "<command line>"
_JSON_SUFFIXES = {".json"}
_YAML_SUFFIXES = {".yaml", ".yml"}
S3_EXTRA = "install the s3 extra: pip install 'ovmsctl[s3]'"
_UNSERVED_LISTS = {
    "pipeline_config_list": "pipelines (DAGs) are not supported",
    "mediapipe_config_list": "MediaPipe graphs are not supported",
    "custom_node_library_config_list": "custom node libraries are not supported",
    "custom_loader_config_list": "custom loaders are not supported",
}
_STATEFUL_KEYS = ("low_latency_transformation", "idle_sequence_cleanup", "max_sequence_number")


# ---------------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config document: where it is (JSON pointer, and line/column when known) and what is wrong."""

    pointer: str
    message: str
    line: int | None = None
    column: int | None = None

    def format(self, source_name: str) -> str:
        """``config.json:5:7: message``, or ``config.json: /pointer: message`` when the position is unknown."""
        if self.line is not None:
            return f"{source_name}:{self.line}:{self.column or 1}: {self.message}"
        if self.pointer:
            return f"{source_name}: {self.pointer}: {self.message}"
        return f"{source_name}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"pointer": self.pointer, "line": self.line, "column": self.column, "message": self.message}


class ConfigError(Exception):
    """The config cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[ConfigIssue], source: Path | None = None, *, name: str | None = None) -> None:
        self.issues = list(issues)
        self.source = source
        self.name = name or (str(source) if source is not None else STDIN_NAME)
        super().__init__(str(self))

    def __str__(self) -> str:
        name = self.name
        count = len(self.issues)
        head = f"{name}: {count} error{'' if count == 1 else 's'} in the config"
        return "\n".join([head, *(issue.format(name) for issue in self.issues)])


@dataclass(frozen=True)
class Positions:
    """Where each node of a parsed document sits in its source text (1-based line and column)."""

    values: Mapping[str, Position] = field(default_factory=dict)
    keys: Mapping[str, Position] = field(default_factory=dict)

    def of_value(self, pointer: str) -> Position | None:
        """The position of the node at ``pointer``, or of its nearest ancestor that has one."""
        while True:
            if pointer in self.values:
                return self.values[pointer]
            if not pointer:
                return None
            pointer = pointer.rsplit("/", 1)[0]

    def of_key(self, pointer: str) -> Position | None:
        """The position of the mapping key that ``pointer`` ends with (falling back to its value)."""
        return self.keys.get(pointer) or self.of_value(pointer)

    def issue(self, pointer: str, message: str, *, at_key: bool = False) -> ConfigIssue:
        pos = self.of_key(pointer) if at_key else self.of_value(pointer)
        return ConfigIssue(pointer, message, *(pos or (None, None)))


@dataclass(frozen=True)
class CheckResult:
    """Everything :func:`check_config` found: the config (when valid), the issues, the warnings."""

    config: ServerConfig | None
    issues: tuple[ConfigIssue, ...] = ()
    warnings: tuple[str, ...] = ()
    model_names: tuple[str, ...] = ()
    positions: Positions = field(default_factory=Positions)
    source: Path | None = None

    @property
    def valid(self) -> bool:
        return not self.issues

    @property
    def source_name(self) -> str:
        return str(self.source) if self.source is not None else STDIN_NAME


# ---------------------------------------------------------------------------------------------------------------------
# Public entry points


def load_config(path: Path | str) -> ServerConfig:
    """Read and check the config file at ``path`` (``-`` for stdin). Raises :class:`ConfigError` listing every issue."""
    try:
        result = check_config(path)
    except OSError as exc:
        source = None if str(path) == "-" else Path(path)
        reason = exc.strerror or str(exc)
        raise ConfigError([ConfigIssue("", f"cannot read the config file: {reason}")], source) from exc
    return _unwrap(result)


def parse_config_text(text: str, *, fmt: Format | None = None, source: Path | None = None) -> ServerConfig:
    """Check config text; relative base paths resolve against ``source``'s directory (or the current directory)."""
    return _unwrap(check_config_text(text, fmt=fmt, source=source))


def check_config(path: Path | str) -> CheckResult:
    """Check the config file at ``path`` (``-`` for stdin). Raises OSError only when the file cannot be read."""
    if str(path) == "-":
        return check_config_bytes(sys.stdin.buffer.read())
    path = Path(path)
    return check_config_bytes(path.read_bytes(), source=path)


def check_config_bytes(
    data: bytes, *, fmt: Format | None = None, source: Path | None = None, base_dir: Path | None = None
) -> CheckResult:
    """Like :func:`check_config_text`, for raw file content (UTF-8, with or without a byte-order mark)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        issue = ConfigIssue("", f"the config is not UTF-8 text (byte 0x{data[exc.start]:02x})", line, column)
        return CheckResult(None, (issue,), source=source)
    return check_config_text(text, fmt=fmt, source=source, base_dir=base_dir)


def check_config_text(
    text: str, *, fmt: Format | None = None, source: Path | None = None, base_dir: Path | None = None
) -> CheckResult:
    """Check config text and report every issue. ``fmt`` defaults to the source's extension, then to sniffing.

    Relative base paths resolve against ``base_dir``, by default the source file's directory, or the current
    directory when there is no source file.
    """
    fmt = fmt or config_format(source, text)
    parsed = _parse(text, fmt)
    if isinstance(parsed, ConfigIssue):
        return CheckResult(None, (parsed,), source=source)
    doc, positions, issues = parsed
    if base_dir is None:
        base_dir = source.parent if source is not None else Path.cwd()
    return _check_document(doc, positions, issues, base_dir=base_dir, source=source)


def single_model_config(
    model_name: str,
    model_path: str | Path,
    batch_size: str | int | None = None,
    shape: str | None = None,
    layout: str | None = None,
    model_version_policy: str | None = None,
    nireq: int | str = 0,
    target_device: str = "CPU",
    plugin_config: str | None = None,
) -> ServerConfig:
    """The config of ``--model_name NAME --model_path DIR [...]``, checked like a config file. Raises ConfigError.

    The parameters are the OVMS command-line options, as strings or as values: ``shape`` and ``layout`` may be
    JSON objects (``{"data": "(1,3,224,224)"}``); ``model_version_policy`` and ``plugin_config`` are JSON strings.
    A relative ``model_path`` resolves against the current directory. Issues point into the equivalent document,
    ``{"model_config_list": [{"config": {...}}]}``.
    """
    prefix = "/model_config_list/0/config"
    config: dict[str, Any] = {"name": model_name, "base_path": str(model_path), "target_device": target_device}
    config["nireq"] = int(nireq) if isinstance(nireq, str) and re.fullmatch(r"\s*\d+\s*", nireq) else nireq
    issues: list[ConfigIssue] = []
    for key, value, json_only in (
        ("batch_size", batch_size, False),
        ("shape", shape, False),
        ("layout", layout, False),
        ("model_version_policy", model_version_policy, True),
        ("plugin_config", plugin_config, True),
    ):
        if value is None:
            continue
        try:
            config[key] = _option_value(key, value, json_only)
        except ValueError as exc:
            issues.append(ConfigIssue(f"{prefix}/{key}", str(exc)))
    doc = {"model_config_list": [{"config": config}]}
    return _unwrap(_check_document(doc, Positions(), issues, base_dir=Path.cwd(), source=None), COMMAND_LINE_NAME)


def config_format(source: Path | None, text: str) -> Format:
    """JSON or YAML: by the file extension, else by the first non-blank character (``{`` means JSON)."""
    suffix = source.suffix.lower() if source is not None else ""
    if suffix in _JSON_SUFFIXES:
        return "json"
    if suffix in _YAML_SUFFIXES:
        return "yaml"
    return "json" if text.lstrip()[:1] == "{" else "yaml"


def _unwrap(result: CheckResult, name: str | None = None) -> ServerConfig:
    if result.config is None:
        raise ConfigError(result.issues, result.source, name=name)
    return result.config


def _option_value(key: str, value: str | int, json_only: bool) -> Any:
    """A command-line option's value: JSON when it must be (or looks like an object), else the string itself."""
    if not isinstance(value, str) or not (json_only or value.lstrip().startswith("{")):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{key} is not valid JSON: {exc.msg} at column {exc.colno}") from exc


# ---------------------------------------------------------------------------------------------------------------------
# Pass 1: syntax


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 integers, so that ``batch_size: 1:16`` stays the string ``'1:16'``."""


_INT_TAG = "tag:yaml.org,2002:int"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _INT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT_TAG,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)


def _parse(text: str, fmt: Format) -> tuple[Any, Positions, list[ConfigIssue]] | ConfigIssue:
    """The document, where its nodes are, and duplicate-key issues; or the one syntax issue."""
    if not text.strip():
        return ConfigIssue("", "the config is empty", 1, 1)
    if fmt == "json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            return ConfigIssue("", f"invalid JSON: {exc.msg}", exc.lineno, exc.colno)
        # JSON forbids raw tabs inside strings, so tabs are only whitespace here; YAML rejects them as indentation.
        node = _compose(text.replace("\t", " "), lenient=True)
    else:
        try:
            node = _compose(text, lenient=False)
            if node is None:
                return ConfigIssue("", "the config is empty (the YAML has no document)", 1, 1)
            doc = _Loader("").construct_document(node)  # the SafeLoader's tags only
        except yaml.YAMLError as exc:
            return _yaml_syntax_issue(exc)
    positions, issues = _positions(node) if isinstance(node, yaml.Node) else (Positions(), [])
    return doc, positions, issues


def _compose(text: str, *, lenient: bool) -> yaml.Node | None:
    """The YAML node tree of ``text``. When ``lenient`` (JSON text), None where YAML cannot read it: the positions
    are then unknown, but the document is still checked."""
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    except yaml.YAMLError:
        if lenient:
            return None
        raise
    finally:
        loader.dispose()


def _yaml_syntax_issue(exc: yaml.YAMLError) -> ConfigIssue:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    if mark is None:
        return ConfigIssue("", message)
    return ConfigIssue("", message, mark.line + 1, mark.column + 1)


def _positions(root: yaml.Node) -> tuple[Positions, list[ConfigIssue]]:
    values: dict[str, Position] = {}
    keys: dict[str, Position] = {}
    issues: list[ConfigIssue] = []

    def visit(node: yaml.Node, pointer: str) -> None:
        values[pointer] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                visit(item, f"{pointer}/{index}")
        elif isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = _join(pointer, key_node.value)
                key_pos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if child in keys and key_node.value != "<<":
                    message = f"duplicate key '{key_node.value}' (first at line {keys[child][0]})"
                    issues.append(ConfigIssue(child, message, *key_pos))
                keys[child] = key_pos
                visit(value_node, child)

    visit(root, "")
    return Positions(values, keys), issues


def _join(pointer: str, token: object) -> str:
    """Append one reference token to a JSON pointer (RFC 6901 escaping)."""
    return f"{pointer}/{str(token).replace('~', '~0').replace('/', '~1')}"


def _pointer(path: Iterable[object]) -> str:
    pointer = ""
    for token in path:
        pointer = _join(pointer, token)
    return pointer


# ---------------------------------------------------------------------------------------------------------------------
# Pass 2: structure (JSON Schema)


@functools.cache
def _schema() -> dict[str, Any]:
    # schemas/config.schema.json is the contract; the package carries it (a link in the source tree, a copy in wheels).
    return json.loads((resources.files("ovmsd.config") / SCHEMA_NAME).read_text(encoding="utf-8"))


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(_schema())


def _schema_issues(doc: Any, positions: Positions) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for error in _validator().iter_errors(doc):
        for focused in _focus(error):
            issues.extend(_describe(focused, positions))
    return issues


def _focus(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """For a failed anyOf/oneOf, the errors of the one branch whose type fits the value, when there is one.

    ``shape: {"data": "fast"}`` fails every branch of ``shape``; only the object branch fits an object, and its
    error (at ``/shape/data``) says more than "shape must be a string, a list or an object".
    """
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        return [error]
    fitting = _fitting_branches(error)
    if len(fitting) != 1:
        return [error]
    (errs,) = fitting
    if all(e.path for e in errs):
        return [deeper for e in errs for deeper in _focus(e)]
    if len(errs) == 1 and errs[0].validator in ("anyOf", "oneOf"):
        inner = _focus(errs[0])
        if inner != [errs[0]]:
            return inner
    return [error]


def _fitting_branches(error: jsonschema.ValidationError) -> list[list[jsonschema.ValidationError]]:
    """The errors of each anyOf/oneOf branch whose type fits the value (at any depth of nested anyOf/oneOf)."""
    branches: dict[object, list[jsonschema.ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    return [errs for errs in branches.values() if not any(_type_mismatch(e) for e in errs)]


def _type_mismatch(error: jsonschema.ValidationError) -> bool:
    if error.path:
        return False
    if error.validator == "type":
        return True
    return error.validator in ("anyOf", "oneOf") and bool(error.context) and not _fitting_branches(error)


def _describe(error: jsonschema.ValidationError, positions: Positions) -> list[ConfigIssue]:
    path = list(error.absolute_path)
    pointer = _pointer(path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        return _unknown_key_issues(error, pointer, positions)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [key for key in error.validator_value if key not in error.instance]
        return [positions.issue(pointer, f"missing required key '{key}'") for key in missing]
    expected = error.schema.get("x-expected") if isinstance(error.schema, dict) else None
    if expected is None:
        return [positions.issue(pointer, f"{_label(path)}: {error.message}")]
    return [positions.issue(pointer, f"{_label(path)} must be {expected}, got {_show(error.instance)}")]


def _unknown_key_issues(error: jsonschema.ValidationError, pointer: str, positions: Positions) -> list[ConfigIssue]:
    known = list(error.schema.get("properties", {}))
    issues = []
    for key in error.instance:
        if key in known:
            continue
        message = f"unknown key '{key}'"
        close = difflib.get_close_matches(str(key), known, n=1)
        if close:
            message += f" (did you mean '{close[0]}'?)"
        elif known and len(known) <= 6:
            message += f" (expected one of: {', '.join(known)})"
        issues.append(positions.issue(_join(pointer, key), message, at_key=True))
    return issues


def _label(path: Sequence[object]) -> str:
    """How a message names the node at ``path``: ``batch_size``, ``shape of input 'data'``, ``each entry of ...``."""
    if not path:
        return "the config"
    last = path[-1]
    if isinstance(last, int):
        named = [token for token in path if isinstance(token, str)]
        return f"each entry of {named[-1]}" if named else "each entry"
    if len(path) >= 3 and path[-2] in ("shape", "layout") and path[-3] == "config":
        return f"{path[-2]} of input '{last}'"
    if len(path) >= 2 and path[-2] == "plugin_config":
        return f"plugin_config value '{last}'"
    return str(last)


def _show(value: object) -> str:
    """A value as a message quotes it: strings in single quotes, everything else as compact JSON."""
    if isinstance(value, str):
        return f"'{value}'"
    text = json.dumps(value, separators=(", ", ": "), default=str)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------------------------------------------------
# Pass 3: meaning, then building the typed config


def _check_document(
    doc: Any, positions: Positions, issues: list[ConfigIssue], *, base_dir: Path, source: Path | None
) -> CheckResult:
    issues = [*issues, *_schema_issues(doc, positions)]
    entries = _model_entries(doc)
    issues += _semantic_issues(entries, positions, {issue.pointer for issue in issues})
    issues += _monitoring_issues(doc, positions)
    names = tuple(cfg["name"] for _, cfg in entries if isinstance(cfg.get("name"), str))
    warnings = tuple(_warnings(doc, entries)) if isinstance(doc, dict) else ()
    issues = _ordered(issues)
    config = None
    if not issues:
        models = tuple(_build_model(cfg, base_dir) for _, cfg in entries)
        config = ServerConfig(models=models, source=source, warnings=warnings, monitoring=_build_monitoring(doc))
    return CheckResult(config, tuple(issues), warnings, names, positions, source)


def _model_entries(doc: Any) -> list[tuple[str, dict[str, Any]]]:
    """``(pointer, config)`` for every model entry whose ``config`` is an object."""
    models = doc.get("model_config_list") if isinstance(doc, dict) else None
    if not isinstance(models, list):
        return []
    entries = []
    for index, entry in enumerate(models):
        if isinstance(entry, dict) and isinstance(entry.get("config"), dict):
            entries.append((f"/model_config_list/{index}/config", entry["config"]))
    return entries


def _semantic_issues(
    entries: list[tuple[str, dict[str, Any]]], positions: Positions, flagged: set[str]
) -> list[ConfigIssue]:
    """Checks the schema cannot express; a value the schema already rejected is not checked again."""

    def unflagged(pointer: str) -> bool:
        """No issue at ``pointer``, below it, or above it within the same key (``/.../config/shape``)."""
        return not any(
            p == pointer or p.startswith(pointer + "/") or (pointer.startswith(p + "/") and p.count("/") > 3)
            for p in flagged
        )

    issues: list[ConfigIssue] = []
    first_seen: dict[str, str] = {}
    for pointer, cfg in entries:
        for sub_pointer, message in _value_problems(pointer, cfg):
            if unflagged(sub_pointer):
                issues.append(positions.issue(sub_pointer, message))
        name = cfg.get("name")
        if isinstance(name, str) and unflagged(f"{pointer}/name"):
            if name in first_seen:
                first = positions.of_value(first_seen[name])
                where = f" (first defined at line {first[0]})" if first else ""
                issues.append(positions.issue(f"{pointer}/name", f"duplicate model name '{name}'{where}"))
            else:
                first_seen[name] = f"{pointer}/name"
    return issues


def _metrics_section(doc: Any) -> Mapping[str, Any]:
    monitoring = doc.get("monitoring") if isinstance(doc, dict) else None
    metrics = monitoring.get("metrics") if isinstance(monitoring, dict) else None
    return metrics if isinstance(metrics, dict) else {}


def _monitoring_issues(doc: Any, positions: Positions) -> list[ConfigIssue]:
    """Names in ``metrics_list`` that are no metric family of this server (the schema checks the types)."""
    names = _metrics_section(doc).get("metrics_list")
    if not isinstance(names, list):
        return []
    issues = []
    for index, name in enumerate(names):
        if not isinstance(name, str) or name in METRIC_FAMILIES:
            continue
        message = f"unknown metric '{name}'"
        close = difflib.get_close_matches(name, METRIC_FAMILIES, n=1)
        if close:
            message += f" (did you mean '{close[0]}'?)"
        message += f"; this server exports: {', '.join(METRIC_FAMILIES)}"
        issues.append(positions.issue(f"/monitoring/metrics/metrics_list/{index}", message))
    return issues


def _build_monitoring(doc: Mapping[str, Any]) -> MonitoringConfig:
    metrics = _metrics_section(doc)
    names = metrics.get("metrics_list")
    return MonitoringConfig(
        enable=metrics.get("enable"),
        metrics_list=tuple(dict.fromkeys(names)) if names is not None else None,
    )


def _value_problems(pointer: str, cfg: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(pointer, message)`` for batch sizes and shapes that do not parse, and remote base paths not served."""
    batch = cfg.get("batch_size")
    if isinstance(batch, str | int) and not isinstance(batch, bool):
        try:
            BatchSize.parse(batch)
        except ValueError as exc:
            yield f"{pointer}/batch_size", f"batch_size {batch} is invalid: {exc}"
    for sub_pointer, label, value in _shape_values(pointer, cfg.get("shape")):
        try:
            InputShape.parse(value)
        except ValueError as exc:
            yield sub_pointer, f"{label} {value if isinstance(value, str) else _show(value)} is invalid: {exc}"
    base_path = cfg.get("base_path")
    if isinstance(base_path, str) and is_remote(base_path):
        problem = _store_problem(base_path)
        if problem:
            yield f"{pointer}/base_path", f"base_path {_show(base_path)}: {problem}"


def _store_problem(url: str) -> str | None:
    """Why an object-store base path cannot be served here, or None. boto3 is looked for, not imported (slow)."""
    try:
        StoreUrl.parse(url)
    except ValueError as exc:
        return str(exc)
    if importlib.util.find_spec("boto3") is None:
        return f"s3:// base paths need boto3, which is not installed; {S3_EXTRA}"
    return None


def _shape_values(pointer: str, shape: Any) -> Iterator[tuple[str, str, str | list[int]]]:
    if isinstance(shape, str | list):
        yield f"{pointer}/shape", "shape", shape
    elif isinstance(shape, dict):
        for name, value in shape.items():
            if isinstance(value, str | list):
                yield _join(f"{pointer}/shape", name), f"shape of input '{name}'", value


def _ordered(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    """Issues in reading order, each once."""
    unique = list(dict.fromkeys(issues))
    return sorted(unique, key=lambda i: (i.line is None, i.line or 0, i.column or 0, i.pointer))


def _warnings(doc: Mapping[str, Any], entries: list[tuple[str, dict[str, Any]]]) -> Iterator[str]:
    for key, reason in _UNSERVED_LISTS.items():
        items = doc.get(key)
        if isinstance(items, list) and items:
            yield f"{key} is accepted but not served: {reason} ({len(items)} entr{'y' if len(items) == 1 else 'ies'})"
    if "model_config_list" not in doc:
        yield "the config has no model_config_list, so no models are served"
    for _, cfg in entries:
        yield from _model_warnings(cfg)


def _model_warnings(cfg: Mapping[str, Any]) -> Iterator[str]:
    name = cfg.get("name")
    if cfg.get("stateful") is True:
        yield f"model '{name}' is stateful; stateful models are not supported, it is served as a stateless model"
    else:
        for key in _STATEFUL_KEYS:
            if key in cfg:
                yield f"model '{name}': {key} is ignored (it applies only to stateful models)"
    if "custom_loader_options" in cfg:
        yield f"model '{name}': custom_loader_options is ignored (custom loaders are not supported)"


def _build_model(cfg: Mapping[str, Any], base_dir: Path) -> ModelConfig:
    batch = cfg.get("batch_size")
    store = StoreUrl.parse(cfg["base_path"]) if is_remote(cfg["base_path"]) else None
    return ModelConfig(
        name=cfg["name"],
        # an object-store model: the mirror's folder name, placed in the object-store cache by the daemon
        base_path=Path(store.mirror_name()) if store else resolve_base_path(cfg["base_path"], base_dir),
        source_url=str(store) if store else None,
        batch_size=BatchSize.parse(batch) if batch is not None else None,
        shape=_build_shape(cfg.get("shape")),
        layout=dict(cfg["layout"]) if isinstance(cfg.get("layout"), dict) else cfg.get("layout"),
        version_policy=_build_policy(cfg.get("model_version_policy")),
        nireq=int(cfg.get("nireq", 0)),
        target_device=cfg.get("target_device", "CPU"),
        plugin_config=dict(cfg.get("plugin_config", {})),
        allow_cache=bool(cfg.get("allow_cache", False)),
    )


def resolve_base_path(base_path: str, base_dir: Path) -> Path:
    """``~`` expanded; a relative path joined to ``base_dir`` (made absolute); ``..`` folded, symlinks kept."""
    path = Path(base_path).expanduser()
    if not path.is_absolute():
        path = base_dir.absolute() / path
    return Path(os.path.normpath(path))


def _build_shape(shape: Any) -> ShapeConfig:
    if shape is None:
        return ShapeConfig()
    if isinstance(shape, dict):
        return ShapeConfig(per_input={name: InputShape.parse(value) for name, value in shape.items()})
    return ShapeConfig(anonymous=InputShape.parse(shape))


def _build_policy(policy: Mapping[str, Any] | None) -> VersionPolicy:
    if not policy:
        return VersionPolicy()
    if "all" in policy:
        return VersionPolicy(kind="all")
    if "specific" in policy:
        return VersionPolicy(kind="specific", versions=tuple(sorted({int(v) for v in policy["specific"]["versions"]})))
    return VersionPolicy(kind="latest", num_versions=int(policy["latest"].get("num_versions", 1)))
