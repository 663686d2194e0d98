"""`vzkeep verify` is right or silent, and its results belong to the bytes and the cluster they checked.

Against a sandbox (its PVE API says where each storage's backups are and each node's zone) and offline,
on machines whose own zone is UTC or Europe/Paris: the archives are named in the nodes' zone, never the
machine's. The command runs as a user runs it (a subprocess, TZ set in its environment).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import archives
from tests.helpers.cli import invoke, with_backups
from tests.helpers.sandbox import RunningSandbox, running_sandbox
from vzkeep import verify
from vzkeep.exporter import results as exporter_results
from vzkeep.exporter.archives import summarize
from vzkeep.pve import archive
from vzkeep.verify.storages import ClusterView

ROOT = Path(__file__).parent.parent
MACHINE_ZONES = ["UTC", "Europe/Paris"]


START = 1_795_000_000  # the sandbox's clock starts on Wed 2026-11-18 11:06 UTC, whatever day the tests run


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    with running_sandbox(tmp_path_factory.mktemp("verify-cluster"), start_epoch=START) as sandbox:
        with_backups(sandbox, days=2)
        yield sandbox


def vzkeep(*args: str, machine_tz: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TZ": machine_tz, "VZKEEP_STATE_DIR": str(state), "COLUMNS": "200"}
    env.pop("VZKEEP_SANDBOX", None)
    return subprocess.run([sys.executable, "-m", "vzkeep", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def node_zone(sb: RunningSandbox, node: str) -> str:
    return sb.sandbox.cluster.nodes[node].timezone


def cluster_name(sb: RunningSandbox) -> str:
    return ClusterView(sb.client()).cluster_name()


# -- the node's zone comes from the cluster ----------------------------------------------------------------


@pytest.mark.parametrize("machine_tz", MACHINE_ZONES)
def test_storage_found_through_the_api_verifies_ok_in_the_nodes_zone(sb, tmp_path, machine_tz):
    listed = {e["volid"] for e in sb.sandbox.listing("backup-prod", "pve1")}
    assert (listed and node_zone(sb, "pve1") != machine_tz) or machine_tz == "Europe/Paris"
    out = vzkeep("verify", "--sandbox", str(sb.sandbox_json), "--storage", "backup-prod", "--json",
                 machine_tz=machine_tz, state=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert {a["volid"] for a in doc["archives"]} >= listed
    assert all(a["ok"] and a["zone"] == node_zone(sb, "pve1") for a in doc["archives"]), doc["archives"]
    assert doc["time_not_checked"] == 0
    # one store per cluster, named after it
    assert Path(doc["results_store"]) == tmp_path / "verify" / f"{cluster_name(sb)}.sqlite"


@pytest.mark.parametrize("machine_tz", MACHINE_ZONES)
def test_a_dir_under_a_known_storage_gets_volids_and_the_nodes_zone(sb, tmp_path, machine_tz):
    dump = sb.sandbox.dump_dir("backup-lab", "pve2")
    out = vzkeep("verify", "--sandbox", str(sb.sandbox_json), "--dir", str(dump), "--json",
                 machine_tz=machine_tz, state=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    archives = json.loads(out.stdout)["archives"]
    assert archives and all(a["ok"] for a in archives)
    assert {a["volid"] for a in archives} == {e["volid"] for e in sb.sandbox.listing("backup-lab", "pve2")}
    assert {a["zone"] for a in archives} == {node_zone(sb, "pve2")}


def test_an_archive_first_verified_by_path_gets_its_volid_once_the_storage_is_known(sb, tmp_path):
    dump = sb.sandbox.dump_dir("backup-lab", "pve2")
    results = ["--results", str(tmp_path / "r.sqlite"), "--tz", node_zone(sb, "pve2"), "--json"]
    first = vzkeep("verify", *results, "--dir", str(dump), machine_tz="UTC", state=tmp_path)
    assert first.returncode == 0 and not verify.results_by_volid(tmp_path / "r.sqlite")
    again = vzkeep("verify", *results, "--sandbox", str(sb.sandbox_json), "--dir", str(dump), machine_tz="UTC",
                   state=tmp_path)
    assert again.returncode == 0, again.stderr
    assert all(a["cached"] for a in json.loads(again.stdout)["archives"])  # not read again
    by_volid = verify.results_by_volid(tmp_path / "r.sqlite")
    assert set(by_volid) == {e["volid"] for e in sb.sandbox.listing("backup-lab", "pve2")}


def test_results_are_dated_on_the_clusters_clock(sb, tmp_path):
    # the exporter and the status page measure ages on the cluster's clock; a result dated on this machine's
    # would look verified in another week on a sandbox (or on a drifting host)
    cluster_now = sb.client().get("nodes/pve1/time")["time"]
    # the sandbox's week is pinned in November 2026: its clock is not this machine's (which the command would use
    # by mistake), checked here so that the test can fail
    assert abs(cluster_now - time.time()) > 3600
    store = tmp_path / "r.sqlite"
    out = vzkeep("verify", "--sandbox", str(sb.sandbox_json), "--storage", "backup-prod", "--results", str(store),
                 "--force", machine_tz="UTC", state=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    dated = {r.verified_at for r in verify.results_by_volid(store).values()}
    assert dated and all(abs(at - cluster_now) < 300 for at in dated), (dated, cluster_now)


@pytest.mark.parametrize("machine_tz", MACHINE_ZONES)
def test_an_unknown_zone_never_makes_an_archive_corrupt(sb, tmp_path, machine_tz):
    """Offline, not on a node, no --tz: the name/time check is not made, and said so."""
    copy = tmp_path / "nas"
    shutil.copytree(sb.sandbox.dump_dir("backup-prod", "pve1"), copy)
    out = vzkeep("verify", "--dir", str(copy), "--json", "--storage-cfg", str(tmp_path / "none.cfg"),
                 machine_tz=machine_tz, state=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["summary"]["corrupt"] == 0 and doc["time_not_checked"] == doc["summary"]["total"] > 0
    assert all(a["zone"] is None and a["notes"] == [verify.TIME_NOT_CHECKED] for a in doc["archives"])
    text = vzkeep("verify", "--dir", str(copy), "--storage-cfg", str(tmp_path / "none.cfg"),
                  machine_tz=machine_tz, state=tmp_path).stdout
    assert "CORRUPT" not in text and "name/time not checked" in text


@pytest.mark.parametrize("machine_tz", MACHINE_ZONES)
def test_offline_the_stack_file_gives_the_nodes_zone(sb, tmp_path, machine_tz):
    from vzkeep.config import load_stack_file

    stack = ROOT / "Pulumi.prod.yaml"
    assert load_stack_file(stack).environment.timezone == node_zone(sb, "pve1")  # the program sets it
    copy = tmp_path / "nas"
    shutil.copytree(sb.sandbox.dump_dir("backup-prod", "pve1"), copy)
    out = vzkeep("verify", "--stack", str(stack), "--dir", str(copy), "--json", machine_tz=machine_tz,
                 state=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["time_not_checked"] == 0 and doc["summary"]["ok"] == doc["summary"]["total"] > 0
    assert {a["zone"] for a in doc["archives"]} == {node_zone(sb, "pve1")}


# -- results keyed by what changes the verdict -----------------------------------------------------------


def _paris_archive(directory: Path, when: int) -> Path:
    """A sound VM archive whose name is the Paris time of ``when`` and whose header says ``when``."""
    name = archive.archive_name("qemu", 100, when, "zstd", tz="Europe/Paris")
    return archives.store(directory / name, archives.vma_bytes(ctime=when + 4), "zst")


@pytest.mark.parametrize("machine_tz", MACHINE_ZONES)
def test_a_verdict_in_the_wrong_zone_is_not_served_from_the_cache_for_the_right_one(tmp_path, machine_tz):
    path = _paris_archive(tmp_path, 1_767_578_403)  # 2026-01-05: Paris is UTC+1
    results = ["--results", str(tmp_path / "r.sqlite"), "--json"]
    wrong = vzkeep("verify", *results, "--tz", "UTC", str(path), machine_tz=machine_tz, state=tmp_path)
    assert wrong.returncode == 1 and "time mismatch" in wrong.stdout
    right = vzkeep("verify", *results, "--tz", "Europe/Paris", str(path), machine_tz=machine_tz, state=tmp_path)
    assert right.returncode == 0, right.stdout
    assert json.loads(right.stdout)["archives"][0]["cached"] is False


def test_a_result_of_an_older_checker_is_read_again(tmp_path):
    path = _paris_archive(tmp_path, 1_767_578_403)
    store = verify.ResultStore(tmp_path / "r.sqlite")
    verify.verify_paths([str(path)], store=store, zone_for=lambda _p: "Europe/Paris")
    with sqlite3.connect(store.path) as db:
        record = json.loads(db.execute("SELECT record FROM results").fetchone()[0])
        record["checker"] = verify.CHECKER_VERSION - 1
        db.execute("UPDATE results SET record = ?, checker = ?", (json.dumps(record), record["checker"]))
    again = verify.verify_paths([str(path)], store=store, zone_for=lambda _p: "Europe/Paris")
    assert not again[0].cached


@pytest.mark.parametrize("case", ["same size, other bytes", "vanished"])
def test_a_result_belongs_to_the_bytes_it_read(tmp_path, case):
    path = _paris_archive(tmp_path, 1_767_578_403)
    store = verify.ResultStore(tmp_path / "r.sqlite")
    first = verify.verify_paths([str(path)], store=store, zone_for=lambda _p: "Europe/Paris")[0]
    assert first.ok and store.fresh(str(path), zone="Europe/Paris") is not None
    if case == "vanished":
        path.unlink()
    else:  # another file under the same name: a new inode, even with the same size and mtime
        other = tmp_path / "other"
        other.write_bytes(bytes(path.stat().st_size))
        os.utime(other, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
        os.replace(other, path)
    assert store.fresh(str(path), zone="Europe/Paris") is None  # not verified, whatever it was before
    if case != "vanished":
        again = verify.verify_paths([str(path)], store=store, zone_for=lambda _p: "Europe/Paris")[0]
        assert not again.cached and not again.ok


def test_the_exporter_publishes_a_result_only_for_the_size_it_read(tmp_path):
    dump = tmp_path / "dump"
    dump.mkdir()
    path = _paris_archive(dump, 1_767_578_403)
    volid = f"backup-prod:backup/{path.name}"
    store = verify.ResultStore(tmp_path / "r.sqlite")
    before = verify.store_stamp(store.path)
    verify.verify_paths([str(path)], store=store, zone_for=lambda _p: "Europe/Paris", volid_for=lambda _p: volid)
    assert verify.store_stamp(store.path) != before  # the exporter sees the write (WAL included)
    seen = exporter_results.read_verify_results(store.path)
    size = path.stat().st_size
    same = summarize([{"volid": volid, "vmid": 100, "ctime": 1, "size": size}], seen, "x").guests[100]
    other = summarize([{"volid": volid, "vmid": 100, "ctime": 1, "size": size + 1}], seen, "x").guests[100]
    assert same.verified_ok and same.verified_at > 0
    assert other.verified_ctime == -1 and not other.verified_ok


# -- per cluster, and what `backups list` makes of it ------------------------------------------------------


def test_backups_list_reads_the_connected_clusters_store_only(sb, tmp_path):
    state = tmp_path / "state"
    out = vzkeep("verify", "--sandbox", str(sb.sandbox_json), "--storage", "backup-lab", machine_tz="UTC",
                 state=state)
    assert out.returncode == 0, out.stdout + out.stderr
    listed = {e["volid"] for e in sb.sandbox.listing("backup-lab", "pve2")}
    states = _states(sb, state)
    assert {v for v, s in states.items() if s == "ok"} == listed
    # the same volids verified "ok" on another cluster say nothing about this one's files
    mine = state / "verify" / f"{cluster_name(sb)}.sqlite"
    other_state = tmp_path / "other"
    (other_state / "verify").mkdir(parents=True)
    shutil.copy(mine, other_state / "verify" / "another-cluster.sqlite")
    assert set(_states(sb, other_state).values()) == {"-"}


def test_backups_list_says_when_the_store_is_damaged(sb, tmp_path):
    damaged = tmp_path / "verify" / f"{cluster_name(sb)}.sqlite"
    damaged.parent.mkdir(parents=True)
    damaged.write_text('{"version": 1, "archives": {}}\n')  # e.g. the JSON store of an older vzkeep
    result = invoke(sb, ["backups", "list", "--json"], str(tmp_path), pump=False)
    assert result.exit_code == 0, result.stderr
    assert "verify results not read" in result.stderr and str(damaged) in result.stderr
    doc = json.loads(result.stdout)
    assert any(str(damaged) in w for w in doc["warnings"])
    assert {b["verify"]["state"] for b in doc["backups"]} == {"-"}


def test_a_look_alike_file_is_never_shown_as_verified(sb, tmp_path):
    """A copy of an archive (same name and size) verified elsewhere, without a volid, is not this one."""
    volid = sb.sandbox.listing("backup-lab", "pve2")[0]["volid"]
    copy = tmp_path / "copy"
    copy.mkdir()
    source = sb.sandbox.dump_dir("backup-lab", "pve2") / volid.split("/", 1)[1]
    shutil.copy2(source, copy / source.name)
    store = verify.ResultStore(tmp_path / "r.sqlite")
    assert verify.verify_paths([str(copy / source.name)], store=store)[0].ok
    result = invoke(sb, ["backups", "list", "--json", "--results", str(store.path)], str(tmp_path), pump=False)
    states = {b["volid"]: b["verify"]["state"] for b in json.loads(result.stdout)["backups"]}
    assert states[volid] == "-"


def _states(sb: RunningSandbox, state: Path) -> dict[str, str]:
    result = invoke(sb, ["backups", "list", "--json"], str(state), pump=False)
    assert result.exit_code == 0, result.stderr
    return {b["volid"]: b["verify"]["state"] for b in json.loads(result.stdout)["backups"]}


# -- every run ends, saying what it did ---------------------------------------------------------------------


@pytest.fixture
def three(tmp_path: Path) -> list[Path]:
    return [_paris_archive(tmp_path, 1_767_578_403 + 86_400 * day) for day in range(3)]


def _cli(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(archives.verify_app(), ["verify", *args])


def test_timeout_says_what_was_verified_and_what_was_not(tmp_path, three, monkeypatch):
    real = verify.check.verify_archive

    def slow_second(path, **kwargs):  # type: ignore[no-untyped-def]
        if str(path) == str(three[1]):
            time.sleep(30)  # the --timeout alarm interrupts it
        return real(path, **kwargs)

    monkeypatch.setattr(verify.check, "verify_archive", slow_second)
    store = tmp_path / "r.sqlite"
    started = time.monotonic()
    result = _cli("--results", str(store), "--tz", "Europe/Paris", "--timeout", "1", *map(str, three))
    assert time.monotonic() - started < 20
    assert result.exit_code == 3, result.output
    assert "stopped after --timeout 1 s: 1 of 3 archive(s) verified" in result.stderr
    assert three[1].name in result.stderr and three[2].name in result.stderr
    assert set(verify.load_results(store)) == {str(three[0])}  # what was done is kept


def test_ctrl_c_keeps_what_was_verified(tmp_path, three, monkeypatch):
    real = verify.check.verify_archive

    def interrupt_third(path, **kwargs):  # type: ignore[no-untyped-def]
        if str(path) == str(three[2]):
            raise KeyboardInterrupt
        return real(path, **kwargs)

    monkeypatch.setattr(verify.check, "verify_archive", interrupt_third)
    store = tmp_path / "r.sqlite"
    result = _cli("--results", str(store), "--tz", "Europe/Paris", *map(str, three))
    assert result.exit_code == 130, result.output
    assert "interrupted (Ctrl-C): 2 of 3 archive(s) verified" in result.stderr and three[2].name in result.stderr
    assert set(verify.load_results(store)) == {str(three[0]), str(three[1])}


def test_a_storage_whose_backups_the_token_cannot_see_is_said(sb, tmp_path):
    """PVEAuditor alone is shown no backup volume: verify says so instead of reporting 0 archives silently."""
    out = vzkeep("verify", "--sandbox", str(sb.sandbox_json), "--read-only", "--storage", "backup-prod",
                 machine_tz="UTC", state=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "--storage backup-prod: PVE lists no backup there" in out.stderr
    assert "0 archive(s)" in out.stdout


def test_the_timeout_covers_the_questions_to_the_cluster(tmp_path, three, monkeypatch):
    from vzkeep.cli import verify as verify_cli

    def stuck(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        time.sleep(30)  # a cluster that never answers; the --timeout alarm interrupts it

    monkeypatch.setattr(verify_cli, "_plan", stuck)
    started = time.monotonic()
    result = _cli("--results", str(tmp_path / "r.sqlite"), "--timeout", "1", *map(str, three))
    assert time.monotonic() - started < 20
    assert result.exit_code == 3
    assert "while finding the archives" in result.stderr and "nothing was verified" in result.stderr


def test_help_states_the_timeout_default_and_the_connection_options():
    text = CliRunner().invoke(archives.verify_app(), ["verify", "--help"], env={"COLUMNS": "300"}).stdout
    assert "--timeout" in text and "default: 14400, 4 h" in text
    assert "--sandbox" in text and "--endpoint" in text


# -- big archives ---------------------------------------------------------------------------------------


def test_a_big_archive_is_hashed_by_a_reading_thread(tmp_path):
    """Above the pipelining threshold the read+hash thread runs; hash and verdict are the same."""
    rng = random.Random(3)
    disk = rng.randbytes(archives.CLUSTER) * 40 + rng.randbytes(160 * archives.CLUSTER)  # ~12 MiB, incompressible
    path = archives.store(tmp_path / archive.archive_name("qemu", 100, 1_767_578_403, "zstd", tz="UTC"),
                          archives.vma_bytes(disk=disk), "zst")
    assert path.stat().st_size > 8 << 20
    result = verify.verify_archive(path, tz="UTC")
    assert result.ok, result.problems
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
