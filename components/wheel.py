"""The vzkeep wheel the exporter host installs, built from this checkout while the program runs.

`pulumi up` hashes a `FileAsset` when the resource is registered, so the wheel must exist before the
program declares its copy: it is built here, synchronously, with the setuptools of the project's
virtualenv (`vzkeep[pulumi]`), without build isolation and without any download. The build is
reproducible (`SOURCE_DATE_EPOCH`, sources copied to a clean directory so no stale `build/` file slips
in) and cached by a digest of its sources, so an unchanged checkout yields the same bytes and Pulumi
sees no change; a changed source yields a new wheel, which the exporter host installs as a new release.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Sources that make the wheel (setuptools reads pyproject.toml and the README named there).
WHEEL_SOURCES = ("pyproject.toml", "README.md", "vzkeep")
SOURCE_DATE_EPOCH = "1767225600"  # 2026-01-01: fixed file times inside the wheel, for identical bytes
BUILD_DIR = Path("build") / "exporter-wheel"


class WheelBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Wheel:
    path: Path
    sha256: str

    @property
    def filename(self) -> str:
        return self.path.name


def exporter_wheel(root: Path) -> Wheel:
    """The wheel of the checkout at `root`, built once per content of its sources."""
    files = sorted(_source_files(root))
    digest = _digest(root, files)
    out = root / BUILD_DIR / digest[:16]
    built = sorted(out.glob("*.whl"))
    if not built:
        built = [_build(root, files, out)]
    return Wheel(built[0], hashlib.sha256(built[0].read_bytes()).hexdigest())


def _source_files(root: Path) -> list[Path]:
    found = []
    for name in WHEEL_SOURCES:
        path = root / name
        if path.is_file():
            found.append(path)
            continue
        found += [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix not in (".pyc", ".pyo")]
    return found


def _digest(root: Path, files: list[Path]) -> str:
    sha = hashlib.sha256()
    for path in files:
        sha.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


def _build(root: Path, files: list[Path], out: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="vzkeep-wheel-") as tmp:
        source, dist = Path(tmp) / "src", Path(tmp) / "dist"
        for path in files:
            target = source / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
                   "--no-build-isolation", "--wheel-dir", str(dist), str(source)]
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})
        wheels = sorted(dist.glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise WheelBuildError(
                f"building the vzkeep wheel for the exporter host failed ({' '.join(command)}):\n"
                f"{done.stdout}{done.stderr}\nInstall the Pulumi extra, which brings setuptools: "
                f"pip install -e '.[pulumi]'")
        out.mkdir(parents=True, exist_ok=True)
        staged = out / f".{wheels[0].name}.{os.getpid()}"
        shutil.copyfile(wheels[0], staged)
        final = out / wheels[0].name
        os.replace(staged, final)  # two builders racing write the same bytes: the last rename wins harmlessly
        return final
