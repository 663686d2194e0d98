"""`vzkeep exporter`: Prometheus metrics about backups, polled from the PVE API (docs/exporter.md).

One module per concern:
- ``api``: the seam to PVE (``ApiGet``); ``resources``, ``jobs``, ``tasks``, ``archives``, ``clock``,
  ``privileges``, ``results``: one part of a poll each; ``poller``: one poll → a plain ``Snapshot``
  (``snapshot``);
- ``metrics``: ``Snapshot`` → Prometheus collectors, one per concern; ``exposition``: ``/metrics`` bodies;
  ``status_page``: the HTML page at ``/``; ``server``: the poll loop and the HTTP server (``Exporter``).

For other modules::

    from vzkeep.connection import ConnectionOptions, connect
    from vzkeep.exporter import Poller, proxmoxer_get, render

    snapshot = Poller(proxmoxer_get(connect(ConnectionOptions(sandbox=path, read_only=True)))).poll()
    text = render(snapshot).decode()
"""

from __future__ import annotations

from vzkeep.exporter.api import ApiGet, proxmoxer_get
from vzkeep.exporter.metrics import render
from vzkeep.exporter.poller import Poller
from vzkeep.exporter.server import DEFAULT_LISTEN, Exporter
from vzkeep.exporter.snapshot import Snapshot

__all__ = ["DEFAULT_LISTEN", "ApiGet", "Exporter", "Poller", "Snapshot", "proxmoxer_get", "render"]
