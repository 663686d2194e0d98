"""The state runbooks' runnable steps, executed against a real S3 server with the installed `vzkeep`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.helpers import state_files as files
from tests.helpers.runbook_runner import code_blocks, run_runbook
from tests.helpers.s3server import S3Server

RUNBOOKS = Path(__file__).resolve().parent.parent / "docs" / "runbooks"
VENV_BIN = Path(sys.executable).parent


def healthy_bucket(s3: S3Server) -> str:
    """A bucket as the StateBucket component makes it, holding three stacks with some history."""
    client = s3.client()
    bucket = files.new_bucket(s3)  # versioning Enabled, noncurrent versions expire after 90 days
    client.put_object(Bucket=bucket, Key=".pulumi/meta.yaml", Body=b"version: 1\n")
    for stack, jobs in (("prod", (1, 2, 3)), ("lab", (1,)), ("monitoring", (2, 2))):
        files.put_versions(s3, bucket, files.stack_key(stack), [files.pulumi_checkpoint(stack, n) for n in jobs])
    return bucket


def runbook_env(s3: S3Server, bucket: str) -> dict[str, str]:
    # Only what the runbook says the user has: PATH with vzkeep, the backend URL and the credentials.
    vzkeep = VENV_BIN / "vzkeep"
    assert vzkeep.is_file(), f"{vzkeep} missing: run `.venv/bin/pip install -e . --no-deps` once"
    return {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "PULUMI_BACKEND_URL": s3.backend_url(bucket),
        "COLUMNS": "200",
        **s3.env(),
    }


def test_restore_version_runbook_restores_the_previous_checkpoint(s3: S3Server, tmp_path: Path) -> None:
    bucket = healthy_bucket(s3)
    outputs = run_runbook(RUNBOOKS / "state-restore-version.md", cwd=tmp_path, env=runbook_env(s3, bucket))
    current = s3.client().get_object(Bucket=bucket, Key=files.stack_key("prod"))["Body"].read()
    assert current == files.pulumi_checkpoint("prod", 2)
    assert "no lock on prod" in outputs[0]
    assert "undo: vzkeep state restore --stack prod" in outputs[3]


def test_restore_version_runbook_stops_at_a_pulumi_lock_and_names_it(s3: S3Server, tmp_path: Path) -> None:
    bucket = healthy_bucket(s3)
    lock = files.pulumi_lock_key(lock_id="1f0c")
    s3.client().put_object(Bucket=bucket, Key=lock, Body=files.pulumi_lock("erin", "ci-7"))
    with pytest.raises(AssertionError) as stopped:
        run_runbook(RUNBOOKS / "state-restore-version.md", cwd=tmp_path, env=runbook_env(s3, bucket))
    said = str(stopped.value)
    assert "block 1/" in said and "vzkeep state locks --stack prod" in said
    assert ".pulumi/locks/organization/vzkeep/prod/1f0c.json: created by erin@ci-7 (pid 4242)" in said
    current = s3.client().get_object(Bucket=bucket, Key=files.stack_key("prod"))["Body"].read()
    assert current == files.pulumi_checkpoint("prod", 3)  # nothing restored


def test_new_workstation_runbook_checks_lists_and_exports_everything(s3: S3Server, tmp_path: Path) -> None:
    bucket = healthy_bucket(s3)
    outputs = run_runbook(RUNBOOKS / "state-new-workstation.md", cwd=tmp_path, env=runbook_env(s3, bucket))
    assert all(name in outputs[1] for name in ("prod", "lab", "monitoring"))
    exported = tmp_path / "state-export/current" / files.stack_key("monitoring")
    assert exported.read_bytes() == files.pulumi_checkpoint("monitoring", 2)


def test_bootstrap_runbook_checks_the_new_bucket_and_sees_every_moved_stack(s3: S3Server, tmp_path: Path) -> None:
    bucket = healthy_bucket(s3)  # the bucket `pulumi up -s monitoring` made, stacks imported into it
    outputs = run_runbook(RUNBOOKS / "state-bootstrap.md", cwd=tmp_path, env=runbook_env(s3, bucket))
    assert "versioning" in outputs[0] and "current" in outputs[1]
    assert all(stack in outputs[1] for stack in ("prod", "lab", "monitoring"))
    copies = list(tmp_path.glob("bootstrap-copy-*/manifest.json"))
    assert len(copies) == 1


def test_a_failing_runnable_block_fails_with_its_text_and_output(tmp_path: Path) -> None:
    runbook = tmp_path / "broken.md"
    runbook.write_text("# x\n\n```bash runnable\necho first\n```\n\n```bash runnable\necho oops >&2\nfalse\n```\n")
    with pytest.raises(AssertionError) as caught:
        run_runbook(runbook, cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    message = str(caught.value)
    assert "block 2/2 exited 1" in message and "false" in message and "oops" in message


def test_only_blocks_marked_exactly_bash_runnable_are_run(tmp_path: Path) -> None:
    runbook = tmp_path / "mixed.md"
    runbook.write_text(
        "```bash\nexit 1\n```\n"
        "```bash runnable\necho one > order\n```\n"
        "````markdown\n```bash runnable\nexit 1\n```\n````\n"  # an example inside a longer fence
        "~~~bash runnable\necho two >> order\n~~~\n"
        "```bash runnable extra\nexit 1\n```\n"
    )
    outputs = run_runbook(runbook, cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    assert len(outputs) == 2
    assert (tmp_path / "order").read_text() == "one\ntwo\n"
    assert [b.info for b in code_blocks(runbook.read_text())] == [
        "bash",
        "bash runnable",
        "markdown",
        "bash runnable",
        "bash runnable extra",
    ]


@pytest.mark.parametrize("name", ["state-restore-version.md", "state-new-workstation.md", "state-bootstrap.md"])
def test_runbooks_give_the_stock_way_and_keep_pulumi_steps_out_of_runnable_blocks(name: str) -> None:
    blocks = code_blocks((RUNBOOKS / name).read_text())
    runnable = [b.text for b in blocks if b.info == "bash runnable"]
    assert runnable and not any("pulumi " in text for text in runnable)
    assert any("aws s3" in b.text for b in blocks if b.info == "bash")
