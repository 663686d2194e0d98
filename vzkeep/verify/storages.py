"""Where a storage's backups are, which volid a file has, and in which zone its node names archives.

Two sources. Connected (``--sandbox``, ``--endpoint``): the PVE API says it all: ``GET /storage/{id}``
(pve-storage ``PVE/API2/Storage/Config.pm``), each node's content listing and a volume's path
(``PVE/API2/Storage/Content.pm``: ``path`` is ``PVE::Storage::path`` of the volid, as the node sees it: a
node-local storage is one directory per node, a shared one the same place everywhere), and each node's zone
(``GET /nodes/{node}/time``, pve-manager ``PVE/API2/Nodes.pm``: ``timezone`` from ``/etc/timezone``). On a
node without a connection: ``/etc/pve/storage.cfg`` and the node's own ``/etc/timezone``.

Standard library only: this runs on PVE nodes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vzkeep.errors import UsageError
from vzkeep.pve import archive

DEFAULT_STORAGE_CFG = "/etc/pve/storage.cfg"
COROSYNC_CONF = "/etc/pve/corosync.conf"
TIMEZONE_FILE = "/etc/timezone"


class StorageConfigError(UsageError, ValueError):
    """storage.cfg cannot tell where a storage's backups are."""


# Storage types whose backups are files in `<path>/dump` (pve-storage plugins with a `path`, PVE/Storage/Plugin.pm
# get_subdir; NFSPlugin.pm, CIFSPlugin.pm and CephFSPlugin.pm mount at /mnt/pve/<storeid> unless configured
# otherwise).
_PATH_TYPES = {"dir", "nfs", "cifs", "cephfs", "glusterfs", "btrfs"}
_DEFAULT_MOUNTED = {"nfs", "cifs", "cephfs", "glusterfs"}


def _on_pbs(storage_id: str) -> StorageConfigError:
    return StorageConfigError(f"storage '{storage_id}' is a Proxmox Backup Server: its backups are not files here; "
                              "verify them on the PBS (proxmox-backup-manager verify)")


@dataclass(frozen=True)
class Storage:
    id: str
    type: str
    options: dict[str, str]

    def dump_dir(self) -> Path:
        if self.type == "pbs":
            raise _on_pbs(self.id)
        if self.type not in _PATH_TYPES:
            raise StorageConfigError(
                f"storage '{self.id}' has type '{self.type}', which cannot hold backups "
                f"(allowed: {', '.join(sorted(_PATH_TYPES))})"
            )
        base = self.options.get("path") or (f"/mnt/pve/{self.id}" if self.type in _DEFAULT_MOUNTED else None)
        if not base:
            raise StorageConfigError(f"storage '{self.id}' ({self.type}) has no 'path' in storage.cfg")
        return Path(base) / "dump"


def parse_storage_cfg(text: str, source: str = DEFAULT_STORAGE_CFG) -> dict[str, Storage]:
    """PVE's storage.cfg: ``<type>: <id>`` starts a section, indented ``key value`` lines follow."""
    storages: dict[str, Storage] = {}
    current: Storage | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not raw[0].isspace():
            kind, sep, ident = line.partition(":")
            if not sep or not ident.strip() or " " in kind:
                raise StorageConfigError(f"{source}:{number}: expected '<type>: <storage id>', got {line!r}")
            current = Storage(ident.strip(), kind.strip(), {})
            storages[current.id] = current
            continue
        if current is None:
            raise StorageConfigError(f"{source}:{number}: {line.strip()!r} comes before any storage section")
        key, _, value = line.strip().partition(" ")
        current.options[key] = value.strip()
    return storages


def load_storages(cfg_path: str | os.PathLike[str]) -> dict[str, Storage]:
    path = Path(cfg_path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise StorageConfigError(
            f"cannot read {path}: {exc.strerror}; pass the file's location with --storage-cfg"
        ) from exc
    return parse_storage_cfg(text, str(path))


def find_archives(directory: str | os.PathLike[str]) -> list[str]:
    """Absolute paths of the files PVE would list as backups in ``directory`` (pve-storage PVE/Storage.pm
    archive_info: its first regex)."""
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if not entry.is_file():
                continue
            try:
                archive.parse(entry.name)
            except ValueError:
                continue  # .log, .notes, .dat, foreign files
            found.append(os.path.abspath(entry.path))
    return sorted(found)


def volids_for(paths: Iterable[str], storages: dict[str, Storage]) -> dict[str, str]:
    """``<storage>:backup/<file>`` for each path that lies directly in some storage's dump dir."""
    by_dir: dict[str, str] = {}
    for storage in storages.values():
        with contextlib.suppress(StorageConfigError):
            by_dir[os.path.realpath(storage.dump_dir())] = storage.id
    volids = {}
    for path in paths:
        storage_id = by_dir.get(os.path.realpath(os.path.dirname(path)))
        if storage_id is not None:
            volids[path] = f"{storage_id}:backup/{os.path.basename(path)}"
    return volids


# ---------------------------------------------------------------------------------------------------------
# On a node, without a connection


def on_pve_node() -> bool:
    """True on a PVE node: its cluster file system holds storage.cfg."""
    return os.path.isfile(DEFAULT_STORAGE_CFG)


def local_zone() -> str | None:
    """This node's zone as PVE reads it (``/etc/timezone``, pve-manager PVE/API2/Nodes.pm ``time``), or the
    zone /etc/localtime links to; None when neither names one."""
    with contextlib.suppress(OSError):
        name = Path(TIMEZONE_FILE).read_text().strip()
        if name:
            return name
    with contextlib.suppress(OSError):
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    return None


def local_cluster_name() -> str | None:
    """The cluster this node belongs to (``cluster_name`` in corosync.conf, as pve-cluster writes it), or
    ``host-<node>`` for a node on its own, matching what the API gives (``cluster_name``)."""
    with contextlib.suppress(OSError):
        for line in Path(COROSYNC_CONF).read_text().splitlines():
            key, _, value = line.strip().partition(":")
            if key.strip() == "cluster_name" and value.strip():
                return value.strip()
    return None


# ---------------------------------------------------------------------------------------------------------
# Through the PVE API


@dataclass(frozen=True)
class Place:
    """One storage's backup directory as one node sees it, and what PVE lists there."""

    storage: str
    node: str
    dump_dir: str | None  # None: nothing listed, so PVE named no path
    volumes: dict[str, int]  # file name -> size, from the content listing


@dataclass(frozen=True)
class Located:
    volid: str
    node: str


@dataclass
class ClusterView:
    """What verify asks a cluster (a ``vzkeep.pve.client.PveClient``), each answer asked once."""

    client: Any
    _times: dict[str, dict[str, Any]] = field(default_factory=dict)
    _places: dict[str, list[Place]] = field(default_factory=dict)
    _nodes: list[str] | None = None
    _configs: dict[str, dict[str, Any]] | None = None

    def cluster_name(self) -> str:
        """The cluster's name (``GET /cluster/status``, its ``cluster`` entry), or ``host-<node>`` for a node
        on its own (the same name ``vzkeep.verify.store.offline_cluster`` gives on that node)."""
        status = self.client.get("cluster/status")
        for entry in status or []:
            if entry.get("type") == "cluster" and entry.get("name"):
                return str(entry["name"])
        nodes = [e.get("name") for e in status or [] if e.get("type") == "node" and e.get("name")]
        return f"host-{nodes[0]}" if len(nodes) == 1 else "cluster-" + "-".join(sorted(nodes))

    def nodes(self) -> list[str]:
        """The online nodes (``GET /nodes``): an offline node answers nothing."""
        if self._nodes is None:
            self._nodes = sorted(str(n["node"]) for n in self.client.get("nodes") or []
                                 if n.get("status") == "online")
        return self._nodes

    def _time(self, node: str) -> dict[str, Any]:
        """``GET /nodes/{node}/time`` (pve-manager ``PVE/API2/Nodes.pm``: ``time``, ``localtime``, ``timezone``),
        asked once per node; {} when it cannot be asked."""
        if node not in self._times:
            from vzkeep.pve.client import PveApiError

            try:
                answer = self.client.get(f"nodes/{node}/time")
            except PveApiError:
                answer = None
            self._times[node] = answer if isinstance(answer, dict) else {}
        return self._times[node]

    def zone(self, node: str) -> str | None:
        """The node's zone (``GET /nodes/{node}/time``); None when it cannot be asked."""
        return str(self._time(node).get("timezone") or "") or None

    def clock(self) -> Callable[[], float]:
        """The cluster's clock: this machine's, shifted by how far the first online node's ``time`` was from it
        when asked. Results are dated on it, as backups and the exporter's ages are (a drifting host or a
        sandbox whose clock is not the wall clock would otherwise date them in another week). This machine's
        own clock when no node answers."""
        from vzkeep.pve.client import PveApiError

        asked = time.time()
        try:
            first = self.nodes()[:1]
        except PveApiError:
            first = []
        reported = next((t["time"] for t in map(self._time, first) if isinstance(t.get("time"), int)), None)
        offset = 0.0 if reported is None else reported - asked
        return lambda: time.time() + offset

    def common_zone(self) -> str | None:
        """The zone of every online node when they all share one (a homelab's usual case), else None."""
        zones = {self.zone(node) for node in self.nodes()}
        return zones.pop() if len(zones) == 1 else None

    def storage_configs(self) -> dict[str, dict[str, Any]]:
        """Every storage this token may see (``GET /storage``: the index filters by privilege, while
        ``GET /storage/{id}`` needs Datastore.Allocate, pve-storage PVE/API2/Storage/Config.pm)."""
        if self._configs is None:
            self._configs = {str(s["storage"]): s for s in self.client.get("storage") or [] if s.get("storage")}
        return self._configs

    def storage(self, storage_id: str) -> dict[str, Any]:
        config = self.storage_configs().get(storage_id)
        if config is None:
            known = ", ".join(self.backup_storages()) or "none"
            raise UsageError(f"--storage {storage_id}: no such storage on the cluster, or this token may not see "
                             f"it; storages holding backups: {known}")
        if config.get("type") == "pbs":
            raise _on_pbs(storage_id)
        if "backup" not in str(config.get("content", "")).split(","):
            raise UsageError(f"--storage {storage_id}: it holds no backups (content: {config.get('content')})")
        return config

    def backup_storages(self) -> list[str]:
        """File storages that may hold backups (``GET /storage``)."""
        return sorted(sid for sid, s in self.storage_configs().items()
                      if s.get("type") in _PATH_TYPES and "backup" in str(s.get("content", "")).split(","))

    def places(self, storage_id: str, config: dict[str, Any] | None = None) -> list[Place]:
        """Where ``storage_id``'s backups are: one place for a shared storage, one per node for a local one
        (on a node of the cluster, only that node's: the others' directories are on their own disks)."""
        if storage_id in self._places:
            return self._places[storage_id]
        config = config if config is not None else self.storage(storage_id)
        allowed = [n for n in str(config.get("nodes") or "").split(",") if n]
        nodes = [n for n in self.nodes() if not allowed or n in allowed]
        here = socket.gethostname().split(".")[0]
        if int(config.get("shared") or 0):
            nodes = nodes[:1]
        elif here in nodes:
            nodes = [here]
        self._places[storage_id] = [self._place(storage_id, node) for node in nodes]
        return self._places[storage_id]

    def _place(self, storage_id: str, node: str) -> Place:
        listing = self.client.get(f"nodes/{node}/storage/{storage_id}/content", content="backup") or []
        volumes = {str(e["volid"]).split("/", 1)[-1]: int(e.get("size") or 0) for e in listing if e.get("volid")}
        dump_dir = None
        if listing:
            info = self.client.get(f"nodes/{node}/storage/{storage_id}/content/{listing[0]['volid']}")
            if isinstance(info, dict) and info.get("path"):
                dump_dir = os.path.dirname(str(info["path"]))
        return Place(storage_id, node, dump_dir, volumes)

    def locate(self, paths: Iterable[str]) -> dict[str, Located]:
        """The volid and node of each file that lies in some storage's backup directory as PVE lists it."""
        wanted = list(paths)
        by_dir: dict[tuple[str, str], Located] = {}
        for storage_id in self.backup_storages():
            for place in self.places(storage_id):
                if place.dump_dir is None:
                    continue
                real = os.path.realpath(place.dump_dir)
                for name in place.volumes:
                    by_dir.setdefault((real, name), Located(f"{storage_id}:backup/{name}", place.node))
        found = {}
        for path in wanted:
            hit = by_dir.get((os.path.realpath(os.path.dirname(path)), os.path.basename(path)))
            if hit is not None:
                found[path] = hit
        return found


def cluster_results_path(client: Any) -> Path:
    """The results store of the cluster ``client`` reaches (``vzkeep.verify.store.default_results_path``);
    this host's when the cluster's name cannot be read."""
    from vzkeep.pve.client import PveApiError, PveUnreachable
    from vzkeep.verify.store import default_results_path

    try:
        return default_results_path(ClusterView(client).cluster_name())
    except (PveApiError, PveUnreachable, AttributeError, TypeError):
        return default_results_path()
