"""The ``/metrics`` body: prometheus_client's own formats and negotiation, formatted once per snapshot.

``choose_encoder`` picks the format from the ``Accept`` header (OpenMetrics 1.0 for Prometheus, the 0.0.4
text format otherwise) and ``gzip_accepted`` reads ``Accept-Encoding``, exactly as prometheus_client's
``MetricsHandler`` does. What differs: a body is formatted once per (snapshot, format, encoding) and then
served from memory, so a scrape of 5,000 guests costs a dictionary lookup, not a formatting pass. The poll
thread formats Prometheus' own choice right after each poll (``warm``).

Besides the snapshot's collectors the registry holds ``vzkeep_build_info`` and prometheus_client's process,
platform and GC collectors; they are sampled when a body is formatted, i.e. once per poll.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from vzkeep.exporter.metrics import collectors
from vzkeep.exporter.snapshot import Snapshot

# What Prometheus 2.x sends (scrape/scrape.go acceptHeader): formatted ahead, right after each poll.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
GZIP_LEVEL = 6  # zlib's default: most of level 9's gain at a fraction of its time


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

    def registry(self, snapshot: Snapshot) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        for collector in [*collectors(snapshot), *self._process]:
            registry.register(collector)
        return registry

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
            cached = encoder(self.registry(snapshot))
            if zipped:
                cached = gzip.compress(cached, compresslevel=GZIP_LEVEL)
            with self._lock:
                if snapshot is self._snapshot:
                    self._bodies[key] = cached
        return content_type, zipped, cached

    def warm(self, snapshot: Snapshot) -> None:
        """Format what Prometheus asks for, so its next scrape is served from memory."""
        self.body(snapshot, PROMETHEUS_ACCEPT, "gzip")
