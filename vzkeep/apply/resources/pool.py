"""``proxmoxve:index/poolLegacy:PoolLegacy`` (TF ``proxmox_virtual_environment_pool``).

bpg ``proxmoxtf/resource/pool/pool.go`` (create, read, update, delete) over ``proxmox/pools/pool.go``
and ``proxmox/pools/pool_types.go``:

| step   | request                                  | form                                   |
|--------|------------------------------------------|----------------------------------------|
| create | ``POST /pools``                          | ``comment`` (always, default ``""``), ``poolid`` |
| read   | ``GET /pools?poolid=<id>``               | — (an empty list: gone)                |
| update | ``PUT /pools?poolid=<id>``               | ``comment``                            |
| delete | ``DELETE /pools?poolid=<id>``            | — ("does not exist" is success)        |

Create and update end with a read. ``pool_id`` is ForceNew.
"""

from __future__ import annotations

from typing import Any

from vzkeep.apply.http import PveHttpError, form, path_escape
from vzkeep.apply.resources.base import Applied, ClusterView, Context, Declared, Inputs, ResourceKind, fail


class Pool(ResourceKind):
    tokens = ("proxmoxve:index/poolLegacy:PoolLegacy",)
    title = "pool"
    source = "bpg proxmoxtf/resource/pool/pool.go, proxmox/pools/pool.go"
    replace_on = frozenset({"poolId"})

    def pve_id(self, inputs: Inputs) -> str:
        return str(inputs["poolId"])

    def declare(self, inputs: Inputs, declared: Declared) -> None:
        declared.pools.add(self.pve_id(inputs))

    def preflight(self, inputs: Inputs, view: ClusterView, declared: Declared) -> list[str]:
        pool = self.pve_id(inputs)
        if pool in view.pools():
            # pve-manager PVE/API2/Pool.pm create_pool, inside lock_user_config(…, "create pool failed")
            return [f"create pool failed: pool '{pool}' already exists"]
        return []

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        pool = self.pve_id(inputs)
        try:
            ctx.pve.call("POST", "pools", form(("comment", inputs.get("comment", "")), ("poolid", pool)))
        except PveHttpError as err:
            raise fail("", err, "error creating pool") from None
        return self._read_or_fail(ctx, pool, inputs)

    def read(self, ctx: Context, applied: Applied, inputs: Inputs) -> Applied | None:
        try:
            found = ctx.pve.call("GET", f"pools?poolid={path_escape(applied.id)}") or []
        except PveHttpError as err:
            if err.does_not_exist:
                return None
            raise fail("", err, "error getting pool") from None
        if not found:
            return None  # bpg GetPool: zero pools is ErrResourceDoesNotExist
        return Applied(applied.id, _outputs(applied.id, found[0]))

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        try:
            ctx.pve.call("PUT", f"pools?poolid={path_escape(applied.id)}", form(("comment", new.get("comment", ""))))
        except PveHttpError as err:
            raise fail("", err, "error updating pool") from None
        return self._read_or_fail(ctx, applied.id, new)

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        try:
            ctx.pve.call("DELETE", f"pools?poolid={path_escape(applied.id)}")
        except PveHttpError as err:
            if not err.does_not_exist:
                raise fail("", err, "error deleting pool") from None

    def _read_or_fail(self, ctx: Context, pool: str, inputs: Inputs) -> Applied:
        found = self.read(ctx, Applied(pool, {}), inputs)
        return found or Applied(pool, {"poolId": pool, "comment": inputs.get("comment", ""), "members": []})


def _outputs(pool: str, data: dict[str, Any]) -> dict[str, Any]:
    """poolRead: the comment ("" when PVE has none) and the members, sorted by id."""
    members = sorted(data.get("members") or [], key=lambda m: str(m.get("id", "")))
    return {
        "poolId": pool,
        "comment": data.get("comment") or "",
        "members": [{"id": m.get("id", ""), "nodeName": m.get("node", ""), "datastoreId": m.get("storage", ""),
                     "type": m.get("type", ""), "vmId": int(m.get("vmid") or 0)} for m in members],
    }
