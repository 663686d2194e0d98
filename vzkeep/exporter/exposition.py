"""The ``/metrics`` body: prometheus_client's own formats and negotiation, formatted once per snapshot.

``choose_encoder`` picks the format from the ``Accept`` header (OpenMetrics 1.0 for Prometheus, the 0.0.4
text format otherwise) and ``gzip_accepted`` reads ``Accept-Encoding``, exactly as prometheus_client's
``MetricsHandler`` does. What differs: a body is formatted once per (snapshot, format, encoding) and then
served from memory, so a scrape of 5,000 guests costs a dictionary lookup, not a formatting pass. The poll
thread formats Prometheus' own choice right after each poll (``warm``). Each family of the cluster's data
(guests, archives, attempts, jobs: tens of thousands of series) is formatted again only when what it reads
changed; the few series that change with every poll (the exporter's health, the clock, the process) are
formatted each time and put in front.

Besides the snapshot's collectors the registry holds ``vzkeep_build_info`` and prometheus_client's process,
platform and GC collectors; they are sampled when a body is formatted, i.e. once per poll.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from vzkeep.exporter.metrics import DATA_COLLECTORS, LIVE_COLLECTORS, inputs_of
from vzkeep.exporter.snapshot import Snapshot

# What Prometheus 2.x sends (scrape/scrape.go acceptHeader): formatted ahead, right after each poll.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
GZIP_LEVEL = 6  # zlib's default: most of level 9's gain at a fraction of its time
OPENMETRICS_EOF = b"# EOF\n"


def version() -> str:
    """The installed vzkeep's version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("vzkeep")
    except PackageNotFoundError:  # running from a source tree that is not installed
        from vzkeep import __version__

        return __version__


class BuildInfoCollector(Collector):
    """``vzkeep_build_info{version="0.1.0"} 1``: which vzkeep serves these metrics."""

    def __init__(self) -> None:
        self.version = version()

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("vzkeep_build_info", "The vzkeep version of this exporter; always 1",
                                 labels=["version"])
        info.add_metric([self.version], 1)
        yield info


class Exposition:
    """Bodies of ``/metrics`` for the current snapshot, by (content type, gzip)."""

    def __init__(self) -> None:
        self._process = [ProcessCollector(registry=None), PlatformCollector(registry=None),
                         GCCollector(registry=CollectorRegistry()), BuildInfoCollector()]
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._bodies: dict[tuple[str, bool], bytes] = {}
        # (collector, content type) -> (its inputs, its formatted families)
        self._parts: dict[tuple[type[Collector], str], tuple[tuple[object, ...], bytes]] = {}

    def registry(self, snapshot: Snapshot) -> CollectorRegistry:
        """Every series of a snapshot (what the bodies hold)."""
        return _registry([*self._live(snapshot), *(kind(snapshot) for kind in DATA_COLLECTORS)])

    def _live(self, snapshot: Snapshot) -> list[Collector]:
        return [*(kind(snapshot) for kind in LIVE_COLLECTORS), *self._process]

    def _format(self, snapshot: Snapshot, encoder: Callable[[Collector], bytes], content_type: str) -> bytes:
        parts = [encoder(_registry(self._live(snapshot)))]
        for kind in DATA_COLLECTORS:
            inputs = inputs_of(kind, snapshot)
            with self._lock:
                known = self._parts.get((kind, content_type))
            if known is None or known[0] != inputs:
                known = (inputs, encoder(_registry([kind(snapshot)])))
                with self._lock:
                    self._parts[(kind, content_type)] = known
            parts.append(known[1])
        # One exposition: OpenMetrics ends once, after the last family.
        return b"".join(part.removesuffix(OPENMETRICS_EOF) for part in parts) + (
            OPENMETRICS_EOF if parts[-1].endswith(OPENMETRICS_EOF) else b"")

    def body(self, snapshot: Snapshot, accept: str | None, accept_encoding: str | None) -> tuple[str, bool, bytes]:
        """(content type, gzipped, body) for a request's ``Accept`` and ``Accept-Encoding`` headers."""
        encoder, content_type = choose_encoder(accept or "")
        zipped = gzip_accepted(accept_encoding or "")
        key = (content_type, zipped)
        with self._lock:
            if snapshot is not self._snapshot:
                self._snapshot, self._bodies = snapshot, {}
            cached = self._bodies.get(key)
        if cached is None:
            # Formatted outside the lock: a scrape of another format never waits for this one.
            cached = self._format(snapshot, encoder, content_type)
            if zipped:
                cached = gzip.compress(cached, compresslevel=GZIP_LEVEL)
            with self._lock:
                if snapshot is self._snapshot:
                    self._bodies[key] = cached
        return content_type, zipped, cached

    def warm(self, snapshot: Snapshot) -> None:
        """Format what Prometheus asks for, so its next scrape is served from memory."""
        self.body(snapshot, PROMETHEUS_ACCEPT, "gzip")


def _registry(collectors: list[Collector]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return registry
