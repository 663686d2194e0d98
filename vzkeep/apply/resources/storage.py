"""Storages: ``proxmoxve:storage/directory:Directory`` and ``proxmoxve:storage/nfs:Nfs`` (and their ``…Legacy``
twins, the same bpg resources under the old ``proxmox_virtual_environment_storage_*`` names).

bpg ``fwprovider/storage/resource_generic.go`` (create/read/update/delete), ``model_base.go``,
``model_directory.go``, ``model_nfs.go``, ``model_backups.go``, ``schema_factory.go``,
``resource_directory.go``, ``resource_nfs.go``; requests in ``proxmox/storage/storage.go``, bodies in
``proxmox/storage/storage_types.go``, ``directory_types.go``, ``nfs_types.go``:

- create: ``POST /storage`` with ``storage``, ``type``, ``content`` and ``nodes`` (comma lists, left
  out when empty), ``disable``, ``create-base-path`` and ``create-subdirs`` (0/1, default 1); a dir
  storage adds ``path``, ``shared`` (default **1**) and ``preallocation``; an nfs storage ``server``,
  ``export``, ``options``, ``preallocation`` and ``snapshot-as-volume-chain`` (only when 1); the
  ``backups`` block gives ``prune-backups`` and ``max-protected-backups``;
- read: ``GET /storage/<id>``;
- update: ``PUT /storage/<id>`` with the mutable fields (a dir's ``shared`` and ``preallocation``, an
  nfs's ``options``);
- delete: ``DELETE /storage/<id>`` ("does not exist" is success).

Create and update end with ``GET /storage/<id>``. ForceNew: the id, dir ``path``, nfs ``server``,
``export``, ``preallocation``, ``snapshot_as_volume_chain``. Set attributes (``nodes``, ``content``)
reach the provider in Terraform's set order, which for strings is sorted (cty).
"""

from __future__ import annotations

from typing import Any

from vzkeep.apply.http import PveHttpError, comma, flag, form, number, path_escape
from vzkeep.apply.resources.base import Applied, ClusterView, Context, Declared, Inputs, ResourceKind, fail

# model_backups.go DataStoreWithBackups.String(): the order keep-* reach prune-backups.
_KEEP = (("keepLast", "keep-last"), ("keepHourly", "keep-hourly"), ("keepDaily", "keep-daily"),
         ("keepWeekly", "keep-weekly"), ("keepMonthly", "keep-monthly"), ("keepYearly", "keep-yearly"))


class _Storage(ResourceKind):
    storage_type = ""

    def pve_id(self, inputs: Inputs) -> str:
        return str(inputs["resourceId"])

    def describe(self, inputs: Inputs) -> str:
        return f"{self.storage_type} storage '{self.pve_id(inputs)}'"

    def declare(self, inputs: Inputs, declared: Declared) -> None:
        declared.storages.add(self.pve_id(inputs))

    def preflight(self, inputs: Inputs, view: ClusterView, declared: Declared) -> list[str]:
        problems = []
        storage = self.pve_id(inputs)
        existing = view.storages().get(storage)
        if existing is not None:
            kind = existing.get("type", "?")
            other = f" (it is a {kind} storage)" if kind != self.storage_type else " (not created by this stack)"
            # pve-storage src/PVE/API2/Storage/Config.pm create, inside lock_storage_config(…, "create storage failed")
            problems.append(f"create storage failed: storage ID '{storage}' already defined{other}")
        known = view.nodes()
        for node in inputs.get("nodes") or []:
            if node not in known:
                # PVE stores the name as given (format pve-node-list checks only its syntax), so no node sees it.
                problems.append(f"nodes: '{node}' is not a node of this cluster (nodes: {', '.join(known)}); "
                                f"no node would see storage '{storage}'")
        return problems

    # -- requests ------------------------------------------------------------------------------------

    def create_form(self, inputs: Inputs) -> tuple[tuple[str, str], ...]:
        return form(("storage", self.pve_id(inputs)), ("type", self.storage_type),
                    *self._common(inputs), *self._specific_create(inputs), *_backups(inputs))

    def update_form(self, inputs: Inputs) -> tuple[tuple[str, str], ...]:
        return form(*self._common(inputs), *self._specific_update(inputs), *_backups(inputs))

    def _common(self, inputs: Inputs) -> list[tuple[str, Any]]:
        """model_base.go populateCreateFields/populateUpdateFields plus the dir-creation options."""
        return [
            ("content", comma(sorted(inputs["contents"])) if inputs.get("contents") else None),
            ("nodes", comma(sorted(inputs["nodes"])) if inputs.get("nodes") else None),
            ("disable", flag(bool(inputs.get("disable", False)))),
            ("create-base-path", flag(bool(inputs.get("createBasePath", True)))),
            ("create-subdirs", flag(bool(inputs.get("createSubdirs", True)))),
        ]

    def _specific_create(self, inputs: Inputs) -> list[tuple[str, Any]]:
        raise NotImplementedError

    def _specific_update(self, inputs: Inputs) -> list[tuple[str, Any]]:
        raise NotImplementedError

    # -- steps ---------------------------------------------------------------------------------------

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        summary = f"Error creating {self.storage_type} storage"
        try:
            ctx.pve.call("POST", "storage", self.create_form(inputs))
        except PveHttpError as err:
            raise fail(summary, err, "error creating datastore") from None
        return self._read_after(ctx, inputs, f"Error reading {self.storage_type} storage after create")

    def read(self, ctx: Context, applied: Applied, inputs: Inputs) -> Applied | None:
        try:
            data = ctx.pve.call("GET", f"storage/{path_escape(applied.id)}") or {}
        except PveHttpError as err:
            if err.does_not_exist:
                return None
            raise fail(f"Error reading {self.storage_type} storage", err, "error reading datastore") from None
        return Applied(applied.id, self.outputs(inputs, data))

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        try:
            ctx.pve.call("PUT", f"storage/{path_escape(applied.id)}", self.update_form(new))
        except PveHttpError as err:
            raise fail(f"Error updating {self.storage_type} storage", err, "error updating datastore") from None
        return self._read_after(ctx, new, f"Error reading {self.storage_type} storage after update")

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        try:
            ctx.pve.call("DELETE", f"storage/{path_escape(applied.id)}")
        except PveHttpError as err:
            if not err.does_not_exist:
                raise fail(f"Error deleting {self.storage_type} storage", err, "error deleting datastore") from None

    def _read_after(self, ctx: Context, inputs: Inputs, summary: str) -> Applied:
        storage = self.pve_id(inputs)
        try:
            data = ctx.pve.call("GET", f"storage/{path_escape(storage)}") or {}
        except PveHttpError as err:
            raise fail(summary, err, "error reading datastore") from None
        return Applied(storage, self.outputs(inputs, data))

    def outputs(self, inputs: Inputs, data: dict[str, Any]) -> dict[str, Any]:
        """The model after ``fromAPI``: sets from the comma lists, booleans with bpg's defaults when absent."""
        out: dict[str, Any] = {
            **inputs,
            "resourceId": str(data.get("storage", self.pve_id(inputs))),
            "nodes": sorted(_split(data.get("nodes"))),
            "contents": sorted(_split(data.get("content"))),
            "disable": _bool(data.get("disable"), False),
            "shared": _bool(data.get("shared"), False),
            "createBasePath": _bool(data.get("create-base-path"), True),
            "createSubdirs": _bool(data.get("create-subdirs"), True),
        }
        if data.get("preallocation") is not None:
            out["preallocation"] = data["preallocation"]
        return out


class Directory(_Storage):
    tokens = ("proxmoxve:storage/directory:Directory", "proxmoxve:storage/directoryLegacy:DirectoryLegacy")
    title = "dir storage"
    storage_type = "dir"
    source = ("bpg fwprovider/storage/resource_generic.go, model_base.go, model_directory.go, "
              "resource_directory.go; proxmox/storage/storage.go, directory_types.go")
    replace_on = frozenset({"resourceId", "path"})

    def _specific_create(self, inputs: Inputs) -> list[tuple[str, Any]]:
        return [("path", inputs.get("path")), *self._specific_update(inputs)]

    def _specific_update(self, inputs: Inputs) -> list[tuple[str, Any]]:
        # resource_directory.go: `shared` defaults to true for a directory storage.
        return [("preallocation", inputs.get("preallocation")), ("shared", flag(bool(inputs.get("shared", True))))]

    def outputs(self, inputs: Inputs, data: dict[str, Any]) -> dict[str, Any]:
        out = super().outputs(inputs, data)
        if data.get("path") is not None:
            out["path"] = data["path"]
        return out


class Nfs(_Storage):
    tokens = ("proxmoxve:storage/nfs:Nfs", "proxmoxve:storage/nfsLegacy:NfsLegacy")
    title = "nfs storage"
    storage_type = "nfs"
    source = ("bpg fwprovider/storage/resource_generic.go, model_base.go, model_nfs.go, resource_nfs.go; "
              "proxmox/storage/storage.go, nfs_types.go")
    replace_on = frozenset({"resourceId", "server", "export", "preallocation", "snapshotAsVolumeChain"})

    def _specific_create(self, inputs: Inputs) -> list[tuple[str, Any]]:
        chain = bool(inputs.get("snapshotAsVolumeChain", False))
        return [("server", inputs.get("server")), ("export", inputs.get("export")),
                ("preallocation", inputs.get("preallocation")),
                # a plain CustomBool under omitempty: false is empty, so only 1 is ever sent
                ("snapshot-as-volume-chain", "1" if chain else None), *self._specific_update(inputs)]

    def _specific_update(self, inputs: Inputs) -> list[tuple[str, Any]]:
        return [("options", inputs.get("options"))]

    def outputs(self, inputs: Inputs, data: dict[str, Any]) -> dict[str, Any]:
        out = super().outputs(inputs, data)
        for key in ("server", "export", "options"):
            if data.get(key) is not None:
                out[key] = data[key]
        return out


def _backups(inputs: Inputs) -> list[tuple[str, Any]]:
    """model_backups.go toAPI + storage_types.go DataStoreWithBackups.EncodeValues."""
    block = inputs.get("backups")
    if not block:
        return []
    pairs: list[tuple[str, Any]] = []
    if block.get("maxProtectedBackups") is not None:
        pairs.append(("max-protected-backups", number(block["maxProtectedBackups"])))
    if block.get("keepAll"):
        pairs.append(("prune-backups", "keep-all=1"))
    else:
        keeps = [f"{api}={number(block[key])}" for key, api in _KEEP if block.get(key) is not None]
        if keeps:
            pairs.append(("prune-backups", ",".join(keeps)))
    return pairs


def _split(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value).split(",")


def _bool(value: Any, default: bool) -> bool:
    """bpg CustomBool.UnmarshalJSON: JSON ``1`` or ``true`` is true; absent takes the model's default."""
    if value is None:
        return default
    return value in (1, True, "1", "true")
