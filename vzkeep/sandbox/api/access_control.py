"""``/access``: login, the caller's permissions, roles, users, API tokens and the ACL.

Sources (pve-access-control): ``src/PVE/API2/AccessControl.pm`` (``index``, ``create_ticket``,
``permissions``), ``src/PVE/API2/Role.pm``, ``src/PVE/API2/User.pm`` (users and tokens),
``src/PVE/API2/ACL.pm``, ``src/PVE/AccessControl.pm`` (``add_role_privs``, ``role_is_special``,
``check_token_exist``…). Changes run inside ``configuration.access`` (PVE: ``lock_user_config``), and an
error there carries the lock's prefix, as in PVE (``create role failed: role 'x' already exists``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from vzkeep.sandbox import configuration
from vzkeep.sandbox.api.access import usercfg
from vzkeep.sandbox.api.access.usercfg import Cfg
from vzkeep.sandbox.api.errors import ApiError, die, locked, param_error
from vzkeep.sandbox.api.formats import FormatError, split_list, verify_username
from vzkeep.sandbox.api.router import Handlers, Request

USER_FIELDS = ("enable", "expire", "firstname", "lastname", "email", "comment", "keys")
BUILTIN_REALMS = ("pam", "pve")  # domains.cfg defaults (pve-access-control src/PVE/Auth/Plugin.pm)
SUBCLASSES = ("users", "groups", "roles", "acl", "domains", "openid", "tfa")  # AccessControl.pm registers these


class Refused(Exception):
    """A ``die`` inside ``lock_user_config``: its text gets the lock's prefix."""


def edit(req: Request, message: str, change: Callable[[Cfg], Any], secrets: bool = False) -> Any:
    """``lock_user_config(sub { … }, $message)``: run ``change`` on a draft; commit, or die prefixed."""
    try:
        with configuration.access(req.app.sandbox, req.app.access, secrets=secrets) as cfg:
            return change(cfg)
    except (Refused, ApiError) as exc:
        raise locked(message, exc) from None


def _verified_user(userid: str) -> str:
    """``verify_username`` outside any lock: a plain die with its text."""
    try:
        return verify_username(userid)
    except FormatError as exc:
        raise die(exc.text) from None


def _user_exists(cfg: Cfg, userid: str) -> dict[str, Any]:
    """``check_user_exist``: the user, or die ``no such user ('x')``."""
    _verified_user(userid)
    user = usercfg.user_of(cfg, userid)
    if user is None:
        raise Refused(f"no such user ('{userid}')\n")
    return user


def _token_exists(cfg: Cfg, userid: str, tokenid: str) -> dict[str, Any]:
    user = _user_exists(cfg, userid)
    token = (user.get("tokens") or {}).get(tokenid)
    if not token:
        raise Refused(f"no such token '{tokenid}' for user '{userid}'\n")
    return token


def _outside_lock(check: Callable[[], Any]) -> Any:
    """A check PVE makes before taking the lock: its die is a plain 500."""
    try:
        return check()
    except Refused as exc:
        raise die(str(exc)) from None


# -- /access, ticket, permissions ---------------------------------------------------------------------------


def _index(req: Request) -> list[dict[str, str]]:
    children = req.version.schema.children("/access")
    return [{"subdir": s} for s in (*[c for c in SUBCLASSES if c in children], "ticket", "password")]


def _login(req: Request) -> dict[str, Any]:
    """``create_ticket``: any failure is one ``authentication failure`` (401), to prevent enumeration.
    proxmoxer renews a ticket by sending the old ticket as the password, as PVE accepts."""
    app = req.app
    username = req.params["username"]
    if req.params.get("realm"):
        username += f"@{req.params['realm']}"
    password = req.params["password"]
    creds = app.credentials
    ok = app.access.user_enabled(username) and (
        (username == "root@pam" and password == creds.root_password) or app.access.password_valid(username, password))
    if not ok and app.access.user_enabled(username):
        try:
            ok = creds.verify_ticket(password) == username
        except Exception:
            ok = False
    if not ok:
        raise ApiError(401, "authentication failure\n", plain=False)
    result: dict[str, Any] = {
        "username": username,
        "ticket": creds.create_ticket(username),
        "CSRFPreventionToken": creds.csrf_token(username),
        "cap": req.rpcenv.compute_api_permission(username),
    }
    if req.rpcenv.check(username, "/", ["Sys.Audit"], noerr=True):
        result["clustername"] = app.cluster.name
    return result


def _permissions(req: Request) -> dict[str, dict[str, int]]:
    """Your own permissions (or your tokens'); someone else's need ``Sys.Audit`` on ``/access``."""
    authid = req.authid
    userid = req.params.get("userid") or authid
    owner = usercfg.split_tokenid(userid)
    if userid != authid and not (owner and owner[0] == authid):
        req.require("/access", "Sys.Audit")
    env = req.rpcenv
    if req.params.get("path"):
        return {req.params["path"]: env.permissions(userid, req.params["path"])}
    return env.effective_permissions(userid)


# -- roles (Role.pm) ----------------------------------------------------------------------------------------


def _add_role_privs(req: Request, cfg: Cfg, role: str, privs: str | None) -> None:
    if not privs:
        return
    if role not in cfg["roles"]:
        raise Refused(f"role '{role}' does not exist\n")
    for priv in split_list(privs):
        if priv not in req.version.privileges:
            raise Refused(f"invalid privilege '{priv}'\n")
        cfg["roles"][role][priv] = 1


def _roles(req: Request) -> list[dict[str, Any]]:
    roles = req.app.access.cfg["roles"]
    return [{"roleid": r, "privs": ",".join(sorted(roles[r])), "special": int(r in req.version.roles)}
            for r in sorted(roles)]


def _role(req: Request) -> dict[str, int]:
    role = req.app.access.cfg["roles"].get(req.params["roleid"])
    if role is None:
        raise die(f"role '{req.params['roleid']}' does not exist\n")
    return dict(role)


def _create_role(req: Request) -> None:
    role = req.params["roleid"]
    if re.match(r"^PVE", role, re.IGNORECASE):
        raise param_error({"roleid": "cannot use role ID starting with the (case-insensitive) 'PVE' namespace"})

    def change(cfg: Cfg) -> None:
        if role in cfg["roles"]:
            raise Refused(f"role '{role}' already exists\n")
        cfg["roles"][role] = {}
        _add_role_privs(req, cfg, role, req.params.get("privs"))

    edit(req, "create role failed", change)


def _update_role(req: Request) -> None:
    role = req.params["roleid"]
    if role in req.version.roles:
        raise die(f"auto-generated role '{role}' cannot be modified\n")

    def change(cfg: Cfg) -> None:
        if role not in cfg["roles"]:
            raise Refused(f"role '{role}' does not exist\n")
        if not req.params.get("append"):
            cfg["roles"][role] = {}
        _add_role_privs(req, cfg, role, req.params.get("privs"))

    edit(req, "update role failed", change)


def _delete_role(req: Request) -> None:
    role = req.params["roleid"]
    if role in req.version.roles:
        raise die(f"auto-generated role '{role}' cannot be deleted\n")

    def change(cfg: Cfg) -> None:
        if role not in cfg["roles"]:
            raise Refused(f"role '{role}' does not exist\n")
        del cfg["roles"][role]  # "fixme: delete role from acl?" - PVE leaves the ACL entries

    edit(req, "delete role failed", change)


# -- users (User.pm) ------------------------------------------------------------------------------------------


def _user_data(data: dict[str, Any], full: bool) -> dict[str, Any]:
    """``$extract_user_data``."""
    res = {k: data[k] for k in USER_FIELDS if data.get(k) is not None}
    if full:
        res["groups"] = sorted(data.get("groups") or {})
        res["tokens"] = data.get("tokens") or {}
    return res


def _users(req: Request) -> list[dict[str, Any]]:
    """Users you may see: all with User.Modify or Sys.Audit on /access/groups, else members of groups
    you hold those on, and always yourself."""
    cfg, env, authid = req.app.access.cfg, req.rpcenv, req.authid
    privs = ["User.Modify", "Sys.Audit"]
    can_all = env.check_any(authid, "/access/groups", privs, noerr=True)
    allowed = env.group_member_join(env.filter_groups(authid, privs, True))
    out = []
    for userid in sorted(cfg["users"]):
        if not (can_all or userid == authid) and userid not in allowed:
            continue
        entry = _user_data(cfg["users"][userid], bool(req.params.get("full")))
        if req.params.get("enabled") is not None and bool(entry.get("enable")) != bool(req.params["enabled"]):
            continue
        if "groups" in entry:
            entry["groups"] = ",".join(entry["groups"])
        if "tokens" in entry:
            tokens = entry["tokens"]
            entry["tokens"] = [{"tokenid": t, **tokens[t]} for t in sorted(tokens)]
        realm = usercfg.realm_of(userid)
        if realm in BUILTIN_REALMS:
            entry["realm-type"] = realm  # the two built-in realms (domains.cfg)
        entry["userid"] = userid
        out.append(entry)
    return out


def _user(req: Request) -> dict[str, Any]:
    userid = _verified_user(req.params["userid"])
    user = _outside_lock(lambda: _user_exists(req.app.access.cfg, userid))
    return _user_data(user, True)


def _add_groups(cfg: Cfg, userid: str, groups: str | None) -> None:
    for group in split_list(groups):
        if group not in cfg["groups"]:
            raise Refused(f"no such group '{group}'\n")
        cfg["users"][userid].setdefault("groups", {})[group] = 1
        cfg["groups"][group].setdefault("users", {})[userid] = 1


def _create_user(req: Request) -> None:
    p = req.params
    userid = p["userid"]

    def change(cfg: Cfg) -> None:
        if userid in cfg["users"]:
            raise Refused(f"user '{userid}' already exists\n")
        if p.get("password") is not None:
            # domain_set_password: the realm must exist (the sandbox has PVE's two built-in ones); pam
            # would run usermod, pve writes priv/shadow.cfg: the sandbox keeps a hash of either
            realm = usercfg.realm_of(userid)
            if realm not in BUILTIN_REALMS:
                raise Refused(f"auth domain '{realm}' does not exist\n")
            req.app.access.set_password(userid, p["password"])
        cfg["users"][userid] = {"enable": p["enable"] if p.get("enable") is not None else 1}
        if p.get("expire"):
            cfg["users"][userid]["expire"] = p["expire"]
        _add_groups(cfg, userid, p.get("groups"))
        for key in ("firstname", "lastname", "email", "comment", "keys"):
            if p.get(key):
                cfg["users"][userid][key] = p[key]

    edit(req, "create user failed", change, secrets=p.get("password") is not None)


def _update_user(req: Request) -> None:
    p = req.params
    userid = _verified_user(p["userid"])

    def change(cfg: Cfg) -> None:
        user = _user_exists(cfg, userid)
        for key in ("enable", "expire"):
            if p.get(key) is not None:
                user[key] = p[key]
        if not p.get("append") and p.get("groups") is not None:
            usercfg.delete_user_group(cfg, userid)
            user.pop("groups", None)
        _add_groups(cfg, userid, p.get("groups"))
        for key in ("firstname", "lastname", "email", "comment", "keys"):
            if p.get(key) is not None:
                user[key] = p[key]

    edit(req, "update user failed", change)


def _delete_user(req: Request) -> None:
    userid = _verified_user(req.params["userid"])

    def change(cfg: Cfg) -> None:
        cfg["users"].pop(userid, None)
        usercfg.delete_user_group(cfg, userid)
        usercfg.delete_user_acl(cfg, userid)
        for tokenid in [t for t in req.app.access.token_hashes if t.startswith(userid + "!")]:
            req.app.access.set_token_secret(tokenid, None)
        req.app.access.set_password(userid, None)

    edit(req, "delete user failed", change, secrets=True)


# -- API tokens (User.pm) -------------------------------------------------------------------------------------


def _tokens(req: Request) -> list[dict[str, Any]]:
    userid = _verified_user(req.params["userid"])
    user = _outside_lock(lambda: _user_exists(req.app.access.cfg, userid))
    tokens = user.get("tokens") or {}
    return [{**tokens[t], "tokenid": t} for t in sorted(tokens)]


def _token(req: Request) -> dict[str, Any]:
    userid = _verified_user(req.params["userid"])
    return dict(_outside_lock(lambda: _token_exists(req.app.access.cfg, userid, req.params["tokenid"])))


def _generate_token(req: Request) -> dict[str, Any]:
    """A new token: its secret (a UUID, TokenConfig.pm) is returned once and stored only hashed."""
    p = req.params
    userid, tokenid = _verified_user(p["userid"]), p["tokenid"]
    cfg = req.app.access.cfg
    _outside_lock(lambda: _user_exists(cfg, userid))
    if (usercfg.user_of(cfg, userid).get("tokens") or {}).get(tokenid):
        raise param_error({"tokenid": "Token already exists."})
    full_id = f"{userid}!{tokenid}"
    value = str(uuid.uuid4())
    token = {"privsep": p["privsep"] if p.get("privsep") is not None else 1}
    if p.get("expire") is not None:
        token["expire"] = p["expire"]
    if p.get("comment"):
        token["comment"] = p["comment"]

    def change(cfg: Cfg) -> None:
        user = _user_exists(cfg, userid)
        if (user.get("tokens") or {}).get(tokenid):
            raise Refused("Token already exists.\n")
        user.setdefault("tokens", {})[tokenid] = dict(token)
        req.app.access.set_token_secret(full_id, value)

    edit(req, "generating token failed", change, secrets=True)
    return {"info": token, "value": value, "full-tokenid": full_id}


def _update_token(req: Request) -> dict[str, Any]:
    p = req.params
    userid, tokenid = _verified_user(p["userid"]), p["tokenid"]
    _outside_lock(lambda: _token_exists(req.app.access.cfg, userid, tokenid))
    delete = split_list(p.get("delete")) if p.get("delete") else []

    def change(cfg: Cfg) -> dict[str, Any]:
        token = _token_exists(cfg, userid, tokenid)
        for key in ("privsep", "expire", "comment"):
            if p.get(key) is not None:
                token[key] = p[key]
        if not token.get("comment"):
            token.pop("comment", None)
        for key in delete:
            if key != "comment":
                raise ApiError(400, "Parameter verification failed.\n", {"delete": f"unknown option '{key}'"})
            token.pop(key, None)
        return dict(token)

    return edit(req, "updating token info failed", change)


def _remove_token(req: Request) -> None:
    userid, tokenid = _verified_user(req.params["userid"]), req.params["tokenid"]
    _outside_lock(lambda: _token_exists(req.app.access.cfg, userid, tokenid))

    def change(cfg: Cfg) -> None:
        _token_exists(cfg, userid, tokenid)
        del cfg["users"][userid]["tokens"][tokenid]
        req.app.access.set_token_secret(f"{userid}!{tokenid}", None)

    edit(req, "deleting token failed", change, secrets=True)


# -- ACL (ACL.pm) ----------------------------------------------------------------------------------------------


def _read_acl(req: Request) -> list[dict[str, Any]]:
    """Entries on paths where you may modify permissions (all of them with Sys.Audit on /access)."""
    env, authid = req.rpcenv, req.authid
    audit = env.check(authid, "/access", ["Sys.Audit"], noerr=True)
    out = []
    for path, node in usercfg.iterate_acl_tree(req.app.access.cfg["acl_root"]):
        entries = list(usercfg.members(node))
        if entries and not (audit or env.check_perm_modify(authid, path, noerr=True)):
            continue
        out += [{"path": path, "type": kind, "ugid": ugid, "roleid": role, "propagate": propagate}
                for kind, ugid, role, propagate in entries]
    return out


def _update_acl(req: Request) -> None:
    p = req.params
    if not (p.get("users") or p.get("groups") or p.get("tokens")):
        required = "either 'users', 'groups' or 'tokens' is required."
        raise param_error(dict.fromkeys(("users", "groups", "tokens"), required))
    path = usercfg.normalize_path(p["path"])
    if path is None or (not p.get("delete") and not usercfg.check_path(path, req.version.major != "8")):
        raise param_error({"path": f"invalid ACL path '{p['path']}'"})
    delete = bool(p.get("delete"))
    propagate = (1 if p["propagate"] else 0) if p.get("propagate") is not None else 1
    own = req.rpcenv.permissions(req.authid, path)

    def change(cfg: Cfg) -> None:
        node = usercfg.find_acl_tree_node(cfg["acl_root"], path)
        for role in split_list(p["roles"]):
            if role not in cfg["roles"]:
                raise Refused(f"role '{role}' does not exist\n")
            if "Permissions.Modify" not in own:
                _check_delegation(own, cfg["roles"][role], role, propagate, delete)
            for group in split_list(p.get("groups")):
                if group not in cfg["groups"]:
                    raise Refused(f"group '{group}' does not exist\n")
                _set(node, "groups", group, role, propagate, delete)
            for userid in split_list(p.get("users")):
                if userid not in cfg["users"]:
                    raise Refused(f"user '{userid}' does not exist\n")
                _set(node, "users", userid, role, propagate, delete)
            for tokenid in split_list(p.get("tokens")):
                parts = usercfg.split_tokenid(tokenid)
                if parts is None:
                    raise Refused(f"'{tokenid}' is not a valid token ID - not able to split into user and token "
                                  "parts\n")
                _token_exists(cfg, *parts)
                _set(node, "tokens", tokenid, role, propagate, delete)

    edit(req, "ACL update failed", change)


def _check_delegation(own: dict[str, int], privs: dict[str, int], role: str, propagate: int, delete: bool) -> None:
    """Without Permissions.Modify you may only hand out (or take back) privileges you hold yourself."""
    verb = "remove" if delete else "add"
    for priv in privs:
        if priv not in own:
            raise param_error({"role": f"Cannot {verb} role '{role}' - requires 'Permissions.Modify' or superset of "
                                       "privileges."})
        if propagate and own[priv] != propagate and not delete:
            raise param_error({"role": f"Cannot {verb} role '{role}' with propagation - requires "
                                       "'Permissions.Modify' or propagated superset of privileges."})
    if role == "NoAccess":
        raise param_error({"role": f"Cannot {verb} role '{role}' - requires 'Permissions.Modify'"})


def _set(node: dict[str, Any], kind: str, ugid: str, role: str, propagate: int, delete: bool) -> None:
    if delete:
        node.get(kind, {}).get(ugid, {}).pop(role, None)
    else:
        node.setdefault(kind, {}).setdefault(ugid, {})[role] = propagate


def register(handlers: Handlers) -> None:
    handlers.add("GET", "/access")(_index)
    handlers.add("POST", "/access/ticket")(_login)
    handlers.add("GET", "/access/permissions")(_permissions)
    handlers.add("GET", "/access/roles")(_roles)
    handlers.add("POST", "/access/roles")(_create_role)
    handlers.add("GET", "/access/roles/{roleid}")(_role)
    handlers.add("PUT", "/access/roles/{roleid}")(_update_role)
    handlers.add("DELETE", "/access/roles/{roleid}")(_delete_role)
    handlers.add("GET", "/access/users")(_users)
    handlers.add("POST", "/access/users")(_create_user)
    handlers.add("GET", "/access/users/{userid}")(_user)
    handlers.add("PUT", "/access/users/{userid}")(_update_user)
    handlers.add("DELETE", "/access/users/{userid}")(_delete_user)
    handlers.add("GET", "/access/users/{userid}/token")(_tokens)
    handlers.add("GET", "/access/users/{userid}/token/{tokenid}")(_token)
    handlers.add("POST", "/access/users/{userid}/token/{tokenid}")(_generate_token)
    handlers.add("PUT", "/access/users/{userid}/token/{tokenid}")(_update_token)
    handlers.add("DELETE", "/access/users/{userid}/token/{tokenid}")(_remove_token)
    handlers.add("GET", "/access/acl")(_read_acl)
    handlers.add("PUT", "/access/acl")(_update_acl)
