"""One wrapper around every gRPC method of our services: the request gate, the error mapping, request metrics.

Servicers raise ``ServingError`` and never touch status codes; this interceptor admits the request through the gate
(UNAVAILABLE once the daemon is stopping), maps errors through ``ovmsd.api.errors`` (any other exception is logged
once and answered INTERNAL: the daemon never crashes on a request), and counts every request of a model method,
failed ones included, with its ``api``/``interface`` labels. The health service and KServe's ServerLive and
ServerReady are not wrapped: probes keep their answers during a drain (live true, ready false).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from ovmsd.api.accounting import count_request
from ovmsd.api.auth import UNAUTHENTICATED, ApiKey
from ovmsd.api.errors import ERROR_CODES, bounded
from ovmsd.api.gate import SHUTTING_DOWN, Gate
from ovmsd.errors import ErrorKind, ServingError
from ovmsd.observe.metrics import RequestMetrics

log = logging.getLogger(__name__)

INTERFACE = "gRPC"


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

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: Any
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        method: str = details.method
        service = method.lstrip("/").rpartition("/")[0]
        if handler is None or method in self._probes or service not in self._services:
            return handler
        info = self._methods.get(method)
        api = self._services[service]
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, info, api),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(handler.stream_stream, info, api),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

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
        self, behavior: Callable[[Any, grpc.ServicerContext], Any], info: MethodInfo | None, api: str
    ) -> Callable:
        gate, metrics = self._gate, self._metrics

        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            self._authenticate(context, api)
            if not gate.enter():
                context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
            started = time.perf_counter_ns()
            response = error = None
            try:
                response = behavior(request, context)
            except ServingError as exc:
                error = exc
                code, message = ERROR_CODES[exc.kind].grpc, bounded(exc.message)
            except Exception as exc:
                log.exception("%s failed", info.name if info else "request")
                code, message = grpc.StatusCode.INTERNAL, bounded(f"Internal server error: {type(exc).__name__}: {exc}")
            finally:
                gate.leave()
                if metrics is not None and info is not None:
                    _count(metrics, info, request, response, error, started)
            if response is None:
                context.abort(code, message)
            return response

        return wrapped

    def _stream(
        self,
        behavior: Callable[[Iterator[Any], grpc.ServicerContext], Iterator[Any]],
        info: MethodInfo | None,
        api: str,
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
                for request in requests:
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
    except Exception:  # metrics must never fail a request
        log.exception("labelling a %s request failed", info.name)
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
