"""``proxmoxve:index/acl:Acl`` and ``proxmoxve:index/aclLegacy:AclLegacy`` (TF ``proxmox_acl`` /
``proxmox_virtual_environment_acl``): one entry of PVE's access control list.

bpg ``fwprovider/access/resource_acl.go`` and ``model_acl.go`` over ``proxmox/access/acl.go`` and
``acl_types.go``. PVE has no ACL object to create: every change is ``PUT /access/acl``.

- create: ``PUT /access/acl`` with ``path``, ``propagate`` (0/1, default 1), ``roles`` and one of
  ``users``/``tokens``/``groups``;
- read: ``GET /access/acl``, the entry with the same type, id, path and role (none: gone);
- update: the old entry with ``delete=1``, then the new one;
- delete: the entry with ``delete=1``.

The id is ``{path}?{entity}?{role}``; everything but ``propagate`` is ForceNew.
"""

from __future__ import annotations

from vzkeep.apply.http import PveHttpError, flag
from vzkeep.apply.resources.base import Applied, ClusterView, Context, Declared, Inputs, ProviderError, ResourceKind

_ENTITY = (("userId", "users", "user"), ("tokenId", "tokens", "token"), ("groupId", "groups", "group"))


class Acl(ResourceKind):
    tokens = ("proxmoxve:index/acl:Acl", "proxmoxve:index/aclLegacy:AclLegacy")
    title = "ACL"
    source = "bpg fwprovider/access/resource_acl.go, model_acl.go; proxmox/access/acl.go, acl_types.go"
    replace_on = frozenset({"path", "roleId", "userId", "tokenId", "groupId"})

    def pve_id(self, inputs: Inputs) -> str:
        entity = "".join(str(inputs.get(key) or "") for key in ("groupId", "tokenId", "userId"))
        return f"{inputs['path']}?{entity}?{inputs['roleId']}"  # model_acl.go generateID

    def describe(self, inputs: Inputs) -> str:
        _, _, entity = self._entity(inputs)
        return f"ACL {inputs['path']} {inputs['roleId']} for {entity}"

    def preflight(self, inputs: Inputs, view: ClusterView, declared: Declared) -> list[str]:
        problems = []
        role = str(inputs["roleId"])
        if role not in view.roles() and role not in declared.roles:
            # pve-access-control src/PVE/API2/ACL.pm update_acl, lock_user_config(…, "ACL update failed")
            problems.append(f"ACL update failed: role '{role}' does not exist")
        key, _, entity = self._entity(inputs)
        if key == "userId" and entity not in view.users() and entity not in declared.users:
            problems.append(f"ACL update failed: user '{entity}' does not exist")  # ACL.pm
        if key == "tokenId" and entity not in declared.tokens:
            user, _, name = entity.partition("!")
            if name not in view.tokens(user):
                # ACL.pm via PVE::AccessControl::check_token_exist
                problems.append(f"ACL update failed: no such token '{name}' for user '{user}'")
        return problems

    def body(self, inputs: Inputs, *, delete: bool) -> tuple[tuple[str, str], ...]:
        """model_acl.go intoUpdateBody (+ ``delete=1`` to remove)."""
        _, field, entity = self._entity(inputs)
        pairs = [("path", str(inputs["path"])), ("propagate", flag(bool(inputs.get("propagate", True)))),
                 ("roles", str(inputs["roleId"])), (field, entity)]
        if delete:
            pairs.insert(0, ("delete", "1"))
        return tuple(pairs)

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        try:
            ctx.pve.call("PUT", "access/acl", self.body(inputs, delete=False))
        except PveHttpError as err:
            raise ProviderError("Unable to create ACL", f"API call failed: failed to update access control list: "
                                                        f"{err}") from None
        return Applied(self.pve_id(inputs), {**inputs, "propagate": bool(inputs.get("propagate", True))})

    def read(self, ctx: Context, applied: Applied, inputs: Inputs) -> Applied | None:
        try:
            entries = ctx.pve.call("GET", "access/acl") or []
        except PveHttpError as err:
            raise ProviderError("Unable to read ACL", f"API call failed: failed to get access control list: "
                                                      f"{err}") from None
        _, _, entity = self._entity(inputs)
        kind = {"userId": "user", "tokenId": "token", "groupId": "group"}[self._entity(inputs)[0]]
        for entry in entries:
            if (entry.get("type") == kind and entry.get("ugid") == entity and entry.get("path") == inputs["path"]
                    and entry.get("roleid") == inputs["roleId"]):
                propagate = entry.get("propagate")
                return Applied(applied.id, {**inputs, "propagate": True if propagate is None
                                            else propagate in (1, True, "1")})
        return None

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        try:
            ctx.pve.call("PUT", "access/acl", self.body(old, delete=True))
        except PveHttpError as err:
            raise ProviderError("Unable to delete old ACL", f"API call failed: {err}") from None
        return self.create(ctx, new)

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        try:
            ctx.pve.call("PUT", "access/acl", self.body(inputs, delete=True))
        except PveHttpError as err:
            raise ProviderError("Unable to delete old ACL", f"API call failed: {err}") from None

    @staticmethod
    def _entity(inputs: Inputs) -> tuple[str, str, str]:
        for key, field, _ in _ENTITY:
            if inputs.get(key):
                return key, field, str(inputs[key])
        raise ProviderError("Invalid ACL", "one of user_id, token_id or group_id is required")
