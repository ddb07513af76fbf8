"""The config's ``monitoring.metrics.metrics_list``: export only the metric families it names.

The filter wraps the registry at the HTTP endpoint, where Prometheus scrapes, instead of leaving metrics
unregistered: the request path stays the same whatever is exported (one lookup, one increment, two observations),
and a family filtered out costs nothing but its updates.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector


class _Collecting(Protocol):
    def collect(self) -> Iterable[Metric]: ...


class FamilyFilter(Collector):
    """What ``registry`` collects, limited to the families named in ``families`` (None: everything).

    prometheus_client's HTTP handler takes any collector as its registry; it also calls ``restricted_registry``
    when a scrape asks for ``?name[]=...``, so that is narrowed the same way.
    """

    def __init__(self, registry: CollectorRegistry | _Collecting, families: Collection[str] | None = None) -> None:
        self._registry = registry
        self._families = frozenset(families) if families is not None else None

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            if self._families is None or family.name in self._families:
                yield family

    def restricted_registry(self, names: Iterable[str]) -> FamilyFilter:
        """For ``?name[]=``: sample names (``ovms_requests_success_total``), as prometheus_client's registry takes."""
        if not isinstance(self._registry, CollectorRegistry):
            raise TypeError("only a filter over a CollectorRegistry can be restricted")
        return FamilyFilter(self._registry.restricted_registry(names), self._families)
