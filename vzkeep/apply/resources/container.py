"""``proxmoxve:index/containerLegacy:ContainerLegacy`` (TF ``proxmox_virtual_environment_container``), created
from a CT template (bpg's "custom" create; a ``clone`` block is not emulated).

bpg ``proxmoxtf/resource/container/container.go`` (``containerCreateCustom``, ``containerCreateStart``,
``containerRead``, ``containerUpdate``, ``containerDelete``) over ``proxmox/nodes/containers/
containers.go`` and ``containers_types.go`` (the ``EncodeValues`` of ``net*``, ``rootfs``,
``features``, ``startup``, ``ssh-public-keys``), tasks awaited as ``proxmox/nodes/tasks/tasks.go``:

- create: ``GET /version`` (``host-managed`` joins ``net*`` from PVE 9.1, ``proxmox/version/
  capabilities.go``); ``POST /nodes/<n>/lxc`` (form below), its task awaited; ``GET …/status/current``
  (config unlocked); then, unless it runs already, ``POST …/status/start``, its task awaited and
  ``GET …/status/current`` until ``running``; then a read;
- read: ``GET …/lxc/<id>/config``, ``GET …/status/current`` and, when it runs, ``GET …/interfaces``
  (a failure there only leaves the IPs unknown, as in bpg);
- update: ``PUT …/config`` with the changed fields only (``HasChange``), ``delete=`` for cleared ones;
  ``POST …/status/reboot`` when a change needs it and the CT runs; start or shutdown when ``started``
  changes;
- delete: ``GET …/status/current``; unless stopped ``POST …/status/shutdown`` (``forceStop=1``) and
  wait; ``DELETE /nodes/<n>/lxc/<id>``, its task awaited.

The create form (``CreateRequestBody``) always carries ``arch``, ``cmode``, ``console``, ``cores``,
``cpulimit``, ``memory``, ``ostemplate``, ``ostype``, ``protection``, ``start``, ``onboot``, ``swap``,
``template``, ``tty``, ``unprivileged``, ``vmid`` and ``storage`` (the disk's datastore) with bpg's
defaults; ``rootfs=volume=<datastore>:<size>`` only when the size differs from 4 GiB (or options are
set); ``net<i>`` as ``bridge=…,[firewall=1,][host-managed=0,]ip=…,gw=…,[hwaddr=…,]name=…``;
``hostname``, ``description``, ``ssh-public-keys`` (newline-joined), ``pool``, ``tags`` (sorted,
``;``), ``nameserver``, ``searchdomain``, ``password`` and ``cpuunits`` only when set. ForceNew:
``node_name``, ``pool_id``, ``operating_system``, ``disk.datastore_id``, ``initialization.user_account``,
``template``, ``unprivileged``, ``mount_point``.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from vzkeep.apply.http import PveHttpError, flag, number, path_escape
from vzkeep.apply.resources.base import (
    Applied,
    ClusterView,
    Context,
    Declared,
    Inputs,
    ProviderError,
    ResourceKind,
    fail,
)

DEFAULT_DISK_GB = 4  # container.go dvDiskSize
# containerUpdate's HasChange branches this module carries out (the program's usual edits).
_UPDATABLE = ("description", "tags", "memory", "cpu", "protection", "startOnBoot", "started", "console")
_NEEDS_REBOOT = ("memory", "console")


class Container(ResourceKind):
    tokens = ("proxmoxve:index/containerLegacy:ContainerLegacy",)
    title = "container"
    source = ("bpg proxmoxtf/resource/container/container.go; proxmox/nodes/containers/containers.go, "
              "containers_types.go; proxmox/nodes/tasks/tasks.go")
    replace_on = frozenset({"nodeName", "poolId", "operatingSystem", "template", "unprivileged", "mountPoints",
                            "vmId", "clone"})

    def pve_id(self, inputs: Inputs) -> str:
        return str(inputs.get("vmId", ""))

    def describe(self, inputs: Inputs) -> str:
        return f"CT {self.pve_id(inputs)} on {inputs.get('nodeName')}"

    def preflight(self, inputs: Inputs, view: ClusterView, declared: Declared) -> list[str]:
        node = str(inputs["nodeName"])
        if node not in view.nodes():
            # The request goes to /nodes/<node>/lxc, which PVE proxies to that node: an unknown name fails
            # the host lookup (pve-cluster PVE/Cluster.pm remote_node_ip -> get_ip_from_hostname).
            return [f"hostname lookup '{node}' failed - failed to get address info for: {node}: "
                    "Name or service not known"]
        problems = []
        vmid = inputs.get("vmId")
        found = view.guests().get(int(vmid)) if vmid is not None else None
        if found is not None:
            kind = "VM" if found.get("type") == "qemu" else "CT"  # pve-cluster PVE/Cluster.pm check_vmid_unused
            problems.append(f"{kind} {vmid} already exists on node '{found.get('node')}'")
        pool = inputs.get("poolId")
        if pool and pool not in view.pools() and pool not in declared.pools:
            problems.append(f"pool '{pool}' does not exist")  # pve-container src/PVE/API2/LXC.pm check_pool_exist
        datastore = (inputs.get("disk") or {}).get("datastoreId", "local")
        storage = view.storages().get(datastore)
        if storage is None and datastore not in declared.storages:
            problems.append(f"storage '{datastore}' does not exist")  # PVE::Storage::storage_check_enabled
        elif storage is not None and "rootdir" not in str(storage.get("content", "")).split(","):
            # pve-container src/PVE/API2/LXC.pm create_vm $check_and_activate_storage
            problems.append(f"storage: storage '{datastore}' does not support container directories")
        return problems

    # -- create ---------------------------------------------------------------------------------------

    def create_form(self, inputs: Inputs, host_managed: bool) -> tuple[tuple[str, str], ...]:
        """containerCreateCustom's ``CreateRequestBody``."""
        console = inputs.get("console") or {}
        cpu = inputs.get("cpu") or {}
        disk = inputs.get("disk") or {}
        memory = inputs.get("memory") or {}
        init = inputs.get("initialization") or {}
        dns = init.get("dns") or {}
        system = inputs.get("operatingSystem") or {}
        pairs: list[tuple[str, str]] = [
            ("console", flag(bool(console.get("enabled", True)))), ("cmode", str(console.get("type", "tty"))),
            ("arch", str(cpu.get("architecture", "amd64"))), ("cores", number(cpu.get("cores", 1))),
            ("cpulimit", number(cpu.get("limit", 0))), ("storage", str(disk.get("datastoreId", "local"))),
            ("memory", number(memory.get("dedicated", 512))),
            ("ostemplate", str(system["templateFileId"])), ("ostype", str(system.get("type", "unmanaged"))),
            ("protection", flag(bool(inputs.get("protection", False)))),
            ("start", flag(bool(inputs.get("started", True)))), ("onboot", flag(bool(inputs.get("startOnBoot", True)))),
            ("swap", number(memory.get("swap", 0))), ("template", flag(bool(inputs.get("template", False)))),
            ("tty", number(console.get("ttyCount", 2))),
            ("unprivileged", flag(bool(inputs.get("unprivileged", False)))),
            ("vmid", number(inputs["vmId"])),
        ]
        if cpu.get("units", 0) > 0:
            pairs.append(("cpuunits", number(cpu["units"])))
        for key, value in (("description", inputs.get("description")), ("hookscript", inputs.get("hookScriptFileId")),
                           ("searchdomain", dns.get("domain")), ("nameserver", _nameserver(dns)),
                           ("hostname", init.get("hostname")), ("entrypoint", init.get("entrypoint")),
                           ("pool", inputs.get("poolId"))):
            if value:
                pairs.append((key, str(value)))
        account = init.get("userAccount") or {}
        if account.get("keys"):
            pairs.append(("ssh-public-keys", "\n".join(account["keys"])))  # CustomSSHKeys.EncodeValues
        if account.get("password"):
            pairs.append(("password", str(account["password"])))
        tags = sorted(t.strip() for t in inputs.get("tags") or [] if t.strip())  # containerGetTagsString
        if tags:
            pairs.append(("tags", ";".join(tags)))
        rootfs = _rootfs(disk)
        if rootfs:
            pairs.append(("rootfs", rootfs))
        features = _features(inputs.get("features") or {})
        if features:
            pairs.append(("features", features))
        startup = _startup(inputs.get("startup"))
        if startup:
            pairs.append(("startup", startup))
        for index, nic in enumerate(inputs.get("networkInterfaces") or []):
            pairs.append((f"net{index}", _net(nic, _ip_config(init, index), host_managed)))
        return tuple(pairs)

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        if inputs.get("clone"):
            raise ProviderError("Container create", "a `clone` block is not emulated by sandbox apply")
        node, vmid = str(inputs["nodeName"]), int(inputs["vmId"])
        host_managed = ctx.pve.version_at_least((9, 1))
        try:
            upid = ctx.pve.call("POST", f"nodes/{path_escape(node)}/lxc", self.create_form(inputs, host_managed))
        except PveHttpError as err:
            raise fail("Container create", err, "error creating container") from None
        ctx.pve.wait_task(str(upid), "Container create")
        base = _base(node, vmid)
        self._status(ctx, base)  # WaitForContainerConfigUnlock
        if inputs.get("started", True) and not inputs.get("template", False):
            self._start(ctx, base)
        return self._read_or_fail(ctx, node, vmid, inputs)

    # -- read -----------------------------------------------------------------------------------------

    def read(self, ctx: Context, applied: Applied, inputs: Inputs) -> Applied | None:
        node, vmid = str(inputs["nodeName"]), int(applied.id)
        base = _base(node, vmid)
        try:
            config = ctx.pve.call("GET", f"{base}/config") or {}
        except PveHttpError as err:
            if err.does_not_exist:
                return None
            raise fail("", err, "error retrieving container") from None
        status = self._status(ctx, base)
        running = status.get("status") == "running"
        if running and inputs.get("networkInterfaces"):
            # WaitForContainerNetworkInterfaces: read for IPs, a failure only leaves them unknown
            with contextlib.suppress(PveHttpError):
                ctx.pve.call("GET", f"{base}/interfaces")
        return Applied(applied.id, {**inputs, "vmId": vmid, "started": running,
                                    "description": config.get("description", inputs.get("description"))})

    # -- update ---------------------------------------------------------------------------------------

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        node, vmid = str(new["nodeName"]), int(applied.id)
        base = _base(node, vmid)
        changed = {key for key in set(old) | set(new) if old.get(key) != new.get(key)}
        unsupported = changed - set(_UPDATABLE)
        if unsupported:
            raise ProviderError("Container update", f"changing {', '.join(sorted(unsupported))} is not emulated by "
                                                    "sandbox apply")
        pairs: list[tuple[str, str]] = []
        if "description" in changed:
            pairs.append(("description", str(new.get("description", ""))))
        if "console" in changed:
            console = new.get("console") or {}
            pairs += [("console", flag(bool(console.get("enabled", True)))), ("cmode", str(console.get("type", "tty"))),
                      ("tty", number(console.get("ttyCount", 2)))]
        if "cpu" in changed:
            cpu = new.get("cpu") or {}
            pairs += [("arch", str(cpu.get("architecture", "amd64"))), ("cores", number(cpu.get("cores", 1)))]
            if cpu.get("limit", 0) > 0:
                pairs.append(("cpulimit", number(cpu["limit"])))
            else:
                pairs.append(("delete", "cpulimit"))
            if cpu.get("units", 0) > 0:
                pairs.append(("cpuunits", number(cpu["units"])))
        if "memory" in changed:
            memory = new.get("memory") or {}
            pairs += [("memory", number(memory.get("dedicated", 512))), ("swap", number(memory.get("swap", 0)))]
        if "protection" in changed:
            pairs.append(("protection", flag(bool(new.get("protection", False)))))
        if "startOnBoot" in changed:
            pairs.append(("onboot", flag(bool(new.get("startOnBoot", True)))))
        if "tags" in changed:
            pairs.append(("tags", ";".join(sorted(t.strip() for t in new.get("tags") or [] if t.strip()))))
        try:
            if pairs:
                ctx.pve.call("PUT", f"{base}/config", tuple(pairs))
            running = self._status(ctx, base).get("status") == "running"
            if "started" in changed:
                if new.get("started", True):
                    self._start(ctx, base)
                elif running:
                    self._shutdown(ctx, base)
            elif running and changed & set(_NEEDS_REBOOT):
                upid = ctx.pve.call("POST", f"{base}/status/reboot", (("timeout", "1800"),))
                ctx.pve.wait_task(str(upid), "Container reboot")
        except PveHttpError as err:
            raise fail("", err, "error updating container") from None
        return self._read_or_fail(ctx, node, vmid, new)

    # -- delete ---------------------------------------------------------------------------------------

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        base = _base(str(inputs["nodeName"]), int(applied.id))
        try:
            if self._status(ctx, base).get("status") != "stopped":
                self._shutdown(ctx, base)
            upid = ctx.pve.call("DELETE", base)
        except PveHttpError as err:
            if err.does_not_exist:
                return
            raise fail("Container delete", err, "error deleting container") from None
        if upid:
            ctx.pve.wait_task(str(upid), "Container delete")

    # -- helpers --------------------------------------------------------------------------------------

    def _status(self, ctx: Context, base: str) -> dict[str, Any]:
        try:
            return ctx.pve.call("GET", f"{base}/status/current") or {}
        except PveHttpError as err:
            raise fail("", err, "error retrieving container status") from None

    def _start(self, ctx: Context, base: str) -> None:
        """containers.go StartContainer: nothing to do when it already runs; else start and wait for running."""
        if self._status(ctx, base).get("status") == "running":
            return
        try:
            upid = ctx.pve.call("POST", f"{base}/status/start")
        except PveHttpError as err:
            if "already running" in str(err):
                return
            raise fail("Container start", err, "error starting container") from None
        ctx.pve.wait_task(str(upid), "Container start")
        self._until(ctx, base, "running")

    def _shutdown(self, ctx: Context, base: str) -> None:
        upid = ctx.pve.call("POST", f"{base}/status/shutdown", (("forceStop", "1"), ("timeout", "55")))
        ctx.pve.wait_task(str(upid), "Container shutdown")
        self._until(ctx, base, "stopped")

    def _until(self, ctx: Context, base: str, wanted: str) -> None:
        deadline = time.monotonic() + ctx.pve.wait.timeout
        while self._status(ctx, base).get("status") != wanted:
            if time.monotonic() > deadline:
                raise ProviderError("Container status", f"timeout while waiting for the status {wanted!r}")
            time.sleep(ctx.pve.wait.poll)

    def _read_or_fail(self, ctx: Context, node: str, vmid: int, inputs: Inputs) -> Applied:
        found = self.read(ctx, Applied(str(vmid), {}), inputs)
        if found is None:
            raise ProviderError("Container create", f"container {vmid} is not on node {node} after its create")
        return found


def _base(node: str, vmid: int) -> str:
    return f"nodes/{path_escape(node)}/lxc/{vmid}"


def _nameserver(dns: Inputs) -> str | None:
    servers = dns.get("servers") or []
    return " ".join(servers) if servers else dns.get("server")


def _ip_config(init: Inputs, index: int) -> dict[str, str]:
    configs = init.get("ipConfigs") or []
    if index >= len(configs):
        return {}
    config = configs[index] or {}
    out = {}
    for family, (addr_key, gw_key) in (("ipv4", ("ip", "gw")), ("ipv6", ("ip6", "gw6"))):
        block = config.get(family) or {}
        if block.get("address"):
            out[addr_key] = str(block["address"])
        if block.get("gateway"):
            out[gw_key] = str(block["gateway"])
    return out


def _net(nic: Inputs, ip: dict[str, str], host_managed: bool) -> str:
    """containers_types.go CustomNetworkInterface.EncodeValues (its field order)."""
    values = []
    if nic.get("bridge", "vmbr0"):
        values.append(f"bridge={nic.get('bridge', 'vmbr0')}")
    if nic.get("firewall"):
        values.append("firewall=1")
    if host_managed or nic.get("hostManaged"):
        values.append(f"host-managed={flag(bool(nic.get('hostManaged', False)))}")
    for key in ("ip", "gw", "ip6", "gw6"):
        if key in ip:
            values.append(f"{key}={ip[key]}")
    if nic.get("macAddress"):
        values.append(f"hwaddr={nic['macAddress']}")
    if nic.get("mtu"):
        values.append(f"mtu={number(nic['mtu'])}")
    values.append(f"name={nic['name']}")
    if nic.get("rateLimit"):
        values.append(f"rate={float(nic['rateLimit']):.2f}")
    if nic.get("vlanId"):
        values.append(f"tag={number(nic['vlanId'])}")
    return ",".join(values)


def _rootfs(disk: Inputs) -> str | None:
    """containerCreateCustom: a rootfs only when the size or an option differs from the defaults."""
    datastore = str(disk.get("datastoreId", "local"))
    size = int(disk.get("size", DEFAULT_DISK_GB))
    options = list(disk.get("mountOptions") or [])
    acl, quota, replicate = bool(disk.get("acl")), bool(disk.get("quota")), bool(disk.get("replicate"))
    if not datastore or not (size != DEFAULT_DISK_GB or options or acl or quota or replicate):
        return None
    values = []  # CustomRootFS.EncodeValues order
    if acl:
        values.append("acl=1")
    if options:
        values.append(f"mountoptions={';'.join(options)}")
    if quota:
        values.append("quota=1")
    if replicate:
        values.append("replicate=1")
    values.append(f"volume={datastore}:{size}")
    return ",".join(values)


def _features(features: Inputs) -> str | None:
    """CustomFeatures.EncodeValues; on create only the flags that are on are sent."""
    values = []
    if features.get("fuse"):
        values.append("fuse=1")
    if features.get("keyctl"):
        values.append("keyctl=1")
    if features.get("mounts"):
        values.append(f"mount={';'.join(features['mounts'])}")
    if features.get("nesting"):
        values.append("nesting=1")
    if features.get("mknod"):
        values.append("mknod=1")
    return ",".join(values) or None


def _startup(startup: Inputs | None) -> str | None:
    """containerGetStartupBehavior + CustomStartupBehavior.EncodeValues (negative = unset)."""
    if not startup:
        return None
    values = [f"{api}={number(startup[key])}" for key, api in (("downDelay", "down"), ("order", "order"),
                                                                ("upDelay", "up"))
              if startup.get(key, -1) >= 0]
    return ",".join(values) or None
