"""The local stand-ins of `sandbox apply` for what is not PVE's: delivered files and the state bucket."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from components import shell
from vzkeep.apply.resources.base import Api, Applied, Context, NotApplied
from vzkeep.apply.resources.bucket import S3_SERVICE, Bucket, Lifecycle, S3StandIn, Versioning
from vzkeep.apply.resources.files import CopyToRemote, InstallCommand, removed_paths, written_file


@pytest.mark.parametrize(("path", "mode", "required", "reload"), [
    ("/etc/prometheus/rules.d/vzkeep-prod.rules.yml", "0644", False, shell.PROMETHEUS_SERVICE),
    ("/etc/vzkeep/pve-token", "0600", True, None),
    ("/srv/odd dir/it's $(here).yml", "0640", False, None),
])
def test_the_programs_write_scripts_are_read_as_files(path: str, mode: str, required: bool, reload) -> None:
    script = shell.write_stdin_to(path, mode, required=required, reload=reload)
    found = written_file(script, has_stdin=True)
    assert found is not None
    assert (found.path, found.mode, found.required) == (path, int(mode, 8), required)
    assert removed_paths(shell.remove(path, reload=reload)) == {path}


def test_a_script_doing_more_than_writing_is_not_a_file() -> None:
    script = shell.write_stdin_to("/etc/x", "0644") + "systemctl restart x\n"
    assert written_file(script, has_stdin=True) is None
    assert written_file(shell.script("apt-get install -y curl"), has_stdin=False) is None
    assert written_file(shell.write_stdin_to("/etc/x", "0644"), has_stdin=False) is None  # nothing on stdin


def test_files_land_under_the_host_directory_with_their_mode(tmp_path: Path) -> None:
    ctx = Context(pve=Api(transport=None), files_root=tmp_path / "delivered")  # type: ignore[arg-type]
    inputs = {"connection": {"host": "prometheus.home.arpa"}, "stdin": "token=1\n",
              "create": shell.write_stdin_to("/etc/vzkeep/pve-token", "0600", required=True),
              "delete": shell.remove("/etc/vzkeep/pve-token")}
    applied = InstallCommand().create(ctx, inputs)
    target = tmp_path / "delivered" / "prometheus.home.arpa" / "etc" / "vzkeep" / "pve-token"
    assert Path(applied.id) == target and target.read_text() == "token=1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "delivered").stat().st_mode) == 0o700
    InstallCommand().delete(ctx, applied, inputs)
    assert not target.exists()


def test_an_empty_required_file_fails_like_the_script(tmp_path: Path) -> None:
    ctx = Context(pve=Api(transport=None), files_root=tmp_path)  # type: ignore[arg-type]
    inputs = {"stdin": "", "create": shell.write_stdin_to("/etc/vzkeep/pve-token", "0600", required=True)}
    with pytest.raises(Exception, match="/etc/vzkeep/pve-token: nothing to write"):
        InstallCommand().create(ctx, inputs)


def test_a_path_cannot_leave_the_delivery_directory(tmp_path: Path) -> None:
    ctx = Context(pve=Api(transport=None), files_root=tmp_path / "d")  # type: ignore[arg-type]
    local = CopyToRemote().target(ctx, {"connection": {"host": "h"}}, "/../../../etc/passwd")
    assert local == tmp_path / "d" / "h" / "etc" / "passwd"
    with pytest.raises(NotApplied):
        CopyToRemote().target(ctx, {"connection": {"host": "../x"}}, "/etc/passwd")


def test_the_bucket_lands_on_a_local_seaweedfs_with_versioning_and_lifecycle(tmp_path: Path) -> None:
    standin = S3StandIn(tmp_path / "s3")
    ctx = Context(pve=Api(transport=None), files_root=tmp_path, services={S3_SERVICE: standin},  # type: ignore[arg-type]
                  provider={"minioUser": "vzkeep", "minioPassword": "s3cret-s3cret-s3cret"})
    try:
        created = Bucket().create(ctx, {"bucket": "pulumi-state", "acl": "private"})
        assert created.outputs["arn"] == "arn:aws:s3:::pulumi-state"
        Versioning().create(ctx, {"bucket": "pulumi-state", "versioningConfiguration": {"status": "Enabled"}})
        Lifecycle().create(ctx, {"bucket": "pulumi-state", "rules": [
            {"id": "expire-noncurrent-state", "status": "Enabled", "noncurrentVersionExpirationDays": 90}]})
        client = standin.client(ctx.provider)
        assert client.get_bucket_versioning(Bucket="pulumi-state")["Status"] == "Enabled"
        rules = client.get_bucket_lifecycle_configuration(Bucket="pulumi-state")["Rules"]
        assert rules[0]["ID"] == "expire-noncurrent-state"
        assert rules[0]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
        with pytest.raises(Exception, match="bucket already exists! pulumi-state"):
            Bucket().create(ctx, {"bucket": "pulumi-state"})
    finally:
        standin.stop()
    # The data outlives the server: the next apply finds the bucket.
    try:
        assert Bucket().read(ctx, Applied("pulumi-state", {}), {}) is not None
    finally:
        standin.stop()
