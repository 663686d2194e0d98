"""``user.cfg`` as PVE keeps it: users, API tokens, groups, custom roles and the ACL tree.

A port of pve-access-control ``src/PVE/AccessControl.pm`` ``parse_user_config``/``write_user_config``
and the helpers the API uses on it. The configuration is plain nested dicts shaped like Perl's
(``cfg["users"][userid]["tokens"][name]["privsep"]``), written in PVE's line format and read back
after every change, so a value is what PVE would return after its own round trip (a user created
without ``expire`` reads back with ``expire: 0``). Pools are not here: the sandbox's engine owns them
(its ``Cluster.pools`` and each guest's pool), and ``rpcenv`` reads them from there.

Secrets live beside it, never in it: ``token.cfg`` (PVE: ``/etc/pve/priv/token.cfg``) and
``shadow.cfg`` (PVE realm passwords, ``/etc/pve/priv/shadow.cfg``), both hashed here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

from vzkeep.sandbox.api.formats import (
    GROUPNAME_RE,
    REALM_RE,
    TOKEN_FULL_RE,
    USER_RE,
    passes,
    perl_match,
    perl_split,
    split_list,
    verify_username,
)

Cfg = dict[str, Any]
PASSWORD_ITERATIONS = 200_000


# -- names (AccessControl.pm, Auth/Plugin.pm) -------------------------------------------------------------


def split_tokenid(tokenid: str) -> tuple[str, str] | None:
    """``split_tokenid``: ``user@realm!name`` → (``user@realm``, ``name``), None if it is not one."""
    match = perl_match(rf"^{TOKEN_FULL_RE}$", tokenid)
    return (match.group(1), match.group(4)) if match else None


def is_tokenid(authid: str) -> bool:
    return split_tokenid(authid) is not None


def valid_username(userid: str) -> bool:
    return passes(verify_username, userid)


def realm_of(userid: str) -> str | None:
    match = perl_match(rf"^({USER_RE})\@({REALM_RE})$", userid)
    return match.group(2) if match else None


def normalize_path(path: str | None) -> str | None:
    """``normalize_path``: collapse slashes, no trailing slash, leading slash, restricted characters."""
    if not path:
        return None
    import re

    path = re.sub(r"/+", "/", path)
    path = re.sub(r"/$", "", path) or "/"
    if not path.startswith("/"):
        path = "/" + path
    return path if perl_match(r"^[A-Za-z0-9\.\-\_\/]+$", path) else None


# check_path (AccessControl.pm): the ACL paths PVE accepts; /sdn/fabrics arrived with 9.0 (63f71d6).
_ACL_PATHS = [
    r"/", r"/access", r"/access/groups", r"/access/groups/[A-Za-z0-9\.\-\_]+", r"/access/realm",
    r"/access/realm/[A-Za-z0-9\.\-\_]+", r"/nodes", r"/nodes/[A-Za-z0-9\.\-\_]+", r"/pool",
    r"/pool/[A-Za-z0-9\.\-_]+(?:/[A-Za-z0-9\.\-_]+){0,2}", r"/sdn", r"/sdn/controllers",
    r"/sdn/controllers/[A-Za-z0-9\_\-]+", r"/sdn/dns", r"/sdn/dns/[A-Za-z0-9]+", r"/sdn/ipams",
    r"/sdn/ipams/[A-Za-z0-9]+", r"/sdn/zones", r"/sdn/zones/[A-Za-z0-9\.\-\_]+",
    r"/sdn/zones/[A-Za-z0-9\.\-\_]+/[A-Za-z0-9\.\-\_]+",
    r"/sdn/zones/[A-Za-z0-9\.\-\_]+/[A-Za-z0-9\.\-\_]+/[1-9][0-9]{0,3}",
    r"/storage", r"/storage/[A-Za-z0-9\.\-\_]+", r"/vms", r"/vms/[1-9][0-9]{2,}", r"/mapping",
    r"/mapping/[A-Za-z0-9\.\-\_]+", r"/mapping/[A-Za-z0-9\.\-\_]+/[A-Za-z0-9\.\-\_]+",
]
_SDN_FABRICS = [r"/sdn/fabrics", r"/sdn/fabrics/[A-Za-z0-9]+"]


def check_path(path: str, sdn_fabrics: bool) -> bool:
    alternatives = _ACL_PATHS + (_SDN_FABRICS if sdn_fabrics else [])
    return bool(perl_match("^(" + "|".join(alternatives) + ")$", path))


# -- parse / write (AccessControl.pm parse_user_config, write_user_config) --------------------------------


def force_defaults(cfg: Cfg, special_roles: dict[str, frozenset[str]]) -> None:
    """``userconfig_force_defaults``: the special roles, root@pam, an ACL root."""
    cfg.setdefault("roles", {})
    for name, privs in special_roles.items():
        cfg["roles"][name] = dict.fromkeys(privs, 1)
    cfg.setdefault("users", {}).setdefault("root@pam", {"enable": 1})
    cfg.setdefault("groups", {})
    cfg.setdefault("acl_root", {})


def _fields(line: str) -> list[str]:
    return [field.strip() for field in perl_split(":", line)]


def parse_user_config(text: str, special_roles: dict[str, frozenset[str]], valid_privs: frozenset[str]) -> Cfg:
    cfg: Cfg = {}
    force_defaults(cfg, special_roles)
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        data = _fields(line)
        kind, rest = data[0], data[1:] + [""] * 8
        if kind == "user":
            _parse_user(cfg, rest)
        elif kind == "group":
            _parse_group(cfg, rest)
        elif kind == "role":
            role, privlist = rest[0], rest[1]
            if perl_match(r"^[A-Za-z0-9\.\-_]+$", role):
                privs = cfg["roles"].setdefault(role, {})
                privs.update({p: 1 for p in split_list(privlist) if p in valid_privs})
        elif kind == "acl":
            _parse_acl(cfg, rest)
        elif kind == "token":
            _parse_token(cfg, rest)
    force_defaults(cfg, special_roles)
    return cfg


def _parse_user(cfg: Cfg, rest: list[str]) -> None:
    user, enable, expire, firstname, lastname, email, comment, keys = rest[:8]
    if not valid_username(user) or not perl_match(r"^\d+$", expire or "0"):
        return
    entry: dict[str, Any] = {"enable": 1 if enable not in ("", "0") else 0, "expire": int(expire or 0)}
    if firstname:
        entry["firstname"] = _untext(firstname)
    if lastname:
        entry["lastname"] = _untext(lastname)
    if email:
        entry["email"] = email
    if comment:
        entry["comment"] = _untext(comment)
    if keys:
        entry["keys"] = keys
    cfg["users"][user] = entry


def _parse_group(cfg: Cfg, rest: list[str]) -> None:
    group, userlist, comment = rest[:3]
    if not perl_match(rf"^{GROUPNAME_RE}$", group):
        return
    entry = cfg["groups"].setdefault(group, {"users": {}})
    if comment:
        entry["comment"] = _untext(comment)
    for user in split_list(userlist):
        if not valid_username(user):
            continue
        if user in cfg["users"]:
            cfg["users"][user].setdefault("groups", {})[group] = 1
        entry["users"][user] = 1


def _parse_acl(cfg: Cfg, rest: list[str]) -> None:
    propagate, pathtxt, uglist, rolelist = rest[:4]
    path = normalize_path(pathtxt)
    if path is None:
        return
    node = None
    for role in split_list(rolelist):
        if role not in cfg["roles"]:
            continue
        for member in split_list(uglist):
            if member.startswith("@") and perl_match(rf"^{GROUPNAME_RE}$", member[1:]):
                kind, ugid = "groups", member[1:]
            elif valid_username(member):
                kind, ugid = "users", member
            elif (parts := split_tokenid(member)) and token_of(cfg, *parts) is not None:
                kind, ugid = "tokens", member
            else:
                continue
            node = node or find_acl_tree_node(cfg["acl_root"], path)
            node.setdefault(kind, {}).setdefault(ugid, {})[role] = 1 if propagate not in ("", "0") else 0


def _parse_token(cfg: Cfg, rest: list[str]) -> None:
    tokenid, expire, privsep, comment = rest[:4]
    parts = split_tokenid(tokenid)
    if not parts or not perl_match(r"^\d+$", expire or "0"):
        return
    user = cfg["users"].get(parts[0])
    if user is None:
        return
    token = user.setdefault("tokens", {}).setdefault(parts[1], {})
    token["privsep"] = 1 if privsep not in ("", "0") else 0
    token["expire"] = int(expire or 0)
    if comment:
        token["comment"] = _untext(comment)


def _text(value: Any) -> str:
    """``PVE::Tools::encode_text``: %-escape control, non-ASCII and ':' (not '%' itself)."""
    if not value:
        return ""
    return "".join(chr(b) if 0x20 <= b <= 0x39 or 0x3B <= b <= 0x7E else f"%{b:02X}"
                   for b in str(value).encode("utf-8"))


def _untext(value: str) -> str:
    """``PVE::Tools::decode_text``."""
    return unquote(value, encoding="utf-8", errors="replace")


def write_user_config(cfg: Cfg, special_roles: dict[str, frozenset[str]]) -> str:
    out: list[str] = []
    for user in sorted(cfg["users"]):
        d = cfg["users"][user]
        fields = [user, str(1 if d.get("enable") else 0), str(int(d.get("expire") or 0)), _text(d.get("firstname")),
                  _text(d.get("lastname")), d.get("email") or "", _text(d.get("comment")), d.get("keys") or ""]
        out.append("user:" + ":".join(fields) + ":")
        for token in sorted(d.get("tokens") or {}):
            td = d["tokens"][token]
            out.append(f"token:{user}!{token}:{int(td.get('expire') or 0)}:{1 if td.get('privsep') else 0}:"
                       f"{_text(td.get('comment'))}:")
    out.append("")
    for group in sorted(cfg["groups"]):
        d = cfg["groups"][group]
        out.append(f"group:{group}:{','.join(sorted(d.get('users') or {}))}:{_text(d.get('comment'))}:")
    out.append("")
    out.append("")  # pools: kept by the engine (Cluster.pools)
    for role in sorted(cfg["roles"]):
        if role not in special_roles:
            out.append(f"role:{role}:{','.join(sorted(cfg['roles'][role]))}:")
    out.append("")
    for path, node in iterate_acl_tree(cfg["acl_root"]):
        members: dict[int, dict[str, set[str]]] = {0: {}, 1: {}}
        for kind, prefix in (("groups", "@"), ("users", ""), ("tokens", "")):
            for member, roles in (node.get(kind) or {}).items():
                if kind == "users" and member == "root@pam":
                    continue
                for flag in (0, 1):
                    rolelist = ",".join(sorted(r for r, p in roles.items() if bool(p) == bool(flag)))
                    if rolelist:
                        members[flag].setdefault(rolelist, set()).add(prefix + member)
        for flag in (0, 1):
            for rolelist in sorted(members[flag]):
                out.append(f"acl:{flag}:{path}:{','.join(sorted(members[flag][rolelist]))}:{rolelist}:")
    return "\n".join(out) + "\n"


# -- tree and lookups --------------------------------------------------------------------------------------


def iterate_acl_tree(root: dict[str, Any], path: str = "/") -> Iterator[tuple[str, dict[str, Any]]]:
    """``iterate_acl_tree``: the node, then its children in name order."""
    yield path, root
    base = "" if path == "/" else path
    for child in sorted(root.get("children") or {}):
        yield from iterate_acl_tree(root["children"][child], f"{base}/{child}")


def find_acl_tree_node(root: dict[str, Any], path: str) -> dict[str, Any]:
    """``find_acl_tree_node``: the node of ``path``, created on the way."""
    node = root
    for part in filter(None, path.split("/")):
        node = node.setdefault("children", {}).setdefault(part, {})
    return node


def user_of(cfg: Cfg, userid: str) -> dict[str, Any] | None:
    return cfg["users"].get(userid)


def token_of(cfg: Cfg, userid: str, token: str) -> dict[str, Any] | None:
    user = user_of(cfg, userid)
    return None if user is None else (user.get("tokens") or {}).get(token)


def delete_user_acl(cfg: Cfg, userid: str) -> None:
    for _, node in iterate_acl_tree(cfg["acl_root"]):
        (node.get("users") or {}).pop(userid, None)


def delete_user_group(cfg: Cfg, userid: str) -> None:
    for group in cfg["groups"].values():
        group.get("users", {}).pop(userid, None)


def delete_pool_acl(cfg: Cfg, pool: str) -> None:
    """``delete_pool_acl``: drop the ACL subtree of ``/pool/<pool>``."""
    ((cfg["acl_root"].get("children") or {}).get("pool") or {}).get("children", {}).pop(pool, None)


def members(node: dict[str, Any]) -> Iterator[tuple[str, str, str, int]]:
    """(type, ugid, role, propagate) of one ACL node, as ``GET /access/acl`` lists them."""
    for kind in ("user", "group", "token"):
        for ugid, roles in (node.get(kind + "s") or {}).items():
            for role, propagate in roles.items():
                yield kind, ugid, role, propagate


# -- secrets (token.cfg, shadow.cfg), hashed ---------------------------------------------------------------


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """A salted PBKDF2-SHA256 hash, ``pbkdf2-sha256$<iterations>$<salt>$<hash>`` (hex)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8", "surrogateescape"), salt, PASSWORD_ITERATIONS)
    return f"pbkdf2-sha256${PASSWORD_ITERATIONS}${salt.hex()}${digest.hex()}"


def hash_token(secret: str) -> str:
    """Token secrets are random UUIDs (122 bits): one SHA-256 suffices, and it keeps every request fast."""
    return "sha256$" + hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def secret_matches(stored: str, secret: str) -> bool:
    """Compare a presented secret with its stored hash in constant time (bytes, any input)."""
    kind, _, rest = stored.partition("$")
    if kind == "sha256":
        candidate = hash_token(secret)
    elif kind == "pbkdf2-sha256":
        iterations, salt, _ = rest.split("$", 2)
        candidate = hash_secret(secret, bytes.fromhex(salt)) if int(iterations) == PASSWORD_ITERATIONS else ""
    else:
        return False
    return hmac.compare_digest(candidate.encode(), stored.encode())


def parse_secrets(text: str) -> dict[str, str]:
    """``<id> <hash>`` per line (the layout of PVE's token.cfg)."""
    out = {}
    for line in text.splitlines():
        parts = line.split(" ", 1)
        if len(parts) == 2:
            out[parts[0]] = parts[1]
    return out


def write_secrets(data: dict[str, str]) -> str:
    return "".join(f"{key} {data[key]}\n" for key in sorted(data))


Mutation = Callable[[Cfg], Any]
