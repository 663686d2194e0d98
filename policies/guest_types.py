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
    """Every custom resource of the installed pulumi-proxmoxve: type token -> its argument names."""
    found: dict[str, frozenset[str]] = {}
    for info in pkgutil.walk_packages(pulumi_proxmoxve.__path__, "pulumi_proxmoxve."):
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if not (issubclass(cls, pulumi.CustomResource) and cls.__module__ == module.__name__):
                continue
            args = getattr(module, f"{name}Args", None)
            params = frozenset(inspect.signature(args.__init__).parameters) if args else frozenset()
            found[cls.pulumi_type] = params - {"__self__"}
    return found


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
