"""Conformance of our KServe v2 .proto (schemas/proto/ovmsd/api/grpc/proto/kserve_predict_v2.proto, package
``inference``) with the wire format of the real KServe client, tritonclient.

The reference is ``tritonclient.grpc.service_pb2`` (Triton's grpc_service.proto: the KServe v2 protocol plus
Triton's extensions), run in a separate interpreter (env var ``OVMSCTL_TRITON_PYTHON``, default
``<repo>/.venv-triton/bin/python``, created by ``make venv-clients``): it needs protobuf 6, our generated code
needs protobuf 7, and both define the same full names. The subprocess describes tritonclient's descriptors with the
same code as tests/test_wire_format.py and this process compares:

* we define every message and RPC of the KServe v2 protocol (and ModelStreamInfer);
* every message and service we define exists in tritonclient with the same full name;
* every field we define has tritonclient's number, type, label, referenced type, JSON name, packing, presence and
  oneof, and every field of tritonclient's messages that we define is defined by us too (an allowlist below, with
  reasons, would name deliberate omissions);
* every RPC of tritonclient's GRPCInferenceService that we leave out is in an allowlist, with a reason;
* sample messages serialize to identical bytes and JSON on both sides and parse across.

The test fails (never skips) when the interpreter is missing.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest
from google.protobuf import json_format, message_factory, text_format

from tests.test_wire_format import (
    DESCRIBE_SRC,
    GENERATED_DIR,
    TF_PACKAGES,
    describe_message,
    describe_service,
    our_descriptors,
)

REPO = Path(__file__).resolve().parent.parent
KSERVE_PACKAGES = ("inference",)
SERVICE = "inference.GRPCInferenceService"

# The KServe v2 / Open Inference Protocol messages (with ModelStreamInferResponse of the streaming extension).
KSERVE_MESSAGES = [
    "inference.ServerLiveRequest",
    "inference.ServerLiveResponse",
    "inference.ServerReadyRequest",
    "inference.ServerReadyResponse",
    "inference.ModelReadyRequest",
    "inference.ModelReadyResponse",
    "inference.ServerMetadataRequest",
    "inference.ServerMetadataResponse",
    "inference.ModelMetadataRequest",
    "inference.ModelMetadataResponse",
    "inference.ModelMetadataResponse.TensorMetadata",
    "inference.InferParameter",
    "inference.InferTensorContents",
    "inference.ModelInferRequest",
    "inference.ModelInferRequest.InferInputTensor",
    "inference.ModelInferRequest.InferRequestedOutputTensor",
    "inference.ModelInferResponse",
    "inference.ModelInferResponse.InferOutputTensor",
    "inference.ModelStreamInferResponse",
]

# Every RPC we serve, with its (client_streaming, server_streaming).
KSERVE_METHODS = {
    "ServerLive": (False, False),
    "ServerReady": (False, False),
    "ModelReady": (False, False),
    "ServerMetadata": (False, False),
    "ModelMetadata": (False, False),
    "ModelInfer": (False, False),
    "ModelStreamInfer": (True, True),
}

# Fields of tritonclient's messages that ours deliberately leave out: "full message name.field" -> reason.
OMITTED_FIELDS: dict[str, str] = {}

# RPCs of tritonclient's GRPCInferenceService that ours leave out (Triton-only, not in the KServe v2 protocol).
OMITTED_METHODS: dict[str, str] = {
    f"{SERVICE}.{name}": reason
    for names, reason in [
        (["ModelConfig"], "Triton model configuration (model_config.proto), not KServe v2"),
        (["ModelStatistics"], "Triton statistics extension, not KServe v2"),
        (["RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload"], "Triton repository extension"),
        (
            [
                "SystemSharedMemoryStatus",
                "SystemSharedMemoryRegister",
                "SystemSharedMemoryUnregister",
                "CudaSharedMemoryStatus",
                "CudaSharedMemoryRegister",
                "CudaSharedMemoryUnregister",
            ],
            "Triton shared-memory extensions",
        ),
        (["TraceSetting"], "Triton trace extension"),
        (["LogSettings"], "Triton logging extension"),
    ]
    for name in names
}

TRITON_MODULES = ["tritonclient.grpc.service_pb2"]

# Messages built from the same text format on both sides: bytes and JSON must be identical.
SAMPLES: dict[str, tuple[str, str]] = {
    "infer_request_raw": (
        "inference.ModelInferRequest",
        r"""
        model_name: "resnet" model_version: "2" id: "req-1"
        parameters { key: "priority" value { uint64_param: 18446744073709551615 } }
        parameters { key: "timeout" value { int64_param: -5 } }
        parameters { key: "sequence_start" value { bool_param: true } }
        parameters { key: "note" value { string_param: "x" } }
        parameters { key: "temperature" value { double_param: 0.25 } }
        inputs { name: "x" datatype: "FP32" shape: 1 shape: 2
                 parameters { key: "binary_data_size" value { int64_param: 8 } } }
        inputs { name: "s" datatype: "BYTES" shape: 1 }
        outputs { name: "y" parameters { key: "classification" value { int64_param: 3 } } }
        outputs { name: "z" }
        raw_input_contents: "\000\000\300?\000\000\000\300"
        raw_input_contents: "\002\000\000\000hi"
        """,
    ),
    "infer_request_typed": (
        "inference.ModelInferRequest",
        r"""
        model_name: "m"
        inputs { name: "b" datatype: "BOOL" shape: 2 contents { bool_contents: true bool_contents: false } }
        inputs { name: "i" datatype: "INT32" shape: 2 contents { int_contents: -1 int_contents: 2147483647 } }
        inputs { name: "l" datatype: "INT64" shape: 1 contents { int64_contents: -9000000000 } }
        inputs { name: "u" datatype: "UINT32" shape: 1 contents { uint_contents: 4294967295 } }
        inputs { name: "ul" datatype: "UINT64" shape: 1 contents { uint64_contents: 18446744073709551615 } }
        inputs { name: "f" datatype: "FP32" shape: 2 contents { fp32_contents: 1.5 fp32_contents: -2 } }
        inputs { name: "d" datatype: "FP64" shape: 1 contents { fp64_contents: 1e300 } }
        inputs { name: "s" datatype: "BYTES" shape: 2 contents { bytes_contents: "a" bytes_contents: "\377" } }
        """,
    ),
    "infer_response": (
        "inference.ModelInferResponse",
        r"""
        model_name: "resnet" model_version: "2" id: "req-1"
        parameters { key: "sequence_id" value { string_param: "abc" } }
        outputs { name: "y" datatype: "FP16" shape: -1 shape: 4
                  parameters { key: "binary_data_size" value { int64_param: 8 } } }
        outputs { name: "c" datatype: "INT64" shape: 2 contents { int64_contents: 7 int64_contents: -7 } }
        raw_output_contents: "\000<\000<\000<\000<"
        """,
    ),
    "stream_responses": (
        "inference.ModelStreamInferResponse",
        r"""
        error_message: "" infer_response { model_name: "m" model_version: "1"
                                           outputs { name: "y" datatype: "BOOL" shape: 1 } raw_output_contents: "\001" }
        """,
    ),
    "stream_error": ("inference.ModelStreamInferResponse", 'error_message: "no such model"'),
    "model_metadata": (
        "inference.ModelMetadataResponse",
        """
        name: "resnet" versions: "1" versions: "2" platform: "openvino"
        inputs { name: "x" datatype: "FP32" shape: -1 shape: 3 shape: 224 shape: 224 }
        outputs { name: "y" datatype: "BF16" shape: -1 shape: 1000 }
        """,
    ),
    "model_metadata_request": ("inference.ModelMetadataRequest", 'name: "resnet" version: "2"'),
    "model_ready_request": ("inference.ModelReadyRequest", 'name: "resnet" version: "1"'),
    "model_ready": ("inference.ModelReadyResponse", "ready: true"),
    "server_live": ("inference.ServerLiveResponse", "live: true"),
    "server_ready": ("inference.ServerReadyResponse", "ready: true"),
    "server_metadata": (
        "inference.ServerMetadataResponse",
        'name: "ovmsctl" version: "0.1.0" extensions: "model_repository" extensions: "binary_tensor_data"',
    ),
}

TRITON_SCRIPT = r"""
import base64, importlib, json, sys
from google.protobuf import descriptor_pool, json_format, message_factory, text_format

exec(DESCRIBE_SRC)
request = json.load(sys.stdin)
modules = [importlib.import_module(name) for name in request["modules"]]
pool = descriptor_pool.Default()


def find(kind, name):
    try:
        return getattr(pool, "Find%sByName" % kind)(name)
    except KeyError:
        return None


out = {"messages": {}, "services": {}, "samples": {}}
for name in request["messages"]:
    d = find("MessageType", name)
    out["messages"][name] = describe_message(d) if d is not None else None
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


def triton_python() -> str:
    """The interpreter with tritonclient[grpc] installed; fails the test (never skips) if it is missing."""
    path = os.environ.get("OVMSCTL_TRITON_PYTHON") or str(REPO / ".venv-triton" / "bin" / "python")
    if not Path(path).exists():
        pytest.fail(
            f"tritonclient interpreter not found at {path}: the KServe wire-format conformance tests need it. "
            "Run `make test` (or `make venv-clients` to create .venv-triton), or point OVMSCTL_TRITON_PYTHON at a "
            "python with tritonclient[grpc] installed."
        )
    return path


@pytest.fixture(scope="module")
def ours() -> tuple[dict, dict, dict]:
    return our_descriptors(KSERVE_PACKAGES)


@pytest.fixture(scope="module")
def triton_side(ours, tmp_path_factory) -> dict:
    messages, _, services = ours
    request = {
        "modules": TRITON_MODULES,
        "messages": sorted(messages),
        "services": sorted(services),
        "samples": SAMPLES,
    }
    out = tmp_path_factory.mktemp("triton") / "descriptors.json"
    proc = subprocess.run(
        [triton_python(), "-c", f"DESCRIBE_SRC = {DESCRIBE_SRC!r}\n{TRITON_SCRIPT}", str(out)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=""),
        timeout=120,
    )
    assert proc.returncode == 0, f"tritonclient descriptor dump failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(out.read_text())


def test_every_generated_module_is_checked_by_a_conformance_test():
    """Each generated module belongs to TF Serving's packages (tests/test_wire_format.py) or KServe's (here)."""
    from tests.test_wire_format import our_modules

    names = sorted(p.stem for p in GENERATED_DIR.glob("*_pb2.py"))
    checked = {m.__name__.rsplit(".", 1)[-1] for m in our_modules(TF_PACKAGES + KSERVE_PACKAGES)}
    assert set(names) - checked == set(), "generated modules outside the compared .proto packages"


def test_we_define_the_kserve_v2_protocol(ours):
    messages, enums, services = ours
    missing = [name for name in KSERVE_MESSAGES if name not in messages]
    assert not missing, f"KServe v2 messages missing from our .proto: {missing}"
    assert not enums, f"the KServe v2 protocol has no enums, ours define {sorted(enums)}"
    assert list(services) == [SERVICE]
    methods = {m.name: (m.client_streaming, m.server_streaming) for m in services[SERVICE].methods}
    assert methods == KSERVE_METHODS
    from ovmsd.api.grpc.proto import kserve_predict_v2_pb2

    assert kserve_predict_v2_pb2.DESCRIPTOR.package == "inference"


def test_messages_match_tritonclient(ours, triton_side):
    messages = ours[0]
    problems: list[str] = []
    seen_omissions: set[str] = set()
    for name, desc in sorted(messages.items()):
        theirs = triton_side["messages"][name]
        if theirs is None:
            problems.append(f"{name}: no such message in tritonclient")
            continue
        mine = describe_message(desc)
        if mine["map_entry"] != theirs["map_entry"]:
            problems.append(f"{name}: map_entry {mine['map_entry']} != tritonclient {theirs['map_entry']}")
        for fname, fdesc in mine["fields"].items():
            their_field = theirs["fields"].get(fname)
            if their_field is None:
                problems.append(f"{name}.{fname}: field does not exist in tritonclient")
            elif their_field != fdesc:
                diff = {k: (fdesc[k], their_field[k]) for k in fdesc if fdesc[k] != their_field.get(k)}
                problems.append(f"{name}.{fname}: differs from tritonclient (ours, theirs): {diff}")
        for fname in theirs["fields"].keys() - mine["fields"].keys():
            key = f"{name}.{fname}"
            if key in OMITTED_FIELDS:
                seen_omissions.add(key)
            else:
                problems.append(f"{key}: tritonclient field {theirs['fields'][fname]} missing from ours")
    for key in OMITTED_FIELDS.keys() - seen_omissions:
        problems.append(f"{key}: listed in OMITTED_FIELDS but not omitted: drop it from the list")
    assert not problems, "\n".join(problems)


def test_service_matches_tritonclient(ours, triton_side):
    services = ours[2]
    problems: list[str] = []
    seen_omissions: set[str] = set()
    for name, desc in sorted(services.items()):
        theirs = triton_side["services"][name]
        if theirs is None:
            problems.append(f"{name}: no such service in tritonclient")
            continue
        mine = describe_service(desc)
        for method, sig in mine.items():
            if theirs.get(method) != sig:
                problems.append(f"{name}.{method}: {sig} != tritonclient {theirs.get(method)}")
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
def test_sample_messages_are_byte_identical(key, ours, triton_side):
    type_name, text = SAMPLES[key]
    cls = message_factory.GetMessageClass(ours[0][type_name])
    mine = cls()
    text_format.Parse(text, mine)
    theirs = triton_side["samples"][key]
    their_bytes = base64.b64decode(theirs["bytes"])
    assert mine.SerializeToString(deterministic=True) == their_bytes
    parsed = cls.FromString(their_bytes)
    assert parsed == mine
    assert json.loads(json_format.MessageToJson(mine)) == theirs["json"]


def test_kserve_and_tf_serving_coexist_in_one_process():
    """Both sets of generated modules import side by side (no descriptor-pool clash) and their services register
    on one gRPC server."""
    from concurrent import futures

    import grpc

    from ovmsd.api.grpc.proto import (
        kserve_predict_v2_pb2,
        kserve_predict_v2_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    class Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            response = predict_pb2.PredictResponse()
            response.model_spec.name = request.model_spec.name
            return response

    class Inference(kserve_predict_v2_pb2_grpc.GRPCInferenceServiceServicer):
        def ServerLive(self, request, context):
            return kserve_predict_v2_pb2.ServerLiveResponse(live=True)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Prediction(), server)
    kserve_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Inference(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            tf = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            kserve = kserve_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "m"
            assert tf.Predict(request, timeout=10).model_spec.name == "m"
            assert kserve.ServerLive(kserve_predict_v2_pb2.ServerLiveRequest(), timeout=10).live is True
            with pytest.raises(grpc.RpcError) as err:
                kserve.ModelInfer(kserve_predict_v2_pb2.ModelInferRequest(model_name="m"), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(None)
