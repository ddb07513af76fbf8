"""Read an OVMS ``config.json`` (or its YAML equivalent), check it, and turn it into a :class:`ServerConfig`.

Checking happens in three passes over the parsed document, and every problem found is reported at once:

1. syntax: JSON errors come from :mod:`json`, YAML errors from :mod:`yaml`; either is a single issue;
2. structure: the document is validated against ``schemas/config.schema.json`` with :mod:`jsonschema`, and each
   schema error is turned into a plain sentence;
3. meaning: shape and batch strings must parse, model names must be unique, base paths must be local or ``s3://``
   URLs (with boto3 installed), metric names in ``monitoring`` must be metrics this server exports.

Each issue carries a JSON pointer into the document and the 1-based line and column of the offending node: for YAML
from the composed node tree, for JSON from the text itself, found only for the nodes an issue names (so a valid JSON
config is parsed once, by :mod:`json`).

The input is bounded before any of this, and every bound is an issue with a position, never an exception: the
document's size (``max_bytes``, ``--max-config-bytes``, :data:`MAX_CONFIG_BYTES` by default), its nesting depth
(:data:`MAX_DEPTH` levels of lists and objects) and, for YAML, what aliases add to it (:data:`MAX_ALIAS_NODES`
nodes: the "billion laughs" document is refused while it is composed, from its few hundred bytes). A valid
document costs no :mod:`jsonschema` pass (:mod:`ovmsd.config.quickcheck` says "valid" about twenty times faster);
an invalid one is described by :mod:`jsonschema`, on the model entries that failed.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import json.decoder
import json.scanner
import os
import re
import stat
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
    ModelLimits,
    MonitoringConfig,
    ServerConfig,
    ShapeConfig,
    StoreUrl,
    VersionPolicy,
    is_remote,
)
from ovmsd.config.quickcheck import Check, compile_check
from ovmsd.options import default_of

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

MAX_CONFIG_BYTES: int = default_of("max_config_bytes")  # the default of --max-config-bytes (16 MiB)
# Lists and objects inside each other; the deepest the schema knows is 7 (/model_config_list/0/config/
# model_version_policy/specific/versions), a pipeline definition (accepted, not served) about 8.
MAX_DEPTH = 64
# Nodes YAML aliases may add to what is written: plenty for shared plugin_config or shape blocks, and far below the
# hundreds of millions a few hundred bytes of nested aliases expand to.
MAX_ALIAS_NODES = 100_000
SIZE_OPTION = "--max-config-bytes"


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


class Positions:
    """Where each node of a parsed document sits in its source text (1-based line and column).

    ``links`` maps the pointer of a YAML alias to the pointer where its node was first met: positions inside an
    alias are those of the anchored node (the walk visits each node once, however often aliases repeat it).
    """

    def __init__(
        self,
        values: Mapping[str, Position] | None = None,
        keys: Mapping[str, Position] | None = None,
        links: Mapping[str, str] | None = None,
    ) -> None:
        self.values: Mapping[str, Position] = values or {}
        self.keys: Mapping[str, Position] = keys or {}
        self.links: Mapping[str, str] = links or {}

    def of_value(self, pointer: str) -> Position | None:
        """The position of the node at ``pointer``, or of its nearest ancestor that has one."""
        pointer = self._resolve(pointer)
        while True:
            position = self._value_at(pointer)
            if position is not None:
                return position
            if not pointer:
                return None
            pointer = pointer.rsplit("/", 1)[0]

    def of_key(self, pointer: str) -> Position | None:
        """The position of the mapping key that ``pointer`` ends with (falling back to its value)."""
        return self._key_at(self._resolve(pointer)) or self.of_value(pointer)

    def issue(self, pointer: str, message: str, *, at_key: bool = False) -> ConfigIssue:
        pos = self.of_key(pointer) if at_key else self.of_value(pointer)
        return ConfigIssue(pointer, message, *(pos or (None, None)))

    def _value_at(self, pointer: str) -> Position | None:
        return self.values.get(pointer)

    def _key_at(self, pointer: str) -> Position | None:
        return self.keys.get(pointer)

    def _resolve(self, pointer: str) -> str:
        """``pointer`` with every alias on its way replaced by the pointer of the node the alias names."""
        if not self.links or not pointer:
            return pointer
        current = ""
        for token in pointer[1:].split("/"):
            current = f"{current}/{token}"
            current = self.links.get(current, current)
        return current


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


def load_config(path: Path | str, *, max_bytes: int = MAX_CONFIG_BYTES) -> ServerConfig:
    """Read and check the config file at ``path`` (``-`` for stdin). Raises :class:`ConfigError` listing every issue."""
    try:
        result = check_config(path, max_bytes=max_bytes)
    except OSError as exc:
        source = None if str(path) == "-" else Path(path)
        reason = exc.strerror or str(exc)
        raise ConfigError([ConfigIssue("", f"cannot read the config file: {reason}")], source) from exc
    return _unwrap(result)


def parse_config_text(
    text: str, *, fmt: Format | None = None, source: Path | None = None, max_bytes: int = MAX_CONFIG_BYTES
) -> ServerConfig:
    """Check config text; relative base paths resolve against ``source``'s directory (or the current directory)."""
    return _unwrap(check_config_text(text, fmt=fmt, source=source, max_bytes=max_bytes))


def check_config(path: Path | str, *, max_bytes: int = MAX_CONFIG_BYTES) -> CheckResult:
    """Check the config file at ``path`` (``-`` for stdin). Raises OSError only when the file cannot be read.

    At most ``max_bytes`` + 1 bytes are read: a larger file is one issue, whatever its size.
    """
    if str(path) == "-":
        return check_config_bytes(sys.stdin.buffer.read(max_bytes + 1), max_bytes=max_bytes)
    path = Path(path)
    with path.open("rb") as file:
        info = os.fstat(file.fileno())
        data = file.read(max_bytes + 1)
    size = info.st_size if stat.S_ISREG(info.st_mode) else None
    return check_config_bytes(data, source=path, max_bytes=max_bytes, size=size)


def check_config_bytes(
    data: bytes,
    *,
    fmt: Format | None = None,
    source: Path | None = None,
    base_dir: Path | None = None,
    max_bytes: int = MAX_CONFIG_BYTES,
    size: int | None = None,
) -> CheckResult:
    """Like :func:`check_config_text`, for raw file content (UTF-8, with or without a byte-order mark).

    ``size`` is the whole file's size when ``data`` holds only its first ``max_bytes`` + 1 bytes.
    """
    if len(data) > max_bytes:
        return CheckResult(None, (_too_large(data, max_bytes, size),), source=source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        issue = ConfigIssue("", f"the config is not UTF-8 text (byte 0x{data[exc.start]:02x})", line, column)
        return CheckResult(None, (issue,), source=source)
    return _check_text(text, fmt, source, base_dir)


def check_config_text(
    text: str,
    *,
    fmt: Format | None = None,
    source: Path | None = None,
    base_dir: Path | None = None,
    max_bytes: int = MAX_CONFIG_BYTES,
) -> CheckResult:
    """Check config text and report every issue. ``fmt`` defaults to the source's extension, then to sniffing.

    Relative base paths resolve against ``base_dir``, by default the source file's directory, or the current
    directory when there is no source file. ``max_bytes`` bounds the text's UTF-8 size.
    """
    if len(text) > max_bytes // 4:  # below that, no encoding is too long; above, count
        data = text.encode("utf-8", "surrogatepass")
        if len(data) > max_bytes:
            return CheckResult(None, (_too_large(data, max_bytes, len(data)),), source=source)
    return _check_text(text, fmt, source, base_dir)


def _check_text(text: str, fmt: Format | None, source: Path | None, base_dir: Path | None) -> CheckResult:
    fmt = fmt or config_format(source, text)
    try:
        parsed = _parse(text, fmt)
        if isinstance(parsed, ConfigIssue):
            return CheckResult(None, (parsed,), source=source)
        doc, positions, issues = parsed
        if base_dir is None:
            base_dir = source.parent if source is not None else Path.cwd()
        return _check_document(doc, positions, issues, base_dir=base_dir, source=source)
    except RecursionError:  # the bounds above make this unreachable; should it happen, it is still no traceback
        issue = ConfigIssue("", f"the config is nested too deeply to be checked (at most {MAX_DEPTH} levels)")
    except MemoryError:
        issue = ConfigIssue("", "the config needs more memory to be checked than there is")
    return CheckResult(None, (issue,), source=source)


def _too_large(data: bytes, max_bytes: int, size: int | None) -> ConfigIssue:
    """The size issue, at the first byte past the limit."""
    line = data.count(b"\n", 0, max_bytes) + 1
    column = max_bytes - (data.rfind(b"\n", 0, max_bytes) + 1) + 1
    what = f"{size:,} bytes" if size is not None and size > max_bytes else f"more than {max_bytes:,} bytes"
    message = f"the config is {what}, over the limit of {max_bytes:,} bytes (raise it with {SIZE_OPTION})"
    return ConfigIssue("", message, line, column)


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
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{key} is not valid JSON: {exc.msg} at column {exc.colno}") from exc
    except (RecursionError, ValueError) as exc:  # too deep for the parser; an integer of over 4300 digits
        raise ValueError(f"{key} is not usable JSON: {_json_value_problem(value, exc)}") from exc
    if _json_depth(parsed, MAX_DEPTH)[0] > MAX_DEPTH:
        raise ValueError(f"{key} is nested more than {MAX_DEPTH} levels deep")
    return parsed


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


class _LimitError(yaml.YAMLError):
    """A bound of the config input was passed; raised while the YAML is composed, with where."""

    def __init__(self, message: str, mark: yaml.Mark) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


_COLLECTION_STARTS = (yaml.SequenceStartEvent, yaml.MappingStartEvent)


class _BoundedLoader(_Loader):
    """Composes within :data:`MAX_DEPTH` and :data:`MAX_ALIAS_NODES`, measuring each node as it is made.

    A node's expanded size (its nodes, each alias counted as what it names) and height are known once it is
    composed, so an alias costs one lookup: the document's expanded size is counted without being expanded. A
    recursive alias (inside the node it names) is refused: no JSON document can hold it.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0  # collections open around the node being composed
        self._measured: dict[int, tuple[int, int]] = {}  # id(collection) -> (expanded size, height)
        self._added = 0  # nodes the aliases met so far add to the document

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            return self._alias(node, mark)
        collection = self.check_event(*_COLLECTION_STARTS)
        if collection:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _LimitError(f"the config is nested more than {MAX_DEPTH} levels deep", mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            if collection:
                self._depth -= 1
        if collection:
            self._measured[id(node)] = self._measure(node)
        return node

    def _measure(self, node: yaml.Node) -> tuple[int, int]:
        """(expanded size, height) of a collection whose children are all composed (scalars: (1, 0))."""
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = [child for pair in node.value for child in pair]
        size, height = 1, 1
        for child in children:
            child_size, child_height = self._measured.get(id(child), (1, 0))
            size += child_size
            height = max(height, child_height + 1)
        return size, height

    def _alias(self, node: yaml.Node, mark: yaml.Mark) -> yaml.Node:
        measured = (1, 0) if isinstance(node, yaml.ScalarNode) else self._measured.get(id(node))
        if measured is None:
            raise _LimitError("this alias is inside the node it refers to (a recursive structure)", mark)
        size, height = measured
        if self._depth + height > MAX_DEPTH:
            raise _LimitError(f"the config is nested more than {MAX_DEPTH} levels deep (through this alias)", mark)
        self._added += size - 1
        if self._added > MAX_ALIAS_NODES:
            raise _LimitError(f"YAML aliases expand the config by more than {MAX_ALIAS_NODES:,} nodes", mark)
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """Values Python cannot make (``2023-02-30``, an integer of over 4300 digits) are errors at their node."""
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark
            ) from exc


def _parse(text: str, fmt: Format) -> tuple[Any, Positions, list[ConfigIssue]] | ConfigIssue:
    """The document, where its nodes are, and duplicate-key issues; or the one syntax (or bound) issue."""
    if not text.strip():
        return ConfigIssue("", "the config is empty", 1, 1)
    if fmt == "json":
        return _parse_json(text)
    try:  # PyYAML checks every character when the loader is made
        loader = _BoundedLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return ConfigIssue("", f"invalid YAML: {exc.reason} (character {exc.character!r})", line, column)
    try:
        node = loader.get_single_node()
        if node is None:
            return ConfigIssue("", "the config is empty (the YAML has no document)", 1, 1)
        # positions first: constructing merges `<<` keys into their mappings, in place
        positions, issues = _positions(node)
        doc = loader.construct_document(node)  # the SafeLoader's tags only
    except _LimitError as exc:
        return ConfigIssue("", exc.message, exc.mark.line + 1, exc.mark.column + 1)
    except yaml.YAMLError as exc:
        return _yaml_syntax_issue(exc)
    finally:
        loader.dispose()
    return doc, positions, issues


def _yaml_syntax_issue(exc: yaml.YAMLError) -> ConfigIssue:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    if mark is None:
        return ConfigIssue("", message)
    return ConfigIssue("", message, mark.line + 1, mark.column + 1)


def _positions(root: yaml.Node) -> tuple[Positions, list[ConfigIssue]]:
    """Every node's position, each node visited once: an alias met again becomes a link to where it was first met
    (walking into it again would repeat its nodes, exponentially for nested aliases)."""
    values: dict[str, Position] = {}
    keys: dict[str, Position] = {}
    links: dict[str, str] = {}
    first_met: dict[int, str] = {}
    issues: list[ConfigIssue] = []

    def visit(node: yaml.Node, pointer: str) -> None:
        seen = first_met.get(id(node))
        if seen is not None:
            links[pointer] = seen
            return
        first_met[id(node)] = pointer
        values[pointer] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                visit(item, f"{pointer}/{index}")
        elif isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # a list or mapping as a key: constructing the document refuses it
                child = _join(pointer, key_node.value)
                key_pos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if child in keys and key_node.value != "<<":
                    message = f"duplicate key '{key_node.value}' (first at line {keys[child][0]})"
                    issues.append(ConfigIssue(child, message, *key_pos))
                else:
                    keys[child] = key_pos
                visit(value_node, child)

    visit(root, "")
    return Positions(values, keys, links), issues


# JSON: parsed by json (C); positions only for the pointers an issue names, found in the text by scanning just the
# containers on their way (each once), skipping everything else with json's own C scanner.

_JSON_SCAN = json.scanner.make_scanner(json.JSONDecoder())
_JSON_STRING = json.decoder.scanstring
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
# the end of an object key: a quote, blanks, a colon; inside a string the quote is escaped, so this counts every key
# (and, rarely, a few \": inside strings: counting more than the document holds only means looking closer)
_JSON_KEY_END = re.compile(r'"[ \t\n\r]*:')
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_LONG_NUMBER = re.compile(r"[0-9]{4301,}")
_LINE_BLOCK = 1 << 16


def _parse_json(text: str) -> tuple[Any, Positions, list[ConfigIssue]] | ConfigIssue:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return ConfigIssue("", f"invalid JSON: {exc.msg}", exc.lineno, exc.colno)
    except RecursionError:
        return _json_too_deep(text)
    except ValueError as exc:  # an integer of over 4300 digits (sys.get_int_max_str_digits)
        return _json_number_issue(text, exc)
    depth, keys = _json_depth(doc, MAX_DEPTH)
    if depth > MAX_DEPTH:
        return _json_too_deep(text)
    positions = _JsonPositions(text)
    issues: list[ConfigIssue] = []
    if _JSON_KEY_END.subn("", text)[1] != keys:  # more keys written than the document holds: duplicates?
        issues = _json_duplicate_keys(text, positions)
    return doc, positions, issues


def _json_depth(doc: Any, limit: int) -> tuple[int, int]:
    """How deep ``doc``'s lists and objects go (counted up to ``limit`` + 1), and how many keys its objects hold."""
    level = [doc] if isinstance(doc, dict | list) else []
    depth = keys = 0
    while level and depth <= limit:
        depth += 1
        below: list[Any] = []
        for container in level:
            if type(container) is dict:
                keys += len(container)
                below += [v for v in container.values() if type(v) is dict or type(v) is list]
            else:
                below += [v for v in container if type(v) is dict or type(v) is list]
        level = below
    return depth, keys


def _json_too_deep(text: str) -> ConfigIssue:
    """The issue at the first list or object nested deeper than allowed (a scan of the text, on this path only)."""
    message = f"the config is nested more than {MAX_DEPTH} levels deep"
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return ConfigIssue("", message, *_LineIndex(text).position(match.start()))
        elif token in "]}":
            depth -= 1
    return ConfigIssue("", message)


def _json_number_issue(text: str, exc: ValueError) -> ConfigIssue:
    match = _LONG_NUMBER.search(text)
    problem = _json_value_problem(text, exc)
    if match is None:
        return ConfigIssue("", f"invalid JSON: {problem}")
    return ConfigIssue("", f"invalid JSON: {problem}", *_LineIndex(text).position(match.start()))


def _json_value_problem(text: str, exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return f"nested more than {MAX_DEPTH} levels deep"
    if _LONG_NUMBER.search(text):
        return f"a number with more than {_max_digits()} digits"
    return str(exc)


def _max_digits() -> int:
    """The most digits Python turns into an integer (4300 unless changed; no limit before 3.11: 0)."""
    get = getattr(sys, "get_int_max_str_digits", None)
    return (get() if get is not None else 0) or 4300


def _json_duplicate_keys(text: str, positions: _JsonPositions) -> list[ConfigIssue]:
    """Keys written twice in one object: found by parsing again, keeping each object's pairs (a slower parse, only
    for documents whose key count says there may be some)."""
    repeated: dict[int, list[tuple[str, Any]]] = {}

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            repeated[id(result)] = pairs
        return result

    doc = json.loads(text, object_pairs_hook=pairs_hook)
    if not repeated:
        return []
    issues = []
    for pointer in _pointers_of(doc, repeated):
        first: dict[str, Position] = {}
        for key, position in positions.key_occurrences(pointer):
            if key in first:
                message = f"duplicate key '{key}' (first at line {first[key][0]})"
                issues.append(ConfigIssue(_join(pointer, key), message, *position))
            else:
                first[key] = position
    return issues


def _pointers_of(doc: Any, wanted: Mapping[int, object]) -> Iterator[str]:
    """The pointers of the containers of ``doc`` whose ids are in ``wanted``."""
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        node, pointer = stack.pop()
        if id(node) in wanted:
            yield pointer
        items = node.items() if isinstance(node, dict) else enumerate(node)
        stack.extend((v, _join(pointer, k)) for k, v in items if isinstance(v, dict | list))


class _LineIndex:
    """Line and column of an offset in a text, from a line count every 64 KiB (one pass, then bounded lookups)."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._lines: list[int] | None = None  # the line at each block's start
        self._line_starts: list[int] = []  # the offset where that line starts

    def position(self, offset: int) -> Position:
        if self._lines is None:
            self._index()
        assert self._lines is not None
        block = offset // _LINE_BLOCK
        start = block * _LINE_BLOCK
        line = self._lines[block] + self._text.count("\n", start, offset)
        newline = self._text.rfind("\n", start, offset)
        line_start = newline + 1 if newline >= 0 else self._line_starts[block]
        return line, offset - line_start + 1

    def _index(self) -> None:
        text, lines, starts = self._text, [1], [0]
        for start in range(0, len(text), _LINE_BLOCK):
            end = start + _LINE_BLOCK
            lines.append(lines[-1] + text.count("\n", start, end))
            newline = text.rfind("\n", start, end)
            starts.append(newline + 1 if newline >= 0 else starts[-1])
        self._lines, self._line_starts = lines, starts


class _JsonPositions(Positions):
    """Positions in JSON text, found when asked for: the containers on the way to a pointer are scanned (once
    each) for where their children start."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text
        self._lines = _LineIndex(text)
        self._starts: dict[str, int] = {"": _JSON_SPACE.match(text).end()}  # type: ignore[union-attr]
        self._key_starts: dict[str, int] = {}
        self._occurrences: dict[str, list[tuple[str, int]]] = {}  # an object's keys as written, duplicates too
        self._scanned: set[str] = set()

    def key_occurrences(self, pointer: str) -> list[tuple[str, Position]]:
        """Every key of the object at ``pointer``, as written (a duplicate key each time), with its position."""
        start = self._start(pointer)
        if start is None:
            return []
        self._scan(pointer, start)
        return [(key, self._lines.position(offset)) for key, offset in self._occurrences.get(pointer, ())]

    def _value_at(self, pointer: str) -> Position | None:
        offset = self._start(pointer)
        return None if offset is None else self._lines.position(offset)

    def _key_at(self, pointer: str) -> Position | None:
        if self._start(pointer) is None:
            return None
        offset = self._key_starts.get(pointer)
        return None if offset is None else self._lines.position(offset)

    def _start(self, pointer: str) -> int | None:
        if pointer in self._starts:
            return self._starts[pointer]
        parent = pointer.rsplit("/", 1)[0]
        if parent == pointer or parent in self._scanned:
            return None
        parent_start = self._start(parent)
        if parent_start is None:
            return None
        self._scan(parent, parent_start)
        return self._starts.get(pointer)

    def _scan(self, pointer: str, start: int) -> None:
        """Record where each child of the container at ``start`` begins (the text is valid JSON: json read it)."""
        if pointer in self._scanned:
            return
        self._scanned.add(pointer)
        text, space = self._text, _JSON_SPACE
        opening = text[start]
        if opening not in "[{":
            return
        i = space.match(text, start + 1).end()  # type: ignore[union-attr]
        if text[i] in "]}":
            return
        index = 0
        occurrences: list[tuple[str, int]] = []
        while True:
            if opening == "[":
                child = f"{pointer}/{index}"
                index += 1
            else:
                key, after_key = _JSON_STRING(text, i + 1)
                child = _join(pointer, key)
                self._key_starts[child] = i
                occurrences.append((key, i))
                colon = space.match(text, after_key).end()  # type: ignore[union-attr]
                i = space.match(text, colon + 1).end()  # type: ignore[union-attr]
            self._starts[child] = i  # a key written twice: the last one, whose value the document holds
            _, end = _JSON_SCAN(text, i)
            i = space.match(text, end).end()  # type: ignore[union-attr]
            if text[i] != ",":
                break
            i = space.match(text, i + 1).end()  # type: ignore[union-attr]
        if occurrences:
            self._occurrences[pointer] = occurrences


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


@functools.cache
def _quick_checks() -> tuple[Check | None, Check | None]:
    """Fast yes-or-no checks of a document and of one model entry (None: the schema cannot be compiled)."""
    return compile_check(_schema()), compile_check(_schema(), "/$defs/model_entry")


@functools.cache
def _entry_validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/model_entry", "$defs": _schema()["$defs"]})


def _schema_issues(doc: Any, positions: Positions) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for error in _schema_errors(doc):
        for focused in _focus(error):
            issues.extend(_describe(focused, positions))
    return issues


def _schema_errors(doc: Any) -> Iterator[jsonschema.ValidationError]:
    """jsonschema's errors, the same as ``_validator().iter_errors(doc)`` gives, found faster: none for a document
    the quick check passes; else the document without its models, then each model entry that fails it alone."""
    whole, entry = _quick_checks()
    if whole is not None and whole(doc):
        return
    models = doc.get("model_config_list") if isinstance(doc, dict) else None
    if entry is None or not isinstance(models, list):
        yield from _validator().iter_errors(doc)
        return
    yield from _validator().iter_errors({**doc, "model_config_list": []})
    for index, item in enumerate(models):
        if entry(item):
            continue
        for error in _entry_validator().iter_errors(item):
            error.path.extendleft((index, "model_config_list"))  # where the whole document's pass has it
            yield error


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
        return [positions.issue(pointer, f"{_label(path)}: {_clip(error.message)}")]
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


def _clip(text: str, limit: int = 200) -> str:
    """A message quoting the document, cut to ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


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

    covered = set(flagged)  # flagged pointers and their ancestors: an issue at or below these
    for p in flagged:
        while p:
            p = p.rsplit("/", 1)[0]
            covered.add(p)

    def unflagged(pointer: str) -> bool:
        """No issue at ``pointer``, below it, or above it within the same key (``/.../config/shape``)."""
        if pointer in covered:
            return False
        parent = pointer.rsplit("/", 1)[0]
        while parent.count("/") > 3:
            if parent in flagged:
                return False
            parent = parent.rsplit("/", 1)[0]
        return True

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
    if isinstance(batch, str | int | float) and not isinstance(batch, bool):
        try:
            _batch_size(batch)
        except ValueError as exc:
            yield f"{pointer}/batch_size", f"batch_size {batch} is invalid: {exc}"
    for sub_pointer, label, value in _shape_values(pointer, cfg.get("shape")):
        try:
            _input_shape(value)
        except ValueError as exc:
            yield sub_pointer, f"{label} {value if isinstance(value, str) else _show(value)} is invalid: {exc}"
    base_path = cfg.get("base_path")
    if isinstance(base_path, str) and is_remote(base_path):
        problem = _store_problem(base_path)
        if problem:
            yield f"{pointer}/base_path", f"base_path {_show(base_path)}: {problem}"


@functools.lru_cache(maxsize=4096, typed=True)
def _parsed_batch_size(value: int | str) -> BatchSize:
    return BatchSize.parse(value)


@functools.lru_cache(maxsize=4096)
def _parsed_shape(value: str) -> InputShape:
    return InputShape.parse(value)


def _batch_size(value: int | str) -> BatchSize:
    """``BatchSize.parse``, once per distinct value (both are immutable; large configs repeat a few values).

    ``4.0`` is 4: JSON Schema calls it an integer, so the schema let it through.
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _parsed_batch_size(value)


def _input_shape(value: str | list[int]) -> InputShape:
    """``InputShape.parse``, once per distinct string."""
    return _parsed_shape(value) if isinstance(value, str) else InputShape.parse(value)


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
        batch_size=_batch_size(batch) if batch is not None else None,
        shape=_build_shape(cfg.get("shape")),
        layout=dict(cfg["layout"]) if isinstance(cfg.get("layout"), dict) else cfg.get("layout"),
        version_policy=_build_policy(cfg.get("model_version_policy")),
        nireq=int(cfg.get("nireq", 0)),
        target_device=cfg.get("target_device", "CPU"),
        plugin_config=dict(cfg.get("plugin_config", {})),
        allow_cache=bool(cfg.get("allow_cache", False)),
        limits=ModelLimits.from_config(cfg),
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
        return ShapeConfig(per_input={name: _input_shape(value) for name, value in shape.items()})
    return ShapeConfig(anonymous=_input_shape(shape))


def _build_policy(policy: Mapping[str, Any] | None) -> VersionPolicy:
    if not policy:
        return VersionPolicy()
    if "all" in policy:
        return VersionPolicy(kind="all")
    if "specific" in policy:
        return VersionPolicy(kind="specific", versions=tuple(sorted({int(v) for v in policy["specific"]["versions"]})))
    return VersionPolicy(kind="latest", num_versions=int(policy["latest"].get("num_versions", 1)))
