"""`vzkeep state` against a real S3 server (SeaweedFS) holding state in Pulumi's and Terraform's real formats."""

from __future__ import annotations

import getpass
import gzip
import hashlib
import json
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import zstandard
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.helpers.s3server import S3Server
from tests.helpers.state_files import (
    PULUMI_CLI,
    new_bucket,
    pulumi_checkpoint,
    pulumi_lock,
    pulumi_lock_key,
    put_versions,
    stack_key,
    terraform_state,
)
from vzkeep.cli.state import app
from vzkeep.state import (
    CorruptStateError,
    RestoreRefused,
    StateError,
    StateTarget,
    make_client,
    parse_backend_url,
    parse_state,
    pulumi_target,
    restore_version,
    state_metrics,
    terraform_target,
)
from vzkeep.state.versions import SummaryCache


def current_bytes(s3: S3Server, bucket: str, key: str) -> bytes:
    return s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def version_count(s3: S3Server, bucket: str, key: str) -> int:
    listing = s3.client().list_object_versions(Bucket=bucket, Prefix=key)
    return sum(1 for v in listing.get("Versions", []) if v["Key"] == key)


def cli(s3: S3Server, bucket: str, *args: str, secret: str | None = None) -> Any:
    env = {
        **s3.env(),
        "PULUMI_BACKEND_URL": s3.backend_url(bucket),
        "COLUMNS": "200",
        "XDG_CACHE_HOME": str(s3.data_dir.parent / "cache"),
    }
    if secret is not None:
        env["AWS_SECRET_ACCESS_KEY"] = secret
    return CliRunner().invoke(app, list(args), env=env)


def state_client(s3: S3Server, bucket: str) -> tuple[Any, Any]:
    """vzkeep's own client for the bucket, built from its backend URL as the CLI builds it."""
    backend = parse_backend_url(s3.backend_url(bucket))
    with mock.patch.dict(os.environ, s3.env()):
        return make_client(backend), backend


def history(s3: S3Server, bucket: str, stack: str = "prod", jobs: tuple[int, ...] = (1, 2, 3)) -> list[str]:
    """A stack deployed len(jobs) times, each time with more backup jobs; version ids oldest first."""
    versions = put_versions(s3, bucket, stack_key(stack), [pulumi_checkpoint(stack, n) for n in jobs])
    s3.client().put_object(Bucket=bucket, Key=stack_key(stack) + ".bak", Body=pulumi_checkpoint(stack, 0))
    return versions


# --- check ---------------------------------------------------------------------------------------------


def test_check_passes_on_a_versioned_bucket_with_lifecycle_and_leaves_no_probe(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    result = cli(s3, bucket, "check", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert {c["name"]: c["ok"] for c in report["checks"]} == {
        "reachable": True,
        "versioning": True,
        "conditional-writes": True,
        "lifecycle": True,
    }
    leftovers = s3.client().list_object_versions(Bucket=bucket)
    assert not leftovers.get("Versions") and not leftovers.get("DeleteMarkers")


@pytest.mark.parametrize(
    ("case", "versioning", "lifecycle_rules", "failing"),
    [
        ("plain bucket", False, None, {"versioning", "lifecycle"}),
        ("versioned, no lifecycle", True, None, {"lifecycle"}),
        (
            "lifecycle expiring current objects",
            True,
            [
                {
                    "ID": "purge",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "Expiration": {"Days": 30},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                }
            ],
            {"lifecycle"},
        ),
        (
            "lifecycle for another prefix only",
            True,
            [
                {
                    "ID": "logs",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "logs/"},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                }
            ],
            {"lifecycle"},
        ),
    ],
)
def test_check_reports_each_failing_point(
    s3: S3Server, case: str, versioning: bool, lifecycle_rules: list[dict[str, Any]] | None, failing: set[str]
) -> None:
    bucket = new_bucket(s3, versioning=versioning, lifecycle=False)
    if lifecycle_rules:
        s3.client().put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": lifecycle_rules})
    result = cli(s3, bucket, "check", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 1, case
    assert {c["name"] for c in report["checks"] if not c["ok"]} == failing, case


@pytest.mark.parametrize(
    ("case", "bucket", "secret", "expected"),
    [
        ("wrong secret key", None, "not-the-secret", "secret key is wrong"),
        ("missing bucket", "no-such-bucket-here", None, "bucket does not exist"),
    ],
)
def test_check_says_why_the_bucket_is_unreachable(
    s3: S3Server, case: str, bucket: str | None, secret: str | None, expected: str
) -> None:
    result = cli(s3, bucket or new_bucket(s3), "check", secret=secret)
    assert result.exit_code == 1, case
    assert expected in " ".join(result.stdout.split()), result.output
    assert s3.secret_key not in result.output


# --- versions ------------------------------------------------------------------------------------------


def test_versions_lists_each_checkpoint_newest_first_with_counts_read_from_the_file(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    ids = history(s3, bucket, jobs=(1, 4, 2))
    result = cli(s3, bucket, "versions", "--stack", "prod", "--json")
    listed = json.loads(result.stdout)["versions"]
    assert result.exit_code == 0, result.output
    assert [v["version_id"] for v in listed] == list(reversed(ids))  # .json.bak is not a version of prod
    # stack + provider + jobs
    assert [v["resource_count"] for v in listed] == [2 + 2, 2 + 4, 2 + 1]
    assert {v["tool_version"] for v in listed} == {PULUMI_CLI}
    assert [v["is_latest"] for v in listed] == [True, False, False]
    assert [v["size"] for v in listed] == [len(pulumi_checkpoint("prod", n)) for n in (2, 4, 1)]


def test_versions_table_flags_a_corrupt_version_with_its_reason(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    ids = put_versions(
        s3,
        bucket,
        stack_key("lab"),
        [pulumi_checkpoint("lab", 1), pulumi_checkpoint("lab", 2)[:-40], pulumi_checkpoint("lab", 3)],
    )
    result = cli(s3, bucket, "versions", "--stack", "lab")
    text = " ".join(result.stdout.split())
    assert result.exit_code == 0, result.output
    assert ids[1] in text and "corrupt: not valid JSON" in text
    assert text.index(ids[2]) < text.index(ids[1]) < text.index(ids[0])


def test_versions_exit_1_when_the_current_version_is_corrupt(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    put_versions(s3, bucket, stack_key("prod"), [pulumi_checkpoint("prod", 1), b'{"version": 3}'])
    result = cli(s3, bucket, "versions", "--stack", "prod", "--json")
    assert result.exit_code == 1
    assert "'checkpoint' is missing" in json.loads(result.stdout)["versions"][0]["error"]


def test_versions_reuses_cached_summaries_and_reads_new_versions(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    history(s3, bucket, jobs=(1, 2))
    assert cli(s3, bucket, "versions", "--stack", "prod").exit_code == 0
    target = StateTarget("pulumi", "prod", stack_key("prod"))
    path = SummaryCache.for_target(
        s3.data_dir.parent / "cache" / "vzkeep" / "state-versions", s3.endpoint, bucket, target
    ).path
    # Plant a wrong count in the cache: a cached version must not be downloaded again...
    entries = json.loads(path.read_text())
    for entry in entries.values():
        entry["summary"]["resource_count"] = 999
    path.write_text(json.dumps(entries))
    assert len(entries) == 2
    new_id = put_versions(s3, bucket, stack_key("prod"), [pulumi_checkpoint("prod", 7)])[0]
    listed = json.loads(cli(s3, bucket, "versions", "--stack", "prod", "--json").stdout)["versions"]
    assert [(v["version_id"] == new_id, v["resource_count"]) for v in listed] == [(True, 9), (False, 999), (False, 999)]
    # ...and --no-cache reads every version from the bucket.
    fresh = json.loads(cli(s3, bucket, "versions", "--stack", "prod", "--json", "--no-cache").stdout)["versions"]
    assert [v["resource_count"] for v in fresh] == [9, 4, 3]


@pytest.mark.parametrize(
    ("suffix", "compress"), [(".json.gz", gzip.compress), (".json.zst", zstandard.ZstdCompressor().compress)]
)
def test_versions_reads_compressed_checkpoints(s3: S3Server, suffix: str, compress: Any) -> None:
    bucket = new_bucket(s3)
    put_versions(s3, bucket, f".pulumi/stacks/vzkeep/prod{suffix}", [compress(pulumi_checkpoint("prod", 5))])
    result = cli(s3, bucket, "versions", "--stack", "prod", "--json")
    document = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert document["key"].endswith(suffix)
    assert document["versions"][0]["resource_count"] == 7


@pytest.mark.parametrize(
    ("case", "args", "expected"),
    [
        ("unknown stack", ["--stack", "nope"], "no state at"),
        ("both stack and terraform key", ["--stack", "prod", "--terraform-key", "k"], "exactly one"),
        ("neither", [], "exactly one"),
        ("stack with a slash", ["--stack", "a/b"], "plain name"),
    ],
)
def test_versions_usage_errors_exit_2(s3: S3Server, case: str, args: list[str], expected: str) -> None:
    bucket = new_bucket(s3)
    history(s3, bucket)
    result = cli(s3, bucket, "versions", *args)
    assert result.exit_code == 2, case
    assert expected in result.output, result.output


def test_a_bad_backend_url_is_a_usage_error_naming_the_parameter(s3: S3Server) -> None:
    result = CliRunner().invoke(app, ["versions", "--stack", "prod", "--backend", "s3://b?endpoints=x"], env=s3.env())
    assert result.exit_code == 2
    assert "unknown query parameter 'endpoints'" in result.output


# --- restore -------------------------------------------------------------------------------------------


def test_restore_makes_an_old_version_current_as_a_new_version_and_can_be_undone(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    ids = history(s3, bucket)
    result = cli(s3, bucket, "restore", "--stack", "prod", "--version", ids[0], "--yes")
    assert result.exit_code == 0, result.output
    assert current_bytes(s3, bucket, stack_key("prod")) == pulumi_checkpoint("prod", 1)
    assert version_count(s3, bucket, stack_key("prod")) == 4  # history kept, restore added one
    assert f"--version {ids[2]}" in result.stdout  # the undo line names the version that was current
    assert "pulumi stack export" in result.stdout
    undo = cli(s3, bucket, "restore", "--stack", "prod", "--version", ids[2], "--yes")
    assert undo.exit_code == 0, undo.output
    assert current_bytes(s3, bucket, stack_key("prod")) == pulumi_checkpoint("prod", 3)


def test_restore_of_the_current_version_changes_nothing(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    ids = history(s3, bucket)
    result = cli(s3, bucket, "restore", "--stack", "prod", "--version", ids[-1], "--yes")
    assert result.exit_code == 0
    assert "nothing changed" in result.stdout
    assert version_count(s3, bucket, stack_key("prod")) == 3


@pytest.mark.parametrize(
    ("case", "setup", "exit_code", "expected"),
    [
        ("pulumi lock held", "lock", 1, "locked by 1 lock(s)"),
        ("corrupt version", "corrupt", 1, "not valid JSON"),
        ("export file instead of checkpoint", "export", 1, "pulumi stack export"),
        ("unknown version id", "unknown", 2, "does not exist"),
        ("no --yes without a terminal", "no-yes", 2, "pass --yes"),
    ],
)
def test_restore_refuses_and_leaves_the_state_untouched(
    s3: S3Server, case: str, setup: str, exit_code: int, expected: str
) -> None:
    bucket = new_bucket(s3)
    ids = history(s3, bucket)
    chosen, flags = ids[0], ["--yes"]
    if setup == "lock":
        s3.client().put_object(Bucket=bucket, Key=pulumi_lock_key(), Body=pulumi_lock())
    elif setup in {"corrupt", "export"}:
        body = (
            pulumi_checkpoint("prod", 9)[:-3]
            if setup == "corrupt"
            else json.dumps({"version": 3, "deployment": {"manifest": {}, "resources": []}}).encode()
        )
        chosen = put_versions(s3, bucket, stack_key("prod"), [body, pulumi_checkpoint("prod", 3)])[0]
    elif setup == "unknown":
        chosen = "0000000000000000deadbeef00000000"
    elif setup == "no-yes":
        flags = []
    before = (current_bytes(s3, bucket, stack_key("prod")), version_count(s3, bucket, stack_key("prod")))
    result = cli(s3, bucket, "restore", "--stack", "prod", "--version", chosen, *flags)
    assert result.exit_code == exit_code, (case, result.output)
    assert expected in " ".join(result.output.split()), result.output
    assert (current_bytes(s3, bucket, stack_key("prod")), version_count(s3, bucket, stack_key("prod"))) == before


def test_restore_refuses_a_lock_pulumi_wrote_at_its_real_path_and_says_whose_and_since_when(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    ids = history(s3, bucket)
    key = pulumi_lock_key(lock_id="0b5e6a3e-9f1c-4a52-8f0e-6f3d2c1b0a99")
    s3.client().put_object(Bucket=bucket, Key=key, Body=pulumi_lock("bob", "ci", pid=48213))
    result = cli(s3, bucket, "restore", "--stack", "prod", "--version", ids[0], "--yes")
    said = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert key in said
    assert "created by bob@ci (pid 48213) at 2026-11-26T21:14:07+01:00" in said
    assert "lock object written" in said and "pulumi cancel" in said
    assert current_bytes(s3, bucket, stack_key("prod")) == pulumi_checkpoint("prod", 3)


def test_restore_finds_the_lock_of_a_legacy_layout_stack(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    # No .pulumi/meta.yaml and a top-level stack file: the legacy layout (pulumi `diy/meta.go`).
    ids = put_versions(s3, bucket, ".pulumi/stacks/prod.json", [pulumi_checkpoint("prod", n) for n in (1, 2)])
    s3.client().put_object(Bucket=bucket, Key=".pulumi/locks/prod/5c1d.json", Body=pulumi_lock("dave", "nas"))
    result = cli(s3, bucket, "restore", "--stack", "prod", "--version", ids[0], "--yes")
    assert result.exit_code == 1, result.output
    assert "created by dave@nas (pid 4242)" in " ".join(result.output.split())
    assert current_bytes(s3, bucket, ".pulumi/stacks/prod.json") == pulumi_checkpoint("prod", 2)


def test_meta_yaml_decides_the_layout_as_pulumi_does(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    client, backend = state_client(s3, bucket)
    s3.client().put_object(Bucket=bucket, Key=".pulumi/stacks/prod.json", Body=pulumi_checkpoint("prod", 1))
    legacy = pulumi_target(client, backend, "prod")
    assert (legacy.key, legacy.lock_dirs[0]) == (".pulumi/stacks/prod.json", ".pulumi/locks/prod/")
    s3.client().put_object(Bucket=bucket, Key=".pulumi/meta.yaml", Body=b"version: 1\n")
    project = pulumi_target(client, backend, "prod")
    assert project.key == ".pulumi/stacks/vzkeep/prod.json"
    assert project.lock_dirs[0] == ".pulumi/locks/organization/vzkeep/prod/"
    s3.client().put_object(Bucket=bucket, Key=".pulumi/meta.yaml", Body=b"version: 7\n")
    with pytest.raises(StateError, match="version 7"):
        pulumi_target(client, backend, "prod")


def pulumi_would_refuse(client: Any, bucket: str, stack: str = "prod", project: str = "vzkeep") -> str | None:
    """What `pulumi up` does before it writes its lock (pulumi `diy/lock.go` checkForLock), in Python: list
    the direct children of the stack's lock directory; any one of them makes it refuse with this text."""
    directory = f".pulumi/locks/organization/{project}/{stack}"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=directory + "/", Delimiter="/")
            .get("Contents", [])]
    if not keys:
        return None
    lines = [f"the stack is currently locked by {len(keys)} lock(s)."]
    for key in keys:
        lock = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())  # Go: json.Unmarshal
        assert isinstance(lock["pid"], int) and datetime.fromisoformat(lock["timestamp"]).tzinfo is not None
        lines.append(f"{key}: created by {lock['username']}@{lock['hostname']} (pid {lock['pid']})")
    return "\n".join(lines)


def test_a_pulumi_up_starting_during_the_restore_stops_on_our_lock(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    ids = history(s3, bucket)
    client, backend = state_client(s3, bucket)
    seen: list[str | None] = []
    restore_version(client, bucket, pulumi_target(client, backend, "prod"), ids[0],
                    before_copy=lambda: seen.append(pulumi_would_refuse(s3.client(), bucket)))
    (refusal,) = seen
    assert refusal is not None and "locked by 1 lock(s)" in refusal
    ours = ".pulumi/locks/organization/vzkeep/prod/vzkeep-state-restore.json"
    assert f"{ours}: created by {getpass.getuser()}@" in refusal
    assert pulumi_would_refuse(s3.client(), bucket) is None  # released once done
    assert current_bytes(s3, bucket, stack_key("prod")) == pulumi_checkpoint("prod", 1)


def test_a_terraform_apply_starting_during_the_restore_cannot_take_its_lock(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    key = "hcl/terraform.tfstate"
    ids = put_versions(s3, bucket, key, [terraform_state(1, 1), terraform_state(2, 2)])
    client, _ = state_client(s3, bucket)
    refused: list[int] = []

    def terraform_locks() -> None:
        # Terraform >= 1.10 with use_lockfile: PutObject <key>.tflock with If-None-Match: * (s3/client.go).
        try:
            s3.client().put_object(Bucket=bucket, Key=key + ".tflock", Body=b"{}", IfNoneMatch="*")
        except ClientError as exc:
            refused.append(exc.response["ResponseMetadata"]["HTTPStatusCode"])
        held = json.loads(current_bytes(s3, bucket, key + ".tflock"))
        assert set(held) == {"ID", "Operation", "Info", "Who", "Version", "Created", "Path"}
        assert held["Operation"] == "vzkeep state restore" and held["Path"] == f"{bucket}/{key}"

    restore_version(client, bucket, terraform_target(key), ids[0], before_copy=terraform_locks)
    assert refused == [412]
    assert current_bytes(s3, bucket, key) == terraform_state(1, 1)
    assert "Contents" not in s3.client().list_objects_v2(Bucket=bucket, Prefix=key + ".tflock")


def test_a_writer_without_a_lock_is_never_overwritten(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    ids = history(s3, bucket)
    client, backend = state_client(s3, bucket)

    def someone_writes() -> None:  # e.g. a script that copies a state in without taking any lock
        s3.client().put_object(Bucket=bucket, Key=stack_key("prod"), Body=pulumi_checkpoint("prod", 7))

    with pytest.raises(RestoreRefused, match="changed while the restore ran") as refused:
        restore_version(client, bucket, pulumi_target(client, backend, "prod"), ids[0], before_copy=someone_writes)
    assert f"version {ids[2]} was current at the start" in str(refused.value)
    assert current_bytes(s3, bucket, stack_key("prod")) == pulumi_checkpoint("prod", 7)
    assert version_count(s3, bucket, stack_key("prod")) == 4  # 3 + the writer's: nothing lost, nothing added


def test_concurrent_restores_exactly_one_succeeds_and_no_version_is_lost(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    ids = history(s3, bucket, jobs=(1, 2, 3, 4, 5))
    before = {v["VersionId"] for v in s3.client().list_object_versions(Bucket=bucket, Prefix=stack_key("prod"))
              ["Versions"] if v["Key"] == stack_key("prod")}
    contenders = ids[:4]
    finished: list[str] = []
    others_done = threading.Event()
    outcomes: dict[str, object] = {}

    def hold_until_the_others_have_tried() -> None:
        # Only the holder of the restore lock gets here; keeping it makes the race real, not sequential.
        others_done.wait(timeout=60)

    # Clients are built before the race: state_client patches os.environ, which threads share.
    clients = {v: state_client(s3, bucket) for v in contenders}

    def contend(version_id: str) -> None:
        client, backend = clients[version_id]
        try:
            outcomes[version_id] = restore_version(client, bucket, pulumi_target(client, backend, "prod"),
                                                   version_id, before_copy=hold_until_the_others_have_tried)
        except RestoreRefused as exc:
            outcomes[version_id] = exc
        finished.append(version_id)
        if len(finished) == len(contenders) - 1:
            others_done.set()

    threads = [threading.Thread(target=contend, args=(v,)) for v in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    winners = [v for v, o in outcomes.items() if not isinstance(o, Exception)]
    losers = [o for o in outcomes.values() if isinstance(o, RestoreRefused)]
    assert len(winners) == 1 and len(losers) == len(contenders) - 1, outcomes
    for loser in losers:
        assert "vzkeep-state-restore.json" in str(loser) and "created by" in str(loser), loser
    (winner,) = winners
    assert current_bytes(s3, bucket, stack_key("prod")) == pulumi_checkpoint("prod", ids.index(winner) + 1)
    after = [v for v in s3.client().list_object_versions(Bucket=bucket, Prefix=stack_key("prod"))["Versions"]
             if v["Key"] == stack_key("prod")]
    assert before < {v["VersionId"] for v in after} and len(after) == len(before) + 1
    assert pulumi_would_refuse(s3.client(), bucket) is None


class ConditionsIgnored:
    """A client whose server ignores If-None-Match (as some S3 servers do): the condition is dropped."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def put_object(self, **kwargs: Any) -> Any:
        kwargs.pop("IfNoneMatch", None)
        return self.inner.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_restore_refuses_on_a_server_that_ignores_conditional_writes(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    ids = history(s3, bucket)
    client, backend = state_client(s3, bucket)
    target = pulumi_target(client, backend, "prod")
    with pytest.raises(RestoreRefused, match="ignores conditional writes"):
        restore_version(ConditionsIgnored(client), bucket, target, ids[0])
    assert current_bytes(s3, bucket, stack_key("prod")) == pulumi_checkpoint("prod", 3)
    assert pulumi_would_refuse(s3.client(), bucket) is None  # our lock is gone


def test_restore_refuses_on_a_bucket_without_versioning(s3: S3Server) -> None:
    bucket = new_bucket(s3, versioning=False, lifecycle=False)
    s3.client().put_object(Bucket=bucket, Key=stack_key("prod"), Body=pulumi_checkpoint("prod", 1))
    result = cli(s3, bucket, "restore", "--stack", "prod", "--version", "null", "--yes")
    assert result.exit_code == 1
    assert "versioning is not enabled" in " ".join(result.output.split())


# --- terraform -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workspace", "key"), [("default", "hcl/terraform.tfstate"), ("lab", "env:/lab/hcl/terraform.tfstate")]
)
def test_terraform_state_versions_and_restore_in_a_workspace(s3: S3Server, workspace: str, key: str) -> None:
    bucket = new_bucket(s3)
    ids = put_versions(s3, bucket, key, [terraform_state(1, 2), terraform_state(2, 5), terraform_state(3, 6)])
    args = ["--terraform-key", "hcl/terraform.tfstate", "--workspace", workspace]
    listed = json.loads(cli(s3, bucket, "versions", *args, "--json").stdout)["versions"]
    assert [(v["serial"], v["resource_count"], v["tool_version"]) for v in listed] == [
        (3, 6, "1.9.8"),
        (2, 5, "1.9.8"),
        (1, 2, "1.9.8"),
    ]
    result = cli(s3, bucket, "restore", *args, "--version", ids[1], "--yes")
    assert result.exit_code == 0, result.output
    assert current_bytes(s3, bucket, key) == terraform_state(2, 5)


def test_terraform_lock_file_blocks_a_restore(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    key = "hcl/terraform.tfstate"
    ids = put_versions(s3, bucket, key, [terraform_state(1, 1), terraform_state(2, 2)])
    lock = {
        "ID": "6a1f",
        "Operation": "OperationTypeApply",
        "Who": "carol@desk",
        "Version": "1.9.8",
        "Created": "2026-11-26T20:00:00Z",
        "Path": f"{bucket}/{key}",
    }
    s3.client().put_object(Bucket=bucket, Key=key + ".tflock", Body=json.dumps(lock).encode())
    result = cli(s3, bucket, "restore", "--terraform-key", key, "--version", ids[0], "--yes")
    assert result.exit_code == 1
    assert "carol@desk" in result.output and "terraform force-unlock" in result.output
    assert current_bytes(s3, bucket, key) == terraform_state(2, 2)


def test_locks_shows_terraforms_lock_with_whose_and_since_when(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    key = "hcl/terraform.tfstate"
    put_versions(s3, bucket, key, [terraform_state(1, 1)])
    assert cli(s3, bucket, "locks", "--terraform-key", key).exit_code == 0
    # Terraform's LockInfo as `json.Marshal` writes it (statemgr/locker.go): Created is UTC with nanoseconds.
    s3.client().put_object(Bucket=bucket, Key=key + ".tflock", Body=(
        b'{"ID":"a0e3c1d2-5b4f-4e6a-9c8d-7f6e5d4c3b2a","Operation":"OperationTypeApply","Info":"",'
        b'"Who":"carol@desk","Version":"1.10.5","Created":"2026-11-26T20:14:07.318274912Z",'
        b'"Path":"' + bucket.encode() + b'/hcl/terraform.tfstate"}'))
    result = cli(s3, bucket, "locks", "--terraform-key", key, "--json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 1 and doc["locked"]
    (lock,) = doc["locks"]
    assert lock["key"] == key + ".tflock" and lock["since"] == "2026-11-26T20:14:07Z"
    assert lock["owner"] == "carol@desk for OperationTypeApply (lock ID a0e3c1d2-5b4f-4e6a-9c8d-7f6e5d4c3b2a)"


# --- export --------------------------------------------------------------------------------------------


def test_export_copies_every_version_and_a_current_tree_pulumi_can_log_into(s3: S3Server, tmp_path: Path) -> None:
    bucket = new_bucket(s3)
    history(s3, bucket, "prod", (1, 2))
    history(s3, bucket, "lab", (3,))
    s3.client().put_object(Bucket=bucket, Key=".pulumi/meta.yaml", Body=b"version: 1\n")
    out = tmp_path / "export"
    result = cli(s3, bucket, "export", "--to", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "current" / stack_key("prod")).read_bytes() == pulumi_checkpoint("prod", 2)
    assert (out / "current/.pulumi/meta.yaml").read_bytes() == b"version: 1\n"
    prod_versions = sorted((out / "versions" / stack_key("prod")).iterdir())
    assert {p.read_bytes() for p in prod_versions} == {pulumi_checkpoint("prod", 1), pulumi_checkpoint("prod", 2)}
    manifest = json.loads((out / "manifest.json").read_text())
    listing = s3.client().list_object_versions(Bucket=bucket)["Versions"]
    assert {e["version_id"] for e in manifest["entries"]} == {v["VersionId"] for v in listing}
    for entry in manifest["entries"]:
        body = s3.client().get_object(Bucket=bucket, Key=entry["name"], VersionId=entry["version_id"])["Body"]
        assert entry["sha256"] == hashlib.sha256(body.read()).hexdigest()
    assert "stack vzkeep/lab.json" in result.stdout and "stack vzkeep/prod.json" in result.stdout
    # State holds secrets (Terraform's in clear): every exported file is private, no temp file is left.
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and {p.stat().st_mode & 0o777 for p in files} == {0o600}
    assert not [p for p in files if p.name.endswith(".tmp")]


def test_export_refuses_a_non_empty_directory(s3: S3Server, tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("x")
    result = cli(s3, new_bucket(s3), "export", "--to", str(tmp_path))
    assert result.exit_code == 2
    assert "not an empty directory" in result.output


# --- metrics -------------------------------------------------------------------------------------------


def test_state_metrics_give_versioning_and_each_stacks_last_write(s3: S3Server) -> None:
    bucket = new_bucket(s3)
    history(s3, bucket, "prod", (1, 2))
    history(s3, bucket, "lab", (1,))
    client = s3.client()
    metrics = state_metrics(client, bucket)
    expected = {
        stack: client.head_object(Bucket=bucket, Key=stack_key(stack))["LastModified"].timestamp()
        for stack in ("prod", "lab")
    }
    assert metrics.versioning_enabled is True
    assert metrics.last_write == expected
    assert state_metrics(client, new_bucket(s3, versioning=False)).versioning_enabled is False


# --- checkpoint parsing (no server) --------------------------------------------------------------------


def _mutated_checkpoint(change: Any) -> bytes:
    document = json.loads(pulumi_checkpoint("prod", 2))
    change(document)
    return json.dumps(document).encode()


def _resources(document: dict[str, Any]) -> list[dict[str, Any]]:
    return document["checkpoint"]["latest"]["resources"]


@pytest.mark.parametrize(
    ("case", "data", "reason"),
    [
        ("empty file", b"", "empty"),
        ("truncated JSON", pulumi_checkpoint("prod", 1)[:50], "not valid JSON"),
        ("JSON list", b"[]", "JSON list"),
        ("unknown checkpoint version", _mutated_checkpoint(lambda d: d.update(version=99)), "version 99"),
        ("resource without urn", _mutated_checkpoint(lambda d: _resources(d)[2].pop("urn")), "has no 'urn'"),
        ("parent listed after child", _mutated_checkpoint(lambda d: _resources(d).reverse()), "unknown parent"),
        (
            "unknown provider",
            _mutated_checkpoint(lambda d: _resources(d)[2].update(provider="urn:x::y")),
            "unknown provider",
        ),
        ("duplicate live urn", _mutated_checkpoint(lambda d: _resources(d).append(_resources(d)[2])), "duplicate"),
        (
            "dependency not before",
            _mutated_checkpoint(lambda d: _resources(d)[2].update(dependencies=["urn:z"])),
            "dependency",
        ),
    ],
)
def test_corrupt_checkpoints_are_refused_with_the_reason(case: str, data: bytes, reason: str) -> None:
    with pytest.raises(CorruptStateError) as caught:
        parse_state("pulumi", "prod.json", data)
    assert reason in caught.value.reason, case


def test_a_stack_never_deployed_has_no_resources() -> None:
    data = json.dumps({"version": 3, "checkpoint": {"stack": "organization/vzkeep/new", "latest": None}}).encode()
    summary = parse_state("pulumi", "new.json", data)
    assert (summary.resource_count, summary.tool_version, summary.stack) == (0, None, "organization/vzkeep/new")


def test_a_resource_marked_for_deletion_may_share_its_urn() -> None:
    def add_pending_delete(document: dict[str, Any]) -> None:
        _resources(document).append({**_resources(document)[2], "delete": True})

    assert parse_state("pulumi", "prod.json", _mutated_checkpoint(add_pending_delete)).resource_count == 5


@pytest.mark.parametrize(
    ("case", "data", "reason"),
    [
        ("no lineage", json.dumps({"version": 4, "serial": 1, "resources": []}).encode(), "lineage"),
        ("string serial", json.dumps({"version": 4, "serial": "1", "lineage": "x"}).encode(), "serial"),
        ("state version 2", json.dumps({"version": 2, "serial": 1, "lineage": "x"}).encode(), "version 2"),
    ],
)
def test_corrupt_terraform_states_are_refused_with_the_reason(case: str, data: bytes, reason: str) -> None:
    with pytest.raises(CorruptStateError) as caught:
        parse_state("terraform", "terraform.tfstate", data)
    assert reason in caught.value.reason, case


def test_corrupt_gzip_is_refused() -> None:
    with pytest.raises(CorruptStateError, match="decompress"):
        parse_state("pulumi", "prod.json.gz", gzip.compress(pulumi_checkpoint("prod", 1))[:-8])


@given(st.lists(st.sampled_from(["stack", "provider", "job"]), max_size=30))
def test_any_checkpoint_written_in_dependency_order_counts_every_resource(kinds: list[str]) -> None:
    stack_urn = "urn:pulumi:p::vzkeep::pulumi:pulumi:Stack::s"
    resources: list[dict[str, Any]] = [{"urn": stack_urn, "type": "pulumi:pulumi:Stack"}]
    providers: list[str] = []
    for index, kind in enumerate(kinds):
        urn = f"urn:pulumi:p::vzkeep::t{index}::r{index}"
        if kind == "provider":
            resources.append({"urn": urn, "type": "pulumi:providers:x", "id": str(index), "parent": stack_urn})
            providers.append(f"{urn}::{index}")
        else:
            resource = {"urn": urn, "type": "x:y:Z", "parent": stack_urn, "dependencies": [stack_urn]}
            if providers:
                resource["provider"] = providers[-1]
            resources.append(resource)
    data = json.dumps({"version": 3, "checkpoint": {"latest": {"resources": resources}}}).encode()
    assert parse_state("pulumi", "p.json", data).resource_count == len(kinds) + 1


# --- bulk version reads ----------------------------------------------------------------------------------


def test_bulk_reader_returns_each_versions_bytes_and_reports_s3_errors_like_boto3(s3: S3Server) -> None:
    from vzkeep.state import make_client, parse_backend_url
    from vzkeep.state.versions import _VersionReader

    bucket = new_bucket(s3)
    bodies = [pulumi_checkpoint("prod", n) for n in (1, 2)]
    versions = put_versions(s3, bucket, stack_key("prod"), bodies)
    with mock.patch.dict("os.environ", s3.env()):
        client = make_client(parse_backend_url(s3.backend_url(bucket)))
    reader = _VersionReader(client, bucket, stack_key("prod"))
    assert [reader.read(v) for v in versions] == bodies
    with pytest.raises(StateError, match="no such version"):
        reader.read("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo")
