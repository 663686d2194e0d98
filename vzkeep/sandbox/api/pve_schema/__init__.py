"""PVE's published API schema, kept as data: ``pve-<version>.json.gz`` beside this module.

``load(version)`` gives every method of that PVE version: path template, parameters, return schema,
permission declaration, ``allowtoken``, ``protected``, ``proxyto``. The files are produced by
``extract.py`` from pve-docs ``api-viewer/apidata.js`` (origin, version and licence: README.md here).

The API viewer collapses indexed properties (``net0`` … ``net31``) into ``net[n]`` without their range
(pve-common ``RESTHandler.pm`` ``api_clone_schema``); ``INDEX_RANGES`` restores them from the constants
the PVE sources define, so a schema check sees ``net32`` as the undefined property it is.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

# name -> count of the indexed property family (property ``name0`` … ``name<count-1>``)
INDEX_RANGES: dict[str, int] = {
    "net": 32,  # qemu-server src/PVE/QemuServer.pm $MAX_NETS; pve-container src/PVE/LXC/Config.pm $MAX_LXC_NETWORKS
    "ipconfig": 32,  # qemu-server src/PVE/QemuServer.pm: one per $MAX_NETS
    "serial": 4,  # qemu-server src/PVE/QemuServer.pm $MAX_SERIAL_PORTS
    "parallel": 3,  # qemu-server src/PVE/QemuServer.pm $MAX_PARALLEL_PORTS
    "ide": 4,  # qemu-server src/PVE/QemuServer/Drive.pm $MAX_IDE_DISKS
    "scsi": 31,  # qemu-server src/PVE/QemuServer/Drive.pm $MAX_SCSI_DISKS
    "virtio": 16,  # qemu-server src/PVE/QemuServer/Drive.pm $MAX_VIRTIO_DISKS
    "sata": 6,  # qemu-server src/PVE/QemuServer/Drive.pm $MAX_SATA_DISKS
    "unused": 256,  # qemu-server Drive.pm $MAX_UNUSED_DISKS; pve-container LXC/Config.pm $MAX_UNUSED_DISKS
    "hostpci": 16,  # qemu-server src/PVE/QemuServer/PCI.pm $MAX_HOSTPCI_DEVICES
    "usb": 14,  # qemu-server src/PVE/QemuServer/USB.pm $MAX_USB_DEVICES
    "numa": 8,  # qemu-server src/PVE/QemuServer/Memory.pm $MAX_NUMA
    "virtiofs": 10,  # qemu-server src/PVE/QemuServer/Virtiofs.pm $MAX_VIRTIOFS
    "mp": 256,  # pve-container src/PVE/LXC/Config.pm $MAX_MOUNT_POINTS
    "dev": 256,  # pve-container src/PVE/LXC/Config.pm $MAX_DEVICES
    "link": 8,  # pve-cluster src/PVE/Corosync.pm MAX_LINK_INDEX (0 .. 7)
    "acmedomain": 5,  # pve-manager PVE/NodeConfig.pm $MAXDOMAINS
}
INDEXED_RE = re.compile(r"^([a-z]+)\[n\]$")
PLACEHOLDER_RE = re.compile(r"\{([a-z_-]+)\}")


@dataclass(frozen=True)
class Method:
    """One API method as the schema declares it."""

    method: str
    path: str
    parameters: dict[str, Any]
    returns: dict[str, Any]
    permissions: dict[str, Any] | None
    allowtoken: bool
    protected: bool
    proxyto: str | None

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def properties(self) -> dict[str, Any]:
        return self.parameters.get("properties") or {}

    def default(self, name: str) -> Any:
        """The schema's ``default`` of a parameter (PVE handlers apply it themselves: ``// default``)."""
        return self.properties.get(name, {}).get("default")


@dataclass
class _Node:
    """A path segment trie, like pve-common ``RESTHandler`` ``map_path_to_methods``."""

    literal: dict[str, _Node] = field(default_factory=dict)
    param: tuple[str, _Node] | None = None
    methods: dict[str, Method] = field(default_factory=dict)


@dataclass
class ApiSchema:
    """All methods of one PVE version, with path lookup."""

    pve_version: str
    source: dict[str, str]
    methods: dict[str, Method]
    _root: _Node = field(default_factory=_Node, repr=False)

    def __post_init__(self) -> None:
        for method in self.methods.values():
            node = self._root
            for segment in filter(None, method.path.split("/")):
                if match := PLACEHOLDER_RE.fullmatch(segment):
                    if node.param is None:
                        node.param = (match.group(1), _Node())
                    node = node.param[1]
                else:
                    node = node.literal.setdefault(segment, _Node())
            node.methods[method.method] = method

    def children(self, template: str) -> list[str]:
        """The next path segments below ``template`` (what PVE's index methods list as subdirs)."""
        prefix = template.rstrip("/") + "/"
        names = {m.path[len(prefix):].split("/", 1)[0] for m in self.methods.values() if m.path.startswith(prefix)}
        return sorted(name for name in names if name and not name.startswith("{"))

    def get(self, method: str, path: str) -> Method:
        """The method by its declared template (``GET /nodes/{node}/status``)."""
        return self.methods[f"{method} {path}"]

    def resolve(self, method: str, path: str) -> tuple[Method, dict[str, str]] | None:
        """The method serving ``method path`` and its URI parameters; ``{volume}`` takes the rest of the
        path, because a volume ID holds slashes (pve-storage registers Content.pm with
        ``fragmentDelimiter => ''``)."""
        segments = [s for s in path.split("/") if s]
        node, uri = self._root, {}
        for index, segment in enumerate(segments):
            child = node.literal.get(segment)
            if child is not None:
                node = child
                continue
            if node.param is None:
                return None
            name, node = node.param
            if name == "volume":
                uri[name] = "/".join(segments[index:])
                break
            uri[name] = segment
        found = node.methods.get(method)
        return (found, uri) if found else None


def expand_indexed(schema: Any) -> Any:
    """Replace ``name[n]`` properties by ``name0`` … ``name<N-1>`` (``INDEX_RANGES``), recursively."""
    if isinstance(schema, list):
        return [expand_indexed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            props: dict[str, Any] = {}
            for name, prop in value.items():
                match = INDEXED_RE.match(name)
                if match and match.group(1) in INDEX_RANGES:
                    for index in range(INDEX_RANGES[match.group(1)]):
                        props[f"{match.group(1)}{index}"] = expand_indexed(prop)
                else:
                    props[name] = expand_indexed(prop)
            out[key] = props
        else:
            out[key] = expand_indexed(value)
    return out


def available_versions() -> list[str]:
    return sorted(p.name[len("pve-"):-len(".json.gz")] for p in HERE.glob("pve-*.json.gz"))


@cache
def load(version: str) -> ApiSchema:
    """The schema of PVE ``version`` (e.g. ``9.1.3``), parsed once per process."""
    path = HERE / f"pve-{version}.json.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    methods = {}
    for key, info in data["methods"].items():
        verb, template = key.split(" ", 1)
        # api_clone_schema only copies the properties it finds, so a method without parameters lost its
        # empty ``properties``; PVE validates against ``properties => {}`` (any parameter is unknown).
        parameters = {"properties": {}, **info["parameters"]}
        methods[key] = Method(
            method=verb, path=template, parameters=expand_indexed(parameters),
            returns=expand_indexed(info["returns"]), permissions=info.get("permissions"),
            allowtoken=bool(info.get("allowtoken")), protected=bool(info.get("protected")),
            proxyto=info.get("proxyto"),
        )
    return ApiSchema(data["pve_version"], data["source"], methods)


def inline_format(schema: ApiSchema, method_key: str, prop: str) -> dict[str, Any]:
    """The property-string format a schema inlines for one parameter (a deep copy)."""
    return copy.deepcopy(schema.methods[method_key].properties[prop]["format"])
