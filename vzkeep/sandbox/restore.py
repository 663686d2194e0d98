"""qmrestore / pct restore (qemu-server ``PVE/API2/Qemu.pm`` ``create_vm``, ``PVE/QemuServer.pm``
``restore_vma_archive``; pve-container ``PVE/API2/LXC.pm``): a guest rebuilt from a vzdump archive.

PVE streams the archive into freshly allocated disks; a corrupt archive is only noticed midway,
after volumes exist. The sandbox is stricter, on purpose (DESIGN.md: "corruption detected before
anything is written"): a first pass decompresses through the node's tool (``zstd -q -d -c``..., pve-storage
``PVE::Storage::decompressor_info``) and checks the whole structure (VMA, CT tar); only then does a second
pass extract the
disk and create the guest. A failed check fails the task with PVE's command-failed message and the
tool's own complaint in the log, and creates nothing.

The ``restore-midway`` fault (``/_sandbox/faults``) breaks a restore whose archive is sound while it
extracts, and leaves the guest exactly as PVE's error path does (``fail_midway``, derivation below).

Errors PVE raises before forking the worker (existing vmid without ``force``, a locked guest, an
unknown or unreachable archive) are ``PveError`` (HTTP 500), not tasks.
"""

from __future__ import annotations

import math
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from vzkeep.pve import archive, localtime, vma
from vzkeep.pve import ct_tar as ct_tar_format
from vzkeep.pve.decompress import DecompressedStream, ExactReader
from vzkeep.pve.values import is_true
from vzkeep.sandbox.diskdata import CT_PART_SIZE, ct_disk_part
from vzkeep.sandbox.faults import Fault
from vzkeep.sandbox.guestconfig import mac_address
from vzkeep.sandbox.journal import Transaction
from vzkeep.sandbox.model import Cluster, Guest, Node
from vzkeep.sandbox.settings import Settings
from vzkeep.sandbox.storages import StorageDirs
from vzkeep.sandbox.tasks import PveError, Task, TaskStore

_SIZE_RE = re.compile(r"(?:^|,)size=(\d+(?:\.\d+)?)([KMGT]?)")
_MAC_RE = re.compile(r"((?:virtio|e1000|rtl8139|vmxnet3|hwaddr)=)([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})")
_UNIT = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


@dataclass
class RestoreRequest:
    node: Node
    guest_type: str  # qemu | lxc
    vmid: int
    archive_ref: str  # volid or path, as given
    path: Path
    info: archive.ArchiveInfo
    force: bool
    unique: bool
    pool: str | None
    start: bool

    @property
    def label(self) -> str:
        return "VM" if self.guest_type == "qemu" else "CT"


class ArchiveDamaged(Exception):
    """The check pass failed: ``lines`` go to the task log, ``message`` is the TASK ERROR."""

    def __init__(self, message: str, lines: list[str]):
        super().__init__(message)
        self.lines = lines


# -- before the worker: PVE's API-level checks ------------------------------------------------------


def prepare(cluster: Cluster, dirs: StorageDirs, node: Node, guest_type: str, params: dict[str, Any]
            ) -> RestoreRequest:
    vmid = int(params["vmid"])
    ref = str(params.get("archive") if guest_type == "qemu" else params.get("ostemplate") or "")
    force = is_true(params.get("force", False))
    check_target_vmid(cluster, node, guest_type, vmid, force)
    path = resolve_archive(cluster, dirs, node, ref)
    try:
        info = archive.parse(path.name, node.timezone)
    except ValueError as exc:
        raise PveError(_restore_prefix(guest_type, vmid) + str(exc)) from None
    if info.type != guest_type and not (guest_type == "lxc" and info.type == "openvz"):
        kind = "VM" if info.type == "qemu" else "CT"
        raise PveError(_restore_prefix(guest_type, vmid) + f"archive '{path.name}' is a {kind} backup")
    return RestoreRequest(node, guest_type, vmid, ref, path, info, force,
                          is_true(params.get("unique", False)), params.get("pool"),
                          is_true(params.get("start", False)))


def _restore_prefix(guest_type: str, vmid: int) -> str:
    return f"unable to restore VM {vmid} - " if guest_type == "qemu" else f"unable to restore CT {vmid} - "


def check_target_vmid(cluster: Cluster, node: Node, guest_type: str, vmid: int, force: bool) -> None:
    """``create_and_lock_config`` / ``check_vmid_unused`` (qemu) and pct's checks (``PVE/API2/LXC.pm``)."""
    existing = cluster.guests.get(vmid)
    if existing is None:
        return
    kind = "VM" if existing.type == "qemu" else "CT"
    exists = f"{kind} {vmid} already exists on node '{existing.node}'"
    if not force or existing.node != node.name or existing.type != guest_type:
        raise PveError(_restore_prefix(guest_type, vmid) + exists if guest_type == "qemu" else exists)
    if existing.lock:
        raise PveError(_restore_prefix(guest_type, vmid) + f"{kind} is locked ({existing.lock})"
                       if guest_type == "qemu" else f"CT is locked ({existing.lock})")
    if guest_type == "lxc" and existing.status == "running":
        raise PveError("can't overwrite running container")


def resolve_archive(cluster: Cluster, dirs: StorageDirs, node: Node, ref: str) -> Path:
    """A volid ``<storage>:backup/<file>`` (visible from ``node``: its own place of a local storage)
    or an absolute path."""
    if not ref:
        raise PveError("missing archive: give a backup volume ID (archive / ostemplate)", 400)
    sid, sep, volname = ref.partition(":")
    if not sep:
        path = Path(ref)
        if not path.is_absolute() or not path.is_file():
            raise PveError(f"can't find archive file '{ref}'")
        return path
    storage = cluster.storages.get(sid)
    if storage is None:
        raise PveError(f"storage '{sid}' does not exist")
    if not storage.visible_from(node.name):
        raise PveError(f"storage '{sid}' is not available on node '{node.name}'")
    if not volname.startswith("backup/") or "/" in volname[len("backup/"):]:
        raise PveError(f"unable to parse directory volume name '{volname}'")
    path = dirs.dump_dir(storage, node.name) / volname[len("backup/"):]
    if not path.is_file():
        raise PveError(f"volume '{ref}' does not exist")
    return path


# -- the worker ---------------------------------------------------------------------------------------


def run_restore(
    cluster: Cluster, tasks: TaskStore, settings: Settings, disks_dir: Path, req: RestoreRequest, user: str,
    now: int, txn: Transaction, midway: Fault | None = None,
) -> str:
    """The restore worker; with ``midway`` (an armed fault) a sound archive still breaks while extracting."""
    task_type = "qmrestore" if req.guest_type == "qemu" else "vzrestore"
    task = tasks.start(req.node.name, task_type, str(req.vmid), user, now)
    command = restore_command(req, task.info.pid)
    task.log(f"restore vma archive: {command}" if req.guest_type == "qemu"
             else f"restoring '{req.archive_ref}' now..")
    try:
        header = check_archive(req, task.info.pid)
    except ArchiveDamaged as exc:
        for line in exc.lines:
            task.log(line)
        task.finish(now + 1, str(exc))
        return task.upid
    if midway is not None:
        fail_midway(cluster, settings, req, task, header, now, midway.cleanup, txn)
        return task.upid
    image, config_text = extract_archive(req, disks_dir, now)
    guest = build_guest(cluster, req, config_text, image, now)
    duration = max(1, math.ceil(guest.disk_bytes / settings.throughput))
    log_success(task, req, header, guest, image, duration)
    replace_guest(cluster, guest, txn)
    task.finish(now + duration)
    return task.upid


def restore_command(req: RestoreRequest, pid: int) -> str:
    decompress = " ".join(req.info.decompressor) if req.info.decompressor else "cat"
    if req.guest_type == "qemu":
        tmp = f"/var/tmp/vzdumptmp{pid}"
        return f"{decompress} {req.path} | vma extract -v -r {tmp}.fifo - {tmp}"
    flag = {"zst": " --zstd", "gz": " -z", "lzo": " --lzop", "bz2": " --bzip2"}.get(req.info.compression or "", "")
    return (f"tar xpf - {flag.strip()} --totals --one-file-system -p --sparse --numeric-owner --acls --xattrs "
            f"-C /var/lib/lxc/{req.vmid}/rootfs --skip-old-files --anchored --exclude './dev/*'").replace("  ", " ")


def _open_stream(req: RestoreRequest, raw: BinaryIO) -> DecompressedStream:
    return DecompressedStream(raw, req.info.compression)


def check_archive(req: RestoreRequest, pid: int) -> str:
    """Pass 1: decompress and walk the whole structure; return a header description for the log."""
    structure_error: str | None = None
    described = ""
    with open(req.path, "rb") as raw:
        stream = _open_stream(req, raw)
        try:
            reader = ExactReader(stream)
            if req.guest_type == "qemu":
                summary = vma.check_vma(reader)
                described = _describe_vma(summary.header, req.node.timezone)
            else:
                ct_tar_format.check_ct_tar(reader)
        except (vma.VmaError, ct_tar_format.CtTarError) as exc:
            structure_error = str(exc)
        finally:
            problems = stream.close()
    if not problems and structure_error is None:
        return described
    lines = [*problems]
    if structure_error is not None:
        lines.append(("vma: restore failed - " if req.guest_type == "qemu" else "tar: ") + structure_error)
    code = 1 if problems else (133 if req.guest_type == "qemu" else 2)
    command = restore_command(req, pid)
    if req.guest_type == "qemu":
        message = f"command 'set -o pipefail && {command}' failed: exit code {code}"
    else:
        message = f"unable to restore CT {req.vmid} - command '{command}' failed: exit code {code}"
    raise ArchiveDamaged(message, lines)


def _describe_vma(header: vma.VmaHeader, tz: str) -> str:
    lines = [f"CFG: size: {len(data)} name: {name}" for name, data in header.configs.items()]
    lines += [f"DEV: dev_id={d.dev_id} size: {d.size} devname: {d.name}" for d in header.devices.values()]
    lines.append("CTIME: " + localtime.LocalClock(tz).strftime("%a %b %d %H:%M:%S %Y", header.ctime))  # ctime(3)
    return "\n".join(lines)


def extract_archive(req: RestoreRequest, disks_dir: Path, now: int) -> tuple[Path, str]:
    """Pass 2: the disk image (sparse file) and the embedded guest config. The image is written under a
    temporary name and renamed whole; the engine deletes images no guest refers to when it reopens."""
    disks_dir.mkdir(parents=True, exist_ok=True)
    image = disks_dir / f"{req.vmid}-{now}.img"
    partial = image.with_name(image.name + ".tmp")
    with open(req.path, "rb") as raw, open(partial, "wb") as out:
        stream = _open_stream(req, raw)
        try:
            reader = ExactReader(stream)
            config = _extract_vma(reader, out) if req.guest_type == "qemu" else _extract_ct(reader, out)
        finally:
            stream.close()
    os.replace(partial, image)
    return image, config


def _extract_vma(reader: ExactReader, out: BinaryIO) -> str:
    vma_reader = vma.VmaReader(reader)
    devices = list(vma_reader.header.devices.values())
    if devices:
        out.truncate(devices[0].size)
    first = devices[0].name if devices else None

    def sink(name: str, offset: int, data: memoryview) -> None:
        if name == first:
            os.pwrite(out.fileno(), data, offset)

    vma_reader.extract(sink)
    return vma_reader.header.config.decode("utf-8", errors="replace")


def _extract_ct(reader: ExactReader, out: BinaryIO) -> str:
    def sink(info: tarfile.TarInfo, data: BinaryIO | None) -> None:
        part = ct_disk_part(info.name)
        if part is not None and data is not None:
            os.pwrite(out.fileno(), data.read(), part * CT_PART_SIZE)

    return ct_tar_format.extract_ct_tar(reader, sink).decode("utf-8", errors="replace")


# -- the new guest ------------------------------------------------------------------------------------


def parse_config(text: str) -> dict[str, str]:
    conf: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            break  # snapshot sections follow the current config
        key, sep, value = line.partition(":")
        if sep:
            conf[key.strip()] = value.strip()
    return conf


def disk_size(conf: dict[str, str], key: str) -> int | None:
    m = _SIZE_RE.search(conf.get(key, ""))
    return int(float(m.group(1)) * _UNIT[m.group(2)]) if m else None


def build_guest(cluster: Cluster, req: RestoreRequest, config_text: str, image: Path, now: int) -> Guest:
    conf = parse_config(config_text)
    name = conf.pop("name" if req.guest_type == "qemu" else "hostname", f"{req.label}{req.vmid}")
    tags = [t for t in re.split(r"[;, ]+", conf.pop("tags", "")) if t]
    size = disk_size(conf, "scsi0" if req.guest_type == "qemu" else "rootfs") or image.stat().st_size
    if req.unique:
        def rewrite(m: re.Match[str]) -> str:
            return m.group(1) + mac_address(req.vmid, f"unique-{now}")
        conf = {k: (_MAC_RE.sub(rewrite, v) if re.match(r"net\d+$", k) else v) for k, v in conf.items()}
    # the disks get the new guest's volume names
    conf = {k: re.sub(r"vm-\d+-disk-", f"vm-{req.vmid}-disk-", v) for k, v in conf.items()}
    existing = cluster.guests.get(req.vmid)
    pool = req.pool if req.pool is not None else (existing.pool if existing else None)
    return Guest(vmid=req.vmid, name=name, type=req.guest_type, node=req.node.name, pool=pool,
                 disk_bytes=size, status="running" if req.start else "stopped", tags=tags,
                 generation=0, config=conf, disk_image=str(image))


def replace_guest(cluster: Cluster, guest: Guest, txn: Transaction) -> None:
    old = cluster.guests.get(guest.vmid)
    if old is not None and old.disk_image and old.disk_image != guest.disk_image:
        txn.removals.append(old.disk_image)  # freed together with the config that names the new one
    cluster.guests[guest.vmid] = guest


def log_success(task: Task, req: RestoreRequest, header: str, guest: Guest, image: Path, duration: int) -> None:
    size = image.stat().st_size
    if req.guest_type == "qemu":
        for line in header.splitlines():
            task.log(line)
        task.log(f"  Logical volume \"vm-{req.vmid}-disk-0\" created.")
        task.log(f"new volume ID is 'local-lvm:vm-{req.vmid}-disk-0'")
        task.log(f"map 'drive-scsi0' to '/dev/pve/vm-{req.vmid}-disk-0' (write zeros = 0)")
        task.log(f"progress 100% (read {guest.disk_bytes} bytes, duration {duration} sec)")
        task.log(f"total bytes read {guest.disk_bytes}, sparse bytes {_sparse_bytes(image, guest.disk_bytes)}")
        task.log("rescan volumes...")
    else:
        task.log(f"extracting archive '{req.path}'")
        task.log(f"Total bytes read: {size} ({size / 1024**2:.1f}MiB, {size / 1024**2 / duration:.1f}MiB/s)")
        task.log("merging backed-up configuration into new config")
    if req.unique:
        task.log("regenerated MAC addresses (unique)")


def _sparse_bytes(image: Path, disk_bytes: int) -> str:
    """Zero share of the restored image, scaled to the guest's real disk size, as vma reports it."""
    zero = total = 0
    with open(image, "rb") as f:
        while block := f.read(4096):
            total += 1
            zero += not block.strip(b"\0")
    share = zero / total if total else 0.0
    return f"{int(disk_bytes * share)} ({share * 100:.1f}%)"


# -- a restore that breaks midway (the ``restore-midway`` fault) ----------------------------------------
#
# What PVE leaves behind, derived from the sources (qemu-server src/PVE/API2/Qemu.pm create_vm and
# QemuServer.pm restore_vma_archive; pve-container src/PVE/API2/LXC.pm create_vm; pve-guest-common
# AbstractConfig.pm), not observed on a host:
# - qmrestore: ``create_and_lock_config`` writes ``lock: create`` before the worker. Once the VMA header
#   is read, an existing VM's config is replaced by ``memory: 128`` and its old disks are freed. When
#   extraction fails, the new volumes are freed ("temporary volume '…' successfully removed"), then the
#   worker calls ``remove_lock($vmid, 'create')`` and warns "… VM N state is NOT cleaned up.": a new VM
#   is left as an empty, UNLOCKED config. Over an existing VM the lock was already gone with the old
#   config, so remove_lock warns "no lock found trying to remove 'create'  lock".
# - pct restore: once the disks are created (``$destroy_config_on_error = 1``), a failure frees them and
#   destroys the config: nothing is left, not even a CT that existed before (``force``).
# - ``lock: create`` stays only when that cleanup cannot write /etc/pve (e.g. the node lost quorum
#   midway: pmxcfs is read-only); the failing write is warned and the config keeps the create lock.
#   That is the fault's ``cleanup=0``.

MIDWAY_SHARE = 0.42  # how far extraction got before it broke


def fail_midway(cluster: Cluster, settings: Settings, req: RestoreRequest, task: Task, header: str, now: int,
                cleanup: bool, txn: Transaction) -> None:
    """Log like PVE while extraction breaks, leave the guest as PVE would, end with ``TASK ERROR``."""
    size = _guest_size(cluster, req)
    duration = max(1, math.ceil(size * MIDWAY_SHARE / settings.throughput))
    volume = f"vm-{req.vmid}-disk-0"
    existing = cluster.guests.get(req.vmid)
    if req.guest_type == "qemu":
        error = _fail_vma_midway(task, req, header, size, duration, volume)
    else:
        error = _fail_tar_midway(task, req, volume)
    _leave_guest(cluster, req, task, existing, cleanup, txn)
    task.finish(now + duration, error)


def _guest_size(cluster: Cluster, req: RestoreRequest) -> int:
    """The backed-up guest's disk size when it still exists (drives the simulated duration), else 8 GiB."""
    source = cluster.guests.get(req.info.vmid) if req.info.vmid is not None else None
    return source.disk_bytes if source is not None and source.disk_bytes else 8 * 1024**3


def _fail_vma_midway(task: Task, req: RestoreRequest, header: str, size: int, duration: int, volume: str) -> str:
    for line in header.splitlines():
        task.log(line)
    task.log(f"  Logical volume \"{volume}\" created.")
    task.log(f"new volume ID is 'local-lvm:{volume}'")
    task.log(f"map 'drive-scsi0' to '/dev/pve/{volume}' (write zeros = 0)")
    task.log(f"progress {int(MIDWAY_SHARE * 100)}% (read {int(size * MIDWAY_SHARE)} bytes, duration {duration} sec)")
    task.log("vma: restore failed - short vma extent (3584 < 3797504)")
    task.log(f"temporary volume 'local-lvm:{volume}' successfully removed")
    return f"command 'set -o pipefail && {restore_command(req, task.info.pid)}' failed: exit code 133"


def _fail_tar_midway(task: Task, req: RestoreRequest, volume: str) -> str:
    task.log(f"  Logical volume \"{volume}\" created.")
    task.log(f"extracting archive '{req.path}'")
    task.log("tar: Unexpected EOF in archive")
    task.log("tar: Error is not recoverable: exiting now")
    task.log(f"  Logical volume \"{volume}\" successfully removed.")
    return f"unable to restore CT {req.vmid} - command '{restore_command(req, task.info.pid)}' failed: exit code 2"


def _leave_guest(cluster: Cluster, req: RestoreRequest, task: Task, existing: Guest | None, cleanup: bool,
                 txn: Transaction) -> None:
    """The guest's state after PVE's error path (see the derivation above)."""
    config_file = f"/etc/pve/nodes/{req.node.name}/qemu-server/{req.vmid}.conf"
    if existing is not None and existing.disk_image:
        txn.removals.append(existing.disk_image)  # its old disks were freed before extraction
    if req.guest_type == "qemu":
        if existing is not None:
            config: dict[str, str] = {"memory": "128"}
            lock = None
            task.log("no lock found trying to remove 'create'  lock")
        elif cleanup:
            config, lock = {}, None
        else:
            config, lock = {}, "create"
            task.log(f"unable to open file '{config_file}.tmp.{task.info.pid}' - Permission denied")
        task.log(f"error before or during data restore, some or all disks were not completely restored. "
                 f"VM {req.vmid} state is NOT cleaned up.")
    elif cleanup:
        cluster.guests.pop(req.vmid, None)
        return
    else:
        config, lock = {}, "create"
        task.log("failed to remove config file: Permission denied")
    pool = existing.pool if existing is not None else None  # pool membership lives in user.cfg
    cluster.guests[req.vmid] = Guest(
        vmid=req.vmid, name=f"VM {req.vmid}" if req.guest_type == "qemu" else f"CT{req.vmid}",
        type=req.guest_type, node=req.node.name, pool=pool, disk_bytes=0, status="stopped", lock=lock,
        config=config, full_config=True)


# -- a restore stopped while it runs (``DELETE /nodes/{node}/tasks/{upid}``) ------------------------------
#
# pve-manager PVE/API2/Tasks.pm stop_task → RESTEnvironment.pm check_worker($upid, 1) sends SIGTERM to the
# worker's process group. qmrestore dies in restore_vma_archive's handler ("interrupted by signal",
# qemu-server src/PVE/QemuServer.pm) and takes the error path above: the new volumes are freed and an empty,
# unlocked config is left ("… VM N state is NOT cleaned up."). A pct restore dies in fork_worker's handler
# ("received interrupt", pve-common src/PVE/RESTEnvironment.pm), wrapped as "unable to restore CT N - …"
# (pve-container src/PVE/API2/LXC.pm create_vm), and its config is destroyed with its disks.
# The engine wrote the whole restore when the task started; the lines after the data copy began are the
# part a stopped worker never wrote.

RESTORE_TASKS = ("qmrestore", "vzrestore")
_COPY_STARTED = {"qmrestore": "map 'drive-", "vzrestore": "extracting archive "}


def stop_restore(cluster: Cluster, task_type: str, vmid: int, lines: list[str], txn: Transaction) -> list[str]:
    """The log a restore stopped during its data copy leaves, and the guest as its error path leaves it."""
    marker = _COPY_STARTED[task_type]
    copied = [i for i, line in enumerate(lines) if line.startswith(marker)]
    kept = lines[: copied[-1] + 1] if copied else [line for line in lines if not line.startswith("TASK ")]
    guest = cluster.guests.get(vmid)
    if guest is not None and guest.disk_image:
        txn.removals.append(guest.disk_image)
    if task_type == "qmrestore":
        kept += [f"temporary volume 'local-lvm:vm-{vmid}-disk-0' successfully removed",
                 "error before or during data restore, some or all disks were not completely restored. "
                 f"VM {vmid} state is NOT cleaned up.", "TASK ERROR: interrupted by signal"]
        if guest is not None:
            cluster.guests[vmid] = Guest(vmid=vmid, name=f"VM {vmid}", type="qemu", node=guest.node, pool=None,
                                         disk_bytes=0, status="stopped", lock=None, config={}, full_config=True)
        return kept
    cluster.guests.pop(vmid, None)
    return [*kept, f"TASK ERROR: unable to restore CT {vmid} - received interrupt"]
