"""Which pulumi-proxmoxve resources declare a guest or a guest's pool membership: read from the SDK itself.

The SDK names resources by the Terraform resources they bridge (`VmLegacy` is bpg's
`proxmox_virtual_environment_vm`, `Vm` is `proxmox_vm`, `cloned.Vm` is `proxmox_cloned_vm`...) and
gains new ones with provider releases, so the pack does not keep its own list: every resource class
whose arguments describe a guest (a node, a VM id, tags) is a guest type, every one that puts a VM id
in a pool is a membership type. The VM id is `vm_id` (Pulumi `vmId`) on the older resources and
`resource_id` (`resourceId`, a string) on the framework ones, where the Terraform `id` was renamed.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pulumi
import pulumi_proxmoxve


@dataclass(frozen=True)
class GuestType:
    token: str
    kind: str  # "qemu" | "lxc"
    vmid_prop: str  # "vmId" | "resourceId"
    pool_prop: str | None  # "poolId" where the resource can put the guest in a pool itself


@cache
def sdk_resources() -> dict[str, frozenset[str]]:
    """Custom resources of the installed pulumi-proxmoxve that may declare a guest or a membership: type
    token -> its argument names.

    Importing the whole SDK costs more than the rest of `vzkeep preview` together (each subpackage
    imports all its modules), so the module files are read as text first and only those that could
    hold such a resource are imported: a resource class names `CustomResource` as its base, and its
    `...Args.__init__` spells out each argument name that `is_guest` or `is_membership` looks for.
    """
    found: dict[str, frozenset[str]] = {}
    for name in _candidate_modules():
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if not (issubclass(cls, pulumi.CustomResource) and cls.__module__ == module.__name__):
                continue
            args = getattr(module, f"{cls_name}Args", None)
            params = frozenset(inspect.signature(args.__init__).parameters) if args else frozenset()
            found[cls.pulumi_type] = params - {"__self__"}
    return found


def _candidate_modules() -> list[str]:
    """The SDK's modules whose source mentions a resource base class and the arguments of a guest or a
    membership (a superset of those holding one: the argument test on the real classes decides)."""
    names = []
    for info in _walk(pulumi_proxmoxve.__path__, "pulumi_proxmoxve."):
        try:
            text = Path(info[1]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            names.append(info[0])  # cannot tell from the text: import it
            continue
        has_vmid = "vm_id" in text or "resource_id" in text
        guest = "node_name" in text and "tags" in text and has_vmid
        membership = "pool_id" in text and "vm_id" in text
        if "CustomResource" in text and (guest or membership):
            names.append(info[0])
    return names


def _walk(paths: list[str], prefix: str) -> list[tuple[str, str]]:
    """(module name, source file) of every module under ``paths``, found on disk without importing."""
    out = []
    for info in pkgutil.iter_modules(paths, prefix):
        location = Path(info.module_finder.path) / info.name.rsplit(".", 1)[-1]  # type: ignore[union-attr]
        if info.ispkg:
            out += _walk([str(location)], info.name + ".")
        else:
            out.append((info.name, str(location.with_suffix(".py"))))
    return out


def is_guest(params: frozenset[str]) -> bool:
    # Firewall resources also carry node_name + vm_id, but a guest has tags of its own.
    return "node_name" in params and "tags" in params and bool({"vm_id", "resource_id"} & params)


def is_membership(params: frozenset[str]) -> bool:
    return {"pool_id", "vm_id"} <= params and "node_name" not in params


@cache
def guest_types() -> dict[str, GuestType]:
    types = {}
    for token, params in sdk_resources().items():
        if is_guest(params):
            types[token] = GuestType(
                token=token, kind="lxc" if "container" in token.lower() else "qemu",
                vmid_prop="vmId" if "vm_id" in params else "resourceId",
                pool_prop="poolId" if "pool_id" in params else None)
    return types


@cache
def membership_types() -> tuple[str, ...]:
    return tuple(sorted(token for token, params in sdk_resources().items() if is_membership(params)))
