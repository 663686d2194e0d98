"""``proxmoxve:index/roleLegacy:RoleLegacy`` (TF ``proxmox_virtual_environment_role``).

bpg ``proxmoxtf/resource/role.go`` over ``proxmox/access/roles.go`` and ``roles_types.go``:

| step   | request                          | form                                                |
|--------|----------------------------------|-----------------------------------------------------|
| create | ``POST /access/roles``           | ``privs`` (comma), ``roleid``                        |
| read   | ``GET /access/roles/<id>``       | — (an object privilege → 1, read back sorted)       |
| update | ``PUT /access/roles/<id>``       | ``privs``                                           |
| delete | ``DELETE /access/roles/<id>``    | — ("does not exist" is success)                     |

``privileges`` is a Terraform SDK set, so ``privs`` lists them in hash order. ``role_id`` is ForceNew.
"""

from __future__ import annotations

from typing import Any

from vzkeep.apply.http import PveHttpError, comma, path_escape
from vzkeep.apply.resources.base import Applied, ClusterView, Context, Declared, Inputs, ResourceKind, fail
from vzkeep.apply.resources.tfset import sdk_set_order


class Role(ResourceKind):
    tokens = ("proxmoxve:index/roleLegacy:RoleLegacy",)
    title = "role"
    source = "bpg proxmoxtf/resource/role.go; proxmox/access/roles.go, roles_types.go"
    replace_on = frozenset({"roleId"})

    def pve_id(self, inputs: Inputs) -> str:
        return str(inputs["roleId"])

    def declare(self, inputs: Inputs, declared: Declared) -> None:
        declared.roles.add(self.pve_id(inputs))

    def preflight(self, inputs: Inputs, view: ClusterView, declared: Declared) -> list[str]:
        role = self.pve_id(inputs)
        if role in view.roles():
            # pve-access-control src/PVE/API2/Role.pm create_role, lock_user_config(…, "create role failed")
            return [f"create role failed: role '{role}' already exists"]
        return []

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        role = self.pve_id(inputs)
        try:
            ctx.pve.call("POST", "access/roles", (("privs", _privs(inputs)), ("roleid", role)))
        except PveHttpError as err:
            raise fail("", err, "error creating role") from None
        return self.read(ctx, Applied(role, {}), inputs) or Applied(role, dict(inputs))

    def read(self, ctx: Context, applied: Applied, inputs: Inputs) -> Applied | None:
        try:
            data = ctx.pve.call("GET", f"access/roles/{path_escape(applied.id)}")
        except PveHttpError as err:
            if err.does_not_exist:
                return None
            raise fail("", err, "error getting role") from None
        return Applied(applied.id, {"roleId": applied.id, "privileges": _privileges(data)})

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        try:
            ctx.pve.call("PUT", f"access/roles/{path_escape(applied.id)}", (("privs", _privs(new)),))
        except PveHttpError as err:
            raise fail("", err, "error updating role") from None
        return self.read(ctx, applied, new) or Applied(applied.id, dict(new))

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        try:
            ctx.pve.call("DELETE", f"access/roles/{path_escape(applied.id)}")
        except PveHttpError as err:
            if not err.does_not_exist:
                raise fail("", err, "error deleting role") from None


def _privs(inputs: Inputs) -> str:
    return comma(sdk_set_order(inputs.get("privileges") or []))


def _privileges(data: Any) -> list[str]:
    """common_types.go CustomPrivileges.UnmarshalJSON: a comma string, or an object of privilege → 0/1."""
    if isinstance(data, str):
        names = [p for p in data.split(",") if p]
    elif isinstance(data, dict):
        names = [name for name, value in data.items() if float(value) >= 1]
    else:
        names = []
    return sorted(names)
