"""The REST port: uvicorn (httptools parser, uvloop event loop) on a thread of its own, in the daemon process.

Chosen by measurement (BENCHMARKS.md, "HTTP server library"): the highest throughput and the least CPU per request
of the servers tried, idle connections cost no thread, and its shutdown drains: it stops listening, closes idle
connections, and waits for requests in flight. The daemon owns the signals: uvicorn's own handlers are disabled
and ``stop`` asks the server to exit. The socket is bound here, before the thread starts, so a port in use is a
start-up error with a clear message and port 0 reports the port it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from ovmsd.api.auth import ApiKey
from ovmsd.api.gate import Gate
from ovmsd.api.grpc.server import BindError
from ovmsd.api.rest.asgi import RestApp
from ovmsd.api.rest.http import Request, Response
from ovmsd.api.rest.kserve import KServeRest
from ovmsd.api.rest.router import Router, route
from ovmsd.api.rest.tfs import TfServingRest
from ovmsd.observe.metrics import RequestMetrics
from ovmsd.serving.concurrency import TurnPool
from ovmsd.serving.dataplane import DataPlane

log = logging.getLogger(__name__)

BACKLOG = 1024
KEEP_ALIVE_S = 75  # idle keep-alive connections close after this (nginx's and aiohttp's default; uvicorn's is 5 s)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the daemon handles SIGTERM/SIGINT/SIGHUP itself
        yield


class RestServer:
    def __init__(
        self,
        app: Any,
        *,
        host: str,
        port: int,
        keep_alive_s: float,
        drain_s: float,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = None,
    ) -> None:
        self._socket = _bind(host, port)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            loop="none",  # the thread makes its own uvloop loop
            http="httptools",
            ws="none",
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
            server_header=False,
            timeout_keep_alive=max(1, round(keep_alive_s)),
            # uvicorn answers 503 once the connections (the asking one included) reach the limit: +1 admits them all
            limit_concurrency=max_connections + 1 if max_connections is not None else None,
            timeout_graceful_shutdown=max(1, int(drain_s)),
        )
        config.load()
        config.ssl = ssl_context  # our own context, so that certificate reloads reach it (None: plain HTTP)
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._run, name="rest", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop listening, close idle connections, let requests in flight finish (up to ``timeout``)."""
        if not self._thread.is_alive():
            self._socket.close()
            return
        self._server.should_exit = True
        self._thread.join(timeout + 1)
        if self._thread.is_alive():
            log.warning("the REST server did not stop within %.0f s", timeout)

    def _run(self) -> None:
        try:
            import uvloop

            loop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - not on Windows
            loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._socket]))
        except Exception:
            log.exception("the REST server failed")
        finally:
            loop.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # no SO_REUSEPORT: a second daemon must fail
        sock.bind((host.strip("[]"), port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {host}:{port} (REST): {exc.strerror or exc}") from exc
    sock.set_inheritable(False)
    return sock


def build_rest_server(
    data_plane: DataPlane,
    *,
    host: str,
    port: int,
    workers: int,
    max_body_bytes: int,
    gate: Gate,
    drain_s: float,
    metrics: RequestMetrics | None = None,
    metrics_page: Callable[[], tuple[bytes, str]] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    api_key: ApiKey | None = None,
    max_connections: int | None = None,
    keep_alive_s: float = KEEP_ALIVE_S,
) -> RestServer:
    """TF Serving REST and KServe v2 REST on one port (and /metrics when ``metrics_page`` is given)."""
    routes = [*TfServingRest(data_plane).routes(), *KServeRest(data_plane).routes()]
    if metrics_page is not None:

        def metrics_route(request: Request, params: dict[str, str]) -> Response:
            body, content_type = metrics_page()
            return Response(200, body, content_type)

        routes.append(route("GET", "/metrics", metrics_route, gated=False))
    pool = TurnPool(workers, "rest")  # a request waiting for a model's place lends its turn (ovmsd.serving.concurrency)
    app = RestApp(
        Router(routes), gate=gate, workers=pool, max_body_bytes=max_body_bytes, metrics=metrics, api_key=api_key
    )
    return RestServer(
        app,
        host=host,
        port=port,
        keep_alive_s=keep_alive_s,
        drain_s=drain_s,
        ssl_context=ssl_context,
        max_connections=max_connections,
    )
