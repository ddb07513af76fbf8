"""Every bad request gets a precise code and a bounded message (issue 12, item 3), on a real daemon.

The reproductions: bytes that are not a protobuf (INVALID_ARGUMENT naming the message type, not grpcio's INTERNAL
"Exception deserializing request!"), dimensions whose product overflows int64 (INVALID_ARGUMENT, not INTERNAL), an
input named with 20,000 characters (its real code, not RESOURCE_EXHAUSTED), on every front end; and the log gets no
traceback per request: one line per kind of bad request, repeated ones rate-limited.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from ovmsd.api.gate import Gate
from ovmsd.api.grpc.proto import kserve_predict_v2_pb2 as pb
from ovmsd.api.grpc.proto import kserve_predict_v2_pb2_grpc as pb_grpc
from ovmsd.api.grpc.proto import predict_pb2, types_pb2
from ovmsd.api.grpc.wrapper import RequestWrapper
from ovmsd.observe.logs import Throttle
from tests.support.daemon import Daemon, free_port, predict_request, rpc_error, write_config
from tests.support.models import save, scale_model
from tests.support.rest import Rest

X = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
GARBAGE = [b"\xff\xff\xff", b"garbage bytes that are not a protobuf", b"\x0a\xff\xff\xff\xff\x0f"]
LONG_NAME = "n" * 20_000


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("bad-requests")
    save(scale_model([1, 4]), root / "scale", 1)
    config = write_config(root / "config.json", [{"name": "scale", "base_path": str(root / "scale")}])
    rest_port = free_port()
    with Daemon(["--config", str(config), "--rest-port", str(rest_port)], root / "daemon.log") as d:
        d.rest_port = rest_port  # type: ignore[attr-defined]
        d.wait_available("scale")
        yield d
        assert d.stop() == 0, d.log()


def raw_call(daemon: Daemon, method: str, data: bytes) -> grpc.RpcError:
    """``data`` sent as the request message of ``method``, as it is."""
    call = daemon.channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    return rpc_error(lambda: call(data, timeout=10))


def still_serving(daemon: Daemon) -> None:
    np.testing.assert_array_equal(daemon.predict("scale", {"x": X})["y"], X * 2)


@pytest.mark.parametrize(
    ("method", "message_type"),
    [
        ("/tensorflow.serving.PredictionService/Predict", "tensorflow.serving.PredictRequest"),
        ("/tensorflow.serving.PredictionService/GetModelMetadata", "tensorflow.serving.GetModelMetadataRequest"),
        ("/tensorflow.serving.ModelService/GetModelStatus", "tensorflow.serving.GetModelStatusRequest"),
        ("/inference.GRPCInferenceService/ModelInfer", "inference.ModelInferRequest"),
        ("/inference.GRPCInferenceService/ServerLive", "inference.ServerLiveRequest"),  # a probe, too
    ],
)
def test_bytes_that_are_no_protobuf_are_invalid_argument_naming_the_message(
    daemon: Daemon, method: str, message_type: str
) -> None:
    for data in GARBAGE:
        error = raw_call(daemon, method, data)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert error.details().startswith(f"Invalid request - Expected: a serialized {message_type}; Actual: ")
        assert f"{len(data)} bytes that do not parse" in error.details()
    still_serving(daemon)


def test_a_stream_message_that_is_no_protobuf_ends_the_stream_with_invalid_argument(daemon: Daemon) -> None:
    stream = daemon.channel.stream_stream(
        "/inference.GRPCInferenceService/ModelStreamInfer",
        request_serializer=lambda b: b,
        response_deserializer=pb.ModelStreamInferResponse.FromString,
    )
    good = pb.ModelInferRequest(model_name="scale")
    tensor = good.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend(X.ravel().tolist())
    answers = stream(iter([good.SerializeToString(), GARBAGE[0]]), timeout=10)
    first = next(answers)
    assert first.error_message == "" and first.infer_response.model_name == "scale"
    with pytest.raises(grpc.RpcError) as ended:
        next(answers)
    assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "a serialized inference.ModelInferRequest" in ended.value.details()


def test_dims_whose_product_overflows_int64_are_invalid_argument(daemon: Daemon) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "scale"
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    for size in (2**40, 2**40):
        tensor.tensor_shape.dim.add().size = size
    tensor.float_val.append(1.0)
    error = rpc_error(lambda: daemon.prediction.Predict(request, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details() == (
        "Invalid shape of tensor proto - Expected: fewer than 2^63 bytes (int64 overflow); "
        "Actual: (1099511627776,1099511627776); input name: x"
    )
    kserve = pb_grpc.GRPCInferenceServiceStub(daemon.channel)
    infer = pb.ModelInferRequest(model_name="scale")
    infer.inputs.add(name="x", datatype="FP32", shape=[2**62, 4])
    infer.raw_input_contents.append(b"\0" * 16)
    error = rpc_error(lambda: kserve.ModelInfer(infer, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "fewer than 2^63 bytes (int64 overflow)" in error.details()
    still_serving(daemon)


def test_an_input_named_with_20000_characters_gets_its_real_code_and_a_short_message(daemon: Daemon) -> None:
    error = rpc_error(lambda: daemon.prediction.Predict(predict_request("scale", {LONG_NAME: X}), timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("Unexpected input tensor passed - Expected: x; Actual: nnn")
    assert error.details().endswith("...") and len(error.details()) < 500
    unknown = rpc_error(lambda: daemon.predict(LONG_NAME, {"x": X}))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND and len(unknown.details()) < 500
    kserve = pb_grpc.GRPCInferenceServiceStub(daemon.channel)
    infer = pb.ModelInferRequest(model_name="scale")
    infer.inputs.add(name=LONG_NAME, datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([1, 2, 3, 4])
    error = rpc_error(lambda: kserve.ModelInfer(infer, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and len(error.details()) < 500
    rest = Rest(daemon.rest_port)  # type: ignore[attr-defined]
    try:
        body = {"inputs": [{"name": LONG_NAME, "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
        reply = rest.post_json("/v2/models/scale/infer", body)
        assert reply.status == 400 and reply.error.startswith("Unexpected input tensor passed")
        assert len(reply.error) < 500
        reply = rest.post_json("/v1/models/scale:predict", {"inputs": {LONG_NAME: [[1, 2, 3, 4]]}})
        assert reply.status == 400 and len(reply.error) < 500
    finally:
        rest.close()
    still_serving(daemon)


def test_bad_requests_leave_no_traceback_and_repeated_ones_are_rate_limited(daemon: Daemon) -> None:
    for _ in range(50):
        raw_call(daemon, "/tensorflow.serving.PredictionService/Predict", GARBAGE[1])
    log = daemon.log()
    assert "Traceback" not in log
    assert "Exception deserializing request" not in log
    lines = [line for line in log.splitlines() if "/tensorflow.serving.PredictionService/Predict: refused" in line]
    assert 1 <= len(lines) <= 2, lines  # one per 10 s
    still_serving(daemon)


def test_throttle_logs_each_kind_once_per_interval_with_the_count_left_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    logger = logging.getLogger("test.throttle")
    throttle = Throttle(logger, 10.0, max_kinds=2, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, "test.throttle"):
        assert throttle.log(logging.WARNING, "a", "bad %s", "a")
        assert not throttle.log(logging.WARNING, "a", "bad %s", "a")
        assert not throttle.log(logging.WARNING, "a", "bad %s", "a")
        assert throttle.log(logging.WARNING, "b", "bad %s", "b"), "another kind is logged at once"
        now[0] = 10.0
        assert throttle.log(logging.WARNING, "a", "bad %s", "a")
        throttle.log(logging.WARNING, "c", "bad c")
        throttle.log(logging.WARNING, "d", "bad d")  # only two kinds are remembered: "a" is forgotten
        assert throttle.log(logging.WARNING, "a", "bad %s", "a")
    assert [r.getMessage() for r in caplog.records] == [
        "bad a",
        "bad b",
        "bad a (2 more like it since the last such line)",
        "bad c",
        "bad d",
        "bad a",
    ]


def test_a_failing_servicer_is_one_log_line_without_traceback() -> None:
    """An exception that is no ServingError (a bug) is answered INTERNAL and logged in one line, rate-limited."""
    wrapper = RequestWrapper(Gate(), None, {}, {"svc": "api"})

    def behavior(request: object, context: object) -> object:
        raise ValueError("x" * 10_000)

    wrapped = wrapper._unary(behavior, None, "api", "/svc/Method")

    class Context:
        aborted: tuple[grpc.StatusCode, str] | None = None

        def abort(self, code: grpc.StatusCode, details: str) -> None:
            self.aborted = (code, details)
            raise Exception()

    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    logging.getLogger("ovmsd.api.grpc.wrapper").addHandler(handler)
    try:
        for _ in range(5):
            context = Context()
            with pytest.raises(Exception):  # noqa: B017 - grpcio's abort
                wrapped(object(), context)
            assert context.aborted is not None and context.aborted[0] == grpc.StatusCode.INTERNAL
            assert len(context.aborted[1]) < 500
    finally:
        logging.getLogger("ovmsd.api.grpc.wrapper").removeHandler(handler)
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert errors[0].getMessage().startswith("/svc/Method failed: ValueError: xxx")
