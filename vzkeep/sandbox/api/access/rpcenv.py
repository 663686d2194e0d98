"""Who may do what: a port of pve-access-control ``src/PVE/RPCEnvironment.pm`` (``permissions``,
``check``, ``check_any``, ``check_perm_modify``, the schema's ``permissions`` declarations through
``check_api2_permissions``/``exec_api2_perm_check``, ``get_effective_permissions``) and of
``src/PVE/AccessControl.pm`` ``roles`` (propagation along the ACL path, user over group, NoAccess).

One ``RpcEnv`` serves one request (PVE builds its ACL cache per request too, ``init_request``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vzkeep.sandbox.api.access import usercfg
from vzkeep.sandbox.api.access.usercfg import Cfg
from vzkeep.sandbox.api.errors import ApiError, permission_denied
from vzkeep.sandbox.api.formats import split_list

ROOT = "root@pam"
Privs = dict[str, int]  # privilege -> propagate flag (PVE: defined = set)


@dataclass(frozen=True)
class PoolMembers:
    vms: frozenset[int]
    storage: frozenset[str]


def template_replace(template: str, params: Mapping[str, Any]) -> str:
    """pve-common ``PVE::Tools::template_replace``: ``{name}`` → the parameter, ``-`` when unset."""
    return re.sub(r"\{([^}]+)\}", lambda m: str(params.get(m.group(1)) or "-"), template)


@dataclass
class RpcEnv:
    cfg: Cfg
    pool_source: Callable[[], Mapping[str, PoolMembers]]
    _cache: dict[tuple[str, str], Privs] = field(default_factory=dict)
    _poolroles: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    _pools: Mapping[str, PoolMembers] | None = None
    _root: Privs | None = None

    @property
    def pools(self) -> Mapping[str, PoolMembers]:
        """Pool members (PVE keeps them in user.cfg; the sandbox's engine keeps them), read once per request."""
        if self._pools is None:
            self._pools = self.pool_source()
        return self._pools

    # -- roles / permissions -------------------------------------------------------------------------

    def roles(self, user: str, path: str) -> dict[str, int]:
        """``AccessControl::roles``: the roles of ``user`` (or token) on ``path``, with propagate flags."""
        if user == ROOT:
            return {"Administrator": 1}
        parts = usercfg.split_tokenid(user)
        if parts:
            token = usercfg.token_of(self.cfg, *parts)
            if token is None:
                return {}
            if not token.get("privsep"):
                return self.roles(parts[0], path)
        roles: dict[str, int] = {}
        node: dict[str, Any] | None = self.cfg["acl_root"]
        segments = [""] if path == "/" else path.split("/")
        for index, segment in enumerate(segments):
            final = index == len(segments) - 1
            if segment != "":
                node = ((node or {}).get("children") or {}).get(segment)
            new = self._applied((node or {}).get("tokens", {}).get(user), final)
            if new is None:
                new = self._applied((node or {}).get("users", {}).get(user), final)
            if new is None:
                for group, assigned in ((node or {}).get("groups") or {}).items():
                    if user in (self.cfg["groups"].get(group, {}).get("users") or {}):
                        applied = self._applied(assigned, final)
                        if applied:
                            new = {**(new or {}), **applied}
            if new:
                roles = new
        if "NoAccess" in roles:
            return {"NoAccess": roles["NoAccess"]}
        return roles

    @staticmethod
    def _applied(assigned: dict[str, int] | None, final: bool) -> dict[str, int] | None:
        if not assigned:
            return None
        new = {role: propagate for role, propagate in assigned.items() if final or propagate}
        return new or None

    def permissions(self, user: str, path: str) -> Privs:
        """``RPCEnvironment::permissions``: the privileges set on ``path``; privsep tokens get the
        intersection of the token's and the owning user's."""
        if user == ROOT:  # "root can do anything"
            if self._root is None:
                self._root = dict.fromkeys(self.cfg["roles"]["Administrator"], 1)
            return self._root
        parts = usercfg.split_tokenid(user)
        if parts:
            token = usercfg.token_of(self.cfg, *parts)
            if token is None:
                return {}
            user_perms = self.permissions(parts[0], path)
            if not token.get("privsep"):
                return user_perms
        elif not usercfg.valid_username(user):
            return {}
        key = (user, path)
        if key not in self._cache:
            self._cache[key] = self._compile(user, path, parts)
        return self._cache[key]

    def _compile(self, user: str, path: str, parts: tuple[str, str] | None) -> Privs:
        roles = self.roles(user, path)
        pool_roles = self._pool_roles(user).get(path)
        if pool_roles and "NoAccess" not in roles:
            if "NoAccess" in pool_roles:
                roles = {"NoAccess": 0}  # a pool ACL NoAccess trumps a regular ACL
            else:
                for role in pool_roles:
                    roles.setdefault(role, 0)  # pool-derived roles never propagate
        privs: Privs = {}
        for role, propagate in roles.items():
            for priv in self.cfg["roles"].get(role) or {}:
                privs[priv] = privs.get(priv, 0) or propagate
        if parts and parts[0] != ROOT:
            owner = self.permissions(parts[0], path)
            privs = {p: (owner[p] and v) for p, v in privs.items() if p in owner}
        return privs

    def _pool_roles(self, user: str) -> dict[str, dict[str, int]]:
        if user not in self._poolroles:
            mapping: dict[str, dict[str, int]] = {}
            for pool, pool_members in self.pools.items():
                roles = self.roles(user, f"/pool/{pool}")
                if not roles:
                    continue
                targets = [f"/vms/{v}" for v in pool_members.vms] + [f"/storage/{s}" for s in pool_members.storage]
                for target in targets:
                    mapping.setdefault(target, {}).update(dict.fromkeys(roles, 1))
            self._poolroles[user] = mapping
        return self._poolroles[user]

    # -- checks ------------------------------------------------------------------------------------------

    def check(self, user: str, path: str, privs: list[str] | tuple[str, ...], noerr: bool = False) -> bool:
        perm = self.permissions(user, path)
        for priv in privs:
            if priv not in perm:
                if noerr:
                    return False
                raise permission_denied(path, priv)
        return True

    def check_any(self, user: str, path: str, privs: list[str] | tuple[str, ...], noerr: bool = False) -> bool:
        perm = self.permissions(user, path)
        if any(priv in perm for priv in privs):
            return True
        if noerr:
            return False
        raise permission_denied(path, "|".join(privs))

    def check_full(self, user: str, path: str, privs: list[str], any_: bool, noerr: bool = False) -> bool:
        return (self.check_any if any_ else self.check)(user, path, privs, noerr)

    def check_perm_modify(self, user: str, path: str | None, noerr: bool = False) -> bool:
        if not path:
            return self.check(user, "/access", ["Permissions.Modify"], noerr)
        test = ["Permissions.Modify"]
        if re.match(r"^/storage/.+$", path):
            test.append("Datastore.Allocate")
        elif re.match(r"^/vms/.+$", path):
            test.append("VM.Allocate")
        elif re.match(r"^/pool/.+$", path):
            test.append("Pool.Allocate")
        return self.check_any(user, path, test, noerr)

    def check_pool_exist(self, pool: str) -> None:
        """``check_pool_exist``: 403 ``pool 'x' does not exist`` (a permission exception, as in PVE)."""
        if pool not in self.pools:
            raise ApiError(403, f"Permission check failed (pool '{pool}' does not exist)\n")

    def check_user_exist(self, userid: str, noerr: bool = False) -> dict[str, Any] | None:
        from vzkeep.sandbox.api.errors import die
        from vzkeep.sandbox.api.formats import FormatError, verify_username

        try:
            verify_username(userid)
        except FormatError as exc:
            if noerr:
                return None
            raise die(exc.text) from None
        user = usercfg.user_of(self.cfg, userid)
        if user is None and not noerr:
            raise die(f"no such user ('{userid}')\n")
        return user

    def filter_groups(self, user: str, privs: list[str], any_: bool) -> set[str]:
        return {g for g in self.cfg["groups"] if self.check_full(user, f"/access/groups/{g}", privs, any_, True)}

    def group_member_join(self, groups: set[str]) -> set[str]:
        return {u for g in groups for u in (self.cfg["groups"].get(g, {}).get("users") or {})}

    # -- the schema's permission declarations ------------------------------------------------------------

    def check_api2_permissions(self, perm: Mapping[str, Any] | None, user: str, params: Mapping[str, Any]) -> None:
        """``check_api2_permissions``: ``user => 'all'|'world'``, or the ``check`` list; root passes."""
        if user == ROOT:
            return
        if not perm:
            raise permission_denied_text("user != root@pam")
        if perm.get("user") in ("all", "world"):
            return
        if perm.get("check"):
            self.exec_check(perm["check"], user, params)
            return
        raise permission_denied_text(None)

    def exec_check(self, check: list[Any], user: str, params: Mapping[str, Any], noerr: bool = False) -> bool:
        """``exec_api2_perm_check``: and / or / perm / userid-group / userid-param / perm-modify."""
        test, args = check[0], check[1:]
        if test == "and":
            for sub in args:
                self.exec_check(sub, user, params)
            return True
        if test == "or":
            if any(self.exec_check(sub, user, params, True) for sub in args):
                return True
            if noerr:
                return False
            raise permission_denied_text(None)
        if test == "perm":
            template, privs, *rest = args
            options = dict(zip(rest[::2], rest[1::2], strict=False))
            required = options.get("require_param")
            if required and params.get(required) is None:
                if noerr:
                    return False
                raise permission_denied_text(None)
            path = usercfg.normalize_path(template_replace(template, params))
            return self.check_full(user, path or "", privs, bool(options.get("any")), noerr)
        if test == "userid-group":
            return self._userid_group(args, user, params, noerr)
        if test == "userid-param":
            return self._userid_param(args[0], user, params, noerr)
        if test == "perm-modify":
            path = usercfg.normalize_path(template_replace(args[0], params))
            return bool(path) and self.check_perm_modify(user, path, noerr)
        raise ApiError(500, "unknown permission test\n")

    def _userid_group(self, args: list[Any], user: str, params: Mapping[str, Any], noerr: bool) -> bool:
        privs, *rest = args
        options = dict(zip(rest[::2], rest[1::2], strict=False))
        userid = str(params.get("userid") or "")
        check_existing = options.get("groups_param") != "create"
        if check_existing and not self.check_user_exist(userid, noerr):
            return False
        if self.check_any(user, "/access/groups", privs, True):
            return True
        groups = self.filter_groups(user, privs, True)
        if options.get("groups_param"):
            wanted = split_list(params.get("groups"))
            if not wanted:
                raise permission_denied("/access/groups", "|".join(privs))
            for group in wanted:
                if group not in groups:
                    raise permission_denied(f"/access/groups/{group}", "|".join(privs))
        if check_existing and userid not in self.group_member_join(groups):
            if noerr:
                return False
            raise permission_denied_text(None)
        return True

    def _userid_param(self, subtest: str, user: str, params: Mapping[str, Any], noerr: bool) -> bool:
        from vzkeep.sandbox.api.errors import die
        from vzkeep.sandbox.api.formats import FormatError, verify_username

        userid = str(params.get("userid") or "")
        try:
            verify_username(userid)  # verify_username dies before any subtest
        except FormatError as exc:
            raise die(exc.text) from None
        if subtest == "self":
            if not self.check_user_exist(userid, noerr):
                return False
            if user == userid:
                return True
            if noerr:
                return False
            raise permission_denied_text(None)
        if subtest == "Realm.AllocateUser":
            return self.check(user, f"/access/realm/{usercfg.realm_of(userid)}", ["Realm.AllocateUser"], noerr)
        raise ApiError(500, "unknown userid-param test\n")

    # -- /access/permissions, the ticket's "cap" --------------------------------------------------------

    CAP_PATTERNS: ClassVar[dict[str, str]] = {  # compute_api_permission $priv_re_map
        "vms": r"VM\.|Permissions\.Modify", "access": r"(User|Group)\.|Permissions\.Modify",
        "storage": r"Datastore\.|Permissions\.Modify", "nodes": r"Sys\.|Permissions\.Modify",
        "sdn": r"SDN\.|Permissions\.Modify", "dc": r"Sys\.Audit|Sys\.Modify|SDN\.",
        "mapping": r"Mapping\.|Permissions.Modify",
    }

    def compute_api_permission(self, user: str) -> dict[str, dict[str, int]]:
        """``compute_api_permission``: the GUI's capabilities, by top-level path."""
        res: dict[str, dict[str, int]] = {key: {} for key in self.CAP_PATTERNS}
        paths = ["/", "/nodes", "/access/groups", "/vms", "/storage", "/sdn", "/mapping"]
        paths += [path for path, _ in usercfg.iterate_acl_tree(self.cfg["acl_root"])]
        for path in dict.fromkeys(paths):
            privs = self.permissions(user, path)
            top = match.group(1) if (match := re.match(r"^/(\w+)", path)) else "dc"
            if top == "pool":
                for priv in privs:
                    if priv.startswith("VM."):
                        res["vms"][priv] = 1
                    elif priv.startswith("Datastore."):
                        res["storage"][priv] = 1
                    elif priv == "Permissions.Modify":
                        res["storage"][priv] = res["vms"][priv] = 1
            elif top in self.CAP_PATTERNS:
                for priv in privs:
                    if re.match(f"^({self.CAP_PATTERNS[top]})", priv):
                        res[top][priv] = 1
        return res

    # -- /access/permissions ------------------------------------------------------------------------------

    def effective_permissions(self, user: str) -> dict[str, Privs]:
        """``get_effective_permissions``: every path that matters, with what ``user`` holds there."""
        paths = {"/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms"}
        paths.update(path for path, _ in usercfg.iterate_acl_tree(self.cfg["acl_root"]))
        for members_ in self.pools.values():
            paths.update(f"/vms/{v}" for v in members_.vms)
            paths.update(f"/storage/{s}" for s in members_.storage)
        result = {}
        for path in sorted(paths):
            privs = self.permissions(user, path)
            if privs:
                result[path] = dict(privs)
        return result


def permission_denied_text(what: str | None) -> ApiError:
    """``raise_perm_exc``: ``Permission check failed`` plus `` (what)`` when given."""
    return ApiError(403, "Permission check failed" + (f" ({what})" if what else "") + "\n")
