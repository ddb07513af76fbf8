"""Counting one request in the request metrics, the same way on every front end.

A request for a model that does not exist gets no series (clients cannot grow the label set); a failed request is
counted against the version that was serving when the failure happened, else the version it asked for.
"""

from __future__ import annotations

import logging

from ovmsd.errors import ErrorKind, ServingError
from ovmsd.observe.metrics import RequestMetrics

log = logging.getLogger(__name__)


def count_request(
    metrics: RequestMetrics,
    *,
    api: str,
    interface: str,
    method: str,
    model: str,
    version: str,  # the version that served, or the one asked for ("" for the default)
    error: ServingError | None,
    failed: bool,
    started_ns: int,
) -> None:
    if error is not None and error.kind == ErrorKind.MODEL_MISSING:
        return
    if error is not None and error.version is not None:
        version = str(error.version)
    try:
        metrics.series(model, version, api, interface, method).finished(not failed, started_ns)
    except Exception:  # metrics must never fail a request
        log.exception("counting a %s request failed", method)
