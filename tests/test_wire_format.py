"""Conformance of our own .proto files (schemas/proto/ovmsd/api/grpc/proto) with TensorFlow Serving's wire format.

The reference is the real ``tensorflow-serving-api`` package, run in a separate interpreter (env var
``OVMSCTL_TFS_PYTHON``, default ``<repo>/.venv-tfs/bin/python``, created by ``make venv-clients``): TF's protos
and ours define the same full names (tensorflow.TensorProto, ...), so both cannot live in one process's
descriptor pool. The subprocess describes TF's descriptors as JSON; this process describes ours with the same
code and compares:

* every message, enum and service we define exists in TF with the same full name;
* every field we define has TF's number, type, label, referenced type, JSON name, packing, presence and oneof;
* every field, enum value or method of TF's that we leave out is listed in an allowlist below, with a reason;
* sample messages serialize to identical bytes and JSON on both sides and parse across.

The test fails (never skips) when the interpreter is missing.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import json_format, text_format

REPO = Path(__file__).resolve().parent.parent
GENERATED_DIR = REPO / "daemon" / "ovmsd" / "api" / "grpc" / "proto"

# Fields of TF's messages that our .proto files deliberately do not define: "full message name.field" -> reason.
OMITTED_FIELDS: dict[str, str] = {
    "tensorflow.TensorProto.resource_handle_val": "DT_RESOURCE tensors never cross a model server's API",
    "tensorflow.TensorProto.variant_val": "DT_VARIANT tensors never cross a model server's API",
    "tensorflow.TensorInfo.composite_tensor": "composite tensors (TypeSpecProto) do not exist in OpenVINO models",
    "tensorflow.serving.PredictRequest.predict_streamed_options": "streamed predict is not implemented",
    "tensorflow.serving.PredictRequest.client_id": "LLM-serving extension, not implemented",
    "tensorflow.serving.PredictRequest.request_options": "LLM-serving extension, not implemented",
    "tensorflow.serving.ModelConfig.logging_config": "request logging (LoggingConfig) is not implemented",
}

# Enum values of TF's enums that ours leave out: "full enum name.VALUE" -> reason. (None so far.)
OMITTED_ENUM_VALUES: dict[str, str] = {}

# Methods of TF's services that ours leave out: "full service name.Method" -> reason.
OMITTED_METHODS: dict[str, str] = {
    "tensorflow.serving.PredictionService.Classify": "tf.Example-based API, not implemented",
    "tensorflow.serving.PredictionService.Regress": "tf.Example-based API, not implemented",
    "tensorflow.serving.PredictionService.MultiInference": "tf.Example-based API, not implemented",
}

# The .proto packages compared here; the KServe v2 ones (package inference) are compared with tritonclient's in
# tests/test_kserve_wire_format.py.
TF_PACKAGES = ("tensorflow",)

# TF modules whose import registers every type we compare against.
TF_MODULES = [
    "tensorflow.core.framework.types_pb2",
    "tensorflow.core.framework.tensor_shape_pb2",
    "tensorflow.core.framework.tensor_pb2",
    "tensorflow.core.protobuf.meta_graph_pb2",
    "tensorflow.core.protobuf.error_codes_pb2",
    "tensorflow_serving.apis.model_pb2",
    "tensorflow_serving.apis.predict_pb2",
    "tensorflow_serving.apis.get_model_metadata_pb2",
    "tensorflow_serving.apis.get_model_status_pb2",
    "tensorflow_serving.apis.status_pb2",
    "tensorflow_serving.apis.model_management_pb2",
    "tensorflow_serving.apis.model_service_pb2",
    "tensorflow_serving.apis.prediction_service_pb2",
    "tensorflow_serving.config.model_server_config_pb2",
    "tensorflow_serving.config.file_system_storage_path_source_pb2",
]

# The same description code runs in both interpreters, so the two sides are comparable value for value.
DESCRIBE_SRC = r"""
from google.protobuf import descriptor as _d

_TYPE_NAMES = {v: k for k, v in vars(_d.FieldDescriptor).items() if k.startswith("TYPE_")}


def describe_message(m):
    fields = {}
    for f in m.fields:
        ref = f.message_type or f.enum_type
        fields[f.name] = {
            "number": f.number,
            "type": _TYPE_NAMES[f.type],
            "label": "repeated" if f.is_repeated else ("required" if f.is_required else "optional"),
            "type_name": ref.full_name if ref is not None else None,
            "json_name": f.json_name,
            "packed": bool(f.is_packed),
            "presence": bool(f.has_presence),
            "oneof": f.containing_oneof.name if f.containing_oneof is not None else None,
        }
    return {"map_entry": bool(m.GetOptions().map_entry), "fields": fields}


def describe_enum(e):
    return {v.name: v.number for v in e.values}


def describe_service(s):
    return {
        m.name: {
            "input": m.input_type.full_name,
            "output": m.output_type.full_name,
            "client_streaming": bool(m.client_streaming),
            "server_streaming": bool(m.server_streaming),
        }
        for m in s.methods
    }
"""

# Messages built from the same text format on both sides: bytes and JSON must be identical.
SAMPLES: dict[str, tuple[str, str]] = {
    "predict_request": (
        "tensorflow.serving.PredictRequest",
        """
        model_spec { name: "resnet" version { value: 3 } signature_name: "serving_default" }
        inputs { key: "x" value { dtype: DT_FLOAT tensor_shape { dim { size: 1 } dim { size: 2 name: "c" } }
                                  float_val: 1.5 float_val: -2 } }
        inputs { key: "y" value { dtype: DT_UINT8 tensor_shape { dim { size: 4 } }
                                  tensor_content: "\\001\\002\\003\\004" } }
        output_filter: "out"
        """,
    ),
    "predict_response": (
        "tensorflow.serving.PredictResponse",
        """
        model_spec { name: "resnet" version_label: "stable" }
        outputs { key: "out" value { dtype: DT_INT64 tensor_shape { dim { size: 2 } } int64_val: -1 int64_val: 9 } }
        """,
    ),
    "tensor_all_fields": (
        "tensorflow.TensorProto",
        """
        dtype: DT_COMPLEX128 tensor_shape { dim { size: -1 name: "n" } unknown_rank: true } version_number: 7
        tensor_content: "abc" half_val: 15360 half_val: -1 float_val: 0.25 double_val: 1e300 int_val: -7
        string_val: "s" scomplex_val: 1 scomplex_val: 2 int64_val: -9000000000 bool_val: true bool_val: false
        dcomplex_val: 3 dcomplex_val: 4 uint32_val: 4294967295 uint64_val: 18446744073709551615 float8_val: "\\x3c"
        """,
    ),
    "metadata_request": (
        "tensorflow.serving.GetModelMetadataRequest",
        'model_spec { name: "m" version { value: 1 } } metadata_field: "signature_def"',
    ),
    # Maps inside an Any are packed without deterministic ordering: one entry per map here, so the bytes are
    # comparable; signature_def_map below has several entries per map.
    "metadata_response": (
        "tensorflow.serving.GetModelMetadataResponse",
        """
        model_spec { name: "m" version { value: 1 } }
        metadata { key: "signature_def" value {
          [type.googleapis.com/tensorflow.serving.SignatureDefMap] {
            signature_def { key: "serving_default" value {
              inputs { key: "x" value { name: "x:0" dtype: DT_FLOAT
                                        tensor_shape { dim { size: -1 } dim { size: 224 } } } }
              outputs { key: "y" value { name: "y:0" dtype: DT_HALF tensor_shape { unknown_rank: true } } }
              method_name: "tensorflow/serving/predict"
            } }
          } } }
        """,
    ),
    "signature_def_map": (
        "tensorflow.serving.SignatureDefMap",
        """
        signature_def { key: "serving_default" value {
          inputs { key: "x" value { name: "x:0" dtype: DT_FLOAT tensor_shape { dim { size: -1 } dim { size: 3 } } } }
          inputs { key: "sp" value { coo_sparse { values_tensor_name: "v" indices_tensor_name: "i"
                                                  dense_shape_tensor_name: "d" } dtype: DT_INT32 } }
          outputs { key: "y" value { name: "y:0" dtype: DT_HALF tensor_shape { unknown_rank: true } } }
          outputs { key: "z" value { name: "z:0" dtype: DT_INT64 } }
          method_name: "tensorflow/serving/predict"
          defaults { key: "x" value { dtype: DT_FLOAT float_val: 0 } }
        } }
        signature_def { key: "other" value { method_name: "tensorflow/serving/classify" } }
        """,
    ),
    "status_request": ("tensorflow.serving.GetModelStatusRequest", 'model_spec { name: "m" version_label: "canary" }'),
    "status_response": (
        "tensorflow.serving.GetModelStatusResponse",
        """
        model_version_status { version: 1 state: AVAILABLE status { error_code: OK } }
        model_version_status { version: 2 state: END status { error_code: NOT_FOUND error_message: "gone" } }
        model_version_status { version: 3 state: LOADING }
        """,
    ),
    "reload_request": (
        "tensorflow.serving.ReloadConfigRequest",
        """
        config { model_config_list {
          config { name: "a" base_path: "/m/a" model_platform: "openvino"
                   model_version_policy { specific { versions: 1 versions: 2 } }
                   version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } }
          config { name: "b" base_path: "/m/b" model_version_policy { latest { num_versions: 2 } } }
          config { name: "c" base_path: "/m/c" model_version_policy { all { } } model_type: TENSORFLOW }
        } }
        metric_names: "loads"
        """,
    ),
    "reload_response": (
        "tensorflow.serving.ReloadConfigResponse",
        'status { error_code: INVALID_ARGUMENT error_message: "bad" } metric { name: "loads" int64_value_increase: 3 }',
    ),
    "fs_source_config": (
        "tensorflow.serving.FileSystemStoragePathSourceConfig",
        """
        servables { servable_name: "a" base_path: "/m/a" servable_version_policy { latest { num_versions: 1 } } }
        file_system_poll_wait_seconds: 5 servable_versions_always_present: true
        """,
    ),
}

TFS_SCRIPT = r"""
import base64, importlib, json, sys
from google.protobuf import descriptor_pool, json_format, message_factory, text_format

exec(DESCRIBE_SRC)
request = json.load(sys.stdin)
for name in request["modules"]:
    importlib.import_module(name)
pool = descriptor_pool.Default()


def find(kind, name):
    try:
        return getattr(pool, "Find%sByName" % kind)(name)
    except KeyError:
        return None


out = {"messages": {}, "enums": {}, "services": {}, "samples": {}}
for name in request["messages"]:
    d = find("MessageType", name)
    out["messages"][name] = describe_message(d) if d is not None else None
for name in request["enums"]:
    d = find("EnumType", name)
    out["enums"][name] = describe_enum(d) if d is not None else None
for name in request["services"]:
    d = find("Service", name)
    out["services"][name] = describe_service(d) if d is not None else None
for key, (type_name, text) in request["samples"].items():
    msg = message_factory.GetMessageClass(pool.FindMessageTypeByName(type_name))()
    text_format.Parse(text, msg)
    out["samples"][key] = {
        "bytes": base64.b64encode(msg.SerializeToString(deterministic=True)).decode(),
        "json": json.loads(json_format.MessageToJson(msg)),
    }
with open(sys.argv[1], "w") as f:
    json.dump(out, f)
"""

namespace: dict = {}
exec(DESCRIBE_SRC, namespace)
describe_message = namespace["describe_message"]
describe_enum = namespace["describe_enum"]
describe_service = namespace["describe_service"]


def tfs_python() -> str:
    """The interpreter with tensorflow-serving-api installed; fails the test (never skips) if it is missing."""
    path = os.environ.get("OVMSCTL_TFS_PYTHON") or str(REPO / ".venv-tfs" / "bin" / "python")
    if not Path(path).exists():
        pytest.fail(
            f"tensorflow-serving-api interpreter not found at {path}: the wire-format conformance tests need it. "
            "Run `make test` (or `make venv-clients` to create .venv-tfs), or point OVMSCTL_TFS_PYTHON at a python "
            "with tensorflow-serving-api installed."
        )
    return path


def our_modules(packages: tuple[str, ...] = TF_PACKAGES) -> list:
    """Our generated modules whose .proto package is one of ``packages`` (or below one of them)."""
    names = sorted(p.stem for p in GENERATED_DIR.glob("*_pb2.py"))
    assert names, f"no generated modules in {GENERATED_DIR}; run `python schemas/compile.py`"
    modules = [importlib.import_module(f"ovmsd.api.grpc.proto.{n}") for n in names]
    return [
        m
        for m in modules
        if any(m.DESCRIPTOR.package == p or m.DESCRIPTOR.package.startswith(p + ".") for p in packages)
    ]


def our_descriptors(packages: tuple[str, ...] = TF_PACKAGES) -> tuple[dict, dict, dict]:
    """(messages, enums, services) defined by our generated modules of ``packages``, nested ones and map entries
    included."""
    messages: dict = {}
    enums: dict = {}
    services: dict = {}

    def walk(m) -> None:
        messages[m.full_name] = m
        for e in m.enum_types:
            enums[e.full_name] = e
        for n in m.nested_types:
            walk(n)

    for mod in our_modules(packages):
        fd = mod.DESCRIPTOR
        for m in fd.message_types_by_name.values():
            walk(m)
        for e in fd.enum_types_by_name.values():
            enums[e.full_name] = e
        for s in fd.services_by_name.values():
            services[s.full_name] = s
    return messages, enums, services


@pytest.fixture(scope="module")
def ours() -> tuple[dict, dict, dict]:
    return our_descriptors()


@pytest.fixture(scope="module")
def tf_side(ours, tmp_path_factory) -> dict:
    messages, enums, services = ours
    request = {
        "modules": TF_MODULES,
        "messages": sorted(messages),
        "enums": sorted(enums),
        "services": sorted(services),
        "samples": SAMPLES,
    }
    out = tmp_path_factory.mktemp("tfs") / "descriptors.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONPATH="")
    proc = subprocess.run(
        [tfs_python(), "-c", f"DESCRIBE_SRC = {DESCRIBE_SRC!r}\n{TFS_SCRIPT}", str(out)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert proc.returncode == 0, f"TF descriptor dump failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(out.read_text())


def test_generated_code_is_up_to_date():
    proc = subprocess.run(
        [sys.executable, str(REPO / "schemas" / "compile.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"schemas/compile.py --check failed:\n{proc.stdout}{proc.stderr}"


def test_we_define_what_the_server_needs(ours):
    messages, enums, services = ours
    for name in [
        "tensorflow.TensorProto",
        "tensorflow.TensorShapeProto.Dim",
        "tensorflow.SignatureDef",
        "tensorflow.TensorInfo",
        "tensorflow.serving.ModelSpec",
        "tensorflow.serving.PredictRequest",
        "tensorflow.serving.PredictResponse",
        "tensorflow.serving.SignatureDefMap",
        "tensorflow.serving.GetModelMetadataRequest",
        "tensorflow.serving.GetModelMetadataResponse",
        "tensorflow.serving.GetModelStatusRequest",
        "tensorflow.serving.GetModelStatusResponse",
        "tensorflow.serving.ModelVersionStatus",
        "tensorflow.serving.StatusProto",
        "tensorflow.serving.ReloadConfigRequest",
        "tensorflow.serving.ReloadConfigResponse",
        "tensorflow.serving.ModelServerConfig",
        "tensorflow.serving.ModelConfigList",
        "tensorflow.serving.ModelConfig",
        "tensorflow.serving.FileSystemStoragePathSourceConfig.ServableVersionPolicy",
    ]:
        assert name in messages, name
    for name in ["tensorflow.DataType", "tensorflow.error.Code", "tensorflow.serving.ModelVersionStatus.State"]:
        assert name in enums, name
    paths = {f"/{s.full_name}/{m.name}" for s in services.values() for m in s.methods}
    assert paths == {
        "/tensorflow.serving.PredictionService/Predict",
        "/tensorflow.serving.PredictionService/GetModelMetadata",
        "/tensorflow.serving.ModelService/GetModelStatus",
        "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
    }


def test_signature_def_map_type_url():
    from google.protobuf import any_pb2

    from ovmsd.api.grpc.proto import get_model_metadata_pb2

    packed = any_pb2.Any()
    packed.Pack(get_model_metadata_pb2.SignatureDefMap())
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"


# Ours, but not in the tensorflow-serving-api wheel: only ever read from a text file (--ssl_config_file), never sent
# on the wire, so its field names are what must match (the issue and TF Serving's docs name them).
NOT_IN_THE_WHEEL = {"tensorflow.serving.SSLConfig"}


def test_ssl_config_has_tf_servings_text_format_field_names():
    from ovmsd.api.grpc.proto import ssl_config_pb2

    assert list(ssl_config_pb2.SSLConfig.DESCRIPTOR.fields_by_name) == [
        "server_key",
        "server_cert",
        "custom_ca",
        "client_verify",
    ]


def test_messages_match_tf(ours, tf_side):
    messages = ours[0]
    problems: list[str] = []
    seen_omissions: set[str] = set()
    for name, desc in sorted(messages.items()):
        if name in NOT_IN_THE_WHEEL:
            continue
        theirs = tf_side["messages"][name]
        if theirs is None:
            problems.append(f"{name}: no such message in TF Serving")
            continue
        mine = describe_message(desc)
        if mine["map_entry"] != theirs["map_entry"]:
            problems.append(f"{name}: map_entry {mine['map_entry']} != TF {theirs['map_entry']}")
        for fname, fdesc in mine["fields"].items():
            tf_field = theirs["fields"].get(fname)
            if tf_field is None:
                problems.append(f"{name}.{fname}: field does not exist in TF Serving")
            elif tf_field != fdesc:
                diff = {k: (fdesc[k], tf_field[k]) for k in fdesc if fdesc[k] != tf_field.get(k)}
                problems.append(f"{name}.{fname}: differs from TF (ours, TF): {diff}")
        for fname in theirs["fields"].keys() - mine["fields"].keys():
            key = f"{name}.{fname}"
            if key in OMITTED_FIELDS:
                seen_omissions.add(key)
            else:
                problems.append(
                    f"{key}: TF field {theirs['fields'][fname]} missing from ours and not in OMITTED_FIELDS"
                )
    for key in OMITTED_FIELDS.keys() - seen_omissions:
        problems.append(f"{key}: listed in OMITTED_FIELDS but not omitted (or not in TF): drop it from the list")
    assert not problems, "\n".join(problems)


def test_enums_match_tf(ours, tf_side):
    enums = ours[1]
    problems: list[str] = []
    seen_omissions: set[str] = set()
    for name, desc in sorted(enums.items()):
        theirs = tf_side["enums"][name]
        if theirs is None:
            problems.append(f"{name}: no such enum in TF Serving")
            continue
        mine = describe_enum(desc)
        for value, number in mine.items():
            if theirs.get(value) != number:
                problems.append(f"{name}.{value} = {number}: TF has {theirs.get(value)}")
        for value in theirs.keys() - mine.keys():
            key = f"{name}.{value}"
            if key in OMITTED_ENUM_VALUES:
                seen_omissions.add(key)
            else:
                problems.append(f"{key} = {theirs[value]}: missing from ours and not in OMITTED_ENUM_VALUES")
    for key in OMITTED_ENUM_VALUES.keys() - seen_omissions:
        problems.append(f"{key}: listed in OMITTED_ENUM_VALUES but not omitted: drop it from the list")
    assert not problems, "\n".join(problems)


def test_services_match_tf(ours, tf_side):
    services = ours[2]
    problems: list[str] = []
    seen_omissions: set[str] = set()
    for name, desc in sorted(services.items()):
        theirs = tf_side["services"][name]
        if theirs is None:
            problems.append(f"{name}: no such service in TF Serving")
            continue
        mine = describe_service(desc)
        for method, sig in mine.items():
            if theirs.get(method) != sig:
                problems.append(f"{name}.{method}: {sig} != TF {theirs.get(method)}")
        for method in theirs.keys() - mine.keys():
            key = f"{name}.{method}"
            if key in OMITTED_METHODS:
                seen_omissions.add(key)
            else:
                problems.append(f"{key}: missing from ours and not in OMITTED_METHODS")
    for key in OMITTED_METHODS.keys() - seen_omissions:
        problems.append(f"{key}: listed in OMITTED_METHODS but not omitted: drop it from the list")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_sample_messages_are_byte_identical(key, ours, tf_side):
    from google.protobuf import message_factory

    type_name, text = SAMPLES[key]
    cls = message_factory.GetMessageClass(ours[0][type_name])
    mine = cls()
    text_format.Parse(text, mine)
    theirs = tf_side["samples"][key]
    tf_bytes = base64.b64decode(theirs["bytes"])
    assert mine.SerializeToString(deterministic=True) == tf_bytes
    parsed = cls.FromString(tf_bytes)
    assert parsed == mine
    assert json.loads(json_format.MessageToJson(mine)) == theirs["json"]
