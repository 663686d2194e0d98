"""``proxmoxve:user/token:Token`` and ``proxmoxve:user/tokenLegacy:TokenLegacy`` (TF ``proxmox_user_token``).

bpg ``fwprovider/access/resource_user_token.go`` over ``proxmox/access/user_token.go`` and
``user_token_types.go``; every request goes to ``/access/users/<user>/token/<name>``:

- create: ``POST`` with ``comment`` and ``expire`` (when set) and ``privsep`` (0/1, default 1);
- read: ``GET``;
- update: ``PUT`` with ``comment``, ``privsep`` and ``expire`` (0 clears a previous one);
- delete: ``DELETE``.

The create answer carries the secret once: ``value`` is ``<full-tokenid>=<value>``, a secret output.
``user_id`` and ``token_name`` are ForceNew.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from vzkeep.apply.http import PveHttpError, flag, path_escape
from vzkeep.apply.resources.base import Applied, ClusterView, Context, Declared, Inputs, ProviderError, ResourceKind


class Token(ResourceKind):
    tokens = ("proxmoxve:user/token:Token", "proxmoxve:user/tokenLegacy:TokenLegacy")
    title = "API token"
    source = "bpg fwprovider/access/resource_user_token.go; proxmox/access/user_token.go, user_token_types.go"
    replace_on = frozenset({"userId", "tokenName"})

    def pve_id(self, inputs: Inputs) -> str:
        return f"{inputs['userId']}!{inputs['tokenName']}"

    def declare(self, inputs: Inputs, declared: Declared) -> None:
        declared.tokens.add(self.pve_id(inputs))

    def preflight(self, inputs: Inputs, view: ClusterView, declared: Declared) -> list[str]:
        user, name = str(inputs["userId"]), str(inputs["tokenName"])
        if user not in view.users():
            if user not in declared.users:
                return [f"user '{user}' does not exist"]  # pve-access-control src/PVE/API2/User.pm
            return []
        if name in view.tokens(user):
            return ["Token already exists."]  # pve-access-control src/PVE/API2/User.pm generate_token
        return []

    def _path(self, inputs: Inputs) -> str:
        return f"access/users/{path_escape(inputs['userId'])}/token/{path_escape(inputs['tokenName'])}"

    def body(self, inputs: Inputs, *, clear_expire: bool = False) -> tuple[tuple[str, str], ...]:
        pairs = []
        if inputs.get("comment") is not None:
            pairs.append(("comment", str(inputs["comment"])))
        if inputs.get("expirationDate"):
            when = datetime.fromisoformat(str(inputs["expirationDate"]).replace("Z", "+00:00"))
            pairs.append(("expire", str(int(when.timestamp()))))
        elif clear_expire:
            pairs.append(("expire", "0"))
        pairs.append(("privsep", flag(bool(inputs.get("privilegesSeparation", True)))))
        return tuple(pairs)

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        try:
            data = ctx.pve.call("POST", self._path(inputs), self.body(inputs)) or {}
        except PveHttpError as err:
            raise ProviderError("Error creating user token", f"error creating user token: {err}") from None
        value = f"{data.get('full-tokenid', self.pve_id(inputs))}={data.get('value', '')}"
        return Applied(self.pve_id(inputs), {**inputs, "value": value,
                                             "privilegesSeparation": bool(inputs.get("privilegesSeparation", True))})

    def read(self, ctx: Context, applied: Applied, inputs: Inputs) -> Applied | None:
        try:
            data: dict[str, Any] = ctx.pve.call("GET", self._path(inputs)) or {}
        except PveHttpError as err:
            if err.does_not_exist:
                return None
            raise ProviderError("Error reading user token", f"error retrieving user token: {err}") from None
        out = {**applied.outputs, **inputs, "comment": data.get("comment"),
               "privilegesSeparation": data.get("privsep") in (1, True, "1")}
        return Applied(applied.id, out)

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        try:
            ctx.pve.call("PUT", self._path(new), self.body(new, clear_expire=bool(old.get("expirationDate"))))
        except PveHttpError as err:
            raise ProviderError("Error updating user token", f"error updating user token: {err}") from None
        # The value is known only from the create: the state keeps it (resource_user_token.go UseStateForUnknown).
        return Applied(applied.id, {**applied.outputs, **new})

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        try:
            ctx.pve.call("DELETE", self._path(inputs))
        except PveHttpError as err:
            raise ProviderError("Error deleting user token", f"error deleting user token: {err}") from None
