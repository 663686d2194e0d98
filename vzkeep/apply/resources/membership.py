"""``proxmoxve:pool/membership:Membership`` and ``…/membershipLegacy:MembershipLegacy`` (TF
``proxmox_pool_membership``): one guest or storage in a pool.

bpg ``fwprovider/pools/pool_membership.go`` and ``model_pool_membership.go`` over
``proxmox/pools/pool.go`` (``UpdatePool``, ``GetPool``):

- create: ``PUT /pools?poolid=<pool>`` with ``allow-move=1`` and ``vms=<vmid>`` (or ``storage=<id>``);
- read: ``GET /pools?poolid=<pool>``: gone when the member is not listed;
- update: none, every attribute is ForceNew;
- delete: ``PUT /pools?poolid=<pool>`` with ``delete=1`` and ``vms=<vmid>`` (or ``storage=<id>``).

The id is ``<pool>/vm/<vmid>`` or ``<pool>/storage/<id>``.
"""

from __future__ import annotations

from vzkeep.apply.http import PveHttpError, number, path_escape
from vzkeep.apply.resources.base import Applied, ClusterView, Context, Declared, Inputs, ProviderError, ResourceKind


class Membership(ResourceKind):
    tokens = ("proxmoxve:pool/membership:Membership", "proxmoxve:pool/membershipLegacy:MembershipLegacy")
    title = "pool member"
    source = "bpg fwprovider/pools/pool_membership.go, model_pool_membership.go; proxmox/pools/pool.go"
    replace_on = frozenset({"poolId", "vmId", "storageId"})

    def pve_id(self, inputs: Inputs) -> str:
        kind, member = self._member(inputs)
        return f"{inputs['poolId']}/{kind}/{member}"  # model_pool_membership.go generateID

    def describe(self, inputs: Inputs) -> str:
        kind, member = self._member(inputs)
        return f"{'VM' if kind == 'vm' else 'storage'} {member} in pool '{inputs.get('poolId')}'"

    def preflight(self, inputs: Inputs, view: ClusterView, declared: Declared) -> list[str]:
        problems = []
        pool = str(inputs["poolId"])
        if pool not in view.pools() and pool not in declared.pools:
            problems.append(f"update pools failed: pool '{pool}' does not exist")  # pve-manager PVE/API2/Pool.pm
        kind, member = self._member(inputs)
        if kind == "vm" and int(member) not in view.guests():
            # pve-manager PVE/API2/Pool.pm update_pool (check_perm_modify on a VM that is not there)
            problems.append(f"VM {member} does not exist")
        return problems

    def body(self, inputs: Inputs, *, delete: bool) -> tuple[tuple[str, str], ...]:
        kind, member = self._member(inputs)
        field = "vms" if kind == "vm" else "storage"
        return (("delete", "1"), (field, member)) if delete else (("allow-move", "1"), (field, member))

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        pool = str(inputs["poolId"])
        try:
            ctx.pve.call("PUT", f"pools?poolid={path_escape(pool)}", self.body(inputs, delete=False))
        except PveHttpError as err:
            raise ProviderError(f"Unable to update resource pool '{pool}'", f"error updating pool: {err}") from None
        return Applied(self.pve_id(inputs), {**inputs, "type": self._member(inputs)[0]})

    def read(self, ctx: Context, applied: Applied, inputs: Inputs) -> Applied | None:
        pool = str(inputs["poolId"])
        try:
            found = ctx.pve.call("GET", f"pools?poolid={path_escape(pool)}") or []
        except PveHttpError as err:
            raise ProviderError(f"Unable to get pool '{pool}'", f"error getting pool: {err}") from None
        kind, member = self._member(inputs)
        members = (found[0].get("members") or []) if found else []
        listed = any((kind == "vm" and str(m.get("vmid")) == member) or
                     (kind == "storage" and m.get("storage") == member) for m in members)
        return applied if listed else None

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        raise ProviderError("Update Not Supported",
                            "All attributes require replacement. This resource cannot be updated in-place")

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        pool = str(inputs["poolId"])
        try:
            ctx.pve.call("PUT", f"pools?poolid={path_escape(pool)}", self.body(inputs, delete=True))
        except PveHttpError as err:
            raise ProviderError(f"Unable to update pool '{pool}'", f"error updating pool: {err}") from None

    @staticmethod
    def _member(inputs: Inputs) -> tuple[str, str]:
        if inputs.get("vmId") is not None:
            return "vm", number(inputs["vmId"])
        if inputs.get("storageId"):
            return "storage", str(inputs["storageId"])
        raise ProviderError("Cannot determine pool membership type", "one of vm_id or storage_id is required")
