"""The REST front ends as one ASGI application: body limits, the request gate, error mapping, request metrics.

Each request is matched to a route, its body read (refused with 413 from the Content-Length alone, before any of it
is received, when it is over the limit), then handled: inference and reloads on the REST worker threads, everything
else (health, status, metadata) on the event loop, where it takes microseconds. A route with an event-loop handler
(KServe binary inference) tries it first: it serves the request without a thread when nothing but the model's place
and the inference itself must be waited for, and leaves it to the worker threads otherwise. ``ServingError``s
become their HTTP status from ``ovmsd.api.errors`` with ``{"error": message}``; any other exception is logged in one
line (the same kind at most once per ``LOG_INTERVAL_S``, the traceback only at DEBUG) and answered 500.
Health and metrics routes are never gated, so probes keep their answers during a drain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from ovmsd import stages
from ovmsd.api.accounting import count_request
from ovmsd.api.auth import UNAUTHENTICATED, ApiKey
from ovmsd.api.errors import ERROR_CODES
from ovmsd.api.gate import SHUTTING_DOWN, Gate
from ovmsd.api.rest.http import Request, Response, error_response
from ovmsd.api.rest.router import Route, Router
from ovmsd.errors import ErrorKind, ServingError, short
from ovmsd.observe.logs import Throttle
from ovmsd.observe.metrics import RequestMetrics

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 10.0  # the same kind of failure is logged at most once per this long

INTERFACE = "REST"
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class RestApp:
    def __init__(
        self,
        router: Router,
        *,
        gate: Gate,
        workers: Executor,
        max_body_bytes: int,
        metrics: RequestMetrics | None = None,
        api_key: ApiKey | None = None,
    ) -> None:
        self._router = router
        self._gate = gate
        self._workers = workers
        self._max_body = max_body_bytes
        self._metrics = metrics
        self._api_key = api_key  # every gated route needs it; health and metrics stay open
        self._throttle = Throttle(log, LOG_INTERVAL_S)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        begun = stages.now_ns() if stages.on else 0
        method, path = scope["method"], scope["path"]
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            return await _send(send, self._too_large(int(declared)), close=True)
        body = await self._read_body(receive)
        if body is None:
            return await _send(send, self._too_large(None), close=True)
        found = self._router.match(method, path)
        if isinstance(found, Response):
            return await _send(send, found)
        route, params = found
        request = Request(method, path, headers, body)
        if route.pooled:
            if stages.on:
                stages.add("http-read", stages.now_ns() - begun)
            answered = await self._handle_on_loop(route, request, params) if route.on_loop is not None else None
            if answered is not None:
                response = answered
            elif not stages.on:
                loop = asyncio.get_running_loop()
                response = await loop.run_in_executor(self._workers, self._handle, route, request, params)
            else:
                submitted, timed = stages.now_ns(), self._timed_handle
                loop = asyncio.get_running_loop()
                response, handled = await loop.run_in_executor(self._workers, timed, route, request, params, submitted)
                stages.add("handoff", stages.now_ns() - handled)
        else:
            response = self._handle(route, request, params)
        sending = stages.now_ns() if stages.on else 0
        await _send(send, response, close=response.status == 503)
        if stages.on and route.pooled:
            stages.add("http-send", stages.now_ns() - sending)

    def _timed_handle(
        self, route: Route, request: Request, params: dict[str, str], submitted_ns: int
    ) -> tuple[Response, int]:
        """``_handle`` with the stage timers: the hand-off from the event loop, the stages, and when it ended."""
        stages.start()
        stages.add("handoff", stages.now_ns() - submitted_ns)
        response = self._handle(route, request, params)
        return response, stages.now_ns()

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it grows past the limit (a chunked body has no Content-Length)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self, size: int | None) -> Response:
        actual = f"{size} bytes" if size is not None else "more"
        return error_response(
            413,
            f"Request body too large - Expected: at most {self._max_body} bytes (--max-message-bytes); "
            f"Actual: {actual}",
        )

    def _handle(self, route: Route, request: Request, params: dict[str, str]) -> Response:
        refused = self._admit(route, request)
        if refused is not None:
            return refused
        started = time.perf_counter_ns()
        timed = stages.on and route.pooled  # the request threads' stages (the event loop's are spans)
        if timed:
            stages.lap("admit")
        error: ServingError | None = None
        try:
            response = route.handler(request, params)
        except Exception as exc:
            response, error = self._error_answer(route, request, exc)
        finally:
            if route.gated:
                self._gate.leave()
            if timed:
                stages.lap("release")
        self._count(route, params, response, error, started)
        if timed:
            stages.lap("metrics")
        return response

    async def _handle_on_loop(self, route: Route, request: Request, params: dict[str, str]) -> Response | None:
        """:meth:`_handle` with the route's event-loop handler; None when that handler leaves the request to the
        request threads (then nothing was counted, and the gate was left)."""
        assert route.on_loop is not None
        refused = self._admit(route, request)
        if refused is not None:
            return refused
        started = time.perf_counter_ns()
        error: ServingError | None = None
        try:
            response = await route.on_loop(request, params)
        except Exception as exc:
            response, error = self._error_answer(route, request, exc)
        finally:
            if route.gated:
                self._gate.leave()
        if response is not None:
            self._count(route, params, response, error, started)
        return response

    def _admit(self, route: Route, request: Request) -> Response | None:
        """The answer to a request refused (no or a wrong API key, the gate closed); None: admitted, and the caller
        leaves the gate after it."""
        if route.gated and self._api_key is not None and not self._api_key.allows(request.headers.get("authorization")):
            if self._metrics is not None:
                self._metrics.unauthenticated(route.api, INTERFACE)
            response = error_response(ERROR_CODES[ErrorKind.UNAUTHENTICATED].http, UNAUTHENTICATED)
            response.headers.append(("www-authenticate", "Bearer"))
            return response
        if route.gated and not self._gate.enter():
            return error_response(503, SHUTTING_DOWN)
        return None

    def _error_answer(self, route: Route, request: Request, exc: Exception) -> tuple[Response, ServingError | None]:
        """A handler's exception as its answer: a ServingError's status and message; anything else is a bug, logged
        in one line per kind and interval and answered 500."""
        if isinstance(exc, ServingError):
            return error_response(ERROR_CODES[exc.kind].http, exc.message), exc
        where = route.metric or getattr(route.handler, "__name__", route.method)
        self._throttle.log(
            logging.ERROR,
            (where, type(exc)),
            "%s %s failed: %s: %s",
            request.method,
            short(request.path),
            type(exc).__name__,
            short(exc),
            debug_traceback=True,
        )
        return error_response(500, f"Internal server error: {type(exc).__name__}: {short(exc)}"), None

    def _count(
        self, route: Route, params: dict[str, str], response: Response, error: ServingError | None, started: int
    ) -> None:
        if self._metrics is not None and route.metric is not None:
            count_request(
                self._metrics,
                api=route.api,
                interface=INTERFACE,
                method=route.metric,
                model=params.get("model", ""),
                version=response.served_version or params.get("version", ""),
                error=error,
                failed=response.status >= 400,
                started_ns=started,
            )


async def _send(send: Send, response: Response, close: bool = False) -> None:
    headers = [(b"content-length", str(len(response.body)).encode())]
    if response.body:
        headers.append((b"content-type", response.content_type.encode()))
    headers.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers)
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
