"""``proxmoxve:index/userLegacy:UserLegacy`` (TF ``proxmox_virtual_environment_user``).

bpg ``proxmoxtf/resource/user.go`` (``userCreate``, ``userRead``, ``userUpdate``, ``userDelete``) over
``proxmox/access/users.go``, ``users_types.go`` and, for the ``acl`` blocks, ``acl.go``/``acl_types.go``:

- create: ``POST /access/users`` with ``comment``, ``email``, ``enable`` (0/1, default 1), ``expire``
  (unix seconds, default 0), ``firstname``, ``groups`` (comma, left out when empty), ``keys``,
  ``lastname``, ``password`` (left out when empty) and ``userid`` (the empty strings are sent); then
  ``PUT /access/acl`` (``delete=0``, ``path``, ``propagate``, ``roles``, ``users``) per ``acl`` block;
- read: ``GET /access/users/<id>`` (and ``GET /access/acl`` when there are blocks);
- update: ``PUT /access/users/<id>`` with the same fields but ``userid`` and ``password``;
  ``PUT /access/password`` when the password changed; the old ACL blocks deleted, the new ones added;
- delete: ``PUT /access/acl`` with ``delete=1`` per block, then ``DELETE /access/users/<id>``.

``user_id`` is ForceNew. ``groups`` is a Terraform SDK set: its elements come in hash order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vzkeep.apply.http import PveHttpError, comma, flag, path_escape
from vzkeep.apply.resources.base import Applied, ClusterView, Context, Declared, Inputs, ResourceKind, fail
from vzkeep.apply.resources.tfset import sdk_set_order


class User(ResourceKind):
    tokens = ("proxmoxve:index/userLegacy:UserLegacy",)
    title = "user"
    source = "bpg proxmoxtf/resource/user.go; proxmox/access/users.go, users_types.go, acl.go"
    replace_on = frozenset({"userId"})

    def pve_id(self, inputs: Inputs) -> str:
        return str(inputs["userId"])

    def declare(self, inputs: Inputs, declared: Declared) -> None:
        declared.users.add(self.pve_id(inputs))

    def preflight(self, inputs: Inputs, view: ClusterView, declared: Declared) -> list[str]:
        user = self.pve_id(inputs)
        problems = []
        if user in view.users():
            # pve-access-control src/PVE/API2/User.pm create_user, lock_user_config(…, "create user failed")
            problems.append(f"create user failed: user '{user}' already exists")
        for block in inputs.get("acls") or []:
            role = block.get("roleId")
            if role not in view.roles() and role not in declared.roles:
                # pve-access-control src/PVE/API2/ACL.pm update_acl, lock_user_config(…, "ACL update failed")
                problems.append(f"ACL update failed: role '{role}' does not exist")
        return problems

    def create_form(self, inputs: Inputs) -> tuple[tuple[str, str], ...]:
        return (*self._fields(inputs), *((("password", inputs["password"]),) if inputs.get("password") else ()),
                ("userid", self.pve_id(inputs)))

    def update_form(self, inputs: Inputs) -> tuple[tuple[str, str], ...]:
        return self._fields(inputs)

    def _fields(self, inputs: Inputs) -> tuple[tuple[str, str], ...]:
        groups = sdk_set_order(inputs.get("groups") or [])
        pairs = [("comment", str(inputs.get("comment", ""))), ("email", str(inputs.get("email", ""))),
                 ("enable", flag(bool(inputs.get("enabled", True)))), ("expire", str(_expire(inputs))),
                 ("firstname", str(inputs.get("firstName", "")))]
        if groups:
            pairs.append(("groups", comma(groups)))
        pairs += [("keys", str(inputs.get("keys", ""))), ("lastname", str(inputs.get("lastName", "")))]
        return tuple(pairs)

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        user = self.pve_id(inputs)
        try:
            ctx.pve.call("POST", "access/users", self.create_form(inputs))
            for block in inputs.get("acls") or []:
                ctx.pve.call("PUT", "access/acl", _acl_form(block, user, delete=False))
        except PveHttpError as err:
            raise fail("", err, "error creating user") from None
        return self._read_or_fail(ctx, user, inputs)

    def read(self, ctx: Context, applied: Applied, inputs: Inputs) -> Applied | None:
        try:
            data = ctx.pve.call("GET", f"access/users/{path_escape(applied.id)}") or {}
            acls = None
            if inputs.get("acls"):
                acls = [a for a in ctx.pve.call("GET", "access/acl") or []
                        if a.get("type") == "user" and a.get("ugid") == applied.id]
        except PveHttpError as err:
            if err.does_not_exist:
                return None
            raise fail("", err, "error retrieving user") from None
        return Applied(applied.id, _outputs(applied.id, inputs, data, acls))

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        user = applied.id
        try:
            ctx.pve.call("PUT", f"access/users/{path_escape(user)}", self.update_form(new))
            if new.get("password") != old.get("password"):
                ctx.pve.call("PUT", "access/password", (("userid", user), ("password", str(new.get("password", "")))))
            for block in old.get("acls") or []:
                ctx.pve.call("PUT", "access/acl", _acl_form(block, user, delete=True))
            for block in new.get("acls") or []:
                ctx.pve.call("PUT", "access/acl", _acl_form(block, user, delete=False))
        except PveHttpError as err:
            raise fail("", err, "error updating user") from None
        return self._read_or_fail(ctx, user, new)

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        try:
            for block in inputs.get("acls") or []:
                ctx.pve.call("PUT", "access/acl", _acl_form(block, applied.id, delete=True))
            ctx.pve.call("DELETE", f"access/users/{path_escape(applied.id)}")
        except PveHttpError as err:
            if not err.does_not_exist:
                raise fail("", err, "error deleting user") from None

    def _read_or_fail(self, ctx: Context, user: str, inputs: Inputs) -> Applied:
        return self.read(ctx, Applied(user, {}), inputs) or Applied(user, {**inputs})


def _expire(inputs: Inputs) -> int:
    """``expiration_date`` is RFC 3339, default 1970-01-01T00:00:00Z; PVE takes unix seconds (0 = never)."""
    text = inputs.get("expirationDate") or "1970-01-01T00:00:00Z"
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def _acl_form(block: Inputs, user: str, *, delete: bool) -> tuple[tuple[str, str], ...]:
    """acl_types.go ACLUpdateRequestBody as user.go fills it for one ``acl`` block."""
    return (("delete", flag(delete)), ("path", str(block["path"])),
            ("propagate", flag(bool(block.get("propagate", False)))), ("roles", str(block["roleId"])),
            ("users", user))


def _outputs(user: str, inputs: Inputs, data: dict[str, Any], acls: list[dict[str, Any]] | None) -> dict[str, Any]:
    """userRead: absent strings read as "", ``enable`` as true, ``expire`` as the epoch."""
    expire = int(data.get("expire") or 0)
    out = {
        **inputs, "userId": user, "comment": data.get("comment") or "", "email": data.get("email") or "",
        "enabled": data.get("enable") in (None, 1, True, "1"),
        "expirationDate": datetime.fromtimestamp(expire, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "firstName": data.get("firstname") or "", "lastName": data.get("lastname") or "",
        "groups": sorted(data.get("groups") or []), "keys": data.get("keys") or "",
    }
    if acls is not None:
        out["acls"] = [{"path": a.get("path"), "propagate": a.get("propagate") in (1, True, "1"),
                        "roleId": a.get("roleid")} for a in acls]
    return out
