"""The REST routes: a method and a path pattern to a handler, with what the request metrics need to know."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ovmsd.api.rest.http import Request, Response, error_response

Handler = Callable[[Request, dict[str, str]], Response]
# answers on the event loop, or None to leave the request to ``handler`` on the request threads
LoopHandler = Callable[[Request, dict[str, str]], Awaitable[Response | None]]

# path segments: a model name (anything but "/" and ":"), a version
MODEL = r"(?P<model>[^/:]+)"
VERSION = r"(?:/versions/(?P<version>[^/:]+))?"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    api: str = ""  # TensorFlowServing, KServe: labels the request metrics (with metric)
    metric: str | None = None  # the method label (Predict, ModelInfer...); None: not counted per model
    pooled: bool = False  # runs on the REST worker threads (inference, reloads); else on the event loop
    gated: bool = True  # refused once the daemon stops; health and metrics are not
    on_loop: LoopHandler | None = None  # a pooled route's event-loop handler, tried first


def route(method: str, path: str, handler: Handler, **options: object) -> Route:
    return Route(method, re.compile(path + r"\Z"), handler, **options)  # type: ignore[arg-type]


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self._routes = routes

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | Response:
        allowed = []
        for candidate in self._routes:
            found = candidate.pattern.match(path)
            if found is None:
                continue
            if candidate.method == method:
                return candidate, {k: v for k, v in found.groupdict().items() if v is not None}
            allowed.append(candidate.method)
        if allowed:
            response = error_response(405, f"Method {method} is not allowed for {path}; use {', '.join(allowed)}")
            response.headers.append(("allow", ", ".join(allowed)))
            return response
        return error_response(404, f"Not Found: no endpoint {method} {path}")
