"""The emulated PVE API, in layers: the published schema as data (``pve_schema``, checked by
``validation`` with the ``formats`` PVE registers), access control (``access``), then one handler
module per PVE API area holding only what PVE's Perl code does beyond the schema. ``build_handlers``
wires the handlers; ``dispatch`` runs a request through them."""

from __future__ import annotations

from vzkeep.sandbox.api.router import Handlers


def build_handlers() -> Handlers:
    from vzkeep.sandbox.api import (
        access_control,
        backup_jobs,
        cluster,
        config_update,
        guests,
        nodes,
        pools,
        storage,
        storage_config,
        tasks,
    )

    handlers = Handlers()
    for area in (access_control, cluster, pools, nodes, storage, storage_config, guests, config_update, backup_jobs,
                 tasks):
        area.register(handlers)
    return handlers
