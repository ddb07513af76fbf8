"""A fast yes-or-no JSON Schema check, so that a valid config costs no :mod:`jsonschema` pass.

:mod:`jsonschema` spends about 13 µs per node of the document (21 s on a 50 MB config of 108,000 models); most
configs are valid, and for them a plain "valid" is all that is needed. :func:`compile_check` turns a schema into
nested closures that answer only that, about ten times faster. When the answer is "invalid", the loader asks
:mod:`jsonschema` for the messages, on the parts that failed.

Only the keywords of ``schemas/config.schema.json`` are compiled, with :mod:`jsonschema`'s semantics (Draft 2020-12
types: ``1.0`` is an integer, ``True`` is no number; ``pattern`` is :func:`re.search`). A schema using any other
keyword compiles to None, and the loader then always runs :mod:`jsonschema`: a wrong "valid" is impossible by
construction, a test compares both on many documents.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples"})
_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "additionalProperties",
        "required",
        "minProperties",
        "maxProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
    }
)


class Unsupported(Exception):
    """The schema uses something this module does not compile."""


def compile_check(schema: Mapping[str, Any], pointer: str = "") -> Check | None:
    """A function telling whether an instance is valid against ``schema`` (or against the subschema at the JSON
    pointer ``pointer`` inside it, e.g. ``/$defs/model_entry``); None when the schema cannot be compiled."""
    try:
        return _Compiler(schema).at(pointer)
    except Unsupported:
        return None


def _is_integer(x: Any) -> bool:
    if type(x) is int:
        return True
    if isinstance(x, bool):
        return False
    return isinstance(x, int) or (isinstance(x, float) and x.is_integer())


def _is_number(x: Any) -> bool:
    if type(x) is int or type(x) is float:
        return True
    return not isinstance(x, bool) and isinstance(x, numbers.Number)


_TYPES: dict[str, Check] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
    "integer": _is_integer,
    "number": _is_number,
}


_BY_TYPE: dict[str, type] = {"object": dict, "array": list, "string": str}


def _always(x: Any) -> bool:
    return True


def _never(x: Any) -> bool:
    return False


def _all(checks: list[Check]) -> Check | None:
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]

    def every(x: Any) -> bool:
        return all(check(x) for check in checks)

    return every


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.compiled: dict[str, Check] = {}

    def at(self, pointer: str) -> Check:
        """The check of the subschema at ``pointer`` (compiled once; recursive references work)."""
        if pointer in self.compiled:
            return self.compiled[pointer]
        target: list[Check] = []

        def forward(x: Any) -> bool:  # a reference reached again while its schema is being compiled
            return target[0](x)

        self.compiled[pointer] = forward
        check = self.build(self.resolve(pointer))
        target.append(check)
        self.compiled[pointer] = check
        return check

    def resolve(self, pointer: str) -> Any:
        node: Any = self.root
        if not pointer:
            return node
        if not pointer.startswith("/"):
            raise Unsupported(pointer)
        for token in pointer[1:].split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise Unsupported(pointer)
        return node

    def build(self, schema: Any) -> Check:
        if schema is True:
            return _always
        if schema is False:
            return _never
        if not isinstance(schema, Mapping):
            raise Unsupported(repr(schema))
        unknown = [k for k in schema if k not in _KEYWORDS and k not in _ANNOTATIONS and not k.startswith("x-")]
        if unknown:
            raise Unsupported(", ".join(unknown))
        type_check = self._type(schema.get("type"))
        on_object = self._object(schema)
        on_array = self._array(schema)
        on_string = self._string(schema)
        on_number = self._number(schema)
        general = _all(self._combinators(schema))
        single = schema.get("type") if isinstance(schema.get("type"), str) else None
        if general is None and single in _BY_TYPE:  # the common case, one call per node
            kind, specific = _BY_TYPE[single], {"object": on_object, "array": on_array, "string": on_string}[single]
            if specific is None:
                return _TYPES[single]
            return lambda x: isinstance(x, kind) and specific(x)

        def check(x: Any) -> bool:
            if type_check is not None and not type_check(x):
                return False
            if isinstance(x, dict):
                if on_object is not None and not on_object(x):
                    return False
            elif isinstance(x, list):
                if on_array is not None and not on_array(x):
                    return False
            elif isinstance(x, str):
                if on_string is not None and not on_string(x):
                    return False
            elif on_number is not None and _is_number(x) and not on_number(x):
                return False
            return general is None or general(x)

        return check

    def _type(self, types: Any) -> Check | None:
        if types is None:
            return None
        names = [types] if isinstance(types, str) else list(types)
        try:
            checks = tuple(_TYPES[name] for name in names)
        except (KeyError, TypeError) as exc:
            raise Unsupported(f"type {types!r}") from exc
        if len(checks) == 1:
            return checks[0]
        return lambda x: any(check(x) for check in checks)

    def _object(self, schema: Mapping[str, Any]) -> Check | None:
        props = {key: self.build(sub) for key, sub in schema.get("properties", {}).items()}
        extra_schema = schema.get("additionalProperties", True)
        extra: Check | None = None if extra_schema is True else self.build(extra_schema)
        required = tuple(schema.get("required", ()))
        low = schema.get("minProperties")
        high = schema.get("maxProperties")
        if not props and extra is None and not required and low is None and high is None:
            return None

        def on_object(d: dict[Any, Any]) -> bool:
            if low is not None and len(d) < low:
                return False
            if high is not None and len(d) > high:
                return False
            for key in required:
                if key not in d:
                    return False
            for key, value in d.items():
                sub = props.get(key) if isinstance(key, str) else None
                if sub is not None:
                    if not sub(value):
                        return False
                elif extra is not None and not extra(value):  # additionalProperties: false is _never
                    return False
            return True

        return on_object

    def _array(self, schema: Mapping[str, Any]) -> Check | None:
        item = self.build(schema["items"]) if "items" in schema else None
        low = schema.get("minItems")
        high = schema.get("maxItems")
        if item is None and low is None and high is None:
            return None

        def on_array(items: list[Any]) -> bool:
            if low is not None and len(items) < low:
                return False
            if high is not None and len(items) > high:
                return False
            if item is not None:
                for x in items:
                    if not item(x):
                        return False
            return True

        return on_array

    def _string(self, schema: Mapping[str, Any]) -> Check | None:
        low = schema.get("minLength")
        high = schema.get("maxLength")
        pattern = re.compile(schema["pattern"]) if "pattern" in schema else None
        if low is None and high is None and pattern is None:
            return None

        def on_string(s: str) -> bool:
            if low is not None and len(s) < low:
                return False
            if high is not None and len(s) > high:
                return False
            return pattern is None or pattern.search(s) is not None

        return on_string

    def _number(self, schema: Mapping[str, Any]) -> Check | None:
        low = schema.get("minimum")
        high = schema.get("maximum")
        if low is None and high is None:
            return None
        # written as jsonschema does (`instance < minimum` fails), so NaN passes both, as it does there
        return lambda x: not ((low is not None and x < low) or (high is not None and x > high))

    def _combinators(self, schema: Mapping[str, Any]) -> list[Check]:
        checks: list[Check] = []
        if "$ref" in schema:
            ref = schema["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise Unsupported(f"$ref {ref!r}")
            checks.append(self.at(ref[1:]))  # a forward reference while a recursive schema is being compiled
        if "allOf" in schema:
            checks.extend(self.build(sub) for sub in schema["allOf"])
        if "anyOf" in schema:
            branches = [self.build(sub) for sub in schema["anyOf"]]

            def any_of(x: Any) -> bool:  # a loop, not any(): no generator per node
                for branch in branches:  # noqa: SIM110
                    if branch(x):
                        return True
                return False

            checks.append(any_of)
        if "oneOf" in schema:
            choices = [self.build(sub) for sub in schema["oneOf"]]
            checks.append(lambda x: sum(1 for choice in choices if choice(x)) == 1)
        return checks
