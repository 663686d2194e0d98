"""vzdump, as pve-manager's ``PVE/VZDump.pm`` runs it (reference/pve.md §1, §2.1, §4.4, §4.5, §5).

One call = one ``vzdump`` worker task on one node. The work happens synchronously on the simulated
clock: each guest's backup starts where the previous one ended and lasts ``disk size / throughput``,
so a scenario is deterministic, while the archives are real files (VMA or CT tar, compressed with
the zstd content checksum on, §6.3) written as ``.dat`` and renamed, with ``.log``/``.notes``/
``.protected`` sidecars, pruned after each successful guest backup like PVE.

Failure modes follow §5.3: another job holding the node's global lock (we wait up to ``lockwait``
like flock, then fail without a trailer), a locked guest, a full storage (a real ``ENOSPC`` from the
writer: the ``.dat`` is removed, nothing is pruned), an orphan vmid (``unable to find VM``).
"""

from __future__ import annotations

import errno
import gzip
import io
import math
import os
import re
import uuid as uuidlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from vzkeep.pve import archive, localtime, retention, vma
from vzkeep.pve import ct_tar as ct_tar_format
from vzkeep.pve.decompress import compressed_writer
from vzkeep.pve.selection import GuestRef, included_guests_per_node
from vzkeep.sandbox.diskdata import (
    CLUSTER_SIZE,
    DEFAULT_BYTES_PER_GIB,
    GIB,
    GuestDisk,
    cut_ct_parts,
    scaled_size,
)
from vzkeep.sandbox.model import Cluster, Guest, Node, Storage
from vzkeep.sandbox.tasks import Task, TaskStore

_ZERO_CLUSTER = bytes(CLUSTER_SIZE)
LOCKFILE = "/var/run/vzdump.lock"  # the node-global flock (§5.1 step 2)
DEFAULT_LOCKWAIT_MIN = 180
_TRUE = {"1", "on", "yes", "true"}
_SHELL_SAFE = re.compile(r"^[-_.:/\w]+$")  # PVE::Tools::shellquote leaves these unquoted


@dataclass
class Settings:
    """How the sandbox scales reality: archive bytes per GiB of guest disk, simulated read speed."""

    bytes_per_gib: int = DEFAULT_BYTES_PER_GIB
    throughput: float = 200 * 1024**2  # bytes of (unscaled) guest disk per simulated second
    zstd_level: int = 3  # `zstd --threads=N` without a level = 3


def parse_bool(value: Any) -> bool:
    """pve-common ``parse_boolean``: 1|on|yes|true (any case) are true."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE


# -- file helpers shared with the engine ------------------------------------------------------------


def storage_used_bytes(storage: Storage) -> int:
    """What the storage holds: every file under its path (archives, sidecars, ``fill`` ballast)."""
    root = Path(storage.path)
    total = 0
    if not root.is_dir():
        return 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                continue
    return total


class CapacityWriter(io.RawIOBase):
    """A file that fails like a full disk: ``ENOSPC`` once ``budget`` bytes are written (the part
    that fits is written first, as a real short write would)."""

    def __init__(self, raw: BinaryIO, budget: int | None):
        super().__init__()
        self.raw = raw
        self.budget = budget
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.budget is not None and self.written + len(view) > self.budget:
            fits = max(0, self.budget - self.written)
            self.raw.write(view[:fits])
            self.written += fits
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.raw.write(view)
        self.written += len(view)
        return len(view)


def archive_remove(path: Path) -> None:
    """``PVE::Storage::archive_remove``: refuses protected archives, removes ``.log`` and ``.notes``."""
    if Path(str(path) + ".protected").exists():
        raise OSError(f"cannot remove protected archive '{path}'")
    path.unlink()
    archive_auxiliaries_remove(path)


def archive_auxiliaries_remove(path: Path) -> None:
    try:
        info = archive.parse(path.name)
    except ValueError:
        return
    for name in (info.logfilename, info.notesfilename):
        if name:
            (path.parent / name).unlink(missing_ok=True)


# -- formatting as PVE does -------------------------------------------------------------------------


def format_size(size: float) -> str:
    """``PVE::VZDump::format_size`` (``archive file size: 1.23GB``)."""
    kb = size / 1024
    if kb < 1024:
        return f"{int(kb)}KB"
    mb = size / 1024**2
    if mb < 1024:
        return f"{int(mb)}MB"
    gb = mb / 1024
    if gb < 1024:
        return f"{gb:.2f}GB"
    return f"{gb / 1024:.2f}TB"


def render_bytes(value: float, precision: int = 2) -> str:
    """``PVE::Tools::render_bytes``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    unit = 0
    while value > 1023 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f"{value:.{precision}f} {units[unit]}"


def hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def command_line(params: Mapping[str, Any]) -> str:
    """``PVE::VZDump::Common::command_line``: ``vzdump <vmids> --key value ...``."""
    cmd = "vzdump"
    if params.get("vmid"):
        cmd += " " + " ".join(_split_list(params["vmid"]))
    for key, value in params.items():
        if key in ("id", "vmid", "starttime", "dow", "stdout"):
            continue
        text = str(int(value)) if isinstance(value, bool) else str(value)
        cmd += f" --{key} " + (text if _SHELL_SAFE.match(text) else "'" + text.replace("'", "'\"'\"'") + "'")
    return cmd


def _split_list(value: Any) -> list[str]:
    return [v for v in re.split(r"[\s,;]+", str(value)) if v]


def render_notes(template: str, cluster: str, guest_name: str, node: str, vmid: int) -> str:
    """vzdump's notes template: ``\\n`` and ``\\\\`` escapes, then ``{{cluster}}`` etc. (§4.3)."""

    def unescape(m: re.Match[str]) -> str:
        char = m.group(1)
        if char == "\\":
            return "\\"
        if char == "n":
            return "\n"
        raise ValueError(f"unexpected escape character '{char}'")

    text = re.sub(r"\\(.)", unescape, template)
    values = {"cluster": cluster, "guestname": guest_name, "node": node, "vmid": str(vmid)}
    return re.sub(r"\{\{(cluster|guestname|node|vmid)\}\}", lambda m: values[m.group(1)], text)


# -- guest configs as they appear inside archives ---------------------------------------------------


def mac_address(vmid: int, salt: str = "") -> str:
    """A stable MAC in Proxmox's OUI BC:24:11, from the vmid (and a salt for ``unique`` restores)."""
    digest = uuidlib.uuid5(uuidlib.NAMESPACE_OID, f"{vmid}:{salt}").bytes
    return "BC:24:11:" + ":".join(f"{b:02X}" for b in digest[:3])


def size_text(disk_bytes: int) -> str:
    gib = disk_bytes / GIB
    return f"{int(gib)}G" if gib == int(gib) else f"{max(1, math.ceil(disk_bytes / 1024**2))}M"


def guest_config_text(guest: Guest) -> str:
    """``qemu-server.conf`` / ``pct.conf`` as vzdump embeds it, with the restore map hint for VMs."""
    extra = dict(guest.config)
    if guest.full_config:
        conf = {("name" if guest.type == "qemu" else "hostname"): guest.name}
    elif guest.type == "qemu":
        conf = {
            "boot": "order=scsi0", "cores": "2", "memory": "2048", "name": guest.name,
            "net0": f"virtio={mac_address(guest.vmid)},bridge=vmbr0", "ostype": "l26",
            "scsi0": f"local-lvm:vm-{guest.vmid}-disk-0,size={size_text(guest.disk_bytes)}",
            "scsihw": "virtio-scsi-single",
        }
    else:
        conf = {
            "arch": "amd64", "cores": "1", "hostname": guest.name, "memory": "512",
            "net0": f"name=eth0,bridge=vmbr0,hwaddr={mac_address(guest.vmid)},ip=dhcp,type=veth",
            "ostype": "debian",
            "rootfs": f"local-lvm:vm-{guest.vmid}-disk-0,size={size_text(guest.disk_bytes)}",
            "swap": "512",
        }
    conf.update(extra)
    if guest.tags:
        conf["tags"] = ";".join(guest.tags)
    lines = [f"{k}: {conf[k]}" for k in sorted(conf)]
    if guest.type == "qemu":
        # qemu-server VZDump/QemuServer.pm: restore hints, one per disk (§1.4)
        lines.append("#qmdump#map:scsi0:drive-scsi0:local-lvm:raw:")
    return "\n".join(lines) + "\n"


def guest_disk(guest: Guest, settings: Settings) -> GuestDisk:
    return GuestDisk(guest.vmid, guest.generation, scaled_size(guest.disk_bytes, settings.bytes_per_gib))


def disk_chunk_reader(guest: Guest, settings: Settings) -> tuple[int, Callable[[int], bytes]]:
    """(size, read_cluster) of the guest's disk: a restored image file, else generated content."""
    if guest.disk_image and Path(guest.disk_image).exists():
        path = guest.disk_image
        size = Path(path).stat().st_size

        def read_image(index: int) -> bytes:
            with open(path, "rb") as f:
                f.seek(index * CLUSTER_SIZE)
                return f.read(CLUSTER_SIZE)

        return size, read_image
    disk = guest_disk(guest, settings)
    return disk.size, disk.read_cluster


# -- the job -----------------------------------------------------------------------------------------


@dataclass
class GuestResult:
    vmid: int
    ok: bool
    error: str | None = None
    volid: str | None = None
    size: int = 0


@dataclass
class JobLog:
    """Lines of the task log; guest lines also go to that guest's ``.log`` sidecar, time-stamped."""

    task: Task
    tz: str
    guest_lines: list[tuple[int, str]] | None = None

    def info(self, message: str, at: int) -> None:
        self.emit("INFO", message, at)

    def err(self, message: str, at: int) -> None:
        self.emit("ERROR", message, at)

    def emit(self, level: str, message: str, at: int) -> None:
        self.task.log(f"{level}: {message}")
        if self.guest_lines is not None:
            self.guest_lines.append((at, f"{level}: {message}"))

    def stamp(self, at: int) -> str:
        return localtime.LocalClock(self.tz).strftime("%Y-%m-%d %H:%M:%S", at)


@dataclass
class VzdumpJob:
    cluster: Cluster
    tasks: TaskStore
    settings: Settings
    node: Node
    params: dict[str, Any]
    user: str
    now: int
    results: list[GuestResult] = field(default_factory=list)

    # ----- which guests -------------------------------------------------------------------------
    def split_guests(self) -> tuple[list[int], list[int]]:
        """(local vmids incl. orphans, other nodes' vmids): API2/VZDump.pm splits
        ``get_included_guests`` per node; unknown vmids run everywhere and fail visibly."""
        refs = [GuestRef(g.vmid, g.node, g.pool, g.type, g.name) for g in self.cluster.guests.values()]
        per_node = included_guests_per_node(self.params, refs, pools=set(self.cluster.pools))
        local = sorted(set(per_node.pop(self.node.name, [])) | set(per_node.pop("", [])))
        skipped = sorted(v for vmids in per_node.values() for v in vmids)
        return local, skipped

    # ----- the worker ---------------------------------------------------------------------------
    def run(self) -> str:
        if self.params.get("node") and self.params["node"] != self.node.name:
            return "OK"  # API2/VZDump.pm: node given and not this one
        local, skipped = self.split_guests()
        if not local and not parse_bool(self.params.get("all", False)):
            return "OK"  # silent exit: the VMs run on other nodes
        task_id = str(local[0]) if len(local) == 1 else ""
        task = self.tasks.start(self.node.name, "vzdump", task_id, self.user, self.now)
        log = JobLog(task, self.node.timezone)
        try:
            storage, keep = self.resolve_storage()
        except ValueError as exc:
            for line in str(exc).splitlines():
                log.err(line, self.now)
            task.finish(self.now, str(exc))
            return task.upid
        t = self.acquire_global_lock(log)
        if t is None:
            return task.upid
        log.info(f"starting new backup job: {command_line(self.params)}", t)
        if skipped:
            log.info(f"skip external VMs: {' '.join(map(str, skipped))}", t)
        for vmid in local:
            result, t = self.backup_guest(vmid, storage, keep, log, t)
            self.results.append(result)
        failed = [r for r in self.results if not r.ok]
        log.info("Backup job finished with errors" if failed else "Backup job finished successfully", t)
        task.finish(t, "job errors" if failed else None)
        return task.upid

    def resolve_storage(self) -> tuple[Storage, dict[str, int] | None]:
        """``PVE::VZDump->new``: the target storage and the effective retention (§2.1 precedence)."""
        sid = str(self.params.get("storage") or "local")
        storage = self.cluster.storages.get(sid)
        if storage is None:
            raise ValueError(f"unable to get storage info for '{sid}' - storage '{sid}' does not exist")
        if not storage.visible_from(self.node.name):
            raise ValueError(f"storage '{sid}' is not available on node '{self.node.name}'")
        if "backup" not in storage.content:
            raise ValueError(f"can't use storage '{sid}' for backups - wrong content type")
        source = self.params.get("prune-backups") or storage.prune_backups or {"keep-all": 1}
        try:
            keep = retention.parse_prune_backups(source)
        except ValueError as exc:
            raise ValueError(f"invalid prune-backups: {exc}") from None
        # keep-all forces remove=0; with remove=0 vzdump never prunes (§2.1)
        if "keep-all" in keep or not parse_bool(self.params.get("remove", True)):
            return storage, None
        return storage, keep

    def acquire_global_lock(self, log: JobLog) -> int | None:
        """flock on ``/var/run/vzdump.lock``: wait for the node's running job up to ``lockwait`` min;
        on timeout the worker ``exit(-1)``s without a ``TASK`` trailer (§4.2, §5.1)."""
        busy = self.tasks.busy_until(self.node.name, "vzdump")
        if busy <= self.now:
            return self.now
        lockwait = int(self.params.get("lockwait", DEFAULT_LOCKWAIT_MIN))
        if lockwait == 0:
            log.err(f"can't acquire lock '{LOCKFILE}' (wait = 0)", self.now)
            log.task.abort(self.now)
            return None
        log.info("trying to get global lock - waiting...", self.now)
        if busy - self.now > lockwait * 60:
            end = self.now + lockwait * 60
            log.err(f"can't acquire lock '{LOCKFILE}' - got timeout", end)
            log.task.abort(end)
            return None
        log.info("got global lock", busy)
        return busy

    # ----- one guest ------------------------------------------------------------------------------
    def backup_guest(
        self, vmid: int, storage: Storage, keep: dict[str, int] | None, log: JobLog, t: int
    ) -> tuple[GuestResult, int]:
        guest = self.cluster.guests.get(vmid)
        if guest is None:
            # exec_backup_task dies before the temp log exists: no .log sidecar (§1.3, §5.1 step 5)
            log.err(f"Backup of VM {vmid} failed - unable to find VM '{vmid}'", t)
            return GuestResult(vmid, False, f"unable to find VM '{vmid}'"), t
        limit_error = self.check_backup_limit(guest, storage, keep)
        if limit_error:
            log.err(f"Backup of VM {vmid} failed - {limit_error}", t)
            return GuestResult(vmid, False, limit_error), t
        final = archive.archive_name(guest.type, vmid, t, self.params.get("compress", "0"), self.node.timezone)
        base = re.sub(r"\.(vma|tar)(\..*)?$", "", final)
        log.guest_lines = []
        start = t
        log.info(f"Starting Backup of VM {vmid} ({guest.type})", t)
        log.info(f"Backup started at {log.stamp(t)}", t)
        try:
            result, t = self.write_guest_archive(guest, storage, keep, final, log, t)
        except GuestFailure as exc:
            t = exc.at
            log.err(f"Backup of VM {vmid} failed - {exc}", t)
            log.info(f"Failed at {log.stamp(t)}", t)
            result = GuestResult(vmid, False, str(exc))
        else:
            log.info(f"Finished Backup of VM {vmid} ({hms(t - start)})", t)
            log.info(f"Backup finished at {log.stamp(t)}", t)
        self.write_sidecar_log(storage, base + ".log", log)
        log.guest_lines = None
        return result, t

    def check_backup_limit(self, guest: Guest, storage: Storage, keep: dict[str, int] | None) -> str | None:
        """With ``remove=0`` and a finite policy, refuse once the guest has ``sum(keep-*)`` backups (§2.1)."""
        if parse_bool(self.params.get("remove", True)):
            return None
        source = self.params.get("prune-backups") or storage.prune_backups
        limit = retention.max_backups(source) if source else None
        if limit is None:
            return None
        count = sum(1 for e in guest_backups(storage, guest.vmid, guest.type) if not e["protected"])
        if count >= limit:
            return (f"There is a max backup limit of {limit} enforced by the target storage or the vzdump "
                    "parameters. Either increase the limit or delete old backup(s).")
        return None

    def write_guest_archive(
        self, guest: Guest, storage: Storage, keep: dict[str, int] | None, final: str, log: JobLog, t: int
    ) -> tuple[GuestResult, int]:
        label = "VM" if guest.type == "qemu" else "CT"
        running = guest.status == "running"
        log.info(f"status = {guest.status}", t)
        if guest.lock:
            raise GuestFailure(f"{label} is locked ({guest.lock})", t)
        log.info(f"{label} Name: {guest.name}", t)
        mode = str(self.params.get("mode", "snapshot")) if running else "stop"
        guest.lock = "backup"  # lock_vm: visible as lock:"backup" while the backup runs
        try:
            return self._write_locked(guest, storage, keep, final, log, t, mode)
        finally:
            guest.lock = None

    def _write_locked(
        self, guest: Guest, storage: Storage, keep: dict[str, int] | None, final: str, log: JobLog, t: int,
        mode: str,
    ) -> tuple[GuestResult, int]:
        if guest.type == "qemu":
            log.info(f"include disk 'scsi0' 'local-lvm:vm-{guest.vmid}-disk-0' {size_text(guest.disk_bytes)}", t)
        else:
            log.info("including mount point rootfs ('/') in backup", t)
        log.info(f"backup mode: {mode}", t)
        log.info(f"ionice priority: {self.params.get('ionice', 7)}", t)
        dump_dir = storage.dump_dir
        dump_dir.mkdir(parents=True, exist_ok=True)
        target = dump_dir / final
        dat = dump_dir / archive.dat_name(final)
        log.info(f"creating vzdump archive '{target}'", t)
        duration = max(1, math.ceil(guest.disk_bytes / self.settings.throughput))
        end = t + duration
        budget = None
        if storage.capacity_bytes is not None:
            budget = max(0, storage.capacity_bytes - storage_used_bytes(storage))
        try:
            zero_fraction = self.write_archive_file(guest, dat, budget, t)
        except OSError as exc:
            dat.unlink(missing_ok=True)  # vzdump unlinks the temp file on failure
            raise GuestFailure(self.writer_error(guest, exc), end) from None
        os.replace(dat, target)
        size = target.stat().st_size
        self.log_transfer(guest, log, duration, zero_fraction, end)
        log.info(f"archive file size: {format_size(size)}", end)
        volid = f"{storage.id}:backup/{final}"
        if self.params.get("notes-template"):
            log.info("adding notes to backup", end)
            notes = render_notes(str(self.params["notes-template"]), self.cluster.name, guest.name,
                                 self.node.name, guest.vmid)
            Path(str(target) + ".notes").write_text(notes, encoding="utf-8")
        if parse_bool(self.params.get("protected", False)):
            log.info("marking backup as protected", end)
            Path(str(target) + ".protected").touch(mode=0o644)
        if keep is not None:
            self.prune_guest(guest, storage, keep, log, end)
        return GuestResult(guest.vmid, True, volid=volid, size=size), end

    def write_archive_file(self, guest: Guest, dat: Path, budget: int | None, t: int) -> float:
        """Write the archive through the job's compressor; return the disk's share of zero clusters."""
        size, read_cluster = disk_chunk_reader(guest, self.settings)
        zero = [0, 0]

        def counting(index: int) -> bytes:
            data = read_cluster(index)
            zero[1] += 1
            if data == _ZERO_CLUSTER[: len(data)]:
                zero[0] += 1
            return data

        config = guest_config_text(guest).encode()
        compress = archive.compression_extension(self.params.get("compress", "0"))
        with open(dat, "wb") as raw, self.compressed(raw, compress, budget, dat) as out:
            if guest.type == "qemu":
                device = vma.VmaDevice("drive-scsi0", size, counting)
                vma.write_vma(out, config=config, devices=[device], ctime=t + 1)
            else:
                ct_tar_format.write_ct_tar(out, config=config, files=self.ct_files(guest, size, counting),
                                           mtime=t)
        return zero[0] / zero[1] if zero[1] else 0.0

    def ct_files(self, guest: Guest, size: int, read_cluster: Callable[[int], bytes]) -> Iterator[tuple[str, bytes]]:
        yield "./etc/hostname", (guest.name + "\n").encode()
        chunks = (read_cluster(i) for i in range(-(-size // CLUSTER_SIZE)))
        yield from cut_ct_parts(chunks)

    def compressed(self, raw: BinaryIO, compress: str | None, budget: int | None, dat: Path) -> Any:
        limited = CapacityWriter(raw, budget)
        if compress == "zst":
            # vzdump runs `zstd --threads=N`: one frame, content checksum on (§6.3)
            cctx = zstandard.ZstdCompressor(level=self.settings.zstd_level, write_checksum=True)
            return _Out(cctx.stream_writer(limited, closefd=False), close=True)
        if compress == "gz":
            return _Out(gzip.GzipFile(fileobj=limited, mode="wb", mtime=0), close=True)  # type: ignore[arg-type]
        if compress == "lzo":
            raw.close()
            return compressed_writer(dat, "lzo")  # the lzop binary; no capacity check on this path
        return _Out(limited, close=False)

    def writer_error(self, guest: Guest, exc: OSError) -> str:
        """The text the real writer prints for a failed write (§5.3 "Storage full")."""
        reason = exc.strerror or str(exc)
        if guest.type == "qemu":
            return f"vma_queue_write: write error - {reason}"
        compress = archive.compression_extension(self.params.get("compress", "0"))
        if compress == "zst":
            return f"zstd: error 70 : Write error : cannot write block : {reason}"
        if compress == "gz":
            return f"gzip: stdout: {reason}"
        return f"tar: -: Cannot write: {reason}"

    def log_transfer(self, guest: Guest, log: JobLog, duration: int, zero_fraction: float, at: int) -> None:
        total = guest.disk_bytes
        rate = total / duration
        if guest.type == "qemu":
            log.info(f"started backup task '{uuidlib.uuid5(uuidlib.NAMESPACE_OID, str(at))}'", at - duration)
            written = total * (1 - zero_fraction)
            log.info(f"100% ({render_bytes(total, 1)} of {render_bytes(total, 1)}) in {duration}s, read: "
                     f"{render_bytes(rate, 1)}/s, write: {render_bytes(written / duration, 1)}/s", at)
            log.info(f"backup is sparse: {render_bytes(total * zero_fraction)} ({int(zero_fraction * 100)}%) "
                     "total zero data", at)
            log.info(f"transferred {render_bytes(total)} in {duration} seconds ({render_bytes(rate, 1)}/s)", at)
        else:
            used = int(total * (1 - zero_fraction))
            log.info(f"Total bytes written: {used} ({render_bytes(used, 1).replace(' ', '')}, "
                     f"{render_bytes(used / duration, 1).replace(' ', '')}/s)", at)

    def prune_guest(self, guest: Guest, storage: Storage, keep: dict[str, int], log: JobLog, at: int) -> None:
        """After a successful backup: prune this guest's group on the storage, all jobs' backups (§2.1)."""
        log.info("prune older backups with retention: "
                 + ", ".join(f"{k}={keep[k]}" for k in sorted(keep)), at)
        listing = guest_backups(storage, guest.vmid, guest.type, self.node.timezone)
        marks = retention.mark(listing, keep, self.node.timezone, vmid=guest.vmid, type=guest.type)
        pruned = 0
        for entry in marks:
            if entry["mark"] != "remove":
                continue
            log.info(f"removing backup '{entry['volid']}'", at)
            archive_remove(storage.dump_dir / entry["volid"].split("/", 1)[1])
            pruned += 1
        extra = " not covered by keep-retention policy" if pruned else ""
        log.info(f"pruned {pruned} backup(s){extra}", at)

    def write_sidecar_log(self, storage: Storage, name: str, log: JobLog) -> None:
        """Copy the guest's temp log beside the archive, if space allows (§1.3, §5.3)."""
        lines = log.guest_lines or []
        text = "".join(f"{log.stamp(at)} {line}\n" for at, line in lines).encode()
        if storage.capacity_bytes is not None and storage_used_bytes(storage) + len(text) > storage.capacity_bytes:
            return
        storage.dump_dir.mkdir(parents=True, exist_ok=True)
        (storage.dump_dir / name).write_bytes(text)


class GuestFailure(Exception):
    """One guest's backup failed at simulated time ``at``; the job goes on with the next guest."""

    def __init__(self, message: str, at: int):
        super().__init__(message)
        self.at = at


class _Out:
    """Context manager exposing ``write``/``writelines`` over a compressor, closing (and so
    finishing the frame) on success; the raw file stays with its owner. Small writes (tar's
    512-byte blocks, VMA headers) are gathered into 1 MiB pieces before they reach the compressor."""

    BUFFER = 1 << 20

    def __init__(self, out: Any, close: bool):
        self.out = out
        self.close = close
        self.pending = bytearray()

    def write(self, data: Any) -> int:
        self.pending += data
        if len(self.pending) >= self.BUFFER:
            self.flush()
        return len(data)

    def writelines(self, chunks: Iterable[Any]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        if self.pending:
            self.out.write(self.pending)
            self.pending = bytearray()

    def __enter__(self) -> _Out:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.flush()
            if self.close:
                self.out.close()


# -- listing -------------------------------------------------------------------------------------------

_BACKUP_FILE_RE = re.compile(r"^([^/]+\.(tgz|(?:tar|vma)(?:\.(?:gz|lzo|zst|bz2))?))$")


def listing_entry(storage: Storage, entry: os.DirEntry[str], tz: str | None,
                  with_notes: bool = True) -> dict[str, Any] | None:
    """One item of the content listing, as ``Plugin.pm $get_subdir_files`` builds it (§1.5)."""
    m = _BACKUP_FILE_RE.match(entry.name)
    if not m or not entry.is_file():
        return None
    st = entry.stat()
    item: dict[str, Any] = {"volid": f"{storage.id}:backup/{entry.name}", "format": m.group(2),
                            "size": st.st_size, "content": "backup"}
    try:
        info = archive.parse(entry.name, tz)
        item["subtype"] = info.type
        item["ctime"] = info.ctime if info.ctime is not None else int(st.st_ctime)
    except ValueError:
        item["subtype"] = "unknown"
        item["ctime"] = int(st.st_ctime)
    vm = re.search(r"-([1-9][0-9]{2,8})-", entry.name)
    if vm:
        item["vmid"] = int(vm.group(1))
    notes = Path(entry.path + ".notes")
    if with_notes and notes.exists():
        item["notes"] = notes.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
    if os.path.exists(entry.path + ".protected"):
        item["protected"] = 1
    return item


def storage_listing(storage: Storage, tz: str | None, vmid: int | None = None,
                    name_prefix: str | None = None, with_notes: bool = True) -> list[dict[str, Any]]:
    """Backups on a storage, read from disk, sorted by ``lc(volid)`` (``Storage.pm volume_list``)."""
    if not storage.dump_dir.is_dir():
        return []
    out = []
    for entry in os.scandir(storage.dump_dir):
        if name_prefix and not entry.name.startswith(name_prefix):
            continue
        if vmid is not None and not re.search(rf"\S+-{int(vmid)}-\S+", entry.name):
            continue
        item = listing_entry(storage, entry, tz, with_notes)
        if item is not None:
            out.append(item)
    out.sort(key=lambda i: i["volid"].lower())
    return out


def guest_backups(storage: Storage, vmid: int, guest_type: str, tz: str | None = None) -> list[dict[str, Any]]:
    """The backups of one guest's prune group (same vmid and type) on a storage."""
    items = storage_listing(storage, tz, vmid=vmid, name_prefix=f"vzdump-{guest_type}-{vmid}-", with_notes=False)
    for item in items:
        item.setdefault("protected", 0)
    return items
