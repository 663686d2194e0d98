"""`vzkeep exporter`: Prometheus metrics about backups, polled from the PVE API (docs/exporter.md).

- ``collect``: one poll (a bounded set of API calls) → a plain ``Snapshot``; ``Poller`` caches task logs.
- ``metrics``: ``Snapshot`` → Prometheus exposition, one collector per concern (``render``).
- ``server``: background poll loop and the HTTP server that serves the last snapshot (``Exporter``).

For other modules::

    from vzkeep.connection import ConnectionOptions, connect
    from vzkeep.exporter import Poller, proxmoxer_get, render

    snapshot = Poller(proxmoxer_get(connect(ConnectionOptions(sandbox=path, read_only=True)))).poll()
    text = render(snapshot).decode()
"""

from __future__ import annotations

from vzkeep.exporter.collect import Poller, Snapshot, proxmoxer_get
from vzkeep.exporter.metrics import render
from vzkeep.exporter.server import DEFAULT_LISTEN, Exporter

__all__ = ["DEFAULT_LISTEN", "Exporter", "Poller", "Snapshot", "proxmoxer_get", "render"]
