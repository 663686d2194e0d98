"""`vzkeep backups list` against the sandbox: every archive once, deleted guests included, filters,
verification state from the verify results store, offline nodes reported."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.helpers.cli import invoke, with_backups
from tests.helpers.sandbox import RunningSandbox, running_sandbox
from vzkeep.backups import Backup, env_from_notes, name_from_notes, node_from_notes
from vzkeep.cli import backups as backups_cli
from vzkeep.verify import ResultStore, verify_archive


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    with running_sandbox(tmp_path_factory.mktemp("list")) as sandbox:
        with_backups(sandbox, days=8)  # daily jobs and the Sunday offsite job
        sandbox.sandbox.delete_guest(103)  # vaultwarden is gone; its backups must still be listed
        yield sandbox


def listing(sb: RunningSandbox, tmp_path: Path, *args: str) -> dict:
    result = invoke(sb, ["backups", "list", "--json", *args], str(tmp_path), pump=False)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def files_on_disk(sb: RunningSandbox) -> set[str]:
    out = set()
    for storage, node in sb.sandbox.dirs.places():  # a local storage: one directory per node
        dump = sb.sandbox.dump_dir(storage.id, node)
        if dump.is_dir():
            out |= {f"{storage.id}:backup/{p.name}" for p in dump.iterdir()
                    if p.name.endswith((".vma.zst", ".tar.zst"))}
    return out


def test_every_archive_is_listed_exactly_once(sb: RunningSandbox, tmp_path: Path) -> None:
    volids = [b["volid"] for b in listing(sb, tmp_path)["backups"]]
    assert len(volids) == len(set(volids))
    assert set(volids) == files_on_disk(sb)
    assert any(v.startswith("offsite-prod:") for v in volids)


def test_shared_and_per_node_storages_say_which_nodes_can_restore(sb: RunningSandbox, tmp_path: Path) -> None:
    backups = listing(sb, tmp_path)["backups"]
    by_storage = {b["storage"]: b for b in backups}
    assert by_storage["offsite-prod"]["shared"] and by_storage["offsite-prod"]["nodes"] == ["pve1"]
    assert by_storage["backup-monitoring"]["nodes"] == ["pve1"]
    assert by_storage["backup-lab"]["nodes"] == ["pve2"]


def test_deleted_guest_is_listed_with_name_and_env_from_its_notes(sb: RunningSandbox, tmp_path: Path) -> None:
    gone = listing(sb, tmp_path, "--guest", "vaultwarden")["backups"]
    assert gone and all(b["vmid"] == 103 and not b["guest_exists"] and b["env"] == "prod" for b in gone)
    assert {b["storage"] for b in gone} == {"backup-prod", "offsite-prod"}


@pytest.mark.parametrize(("args", "check"), [
    (("--env", "lab"), lambda b: b["env"] == "lab" and b["vmid"] in (200, 201)),
    (("--guest", "300"), lambda b: b["vmid"] == 300 and b["name"] == "prometheus"),
    (("--storage", "offsite-prod"), lambda b: b["storage"] == "offsite-prod" and b["env"] == "prod"),
], ids=["env", "vmid", "storage"])
def test_filters(sb: RunningSandbox, tmp_path: Path, args: tuple[str, ...], check) -> None:  # type: ignore[no-untyped-def]
    backups = listing(sb, tmp_path, *args)["backups"]
    assert backups and all(check(b) for b in backups)


def test_verification_state_comes_from_the_verify_store(sb: RunningSandbox, tmp_path: Path) -> None:
    backups = listing(sb, tmp_path, "--guest", "201")["backups"]
    good, bad = backups[0], backups[1]
    dump = sb.sandbox.dump_dir("backup-lab", "pve2")
    store = ResultStore(tmp_path / "verify.json")
    results = []
    for item in (good, bad):
        path = dump / item["volid"].split("/", 1)[1]
        results.append(verify_archive(path, volid=item["volid"] if item is good else None, tz="Europe/Paris"))
    results[1].ok, results[1].problems = False, ["zstd: Restored data doesn't match checksum"]
    store.save(results)
    chosen = listing(sb, tmp_path, "--guest", "201", "--results", str(store.path))["backups"]
    states = {b["volid"]: b["verify"] for b in chosen}
    assert states[good["volid"]]["state"] == "ok"
    assert states[bad["volid"]]["state"] == "corrupt"  # matched by file name and size
    assert states[backups[2]["volid"]]["state"] == "-"


def test_table_output_and_offline_node_warning(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as sandbox:
        with_backups(sandbox)
        sandbox.sandbox.node_down("pve2")
        result = invoke(sandbox, ["backups", "list", "--env", "lab"], str(tmp_path), pump=False)
        assert result.exit_code == 0
        assert "warning: node 'pve2' is offline: its storage 'backup-lab' was not listed" in result.stderr
        assert "no backups match" in result.stdout
        table = invoke(sandbox, ["backups", "list", "--guest", "grafana"], str(tmp_path), pump=False).stdout
        assert "VERIFIED" in table and "grafana" in table and "backup-monitoring:backup/vzdump-lxc-301-" in table
        assert re.search(r" 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} ", table), table  # every time says its zone


def archive_named(local: datetime, zone: str) -> Backup:
    """A backup as PVE lists it: the name in the node's wall-clock time, ctime the instant (timelocal)."""
    stamp_text = local.strftime("%Y_%m_%d-%H_%M_%S")
    ctime = int(local.replace(tzinfo=ZoneInfo(zone)).timestamp())
    return Backup(f"backup-prod:backup/vzdump-qemu-101-{stamp_text}.vma.zst", "backup-prod", 101, "qemu", ctime,
                  1, "vma.zst", None, False, ("pve1",), False)


@pytest.mark.parametrize(("local", "zone", "shown"), [
    (datetime(2026, 1, 5, 2, 0, 3), "Europe/Paris", "2026-01-05 02:00:03 +0100"),
    (datetime(2026, 7, 5, 2, 0, 3), "Europe/Paris", "2026-07-05 02:00:03 +0200"),
    (datetime(2026, 10, 25, 2, 30), "America/New_York", "2026-10-25 02:30:00 -0400"),
    (datetime(2026, 3, 1, 4, 0), "Asia/Kathmandu", "2026-03-01 04:00:00 +0545"),
    (datetime(2026, 3, 1, 4, 0), "UTC", "2026-03-01 04:00:00 +0000"),
])
def test_the_time_column_says_the_nodes_offset(local: datetime, zone: str, shown: str) -> None:
    assert backups_cli.stamp(archive_named(local, zone)) == shown


def test_a_name_without_a_time_is_shown_in_utc() -> None:
    backup = Backup("nas:backup/manual-copy.vma.zst", "nas", 101, "qemu", 1_767_578_403, 1, "vma.zst", None,
                    False, ("pve1",), True)
    assert backups_cli.stamp(backup) == "2026-01-05 02:00:03 +0000"


@pytest.mark.parametrize(("notes", "name", "env", "node"), [
    ("postgres (vmid 101, env prod, node pve1)", "postgres", "prod", "pve1"),
    ("my-vm env=lab", "my-vm", "lab", None),
    ("", None, None, None),
    (None, None, None, None),
])
def test_notes_parsing(notes: str | None, name: str | None, env: str | None, node: str | None) -> None:
    assert (name_from_notes(notes), env_from_notes(notes), node_from_notes(notes)) == (name, env, node)
