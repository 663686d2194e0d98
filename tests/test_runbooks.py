"""Every runbook's `bash runnable` blocks, executed in order against a fresh sandbox, so the restore and
alert runbooks cannot drift from what vzkeep really does (issue 6 item 5, issue 7 item 3).

Each runbook states the situation its runnable blocks assume; ``SITUATIONS`` creates it in the sandbox
(a deleted guest, a node down...). The blocks get ``VZKEEP_SANDBOX`` and ``vzkeep`` on PATH; a clock
pump lets PVE's tasks end while they run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.restore_fixtures import (
    ClockPump,
    lose_pve1,
    node_loss_seed,
    settle,
    with_backups,
)
from tests.runbook_runner import run_runbook, runnable_blocks
from tests.sandbox_fixtures import RunningSandbox, running_sandbox

RUNBOOKS = Path(__file__).resolve().parent.parent / "docs" / "runbooks"
MINE = ["restore-vm.md", "restore-container.md", "restore-other-node.md", "node-loss.md",
        "alert-backup-failed.md", "alert-backup-missing.md", "alert-storage-80-percent.md"]


def failed_backup(sb: RunningSandbox) -> None:
    sb.sandbox.lock_guest(101, "backup")  # tonight's job fails for postgres
    sb.advance(86400)
    settle(sb)


SITUATIONS: dict[str, Callable[[RunningSandbox], None]] = {
    "restore-vm.md": lambda sb: sb.sandbox.delete_guest(101),
    "restore-container.md": lambda sb: sb.sandbox.delete_guest(100),
    "restore-other-node.md": lambda sb: sb.sandbox.node_down("pve1"),
    "node-loss.md": lose_pve1,
    "alert-backup-failed.md": failed_backup,
    "alert-backup-missing.md": lambda sb: None,
    "alert-storage-80-percent.md": lambda sb: None,
}


def runbook_env(sb: RunningSandbox, tmp_path: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # the virtualenv's `vzkeep`
    return {**os.environ, "VZKEEP_SANDBOX": str(sb.sandbox_json), "VZKEEP_STATE_DIR": str(tmp_path / "state"),
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "COLUMNS": "200"}


@pytest.mark.parametrize("name", MINE)
def test_runbook_runs_against_the_sandbox(tmp_path: Path, name: str) -> None:
    seed = node_loss_seed(tmp_path) if name == "node-loss.md" else None
    with running_sandbox(tmp_path, seed=seed) as sb:
        with_backups(sb, days=8 if name == "node-loss.md" else 1)
        SITUATIONS[name](sb)
        work = tmp_path / "work"
        work.mkdir()
        with ClockPump(sb):
            outputs = run_runbook(RUNBOOKS / name, cwd=work, env=runbook_env(sb, tmp_path))
    assert len(outputs) == len(runnable_blocks(RUNBOOKS / name)) >= 2


@pytest.mark.parametrize("name", MINE)
def test_runbook_gives_the_vzkeep_way_and_the_stock_pve_way(name: str) -> None:
    text = (RUNBOOKS / name).read_text()
    assert "## The stock PVE way" in text or "(stock PVE" in text
    assert "```bash\n" in text  # stock commands are plain blocks: never run by the tests
    assert "**GUI:**" in text


def test_situations_cover_every_runbook_of_mine() -> None:
    assert sorted(SITUATIONS) == sorted(MINE)
    assert all((RUNBOOKS / name).is_file() for name in MINE)
