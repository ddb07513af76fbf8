"""Property-based fuzzing of everything that reads client or operator input: the strategies and the properties.

Each ``check_*`` function is one property over one generated input: it returns a short label for what happened
(``"ok"``, ``"refused: <reason>"``) and raises ``AssertionError`` (or lets any other exception escape) when the
property does not hold. ``tests/test_fuzz.py`` runs them under hypothesis with few examples (a few seconds in all, so
``make test`` keeps them); ``benchmarks/fuzz.py`` runs the same strategies and properties with many more and tabulates
what was tried. Profiles: ``OVMSCTL_FUZZ=long`` (or ``ci``, the default) picks the hypothesis profile for the tests;
failing examples are kept under ``.pytest_cache/hypothesis`` and replayed first next time.

The properties:

* **tensor decoding** (TF Serving ``TensorProto``): any dtype number, any dims (negative, huge, more than numpy
  takes), any mix of ``tensor_content`` and typed fields either decode to an array of the declared shape and the
  dtype's numpy type, holding no more memory than the request (broadcasts are zero-stride views), or raise
  ``TensorDecodeError`` with one of its reasons and a bounded message;
* **KServe tensors**: ``from_raw``/``from_values`` either give the declared shape and datatype or raise
  ``ServingError`` INVALID_INPUT; ``to_raw`` and ``from_raw`` round-trip every datatype, BYTES included; the gRPC
  ``ModelInferRequest`` decoding likewise;
* **the config loader**: any text as a ``.json`` or ``.yaml`` file is a ``ServerConfig`` or a ``ConfigError`` whose
  every issue says where (a line or a JSON pointer), never another exception, within a bounded time;
* **the REST parsers**: JSON values as tensors, the KServe REST body (binary extension header, inputs) and the TF
  Serving row and column formats give arrays or ``ServingError`` INVALID_INPUT, nothing else.

``KNOWN_BUGS`` lists inputs that still break a property in code being changed elsewhere: such an input is labelled
``known bug: ...`` instead of failing (``tests/test_fuzz.py`` reproduces each one as a strict xfail, so a fix is
noticed). Keep it empty.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import orjson
import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from ovmsd.api.grpc import kserve_service
from ovmsd.api.grpc.proto import kserve_predict_v2_pb2 as kpb
from ovmsd.api.grpc.proto import predict_pb2, tensor_pb2, types_pb2
from ovmsd.api.grpc.tensors import DTYPE_TO_NUMPY, TensorDecodeError, numpy_to_tensor, tensor_to_numpy
from ovmsd.api.kserve import codec
from ovmsd.api.rest import kserve as kserve_rest
from ovmsd.api.rest import tfs
from ovmsd.api.rest.http import Request, json_object
from ovmsd.api.rest.json_values import bytes_array, numeric_array
from ovmsd.config.loader import ConfigError, load_config
from ovmsd.config.models import Dim, ServerConfig
from ovmsd.errors import ErrorKind, ServingError
from ovmsd.serving.signature import Signature, TensorSpec

REPO = Path(__file__).resolve().parents[2]

# -- profiles ----------------------------------------------------------------------------------------------------

PROFILE_ENV = "OVMSCTL_FUZZ"
_DATABASE = DirectoryBasedExampleDatabase(str(REPO / ".pytest_cache" / "hypothesis"))
_COMMON: dict[str, Any] = {
    "database": _DATABASE,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    "print_blob": True,  # a failure prints the @reproduce_failure line
}
# ci: what make test runs (every property in a few seconds on a busy 2-core machine). Deadlines are generous: the
# per-example time bounds that matter are asserted by the properties themselves; these only catch a hang.
settings.register_profile("ci", max_examples=100, deadline=5000, **_COMMON)
settings.register_profile("long", max_examples=5000, deadline=10_000, **_COMMON)
PROFILE = os.environ.get(PROFILE_ENV, "ci")
settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """``n`` examples under the ci profile; scaled up like the profile's own count under another one."""
    return max(1, n * settings.get_profile(PROFILE).max_examples // 100)


MAX_MESSAGE = 1500  # no error message grows with the input: names and values are cut at 200 characters each

# -- TF Serving tensors --------------------------------------------------------------------------------------------

VALUE_FIELD = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_BFLOAT16: "half_val",
    types_pb2.DT_COMPLEX64: "scomplex_val",
    types_pb2.DT_COMPLEX128: "dcomplex_val",
    types_pb2.DT_STRING: "string_val",
}
PER_ELEMENT = {"scomplex_val": 2, "dcomplex_val": 2}
_INT32 = st.integers(-(2**31), 2**31 - 1)
_INT64 = st.integers(-(2**63), 2**63 - 1)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "float_val": st.floats(width=32),
    "double_val": st.floats(),
    "int_val": _INT32,
    "int64_val": _INT64,
    "uint32_val": st.integers(0, 2**32 - 1),
    "uint64_val": st.integers(0, 2**64 - 1),
    "bool_val": st.booleans(),
    "half_val": _INT32,
    "scomplex_val": st.floats(width=32),
    "dcomplex_val": st.floats(),
    "string_val": st.binary(max_size=8),
}
for _dt in DTYPE_TO_NUMPY:
    if _dt not in VALUE_FIELD and types_pb2.DataType.Name(_dt).startswith("DT_FLOAT8"):
        VALUE_FIELD[_dt] = "float8_val"

REASONS = {"unsupported_dtype", "invalid_shape", "invalid_content_size", "invalid_value_count"}
SMALL_COUNT = 64  # shapes of at most this many elements get exact-size contents and round trips


def weighted(*choices: tuple[st.SearchStrategy[Any], int]) -> st.SearchStrategy[Any]:
    """One of the strategies, chosen with these weights (``st.one_of`` treats its branches alike, and merges equal
    ones, so repeating a branch there does not weigh it)."""
    pool = [strategy for strategy, weight in choices for _ in range(weight)]
    return st.integers(0, len(pool) - 1).flatmap(lambda index: pool[index])


# Mostly small dimensions; sometimes one that is negative, or huge (products past int64, past any memory).
dims_sizes = weighted(
    (st.integers(0, 4), 3),
    (st.integers(1, 3), 4),
    (st.sampled_from([-1, 2**31, 2**32 + 1, 2**62, 2**63 - 1, 3_500, 65_536]), 1),
    (st.integers(-(2**63), 2**63 - 1), 1),
)
dims_lists = weighted(
    (st.lists(dims_sizes, max_size=5), 5),
    (st.lists(st.integers(0, 2), min_size=30, max_size=70), 1),  # around numpy's and our rank limits
)
tensor_dtypes = weighted(  # mostly the dtypes that decode, so that most cases reach the shape and the contents
    (st.sampled_from(sorted(VALUE_FIELD)), 6),
    (st.sampled_from(sorted(types_pb2.DataType.values())), 1),
    (_INT32, 1),
)


def element_count(dims: list[int]) -> int | None:
    """The product of ``dims``; None when one is negative."""
    return None if any(d < 0 for d in dims) else math.prod(dims)


@st.composite
def tensor_protos(draw: st.DrawFn) -> tensor_pb2.TensorProto:
    """A TensorProto as a client (or an attacker) might send it: exact, nearly right, or nonsense."""
    proto = tensor_pb2.TensorProto(dtype=draw(tensor_dtypes))
    dims = draw(dims_lists)
    shape = proto.tensor_shape
    shape.unknown_rank = draw(st.sampled_from([False] * 15 + [True]))
    for size in dims:
        shape.dim.add(size=size, name=draw(st.sampled_from(["", "", "batch"])))
    count = element_count(dims)
    small = count is not None and count <= SMALL_COUNT
    field = VALUE_FIELD.get(proto.dtype)
    numpy_dtype = DTYPE_TO_NUMPY.get(proto.dtype)
    how = draw(st.sampled_from(["content", "content", "values", "values", "one value", "junk", "nothing"]))
    if how == "content" and numpy_dtype is not None and small:
        size = count * numpy_dtype.itemsize + draw(st.sampled_from([0, 0, 0, -1, 1]))
        proto.tensor_content = draw(st.binary(min_size=max(size, 0), max_size=max(size, 0)))
    elif how in ("values", "one value") and field is not None:
        per = PER_ELEMENT.get(field, 1)
        n = (count if small else 1) * per if how == "values" else per
        n = max(0, n + draw(st.sampled_from([0, 0, 0, -1, 1])))
        _fill(proto, field, draw(st.lists(FIELD_VALUES.get(field, _INT32), min_size=n, max_size=n)), draw)
    elif how == "junk":
        proto.tensor_content = draw(st.binary(max_size=24))
        for name in draw(st.lists(st.sampled_from([*FIELD_VALUES, "float8_val"]), max_size=3, unique=True)):
            _fill(proto, name, draw(st.lists(FIELD_VALUES.get(name, _INT32), max_size=6)), draw)
    return proto


def _fill(proto: tensor_pb2.TensorProto, field: str, values: list[Any], draw: st.DrawFn) -> None:
    if field == "float8_val":
        proto.float8_val = draw(st.binary(min_size=len(values), max_size=len(values)))
    else:
        getattr(proto, field).extend(values)


def check_tensor(proto: tensor_pb2.TensorProto) -> str:
    """tensor_to_numpy: the declared shape and dtype, bounded memory, a lossless round trip; or TensorDecodeError."""
    started = time.perf_counter()
    try:
        array = tensor_to_numpy(proto)
    except TensorDecodeError as exc:
        assert exc.reason in REASONS, exc.reason
        assert 0 < len(str(exc)) <= MAX_MESSAGE, len(str(exc))
        return f"refused: {exc.reason}"
    except Exception as exc:
        dtype = np.dtype(object) if proto.dtype == types_pb2.DT_STRING else DTYPE_TO_NUMPY.get(proto.dtype)
        known = known_bug(dims=[d.size for d in proto.tensor_shape.dim], dtype=dtype)
        if known:
            return f"known bug: {known}"
        raise AssertionError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        assert time.perf_counter() - started < 3.0, "decoding took seconds: it allocated or walked per element"
    dims = tuple(d.size for d in proto.tensor_shape.dim)
    assert isinstance(array, np.ndarray), type(array)
    assert array.shape == dims, (array.shape, dims)
    strings = proto.dtype == types_pb2.DT_STRING
    assert array.dtype == (np.dtype(object) if strings else DTYPE_TO_NUMPY[proto.dtype]), array.dtype
    if array.size > 1 and not all(array.strides):  # a broadcast of one value: no memory per element
        assert array.base is not None
    else:
        assert array.nbytes <= 16 * proto.ByteSize() + 64, (array.nbytes, proto.ByteSize())
    if strings:
        assert all(isinstance(item, bytes) for item in array.reshape(-1)[:SMALL_COUNT])
        return "ok"
    if array.size <= SMALL_COUNT:
        again = tensor_to_numpy(numpy_to_tensor(array, tensor_pb2.TensorProto(), proto.dtype))
        assert again.shape == array.shape and again.tobytes() == np.ascontiguousarray(array).tobytes()
    return "ok"


# -- KServe tensors ------------------------------------------------------------------------------------------------

KSERVE_DATATYPES = sorted(codec.DATATYPES)
datatypes = weighted(
    (st.sampled_from(KSERVE_DATATYPES), 8),
    (st.sampled_from(["fp32", "FP8", "STRING", "", "INT128"]), 1),
    (st.text(max_size=300), 1),
)


def _bytes_elements(draw: st.DrawFn, count: int) -> bytes:
    elements = draw(st.lists(st.binary(max_size=6), min_size=count, max_size=count))
    raw = codec.join_bytes(np.array([*elements, b""], dtype=object)[:count])
    cut = draw(st.sampled_from(["exact", "exact", "truncate", "extend", "huge length"]))
    if cut == "truncate" and raw:
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if cut == "extend":
        return raw + draw(st.binary(min_size=1, max_size=6))
    if cut == "huge length":
        return b"\xff\xff\xff\x7f" + raw
    return raw


@st.composite
def raw_tensors(draw: st.DrawFn) -> tuple[str, list[int], bytes]:
    """(datatype, shape, raw bytes) as raw_input_contents or the REST binary extension carry them."""
    datatype = draw(datatypes)
    dims = draw(dims_lists)
    count = element_count(dims)
    dtype = codec.DATATYPES.get(datatype)
    if dtype is not None and count is not None and count <= SMALL_COUNT and draw(st.booleans()):
        if datatype == codec.BYTES:
            return datatype, dims, _bytes_elements(draw, count)
        size = count * dtype.itemsize + draw(st.sampled_from([0, 0, 0, -1, 1, 4]))
        return datatype, dims, draw(st.binary(min_size=max(0, size), max_size=max(0, size)))
    return datatype, dims, draw(st.binary(max_size=64))


def _refused(exc: ServingError) -> str:
    assert exc.kind == ErrorKind.INVALID_INPUT, (exc.kind, exc.message)
    assert 0 < len(exc.message) <= MAX_MESSAGE, len(exc.message)
    return "refused: " + exc.message.split(" - ")[0][:60]


def check_from_raw(datatype: str, dims: list[int], raw: bytes) -> str:
    """from_raw: the declared shape and datatype, and to_raw gives the same bytes back; or INVALID_INPUT."""
    try:
        array = codec.from_raw(datatype, dims, raw, "x")
    except ServingError as exc:
        return _refused(exc)
    except Exception as exc:
        return _known_or_fail(exc, dims=dims, dtype=codec.DATATYPES.get(datatype))
    assert array.shape == tuple(dims), (array.shape, dims)
    assert array.dtype == codec.DATATYPES[datatype]
    if array.size <= 4096:
        assert codec.to_raw(array) == bytes(raw)
    return "ok"


# Values as each datatype's typed contents field carries them (the protobuf field's type, any value of it).
CONTENTS_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "bool_contents": st.booleans(),
    "int_contents": _INT32,
    "int64_contents": _INT64,
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=8),
}


@st.composite
def typed_tensors(draw: st.DrawFn) -> tuple[str, list[int], list[Any]]:
    """(datatype, shape, values) as a ModelInferRequest's typed contents carry them."""
    datatype = draw(datatypes)
    dims = draw(dims_lists)
    count = element_count(dims)
    field = kserve_service.CONTENTS_FIELD.get(datatype, draw(st.sampled_from(sorted(CONTENTS_VALUES))))
    n = count if count is not None and count <= SMALL_COUNT and draw(st.booleans()) else draw(st.integers(0, 8))
    return datatype, dims, draw(st.lists(CONTENTS_VALUES[field], min_size=n, max_size=n))


def check_from_values(datatype: str, dims: list[int], values: list[Any]) -> str:
    try:
        array = codec.from_values(datatype, dims, values, "x")
    except ServingError as exc:
        return _refused(exc)
    except Exception as exc:
        return _known_or_fail(exc, dims=dims, dtype=codec.DATATYPES.get(datatype))
    assert array.shape == tuple(dims), (array.shape, dims)
    assert array.dtype == codec.DATATYPES[datatype]
    return "ok"


@st.composite
def output_arrays(draw: st.DrawFn) -> np.ndarray:
    """Any array an output might be: every KServe datatype, any small shape, non-contiguous views, BYTES."""
    datatype = draw(st.sampled_from(KSERVE_DATATYPES))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    count = math.prod(shape)
    if datatype == codec.BYTES:
        items = draw(st.lists(st.one_of(st.binary(max_size=6), st.text(max_size=4)), min_size=count, max_size=count))
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = codec.DATATYPES[datatype]
    raw = draw(st.binary(min_size=count * dtype.itemsize, max_size=count * dtype.itemsize))
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if array.ndim >= 2 and draw(st.booleans()):
        array = array.T  # not C-contiguous
    return array


def check_raw_round_trip(array: np.ndarray) -> str:
    """to_raw then from_raw gives the array back, element for element (NaN bit patterns included)."""
    datatype = codec.datatype_of(array.dtype)
    raw = codec.to_raw(array)
    back = codec.from_raw(datatype, list(array.shape), raw, "y")
    assert back.shape == array.shape
    if datatype == codec.BYTES:
        want = [item.encode() if isinstance(item, str) else item for item in array.reshape(-1)]
        assert back.reshape(-1).tolist() == want
    else:
        assert back.tobytes() == np.ascontiguousarray(array).tobytes()
    return "ok"


@st.composite
def infer_requests(draw: st.DrawFn) -> kpb.ModelInferRequest:
    """A KServe gRPC ModelInferRequest with typed contents, raw contents, both, or mismatched counts."""
    request = kpb.ModelInferRequest(model_name=draw(st.sampled_from(["scale", "", "x" * 300])))
    raw_mode = draw(st.sampled_from(["typed", "raw", "both", "extra raw"]))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["x", "x", "y", "é" * 250]))
        if raw_mode == "typed":
            datatype, dims, values = draw(typed_tensors())
            tensor = request.inputs.add(name=name, datatype=datatype, shape=dims)
            field = kserve_service.CONTENTS_FIELD.get(datatype)
            if field is not None:
                getattr(tensor.contents, field).extend(values)
        else:
            datatype, dims, raw = draw(raw_tensors())
            tensor = request.inputs.add(name=name, datatype=datatype, shape=dims)
            request.raw_input_contents.append(raw)
            if raw_mode == "both":
                tensor.contents.int_contents.append(1)
    if raw_mode == "extra raw":
        request.raw_input_contents.append(b"\0" * 4)
    return request


def check_infer_request(request: kpb.ModelInferRequest) -> str:
    """The KServe gRPC front end's decoding of a whole request: arrays by input name, or INVALID_INPUT."""
    try:
        arrays = kserve_service.decode_inputs(request)
    except ServingError as exc:
        return _refused(exc)
    except Exception as exc:
        for tensor in request.inputs:
            known = known_bug(dims=list(tensor.shape), dtype=codec.DATATYPES.get(tensor.datatype))
            if known:
                return f"known bug: {known}"
        raise AssertionError(f"{type(exc).__name__}: {exc}") from exc
    for tensor in request.inputs:
        assert arrays[tensor.name].shape == tuple(tensor.shape)
    return "ok"


# -- config documents ----------------------------------------------------------------------------------------------

_KEYS = [
    "name", "base_path", "batch_size", "shape", "layout", "model_version_policy", "nireq", "target_device",
    "plugin_config", "allow_cache", "max_input_bytes", "max_auto_dim", "stateful", "config", "model_config_list",
    "monitoring", "metrics", "enable", "metrics_list", "latest", "num_versions", "all", "specific", "versions",
    "pipeline_config_list",
]  # fmt: skip
_CONFIG_STRINGS = [
    "auto", "-1", "1:16", "(1,3,224,224)", "(1,3,-1,-1)", "(1,3,1:10,-1)", "NHWC:NCHW", "NCHW", "CPU", "m",
    "/tmp/m", "s3://bucket/m", "relative", "", "((", "1:", "0", "2023-02-30",
]  # fmt: skip
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(_CONFIG_STRINGS),
    st.text(max_size=12),
)
json_documents = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(_KEYS), st.text(max_size=6)), inner, max_size=5),
    ),
    max_leaves=30,
)


@st.composite
def model_entries(draw: st.DrawFn) -> dict[str, Any]:
    """A model entry that is mostly right: the fields the loader checks, with plausible and wrong values."""
    entry: dict[str, Any] = {"name": draw(st.sampled_from(["a", "b", "", "a" * 300])), "base_path": "/models/a"}
    for key in draw(st.lists(st.sampled_from(_KEYS[2:12]), max_size=4, unique=True)):
        entry[key] = draw(st.one_of(json_scalars, json_documents))
    for key in draw(st.lists(st.sampled_from(["name", "base_path"]), max_size=1)):
        entry.pop(key)
    return entry


config_documents = st.one_of(
    json_documents,
    st.builds(
        lambda entries, extra: {"model_config_list": [{"config": e} for e in entries], **extra},
        st.lists(model_entries(), max_size=3),
        st.dictionaries(st.sampled_from(["monitoring", "pipeline_config_list", "x"]), json_documents, max_size=1),
    ),
)


@st.composite
def config_texts(draw: st.DrawFn) -> tuple[str, str]:
    """(suffix, text): documents written as JSON or YAML, then perhaps damaged, or arbitrary text."""
    suffix = draw(st.sampled_from([".json", ".yaml"]))
    how = draw(st.sampled_from(["document", "document", "damaged", "yaml tricks", "text"]))
    if how == "text":
        return suffix, draw(st.text(max_size=200))
    if how == "yaml tricks":
        return ".yaml", draw(st.sampled_from(YAML_TRICKS))
    document = draw(config_documents)
    text = json.dumps(document, indent=draw(st.sampled_from([None, 2]))) if suffix == ".json" else _yaml(document)
    if how == "damaged" and text:
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 3))
        text = (
            text[:at]
            + draw(st.sampled_from(["", "{", "]", ":", "&a", "*a", "\t", "\x00", "\\u00", '"']))
            + text[at + cut :]
        )
    return suffix, text


def _yaml(document: Any) -> str:
    return yaml.safe_dump(document, default_flow_style=False, allow_unicode=True)


YAML_TRICKS = [
    "a: &a [1, 2]\nb: *a\nc: *a\n",
    "a: &a [*a]\n",
    "model_config_list: &l [{config: {name: m, base_path: /m}}]\nx: *l\n",
    'a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nd: &d [*c,*c]\ne: &e [*d,*d]\nf: [*e,*e]\n',
    "model_config_list:\n- config: {<<: &base {base_path: /m}, name: a}\n- config: {<<: *base, name: b}\n",
    "!!python/object:os.system ls\n",
    "%YAML 1.1\n---\nmodel_config_list: []\n...\n---\nmodel_config_list: []\n",
    "? [a, b]\n: c\n",
    "a: 2023-02-30\n",
    "a: " + "9" * 5000 + "\n",
    "[" * 200 + "]" * 200,
    "model_config_list: [{config: {name: a, base_path: /m, batch_size: 1:16}}]\n",
    "\ufeffmodel_config_list: []\n",
    "a: \x85b\n",
]


CONFIG_SECONDS = 5.0  # one document of a few KiB: the loader takes milliseconds (seconds is a hang, not a busy machine)


def check_config_text(folder: Path, suffix: str, text: str) -> str:
    """load_config on a file holding ``text``: a ServerConfig, or a ConfigError whose every issue says where."""
    path = folder / f"config{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    started = time.perf_counter()
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert exc.issues, "a ConfigError with no issue"
        for issue in exc.issues:
            assert issue.line is not None or issue.pointer, f"an issue with no location: {issue}"
            assert issue.line is None or (issue.line >= 1 and (issue.column or 1) >= 1), issue
            assert len(issue.message) <= MAX_MESSAGE, len(issue.message)
        return f"refused: {len(exc.issues)} issue{'s' if len(exc.issues) > 1 else ''}"
    except Exception as exc:
        return _known_or_fail(exc, config_suffix=suffix, config_text=text)
    finally:
        took = time.perf_counter() - started
        assert took < CONFIG_SECONDS, f"load_config took {took:.2f} s on {len(text)} characters"
    assert isinstance(config, ServerConfig)
    return f"ok: {len(config.models)} model{'s' if len(config.models) != 1 else ''}"


# -- REST parsers --------------------------------------------------------------------------------------------------


def _b64_objects() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda data: {"b64": __import__("base64").b64encode(data).decode()}, st.binary(max_size=6)),
        st.sampled_from([{"b64": "!!"}, {"b64": 5}, {"b64": "QQ=="}, {"b64": "QQ==", "x": 1}, {}]),
    )


rest_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**65), 2**65),
    st.integers(-3, 300),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    _b64_objects(),
)
rest_values = st.recursive(
    rest_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=20,
)


TENSOR_LEAVES = [
    st.integers(-3, 300),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=3),
    _b64_objects(),
    st.integers(-(2**64), 2**64),
]


@st.composite
def tensor_values(draw: st.DrawFn) -> Any:
    """A tensor as JSON nests it: regular nestings of one kind of leaf, irregular ones, mixed kinds, very deep."""
    how = draw(st.sampled_from(["regular", "regular", "any", "deep"]))
    if how == "any":
        return draw(rest_values)
    if how == "deep":
        depth = draw(st.sampled_from([33, 65, 200, 900]))
        leaf = draw(st.sampled_from([1, "a", {"b64": "QQ=="}, True]))
        value: Any = leaf
        for _ in range(depth):
            value = [value]
        return value
    shape = draw(st.lists(st.integers(0, 3), max_size=4))
    leaf = draw(st.sampled_from(TENSOR_LEAVES))
    leaves = draw(st.lists(leaf, min_size=math.prod(shape), max_size=math.prod(shape)))
    return np.array([*leaves, None], dtype=object)[:-1].reshape(shape).tolist() if shape else draw(leaf)


def as_received(value: Any) -> Any:
    """``value`` as the server sees it: written as JSON by a client, parsed by orjson (64-bit integers, no NaN)."""
    try:
        return orjson.loads(json.dumps(value))
    except orjson.JSONDecodeError:
        return None  # integers orjson refuses: the body would be answered 400 before any parser runs


NUMERIC_DTYPES = [np.dtype(d) for d in ("f4", "f8", "f2", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "?")]


def check_json_tensor(value: Any, dtype: np.dtype) -> str:
    """numeric_array and bytes_array: an array of exactly ``dtype`` (or of bytes), or INVALID_INPUT."""
    label = []
    try:
        with np.errstate(over="ignore"):  # 1e300 as FP32 is inf, as a C cast makes it (and TF Serving's REST)
            array = numeric_array(value, dtype, "x")
        assert isinstance(array, np.ndarray) and array.dtype == dtype, array
        label.append("numeric ok")
    except ServingError as exc:
        label.append(_refused(exc)[:24])
    try:
        strings = bytes_array(value, "x")
        assert strings.dtype == object and all(isinstance(b, bytes) for b in strings.reshape(-1))
        label.append("bytes ok")
    except ServingError as exc:
        label.append(_refused(exc)[:24])
    return ", ".join(label)


@st.composite
def kserve_rest_bodies(draw: st.DrawFn) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a KServe REST infer request: JSON or the binary extension, well-formed or not."""
    inputs = []
    chunks = []
    for _ in range(draw(st.integers(0, 3))):
        tensor: dict[str, Any] = {
            "name": draw(st.one_of(st.sampled_from(["x", "x", "y"]), rest_scalars)),
            "datatype": draw(st.one_of(datatypes, rest_scalars)),
            "shape": draw(st.one_of(dims_lists, rest_values)),
        }
        if draw(st.booleans()):
            datatype, dims, raw = draw(raw_tensors())
            tensor.update(datatype=datatype, shape=dims)
            size = draw(st.sampled_from([len(raw), len(raw), len(raw) + 1, -1, "3", None]))
            tensor["parameters"] = {"binary_data_size": size}
            chunks.append(raw)
        if draw(st.booleans()) or "parameters" not in tensor:
            tensor["data"] = draw(tensor_values())
        if draw(st.integers(0, 9)) == 0:
            tensor["parameters"] = draw(rest_values)
        inputs.append(draw(st.sampled_from([tensor] * 6 + [[tensor], "x", None])))
    document: dict[str, Any] = {"inputs": draw(st.sampled_from([inputs] * 6 + [{}, "x", None]))}
    if draw(st.booleans()):
        document["outputs"] = draw(
            st.one_of(st.lists(st.fixed_dictionaries({"name": st.sampled_from(["y", "z"])}), max_size=2), rest_values)
        )
    if draw(st.booleans()):
        document["parameters"] = draw(st.one_of(st.fixed_dictionaries({"binary_data_output": st.booleans()}),
                                                rest_values))  # fmt: skip
    header = json.dumps(document).encode()  # orjson writes at most 254 levels; the server reads 1,024
    if draw(st.integers(0, 5)) == 0:
        header = header[: draw(st.integers(0, len(header)))]
    binary = b"".join(chunks)
    headers: dict[str, str] = {}
    if binary or draw(st.booleans()):
        length = draw(st.sampled_from([str(len(header))] * 12 + ["", "-1", " 7", "x", "²", "1" * 30, "0"]))
        headers[kserve_rest.HEADER_LENGTH] = length
    return headers, header + binary


def check_kserve_rest(headers: dict[str, str], body: bytes) -> str:
    """The KServe REST infer body as the front end reads it: header and binary parts, inputs, outputs asked for."""
    document: Any = None
    try:
        header, binary = kserve_rest._split_body(Request("POST", "/v2/models/m/infer", headers, body))
        document = json_object(header, "inference header")
        arrays = kserve_rest._decode_inputs(document.get("inputs"), binary, "m")
        kserve_rest._requested_outputs(document)
    except ServingError as exc:
        return _refused(exc)
    except Exception as exc:
        return _known_or_fail(exc, document=document, headers=headers)
    for tensor in document["inputs"]:
        assert arrays[tensor["name"]].shape == tuple(tensor["shape"])
    return "ok"


@st.composite
def tfs_rest_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A TF Serving REST predict body: row or column format, named or not, well-formed or not."""
    names = draw(st.lists(st.sampled_from(["x", "y", "b64", "z"]), max_size=3, unique=True))
    if draw(st.booleans()):
        rows = [
            draw(st.one_of(tensor_values(), st.fixed_dictionaries({n: tensor_values() for n in names})))
            for _ in range(draw(st.integers(0, 3)))
        ]
        return {"instances": draw(st.sampled_from([rows] * 5 + [{}, "x", None]))}
    inputs = draw(st.one_of(tensor_values(), st.fixed_dictionaries({n: tensor_values() for n in names})))
    return {"inputs": inputs}


def signatures() -> st.SearchStrategy[Signature]:
    def spec(name: str, dtype: np.dtype) -> TensorSpec:
        return TensorSpec(name, frozenset({name}), "FP32", dtype, (Dim.dynamic(), Dim.static(4)))

    one = st.builds(lambda d: Signature((spec("x", d),), (spec("y", d),)), st.sampled_from(NUMERIC_DTYPES))
    two = st.builds(
        lambda a, b: Signature((spec("x", a), spec("y", b)), (spec("z", a),)),
        st.sampled_from(NUMERIC_DTYPES),
        st.sampled_from(NUMERIC_DTYPES),
    )
    return st.one_of(one, two)


def check_tfs_rest(body: dict[str, Any], signature: Signature) -> str:
    """TF Serving REST row and column formats: arrays by input name, or INVALID_INPUT."""
    try:
        with np.errstate(over="ignore"):  # see check_json_tensor
            if "instances" in body:
                arrays = tfs._rows(body["instances"], signature, "m")
            else:
                arrays = tfs._columns(body["inputs"], signature, "m")
    except ServingError as exc:
        return _refused(exc)
    assert all(isinstance(a, np.ndarray) for a in arrays.values()), arrays  # {} is the data plane's to refuse
    return "ok"


# -- a real daemon -----------------------------------------------------------------------------------------------
# The daemon these run against serves "scale" (x [1,4] FP32 -> y = 2x) and "ints" (the same in INT32), both of fixed
# shape: a generated request can never make it allocate or compile for a large shape (the request bounds of
# issue 12 item 2 are tested elsewhere).

PREDICT = "/tensorflow.serving.PredictionService/Predict"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
GRPC_ERROR_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
}
MAX_DETAILS = 2100  # ovmsd.api.errors.MAX_MESSAGE_CHARS and its "..."
GOOD_X = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
REST_PATHS = [
    "/v2/models/scale/infer",
    "/v2/models/scale/versions/1/infer",
    "/v2/models/ints/infer",
    "/v2/models/nope/infer",
    "/v2/models/scale/versions/0/infer",
    "/v2/models/scale/versions/99999999999999999999/infer",
    "/v1/models/scale:predict",
    "/v1/models/scale/versions/1:predict",
    "/v1/models/ints:predict",
    "/v1/models/nope:predict",
]
_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
_EXTRA_HEADERS = ["Content-Type", "Accept", "Inference-Header-Content-Length", "X-Junk"]


@st.composite
def rest_requests(draw: st.DrawFn) -> tuple[str, dict[str, str], bytes, str | None]:
    """(path, headers, body, a known bug the request carries): KServe and TF Serving bodies, random bytes, JSON."""
    path = draw(st.sampled_from(REST_PATHS))
    headers: dict[str, str] = {}
    document: Any = None
    how = draw(st.sampled_from(["kserve", "kserve", "tfs", "tfs", "bytes", "json", "good", "nearly good"]))
    if how in ("good", "nearly good"):
        path = draw(st.sampled_from(REST_PATHS[:3] + REST_PATHS[6:9]))
        values = draw(st.lists(st.integers(-100, 100), min_size=4, max_size=4))
        if path.startswith("/v2"):
            datatype = "INT32" if "/ints/" in path else "FP32"
            tensor = {"name": "x", "datatype": datatype, "shape": [1, 4], "data": values}
            document = {"inputs": [tensor]}
        else:
            tensor = document = {draw(st.sampled_from(["instances", "inputs"])): [values]}
        if how == "nearly good":  # one field of a good request replaced by any JSON value
            tensor[draw(st.sampled_from(sorted(tensor)))] = draw(rest_values)
        body = json.dumps(document).encode()
    elif how == "kserve":
        headers, body = draw(kserve_rest_bodies())
        try:
            document = json.loads(body[: int(headers.get(kserve_rest.HEADER_LENGTH, "x").strip())])
        except (ValueError, UnicodeDecodeError):
            document = json.loads(body) if kserve_rest.HEADER_LENGTH not in headers and _is_json(body) else None
    elif how == "tfs":
        document = draw(tfs_rest_bodies())
        body = json.dumps(document).encode()
    elif how == "bytes":
        body = draw(st.binary(max_size=300))
    else:
        body = json.dumps(draw(rest_values)).encode()
    known = known_bug(document=document, headers=headers)
    headers = dict(headers)
    for name in draw(st.lists(st.sampled_from(_EXTRA_HEADERS), max_size=2, unique=True)):
        headers[name] = draw(_header_text)
    return path, headers, body, known


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def check_rest_answer(status: int, body: bytes, known: str | None) -> str:
    """200 with a JSON object, or a 4xx/5xx with ``{"error": "..."}``; 500 only for a known bug."""
    if status == 200:
        assert isinstance(json.loads(body), dict)
        return "200"
    assert 400 <= status < 600, status
    assert status != 500 or known, f"500 for an input that is no known bug: {body[:500]!r}"
    answer = json.loads(body)
    assert isinstance(answer, dict) and isinstance(answer.get("error"), str), answer
    assert 0 < len(answer["error"]) <= MAX_DETAILS, len(answer["error"])
    return f"known bug: {known}" if status == 500 else str(status)


def valid_predict() -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "scale"
    numpy_to_tensor(GOOD_X, request.inputs["x"])
    return request.SerializeToString()


def valid_infer() -> bytes:
    request = kpb.ModelInferRequest(model_name="scale")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(GOOD_X.tobytes())
    return request.SerializeToString()


@st.composite
def damaged(draw: st.DrawFn, valid: bytes) -> bytes:
    """A valid request with bytes flipped, cut, inserted or repeated."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        if how == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif how == "cut":
            del data[at : at + draw(st.integers(1, 8))]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 16))] * 2
    return bytes(data)


@st.composite
def predict_requests(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """A serialized PredictRequest with generated tensors as inputs, and a known bug they carry."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = draw(st.sampled_from(["scale", "scale", "ints", "nope", ""]))
    if draw(st.booleans()):
        request.model_spec.version.value = draw(st.sampled_from([1, 2, 0, -1]))
    known = None
    for name in draw(st.lists(st.sampled_from(["x", "x", "y"]), min_size=1, max_size=2, unique=True)):
        tensor = draw(tensor_protos())
        request.inputs[name].CopyFrom(tensor)
        dtype = DTYPE_TO_NUMPY.get(tensor.dtype, np.dtype(object))
        known = known or known_bug(dims=[d.size for d in tensor.tensor_shape.dim], dtype=dtype)
    return request.SerializeToString(), known


@st.composite
def grpc_requests(draw: st.DrawFn) -> tuple[str, bytes, str | None]:
    """(method, request bytes, a known bug the request carries) for Predict and ModelInfer."""
    method = draw(st.sampled_from([PREDICT, MODEL_INFER]))
    how = draw(st.sampled_from(["random", "damaged", "damaged", "structured", "structured"]))
    if how == "random":
        return method, draw(st.binary(max_size=300)), None
    if how == "damaged":
        return method, draw(damaged(valid_predict() if method == PREDICT else valid_infer())), None
    if method == PREDICT:
        data, known = draw(predict_requests())
        return method, data, known
    request = draw(infer_requests())
    bugs = (known_bug(dims=list(t.shape), dtype=codec.DATATYPES.get(t.datatype)) for t in request.inputs)
    return method, request.SerializeToString(), next(filter(None, bugs), None)


def raw_call(channel: grpc.Channel, method: str, data: bytes, timeout: float = 20) -> tuple[grpc.StatusCode, str]:
    """``data`` as the request of ``method``, through no serializer: (status code, details)."""
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        answer = call(data, timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    assert isinstance(answer, bytes)
    return grpc.StatusCode.OK, ""


def check_grpc_answer(code: grpc.StatusCode, details: str, known: str | None) -> str:
    """OK, or a status of the error table with bounded details; INTERNAL only for a known bug."""
    if code == grpc.StatusCode.INTERNAL and known:
        return f"known bug: {known}"
    assert code == grpc.StatusCode.OK or code in GRPC_ERROR_CODES, (code, details)
    assert len(details) <= MAX_DETAILS, len(details)
    return code.name


# -- known bugs ------------------------------------------------------------------------------------------------------

KnownBug = Callable[..., str | None]


KNOWN_BUGS: list[KnownBug] = []


def _known_or_fail(exc: Exception, **inputs: Any) -> str:
    known = known_bug(**inputs)
    if known:
        return f"known bug: {known}"
    raise AssertionError(f"{type(exc).__name__}: {exc}") from exc


def known_bug(**inputs: Any) -> str | None:
    for predicate in KNOWN_BUGS:
        found = predicate(**inputs)
        if found:
            return found
    return None
