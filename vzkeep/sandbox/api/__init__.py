"""The emulated PVE API (reference/pve.md §4), one module per area; ``build_router`` wires them up."""

from __future__ import annotations

from vzkeep.sandbox.api.router import Router


def build_router() -> Router:
    from vzkeep.sandbox.api import access, backup_jobs, cluster, config_update, guests, nodes, storage, tasks

    router = Router()
    for area in (access, cluster, nodes, storage, guests, config_update, backup_jobs, tasks):
        area.register(router)
    return router
