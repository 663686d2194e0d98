"""Build the sandbox's cluster from a seed YAML file or from the three stack files.

A seed describes nodes, storages, pools and guests, plus backup jobs as ``POST /cluster/backup``
parameters. Jobs are never written into the model directly: ``create_jobs`` sends them through the
API handler in-process, so a seeded job passes PVE's validation exactly like one made by a client.
Errors name the file, the line and the key, and say what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vzkeep.errors import UsageError
from vzkeep.pve import retention
from vzkeep.pve.values import UnknownTimeZone, load_zone
from vzkeep.sandbox.api.errors import ApiError
from vzkeep.sandbox.model import Cluster, Guest, Node, Pool, Storage
from vzkeep.sandbox.storages import confined_path, storage_root
from vzkeep.sandbox.templates import write_ct_template
from vzkeep.yamlfile import YamlFileError, load_yaml

LINE = "__line__"
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|K|KB|KiB|M|MB|MiB|G|GB|GiB|T|TB|TiB)?\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2,
              "mib": 1024**2, "g": 1024**3, "gb": 1000**3, "gib": 1024**3, "t": 1024**4, "tb": 1000**4,
              "tib": 1024**4}
NODE_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
STORAGE_RE = re.compile(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", re.IGNORECASE)
SECTIONS = ("cluster", "pve_version", "nodes", "storages", "pools", "guests", "jobs")
KEY_LINES = "__key_lines__"
DEFAULT_SEED = Path(__file__).with_name("seeds") / "default.yaml"


class SeedError(UsageError, ValueError):
    """A seed problem, already phrased for the user: ``file line N: key: problem``."""


@dataclass
class Seed:
    cluster: Cluster
    jobs: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (line, POST params)
    source: str = "seed"


def parse_size(text: Any) -> int:
    """``8GiB``, ``500 MB``, ``1.5T`` or a plain number of bytes → bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = SIZE_RE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size: write e.g. 8GiB, 500MB or a number of bytes")
    return int(float(match.group(1)) * SIZE_UNITS[(match.group(2) or "").lower()])


class _Reader:
    """Walks the parsed document; every complaint carries the file and line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, item: dict[str, Any] | None, key: str, problem: str) -> SeedError:
        line = item.get(LINE, "?") if isinstance(item, dict) else "?"
        if isinstance(item, dict):
            line = item.get(KEY_LINES, {}).get(key.rsplit(".", 1)[-1], line)
        return SeedError(f"{self.source} line {line}: {key}: {problem}")

    def items(self, doc: dict[str, Any], section: str) -> list[dict[str, Any]]:
        value = doc.get(section) or []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(doc, section, "expected a list of mappings (one '- key: value' block per entry)")
        return value

    def require(self, item: dict[str, Any], key: str, where: str) -> Any:
        if item.get(key) in (None, ""):
            raise self.fail(item, f"{where}.{key}", "required")
        return item[key]

    def only(self, item: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in item:
            if key not in (LINE, KEY_LINES) and key not in allowed:
                raise self.fail(item, f"{where}.{key}", f"unknown key; allowed: {', '.join(allowed)}")


def _load_document(path: Path) -> dict[str, Any]:
    try:  # YAML 1.2 like the stack files, bounded, no aliases or duplicate keys; each mapping gets its line
        loaded = load_yaml(path, line_key=LINE)
    except YamlFileError as exc:
        raise SeedError(exc.message) from None
    doc = loaded.data
    if not isinstance(doc, dict):
        raise SeedError(f"{path} line 1: a seed is a mapping with the sections {', '.join(SECTIONS)}")
    _add_key_lines(doc, (), loaded.lines)
    return doc


def _add_key_lines(value: Any, path: tuple[str | int, ...], lines: Mapping[tuple[str | int, ...], int]) -> None:
    """Give every mapping the line of each of its keys (``KEY_LINES``), so a complaint names the key's line."""
    if isinstance(value, dict):
        keys = [key for key in value if key != LINE]
        value[KEY_LINES] = {key: lines[(*path, key)] for key in keys if (*path, key) in lines}
        for key in keys:
            _add_key_lines(value[key], (*path, key), lines)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _add_key_lines(item, (*path, index), lines)


def _nodes(r: _Reader, doc: dict[str, Any]) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    for i, item in enumerate(r.items(doc, "nodes")):
        where = f"nodes[{i}]"
        r.only(item, ("name", "timezone", "online"), where)
        name = str(r.require(item, "name", where))
        if not NODE_RE.match(name):
            raise r.fail(item, f"{where}.name", f"{name!r} is not a node name (letters, digits, '-')")
        tz = str(item.get("timezone", "Europe/Paris"))
        try:
            load_zone(tz)
        except UnknownTimeZone as exc:
            raise r.fail(item, f"{where}.timezone", str(exc)) from None
        if name in nodes:
            raise r.fail(item, f"{where}.name", f"node {name!r} is listed twice")
        nodes[name] = Node(name=name, timezone=tz, online=bool(item.get("online", True)))
    if not nodes:
        raise r.fail(doc, "nodes", "a seed needs at least one node")
    return nodes


# Directory-backed storage types the seed can describe; nfs and cifs are always shared (Storage model).
SEED_TYPES = ("dir", "nfs", "cifs")
STORAGE_KEYS = ("id", "type", "path", "shared", "nodes", "content", "capacity", "prune_backups", "server",
                "export", "enabled")


def _storages(r: _Reader, doc: dict[str, Any], nodes: dict[str, Node], directory: Path) -> dict[str, Storage]:
    storages: dict[str, Storage] = {}
    for i, item in enumerate(r.items(doc, "storages")):
        where = f"storages[{i}]"
        r.only(item, STORAGE_KEYS, where)
        sid = str(r.require(item, "id", where))
        if not STORAGE_RE.match(sid):
            raise r.fail(item, f"{where}.id", f"storage ID '{sid}' contains illegal characters")
        kind = item.get("type", "dir")
        if kind not in SEED_TYPES:
            raise r.fail(item, f"{where}.type", f"{kind!r} is not supported; use {', '.join(SEED_TYPES)}")
        on_nodes = item.get("nodes")
        for n in on_nodes or []:
            if n not in nodes:
                raise r.fail(item, f"{where}.nodes", f"unknown node {n!r}; nodes are {', '.join(nodes)}")
        try:
            capacity = parse_size(item["capacity"]) if item.get("capacity") is not None else None
        except ValueError as exc:
            raise r.fail(item, f"{where}.capacity", str(exc)) from None
        prune = item.get("prune_backups")
        if prune is not None:
            try:
                prune = retention.format_prune_backups(str(prune))
            except ValueError as exc:
                raise r.fail(item, f"{where}.prune_backups", str(exc)) from None
        try:
            path = confined_path(directory, str(item.get("path") or f"storages/{sid}"))
        except ValueError as exc:
            raise r.fail(item, f"{where}.path", str(exc)) from None
        clash = next((s.id for s in storages.values() if s.path == str(path)), None)
        if clash:
            raise r.fail(item, f"{where}.path", f"{item.get('path')!r} is already storage '{clash}''s directory")
        storages[sid] = Storage(
            id=sid, type=kind, path=str(path), shared=bool(item.get("shared", False)),
            nodes=list(on_nodes) if on_nodes else None, content=list(item.get("content") or ["backup"]),
            capacity_bytes=capacity, prune_backups=prune, server=item.get("server"),
            export=item.get("export"), enabled=bool(item.get("enabled", True)),
        )
    return storages


def _pools(r: _Reader, doc: dict[str, Any]) -> dict[str, Pool]:
    pools: dict[str, Pool] = {}
    for i, item in enumerate(r.items(doc, "pools")):
        r.only(item, ("id", "comment"), f"pools[{i}]")
        pid = str(r.require(item, "id", f"pools[{i}]"))
        pools[pid] = Pool(id=pid, comment=str(item.get("comment", "")))
    return pools


GUEST_KEYS = ("vmid", "name", "type", "node", "pool", "disk", "status", "tags", "memory", "cores", "lock",
              "config")


def _guest(r: _Reader, item: dict[str, Any], where: str, nodes: dict[str, Node], pools: dict[str, Pool]) -> Guest:
    r.only(item, GUEST_KEYS, where)
    vmid = r.require(item, "vmid", where)
    if not isinstance(vmid, int) or isinstance(vmid, bool) or not 100 <= vmid <= 999_999_999:
        raise r.fail(item, f"{where}.vmid", f"must be an integer 100..999999999, got {vmid!r}")
    kind = r.require(item, "type", where)
    if kind not in ("qemu", "lxc"):
        raise r.fail(item, f"{where}.type", f"{kind!r} is not a guest type; use qemu or lxc")
    node = r.require(item, "node", where)
    if node not in nodes:
        raise r.fail(item, f"{where}.node", f"unknown node {node!r}; nodes are {', '.join(nodes)}")
    pool = item.get("pool")
    if pool is not None and pool not in pools:
        raise r.fail(item, f"{where}.pool", f"unknown pool {pool!r}; add it under 'pools'")
    status = item.get("status", "running")
    if status not in ("running", "stopped"):
        raise r.fail(item, f"{where}.status", f"{status!r}: use running or stopped")
    try:
        disk = parse_size(item.get("disk", "8GiB"))
    except ValueError as exc:
        raise r.fail(item, f"{where}.disk", str(exc)) from None
    config = {str(k): str(v) for k, v in (item.get("config") or {}).items() if k not in (LINE, KEY_LINES)}
    for key in ("memory", "cores"):
        if key in item:
            config[key] = str(item[key])
    tags = item.get("tags") or []
    return Guest(vmid=vmid, name=str(r.require(item, "name", where)), type=kind, node=node, pool=pool,
                 disk_bytes=disk, status=status, tags=[str(t) for t in tags], lock=item.get("lock"),
                 config=config)


def _guests(r: _Reader, doc: dict[str, Any], nodes: dict[str, Node], pools: dict[str, Pool]) -> dict[int, Guest]:
    guests: dict[int, Guest] = {}
    for i, item in enumerate(r.items(doc, "guests")):
        guest = _guest(r, item, f"guests[{i}]", nodes, pools)
        if guest.vmid in guests:
            raise r.fail(item, f"guests[{i}].vmid", f"vmid {guest.vmid} is used twice")
        guests[guest.vmid] = guest
    return guests


def _jobs(r: _Reader, doc: dict[str, Any], nodes: dict[str, Node]) -> list[tuple[int, dict[str, str]]]:
    jobs = []
    for i, item in enumerate(r.items(doc, "jobs")):
        if item.get("node") is not None and str(item["node"]) not in nodes:
            raise r.fail(item, f"jobs[{i}].node", f"unknown node {item['node']!r}; nodes are {', '.join(nodes)}")
        params = {str(k): _api_text(v) for k, v in item.items() if k not in (LINE, KEY_LINES)}
        jobs.append((int(item.get(LINE, 0)), params))
    return jobs


def _pve_version(r: _Reader, doc: dict[str, Any]) -> str:
    """The PVE major version the sandbox plays (``pve_version: 9`` or ``8``; default 9)."""
    from vzkeep.sandbox.api.versions import UnknownVersion, get

    value = doc.get("pve_version")
    try:
        return get(None if value is None else str(value)).major
    except UnknownVersion as exc:
        raise r.fail(doc, "pve_version", str(exc)) from None


def _api_text(value: Any) -> str:
    """Seed values as a form-encoded client would send them (booleans as 1/0)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items() if k not in (LINE, KEY_LINES))
    return str(value)


def load_seed(path: Path, directory: Path) -> Seed:
    """Parse and check a seed file; storages are placed under ``directory``."""
    doc = _load_document(path)
    r = _Reader(str(path))
    for key in doc:
        if key not in (LINE, KEY_LINES) and key not in SECTIONS:
            raise r.fail(doc, key, f"unknown section; allowed: {', '.join(SECTIONS)}")
    version = _pve_version(r, doc)
    nodes = _nodes(r, doc)
    pools = _pools(r, doc)
    cluster = Cluster(
        name=str(doc.get("cluster", "vzkeep-sandbox")), nodes=nodes,
        storages=_storages(r, doc, nodes, directory), pools=pools, guests=_guests(r, doc, nodes, pools),
        pve_version=version,
    )
    return Seed(cluster=cluster, jobs=_jobs(r, doc, nodes), source=str(path))


def create_jobs(app: Any, seed: Seed) -> list[str]:
    """Create the seed's jobs through ``POST /cluster/backup`` (in-process); errors name the line."""
    created = []
    for line, params in seed.jobs:
        try:
            app.call("POST", "/cluster/backup", params)
        except ApiError as exc:
            detail = "; ".join(f"{k}: {v}" for k, v in (exc.errors or {}).items()) or exc.message.strip()
            raise SeedError(f"{seed.source} line {line}: jobs: PVE rejects this job: {detail}") from None
        created.append(params.get("id", "?"))
    return created


# pve-installer's storages of a new node (proxinstall: `local` dir /var/lib/vz, `local-lvm` lvmthin pve/data).
LOCAL_CONTENT = ["backup", "iso", "vztmpl"]
LOCAL_LVM_CONTENT = ["images", "rootdir"]


def from_stacks(root: Path, directory: Path) -> Seed:
    """What a cluster holds before `pulumi up` of the stacks under ``root``: their nodes, the inventories'
    guests (in no pool: the program puts them in theirs) and every node's stock storages, `local` (with
    the CT templates the stacks name, as `pveam download` leaves them) and `local-lvm`. Pools, backup
    storages, jobs and the exporter's identity arrive through `vzkeep sandbox apply`."""
    from vzkeep.config import load_stack_file, stack_names
    from vzkeep.plan import plan_stack

    cluster = Cluster(name="homelab")
    templates: set[str] = set()
    for name in stack_names(root):
        plan = plan_stack(load_stack_file(root / f"Pulumi.{name}.yaml"))
        tz = plan.settings.environment.timezone
        for node in plan.settings.environment.nodes:
            cluster.nodes.setdefault(node, Node(name=node, timezone=tz))
        for g in plan.settings.inventory:
            guest = next(spec for spec in plan.guests if spec.vmid == g.vmid)
            cluster.guests[g.vmid] = Guest(vmid=g.vmid, name=g.name, type=g.type, node=guest.node, pool=None,
                                           disk_bytes=g.disk_gb * 1024**3)
        if plan.settings.object_store is not None:
            templates.add(plan.settings.object_store.template)
    if not cluster.nodes:
        raise SeedError(f"{root}: no Pulumi.<stack>.yaml files found")
    local = Storage(id="local", type="dir", path=str(confined_path(directory, "storages/local")),
                    content=list(LOCAL_CONTENT), options={"path": "/var/lib/vz"})
    cluster.storages["local"] = local
    cluster.storages["local-lvm"] = Storage(
        id="local-lvm", type="lvmthin", path=str(confined_path(directory, "storages/local-lvm")),
        content=list(LOCAL_LVM_CONTENT), options={"thinpool": "data", "vgname": "pve"})
    for volid in sorted(templates):
        storage, _, volume = volid.partition(":")
        if storage == "local" and volume.startswith("vztmpl/"):
            for node in cluster.nodes:
                write_ct_template(storage_root(local, node) / "template" / "cache" / volume.removeprefix("vztmpl/"))
    return Seed(cluster=cluster, jobs=[], source=f"stacks in {root}")
