"""The sandbox survives SIGKILL at any moment: a 30-day run is killed at random points, and every reopen
passes a consistency check (the clock is not behind any archive or task, no partial file is visible,
listings parse and every listed archive is a whole zstd file, the task index and the job states agree,
restored guests' disks exist). Also: ``advance`` is bounded and can be interrupted between events."""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tests.helpers.tools import require_tool
from vzkeep.pve import archive
from vzkeep.pve.upid import decode_upid
from vzkeep.sandbox.engine import MAX_ADVANCE_SECONDS, Sandbox
from vzkeep.sandbox.journal import JOURNAL_FILE
from vzkeep.sandbox.model import Cluster
from vzkeep.sandbox.settings import Settings
from vzkeep.sandbox.tasks import ParamError

DAY = 86400
START = 1749513600  # 2025-06-10 00:00 UTC, a Tuesday
KILLS = 20


# Shared by the child process (kept light: it imports the engine only, so a kill lands in the run, not in
# start-up) and by the tests below.
CLUSTER_SRC = """
from pathlib import Path
from vzkeep.sandbox.model import Cluster, Guest, Node, Pool, Storage

def small_cluster(root, start):
    # Two nodes, a local dir storage on each and a shared NFS one, three guests, daily + weekly jobs.
    cluster = Cluster(name="crash")
    for name in ("pve1", "pve2"):
        cluster.nodes[name] = Node(name, timezone="Europe/Paris")
    cluster.pools["prod"] = Pool("prod")
    cluster.storages["backup"] = Storage("backup", "dir", str(Path(root) / "storages" / "backup"))
    cluster.storages["nas"] = Storage("nas", "nfs", str(Path(root) / "storages" / "nas"))
    for i, vmid in enumerate((100, 101, 102)):
        cluster.guests[vmid] = Guest(vmid, f"g{vmid}", "qemu" if i % 2 else "lxc", f"pve{i % 2 + 1}",
                                     pool="prod", disk_bytes=(4 << i) * 1024**3)
    for job, schedule, storage, keep in (("daily", "02:00", "backup", "keep-daily=5"),
                                         ("weekly", "sun 03:00", "nas", "keep-weekly=2")):
        cluster.jobs[job] = {"type": "vzdump", "id": job, "schedule": schedule, "pool": "prod", "enabled": 1,
                             "storage": storage, "compress": "zstd", "prune-backups": keep,
                             "notes-template": "{{guestname}}"}
    cluster.clock_epoch = start
    return cluster
"""

# The child: open (or create) the sandbox, say "go", then run it to the 30th day in steps, restoring a
# guest from time to time, so a kill lands in vzdump, prune, restore, task and state writes alike.
CHILD = CLUSTER_SRC + """
import sys
from vzkeep.sandbox.engine import Sandbox
from vzkeep.sandbox.settings import Settings
DAY = 86400
root, start = Path(sys.argv[1]), int(sys.argv[2])
state = root / "state"
if (state / "cluster.json").exists():
    sb = Sandbox.open(state, stepped=True)
else:
    sb = Sandbox.create(state, small_cluster(root, start), stepped=True, settings=Settings(throughput=1024**3))
print("go", flush=True)
end = start + 30 * DAY
while sb.now() < end:
    sb.advance(min(2 * DAY, end - sb.now()))
    items = sb.listing("backup", "pve1", vmid=101)
    if items:
        sb.restore("pve1", "qemu", {"vmid": 5101, "archive": items[-1]["volid"], "force": 1}, "root@pam")
print("done", flush=True)
"""


def small_cluster(root: Path) -> Cluster:
    namespace: dict[str, Any] = {}
    exec(CLUSTER_SRC, namespace)
    return namespace["small_cluster"](root, START)


def run_child(root: Path, kill_after: float | None, ran: list[float] | None = None) -> bool:
    """Run the child; SIGKILL it ``kill_after`` seconds after it is ready. True when it finished; ``ran``
    gets how long it ran after being ready (its start-up, imports included, is not part of the month)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(START)], stdout=subprocess.PIPE,
                             text=True, env=env)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "go"
    ready = time.monotonic()
    if kill_after is not None:
        try:
            child.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
            return False
    out = child.stdout.read()
    assert child.wait(timeout=120) == 0
    if ran is not None:
        ran.append(time.monotonic() - ready)
    return "done" in out


def consistency_problems(sb: Sandbox) -> list[str]:
    """Everything that must hold of a reopened sandbox, as a list of what does not."""
    problems = []
    state = sb.directory
    clock = sb.now()
    if (state / JOURNAL_FILE).exists():
        problems.append("the journal is still there after reopen")
    json.loads((state / "cluster.json").read_text())
    zstd = zstandard.ZstdDecompressor()
    for storage, node in sb.dirs.places():
        dump = sb.dump_dir(storage.id, node)
        names = sorted(os.listdir(dump)) if dump.is_dir() else []
        for name in names:
            if name.endswith(".dat") or name.startswith("."):
                problems.append(f"{dump}/{name}: a partial or temporary file is visible")
        tz = sb.cluster.nodes[node].timezone
        for item in sb.listing(storage.id, node):
            name = item["volid"].split("/", 1)[1]
            if item["ctime"] > clock:
                problems.append(f"{item['volid']} on {node}: archive time {item['ctime']} after the clock {clock}")
            assert archive.parse(name, tz).vmid == item["vmid"]
            data = (dump / name).read_bytes()
            try:
                with zstd.stream_reader(data, read_across_frames=True) as reader:
                    while reader.read(1 << 20):
                        pass
            except zstandard.ZstdError as exc:
                problems.append(f"{item['volid']} on {node}: not a whole zstd file ({exc})")
    upids = set()
    for node in sb.cluster.nodes:
        index = state / "tasks" / node / "index"
        lines = index.read_text().splitlines() if index.exists() else []
        for line in lines:
            m = re.match(r"^(\S+) ([0-9A-F]{8}) (.+)$", line)
            if not m:
                problems.append(f"{index}: unparsable line {line!r}")
                continue
            upid, endtime, status = m.group(1), int(m.group(2), 16), m.group(3)
            upids.add(upid)
            decode_upid(upid)
            log = sb.tasks.log_lines(upid)
            if endtime > clock:
                problems.append(f"task {upid} ends at {endtime}, after the clock {clock} (still running?)")
            if status == "OK" and log[-1] != "TASK OK":
                problems.append(f"task {upid}: index says OK, log ends with {log[-1]!r}")
    for job, per_node in sb.cluster.job_state.items():
        for node, job_state in per_node.items():
            if job_state.get("upid") and job_state["upid"] not in upids:
                problems.append(f"job {job} on {node}: last task {job_state['upid']} is not in the task index")
    for guest in sb.cluster.guests.values():
        if guest.disk_image and not Path(guest.disk_image).is_file():
            problems.append(f"guest {guest.vmid}: disk image {guest.disk_image} is missing")
    disks = state / "disks"
    used = {g.disk_image for g in sb.cluster.guests.values()}
    for path in disks.iterdir() if disks.is_dir() else []:
        if str(path) not in used:
            problems.append(f"{path}: a disk image no guest refers to")
    return problems


def test_sigkill_at_random_points_of_a_month_always_reopens_consistent(tmp_path: Path) -> None:
    require_tool("zstd")
    rng = random.Random(20260726)
    ran: list[float] = []
    assert run_child(tmp_path / "timing", None, ran)  # an uninterrupted month, to know how long one takes
    kills = finished = 0
    run = 0
    while kills < KILLS:
        root = tmp_path / f"run{run}"
        # the shortest month seen so far: a month timed while the machine was busy would put kill points
        # after the end of the next, quicker ones
        if run_child(root, rng.uniform(0.0, 0.9 * min(ran)), ran):
            finished += 1
            run += 1  # the month completed before the kill: start a new one
            continue
        kills += 1
        sb = Sandbox.open(root / "state", stepped=True)
        assert consistency_problems(sb) == [], f"after kill {kills}"
    assert kills == KILLS and finished < KILLS  # most kills landed inside a run


def test_a_clean_month_is_consistent_too(tmp_path: Path) -> None:
    assert run_child(tmp_path, None)
    sb = Sandbox.open(tmp_path / "state", stepped=True)
    assert consistency_problems(sb) == []
    assert len(sb.listing("nas", "pve1")) >= 4  # the weekly job ran
    assert sb.listing("backup", "pve1") and sb.listing("backup", "pve2")


@pytest.mark.parametrize("seconds", [math.nan, math.inf, -1, MAX_ADVANCE_SECONDS + 1, 1e300, "soon"])
def test_advance_refuses_what_it_cannot_simulate(tmp_path: Path, seconds: object) -> None:
    sb = Sandbox.create(tmp_path / "state", small_cluster(tmp_path), stepped=True)
    with pytest.raises(ParamError) as err:
        sb.advance(seconds)  # type: ignore[arg-type]
    assert err.value.status == 400 and "366 days" in err.value.errors["seconds"]
    assert sb.now() == START


def test_advance_stops_between_events_when_interrupted(tmp_path: Path) -> None:
    sb = Sandbox.create(tmp_path / "state", small_cluster(tmp_path), stepped=True,
                        settings=Settings(throughput=1024**3))
    run_job = sb.scheduler.run_job

    def first_job_then_ctrl_c(*args: object) -> str:
        sb.interrupt()  # as `serve` does on Ctrl-C, from another thread, while a job runs
        return run_job(*args)  # type: ignore[arg-type]

    sb.scheduler.run_job = first_job_then_ctrl_c
    started = sb.advance(MAX_ADVANCE_SECONDS)
    assert sb.now() == START + DAY  # stopped at the first event (the next 02:00 local), not a year later
    assert len(started) == 2  # both nodes' daily job started at that event, and nothing after it
    assert all(sb.tasks.find(u) is not None for u in started)
