"""The storage configuration: ``/storage`` (GET, POST) and ``/storage/{storage}`` (GET, PUT, DELETE).

Sources: pve-storage ``src/PVE/API2/Storage/Config.pm``; the per-type checks of pve-common
``src/PVE/SectionConfig.pm`` (``check_config``, ``check_value``) and pve-storage
``src/PVE/Storage/Plugin.pm`` (``decode_value``, ``parse_config``: network storages are shared),
``DirPlugin.pm``, ``NFSPlugin.pm``, ``CIFSPlugin.pm``, ``LvmThinPlugin.pm`` (``options``, ``plugindata``,
``check_config``). The sandbox emulates ``dir``, ``nfs`` and ``cifs`` storages, whose files always live in
the sandbox's directory whatever ``path`` the configuration names, and ``lvmthin`` (a stock node's
``local-lvm``), which holds guest disks only.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from typing import Any

from vzkeep.sandbox import configuration
from vzkeep.sandbox.api.access.usercfg import find_acl_tree_node
from vzkeep.sandbox.api.common import cluster_of
from vzkeep.sandbox.api.errors import ApiError, die, locked
from vzkeep.sandbox.api.formats import passes, perl_match, split_list, verify_node_name
from vzkeep.sandbox.api.router import Handlers, Request
from vzkeep.sandbox.model import Storage

_FIXED = {"fixed": 1}
_OPT = {"optional": 1}
_COMMON = {"content-dirs": _OPT, "nodes": _OPT, "disable": _OPT, "prune-backups": _OPT,
           "max-protected-backups": _OPT, "maxfiles": _OPT, "content": _OPT, "format": _OPT, "mkdir": _OPT,
           "create-base-path": _OPT, "create-subdirs": _OPT, "bwlimit": _OPT, "preallocation": _OPT,
           "snapshot-as-volume-chain": {"optional": 1, "fixed": 1}}
# <Plugin>.pm ``options``; a key the version's schema lacks (maxfiles in 9, snapshot-as-volume-chain in 8)
# is dropped when used (``plugin_options``).
PLUGIN_OPTIONS: dict[str, dict[str, dict[str, int]]] = {
    "dir": {"path": _FIXED, "shared": _OPT, "is_mountpoint": _OPT, **_COMMON},
    "nfs": {"path": _FIXED, "server": _FIXED, "export": _FIXED, "options": _OPT, **_COMMON},
    "cifs": {"path": _FIXED, "server": _FIXED, "share": _FIXED, "subdir": _OPT, "username": _OPT, "password": _OPT,
             "domain": _OPT, "smbversion": _OPT, "options": _OPT, **_COMMON},
    "lvmthin": {"thinpool": _FIXED, "vgname": _FIXED, "nodes": _OPT, "disable": _OPT, "content": _OPT,
                "bwlimit": _OPT},
}
# ``plugindata`` content: what the type may hold, and its default
_ALL_CONTENT = {"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import"}
PLUGIN_CONTENT = {"dir": (_ALL_CONTENT | {"none"}, {"images", "rootdir"}), "nfs": (_ALL_CONTENT, {"images"}),
                  "cifs": (_ALL_CONTENT, {"images"}), "lvmthin": ({"images", "rootdir"}, {"images", "rootdir"})}
SHARED_TYPES = {"iscsi", "nfs", "cifs", "rbd", "cephfs", "iscsidirect", "zfs", "drbd", "pbs"}  # @SHARED_STORAGE
SENSITIVE = {"cifs": ("password",)}  # plugindata 'sensitive-properties': never returned by the API
MODEL_KEYS = ("type", "storage", "content", "nodes", "disable", "shared", "prune-backups", "server", "export")


def plugin_options(req: Request, kind: str) -> dict[str, dict[str, int]]:
    schema = req.version.schema.get("POST", "/storage").properties
    return {k: v for k, v in PLUGIN_OPTIONS[kind].items() if k in schema}


def scfg(storage: Storage) -> dict[str, Any]:
    """The storage's section as ``PVE::Storage::config()`` holds it (content and nodes as strings)."""
    out: dict[str, Any] = {"type": storage.type, "content": ",".join(sorted(storage.content)) or "none"}
    if "path" in PLUGIN_OPTIONS.get(storage.type, {}):
        out["path"] = storage.options.get("path", storage.path)
    if storage.nodes is not None:
        out["nodes"] = ",".join(sorted(storage.nodes))
    if storage.shared or storage.type in SHARED_TYPES:
        out["shared"] = 1
    if not storage.enabled:
        out["disable"] = 1
    if storage.prune_backups:
        out["prune-backups"] = storage.prune_backups
    for key in ("server", "export"):
        if getattr(storage, key):
            out[key] = getattr(storage, key)
    out.update({k: v for k, v in storage.options.items() if k != "path" and k not in SENSITIVE.get(storage.type, ())})
    return out


def config_digest(storages: dict[str, Storage]) -> str:
    """A SHA-1 over the whole configuration, like PVE's digest of ``storage.cfg``."""
    text = json.dumps({sid: scfg(s) for sid, s in sorted(storages.items())}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


def _view(storages: dict[str, Storage], sid: str) -> dict[str, Any]:
    """``$api_storage_config``: the section plus ``storage`` and the file's ``digest``."""
    return {**scfg(storages[sid]), "storage": sid, "digest": config_digest(storages)}


def _index(req: Request) -> list[dict[str, Any]]:
    storages = cluster_of(req).storages
    out = []
    for sid in sorted(storages):
        if not req.allowed(f"/storage/{sid}", "Datastore.Audit", "Datastore.AllocateSpace", any_=True):
            continue
        if req.params.get("type") and req.params["type"] != storages[sid].type:
            continue
        out.append(_view(storages, sid))
    return out


def _read(req: Request) -> dict[str, Any]:
    storages = cluster_of(req).storages
    if req.params["storage"] not in storages:
        raise die(f"storage '{req.params['storage']}' does not exist\n")
    return _view(storages, req.params["storage"])


# -- SectionConfig check_config / check_value, Plugin decode_value ----------------------------------------


def _check_value(options: dict[str, dict[str, int]], key: str, value: Any) -> Any:
    if key not in options:
        raise ValueError(f"unexpected property '{key}'\n")
    if re.search(r"[\n\r]", str(value)):
        raise ValueError("property contains a line feed\n")
    return value


def _decode_content(kind: str, value: str) -> set[str]:
    valid, _ = PLUGIN_CONTENT[kind]
    res = {c for c in split_list(value) if c in valid}  # others: "storage does not support content type" (warn)
    if "none" in res and len(res) > 1:
        raise ValueError("unable to combine 'none' with other content types\n")
    if not res and "none" not in valid:
        raise ValueError("storage does not support content type 'none'\n")
    return res - {"none"}


def check_config(req: Request, kind: str, sid: str, params: dict[str, Any], create: bool) -> dict[str, Any]:
    """``check_config``: every key known to the type and not fixed (on update); on create every required
    key present; values decoded (content and nodes to sets). Raises ValueError with PVE's text."""
    options = plugin_options(req, kind)
    settings: dict[str, Any] = {}
    for key, value in params.items():
        if not create and options.get(key, {}).get("fixed"):
            raise ValueError(f"can't change value of fixed parameter '{key}'\n")
        if value is None:
            raise ValueError(f"got undefined value for option '{key}'\n")
        value = _check_value(options, key, value)
        if key == "content":
            settings[key] = _decode_content(kind, str(value))
        elif key == "nodes":
            settings[key] = {n for n in split_list(str(value)) if passes(verify_node_name, n)}
        else:
            settings[key] = value
    if create:
        for key, spec in options.items():
            if not spec.get("optional") and settings.get(key) is None:
                raise ValueError(f"missing value for required option '{key}'\n")
    return settings


def _create(req: Request) -> dict[str, Any]:
    params = dict(req.params)
    kind, sid = params.pop("type"), params.pop("storage")
    if kind not in PLUGIN_OPTIONS:
        raise die(f"sandbox: storage type '{kind}' is not emulated (emulated types: {', '.join(PLUGIN_OPTIONS)})\n")
    if not params.get("nodes"):
        params.pop("nodes", None)  # "prevent an empty nodelist"
    if kind in ("nfs", "cifs") and not params.get("path"):
        params["path"] = f"/mnt/pve/{sid}"  # NFSPlugin/CIFSPlugin check_config
    try:
        settings = check_config(req, kind, sid, params, create=True)
        if kind == "dir":
            if not perl_match(r"^/[-/a-zA-Z0-9_.@]+$", str(settings["path"])):
                raise ValueError(f"illegal path for directory storage: {settings['path']}\n")
            settings["path"] = posixpath.normpath(str(settings["path"]))
    except ValueError as exc:
        raise die(str(exc)) from None
    try:
        with configuration.storages(req.app.sandbox) as draft:
            if sid in draft:
                raise ValueError(f"storage ID '{sid}' already defined\n")
            draft[sid] = _new_storage(req, kind, sid, settings)
    except ValueError as exc:
        raise locked("create storage failed", exc) from None
    return {"storage": sid, "type": kind}


def _new_storage(req: Request, kind: str, sid: str, settings: dict[str, Any]) -> Storage:
    _, default_content = PLUGIN_CONTENT[kind]
    storage = Storage(id=sid, type=kind, path=configuration.storage_directory(req.app.sandbox, sid),
                      content=sorted(default_content))
    _apply(storage, settings, [])
    return storage


def _apply(storage: Storage, settings: dict[str, Any], delete: list[str]) -> None:
    """Settings (decoded) and deletions onto the engine's storage."""
    for key in delete:
        if key == "content":
            storage.content = sorted(PLUGIN_CONTENT[storage.type][1])
        elif key == "nodes":
            storage.nodes = None
        elif key == "disable":
            storage.enabled = True
        elif key == "shared":
            storage.shared = storage.type in SHARED_TYPES
        elif key == "prune-backups":
            storage.prune_backups = None
        else:
            storage.options.pop(key, None)
    for key, value in settings.items():
        if key == "content":
            storage.content = sorted(value)
        elif key == "nodes":
            storage.nodes = sorted(value) or None
        elif key == "disable":
            storage.enabled = not int(value)
        elif key == "shared":
            storage.shared = bool(int(value)) or storage.type in SHARED_TYPES
        elif key == "prune-backups":
            storage.prune_backups = str(value)
        elif key in ("server", "export"):
            setattr(storage, key, str(value))
        else:
            storage.options[key] = value
    if storage.type in SHARED_TYPES:
        storage.shared = True


def _update(req: Request) -> dict[str, Any]:
    params = dict(req.params)
    sid = params.pop("storage")
    digest = params.pop("digest", None)
    delete = split_list(params.pop("delete", None)) if req.params.get("delete") else []
    try:
        with configuration.storages(req.app.sandbox) as draft:
            if digest and digest != config_digest(draft):
                raise ValueError("detected modified configuration - file changed by other user? Try again.\n")
            storage = draft.get(sid)
            if storage is None:
                raise ValueError(f"storage '{sid}' does not exist\n")
            if storage.type not in PLUGIN_OPTIONS:
                raise ValueError(f"sandbox: storage type '{storage.type}' is not emulated\n")
            settings = check_config(req, storage.type, sid, params, create=False)
            options = plugin_options(req, storage.type)
            for key in delete:
                spec = options.get(key)
                if spec is None:
                    raise ValueError(f"no such option '{key}'\n")
                if not spec.get("optional"):
                    raise ValueError(f"unable to delete required option '{key}'\n")
                if spec.get("fixed"):
                    raise ValueError(f"unable to delete fixed option '{key}'\n")
                if settings.get(key) is not None:
                    raise ValueError(f"cannot set and delete property '{key}' at the same time!\n")
            _apply(storage, settings, delete)
            kind = storage.type
    except ValueError as exc:
        raise locked("update storage failed", exc) from None
    return {"storage": sid, "type": kind}


def _delete(req: Request) -> None:
    sid = req.params["storage"]
    sandbox = req.app.sandbox
    try:
        with configuration.storages(sandbox) as draft:
            if sid not in draft:
                raise ValueError(f"storage '{sid}' does not exist\n")
            del draft[sid]
    except ValueError as exc:
        raise locked("delete storage failed", exc) from None
    # AccessControl.pm remove_storage_access: its ACL subtree and pool memberships go with it
    try:
        with configuration.pools(sandbox) as pools:
            for pool in pools.pools.values():
                if sid in pool.storage:
                    pool.storage.remove(sid)
        with configuration.access(sandbox, req.app.access) as cfg:
            find_acl_tree_node(cfg["acl_root"], "/storage").get("children", {}).pop(sid, None)
    except ApiError as exc:
        raise locked(f"access permissions cleanup for storage {sid} failed", exc) from None


def register(handlers: Handlers) -> None:
    handlers.add("GET", "/storage")(_index)
    handlers.add("POST", "/storage")(_create)
    handlers.add("GET", "/storage/{storage}")(_read)
    handlers.add("PUT", "/storage/{storage}")(_update)
    handlers.add("DELETE", "/storage/{storage}")(_delete)
