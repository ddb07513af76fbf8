"""One wrapper around every gRPC method of our services: the request gate, the error mapping, request metrics.

Servicers raise ``ServingError`` and never touch status codes; this interceptor admits the request through the gate
(UNAVAILABLE once the daemon is stopping), maps errors through ``ovmsd.api.errors`` (any other exception is logged
in one line, the same kind at most once per ``LOG_INTERVAL_S``, and answered INTERNAL: the daemon never crashes on a
request), and counts every request of a model method, failed ones included, with its ``api``/``interface`` labels.
The health service and KServe's ServerLive and ServerReady are not wrapped: probes keep their answers during a drain
(live true, ready false).

Requests are decoded here, not by grpcio: every method of our services (probes included) gets a deserializer that
never raises, so bytes that are not the method's message are answered INVALID_ARGUMENT naming the message type,
with one log line per method and interval, instead of grpcio's INTERNAL "Exception deserializing request!" and a
traceback per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from ovmsd import stages
from ovmsd.api.accounting import count_request
from ovmsd.api.auth import UNAUTHENTICATED, ApiKey
from ovmsd.api.errors import ERROR_CODES, bounded
from ovmsd.api.gate import SHUTTING_DOWN, Gate
from ovmsd.errors import ErrorKind, ServingError, short
from ovmsd.observe.logs import Throttle
from ovmsd.observe.metrics import RequestMetrics
from ovmsd.serving.concurrency import TooManyWaiting, lending_turns

log = logging.getLogger(__name__)

INTERFACE = "gRPC"
LOG_INTERVAL_S = 10.0  # the same kind of failure is logged at most once per this long


@dataclass(frozen=True)
class Undecodable:
    """What the deserializer hands over instead of a request whose bytes do not parse as the method's message."""

    size: int  # bytes received
    message_type: str  # e.g. tensorflow.serving.PredictRequest
    reason: str  # the protobuf runtime's sentence

    def error_message(self) -> str:
        return (
            f"Invalid request - Expected: a serialized {self.message_type}; Actual: {self.size} bytes that do not "
            f"parse ({short(self.reason)})"
        )


def safe_deserializer(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer``, returning an :class:`Undecodable` instead of raising (DecodeError or anything else)."""
    if deserializer is None:
        return None
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    message_type = getattr(descriptor, "full_name", None) or getattr(owner, "__name__", "request message")

    def deserialize(data: bytes) -> Any:
        began = stages.now_ns() if stages.on else 0  # on grpcio's polling thread, before a request thread runs
        try:
            request = deserializer(data)
        except Exception as exc:  # DecodeError, mostly; whatever a hostile message makes the runtime raise
            return Undecodable(len(data), message_type, str(exc) or type(exc).__name__)
        if stages.on:
            stages.add("parse", stages.now_ns() - began)
        return request

    return deserialize


def timed_serializer(serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """``serializer``, timed when the stage timers are on (``respond``: since the handler returned)."""
    if serializer is None or not stages.on:  # handlers are wrapped at their first call, after start-up
        return serializer

    def serialize(response: Any) -> bytes:
        stages.lap("respond")
        data = serializer(response)
        stages.lap("serialize")
        return data

    return serialize


@dataclass(frozen=True)
class MethodInfo:
    """How to label one method's requests: its api, its metric name, and where the model and version are."""

    api: str  # TensorFlowServing, KServe
    name: str  # the method label: Predict, GetModelMetadata, ModelInfer...
    requested: Callable[[Any], tuple[str, str]]  # request -> (model, version asked for; "" for the default)
    served: Callable[[Any], str] | None = None  # response -> the version that served


@dataclass(frozen=True)
class StreamAnswer:
    """What a streaming servicer yields per request: the response to send and the error it reports, if any."""

    response: Any
    error: ServingError | None = None


class RequestWrapper(grpc.ServerInterceptor):
    def __init__(
        self,
        gate: Gate,
        metrics: RequestMetrics | None,
        methods: dict[str, MethodInfo],
        services: dict[str, str],
        probes: frozenset[str] = frozenset(),
        api_key: ApiKey | None = None,
    ) -> None:
        self._gate = gate
        self._metrics = metrics
        self._methods = methods  # full method path -> labels, for the methods that count per model
        self._services = services  # the services wrapped, with their api label (others, e.g. health, pass through)
        self._probes = probes  # methods of those services that pass through too: liveness and readiness
        self._api_key = api_key  # every wrapped call must carry it
        self._throttle = Throttle(log, LOG_INTERVAL_S)
        # grpcio asks for every call's handler: each method's is wrapped once, for the handler it was made from
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler | None]] = {}

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: Any
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        method: str = details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler | None:
        service = method.lstrip("/").rpartition("/")[0]
        if service not in self._services:
            return handler
        deserializer = safe_deserializer(handler.request_deserializer)
        if method in self._probes:
            if handler.unary_unary is None:
                return handler
            return grpc.unary_unary_rpc_method_handler(
                self._probe(handler.unary_unary, method),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        info = self._methods.get(method)
        api = self._services[service]
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, info, api, method),
                request_deserializer=deserializer,
                response_serializer=timed_serializer(handler.response_serializer),
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(handler.stream_stream, info, api, method),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _refuse_undecodable(self, request: Undecodable, context: grpc.ServicerContext, method: str) -> None:
        self._throttle.log(
            logging.WARNING,
            ("undecodable", method),
            "%s: refused a request that does not parse (%d bytes): %s",
            method,
            request.size,
            short(request.reason),
        )
        context.abort(ERROR_CODES[ErrorKind.INVALID_INPUT].grpc, bounded(request.error_message()))

    def _failed(self, method: str, exc: Exception) -> tuple[grpc.StatusCode, str]:
        """An exception that is no ServingError: a bug. One line per kind and interval; the traceback at DEBUG."""
        self._throttle.log(
            logging.ERROR,
            ("failed", method, type(exc)),
            "%s failed: %s: %s",
            method,
            type(exc).__name__,
            short(exc),
            debug_traceback=True,
        )
        return grpc.StatusCode.INTERNAL, bounded(f"Internal server error: {type(exc).__name__}: {short(exc)}")

    def _probe(self, behavior: Callable[[Any, grpc.ServicerContext], Any], method: str) -> Callable:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                self._refuse_undecodable(request, context, method)
            return behavior(request, context)

        return wrapped

    def _authenticate(self, context: grpc.ServicerContext, api: str) -> None:
        """With an API key configured: UNAUTHENTICATED unless the call carries ``authorization: Bearer KEY``."""
        if self._api_key is None:
            return
        given = next((v for k, v in context.invocation_metadata() if k == "authorization"), None)
        if self._api_key.allows(given):
            return
        if self._metrics is not None:
            self._metrics.unauthenticated(api, INTERFACE)
        context.abort(ERROR_CODES[ErrorKind.UNAUTHENTICATED].grpc, UNAUTHENTICATED)

    def _unary(
        self, behavior: Callable[[Any, grpc.ServicerContext], Any], info: MethodInfo | None, api: str, method: str
    ) -> Callable:
        gate, metrics = self._gate, self._metrics

        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            if stages.on:
                stages.start()
            self._authenticate(context, api)
            if isinstance(request, Undecodable):  # no model to count it against
                self._refuse_undecodable(request, context, method)
            if not gate.enter():
                context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
            started = time.perf_counter_ns()
            if stages.on:
                stages.lap("admit")
            response = error = None
            try:
                response = behavior(request, context)
            except ServingError as exc:
                error = exc
                code, message = ERROR_CODES[exc.kind].grpc, bounded(exc.message)
            except Exception as exc:
                code, message = self._failed(method, exc)
            finally:
                gate.leave()
                if stages.on:
                    stages.lap("release")
                if metrics is not None and info is not None:
                    _count(metrics, info, request, response, error, started)
                    if stages.on:
                        stages.lap("metrics")
            if response is None:
                context.abort(code, message)
            return response

        return wrapped

    def _stream(
        self,
        behavior: Callable[[Iterator[Any], grpc.ServicerContext], Iterator[Any]],
        info: MethodInfo | None,
        api: str,
        method: str,
    ) -> Callable:
        """Each message of a stream is a request: admitted by the gate and counted on its own.

        The servicer answers every request with exactly one ``StreamAnswer``, in order (a failed request's answer
        carries its error inside the stream), so the wrapper pairs each answer with the request read before it. Once
        the daemon stops, the next message ends the stream with UNAVAILABLE (a stream never holds up the drain).
        """
        gate, metrics = self._gate, self._metrics

        def wrapped(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            self._authenticate(context, api)
            pending: list[tuple[Any, int]] = []  # the request being answered and when it arrived

            def admitted() -> Iterator[Any]:
                for request in lending_turns(requests):  # an idle stream holds no request thread's turn
                    if isinstance(request, Undecodable):  # ends the stream: its messages can no longer be trusted
                        self._refuse_undecodable(request, context, method)
                    if not gate.enter():
                        context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
                    pending.append((request, time.perf_counter_ns()))
                    yield request

            try:
                for answer in behavior(admitted(), context):
                    if pending:
                        request, started = pending.pop(0)
                        gate.leave()
                        if metrics is not None and info is not None:
                            served = answer.response if answer.error is None else None
                            _count(metrics, info, request, served, answer.error, started)
                    yield answer.response
            except TooManyWaiting as exc:
                context.abort(
                    ERROR_CODES[ErrorKind.TOO_MANY_REQUESTS].grpc, f"{ErrorKind.TOO_MANY_REQUESTS.value} - {exc}"
                )
            except Exception as exc:
                if _is_abort(exc):
                    raise
                context.abort(*self._failed(method, exc))
            finally:
                for _ in pending:  # admitted, never answered (the client went away, the servicer failed)
                    gate.leave()

        return wrapped


def _count(
    metrics: RequestMetrics, info: MethodInfo, request: Any, response: Any, error: ServingError | None, started_ns: int
) -> None:
    try:
        model, version = info.requested(request)
        if response is not None and info.served is not None:
            version = info.served(response)
    except Exception as exc:  # metrics must never fail a request
        log.error("labelling a %s request failed: %s: %s", info.name, type(exc).__name__, short(exc))
        return
    count_request(
        metrics,
        api=info.api,
        interface=INTERFACE,
        method=info.name,
        model=model,
        version=version,
        error=error,
        failed=response is None,
        started_ns=started_ns,
    )


def _is_abort(exc: Exception) -> bool:
    """Whether ``exc`` is how ``context.abort`` ends an RPC (grpcio raises a plain Exception for it)."""
    return type(exc) is Exception and not exc.args
