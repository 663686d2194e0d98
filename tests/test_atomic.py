"""Files that hold secrets are born private: one atomic writer, a unique 0600 temp file, fsynced, renamed.

The sandbox used to write its token files through a fixed `<name>.tmp`: `os.open(O_CREAT)` keeps the mode
of a file that already exists, so a `.tmp` left at 0644 (by a crash, a copy, an older version) made the
token file world-readable. These tests hold the writer to its promise, and each secret-holding file of
the code base to going through it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from vzkeep.atomic import PRIVATE, write_atomic, write_private
from vzkeep.sandbox.server import load_or_create_credentials, write_private_json
from vzkeep.sandbox.tls import CERT_NAME, KEY_NAME, ensure_certificate


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def wide_umask() -> Iterator[None]:
    """Files created without an explicit mode would be world-readable (and writable) under this umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


class Spy:
    """Records what the writer does: the temp file's mode while it holds the content, renames, dir fsyncs."""

    def __init__(self) -> None:
        self.content_modes: list[int] = []
        self.renamed_from: list[str] = []
        self.directory_fsyncs = 0
        self._fsync, self._replace = os.fsync, os.replace

    def fsync(self, fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            self.directory_fsyncs += 1
        else:
            self.content_modes.append(stat.S_IMODE(info.st_mode))
        self._fsync(fd)

    def replace(self, src: str, dst: str) -> None:
        self.renamed_from.append(os.path.basename(src))
        self._replace(src, dst)

    def __enter__(self) -> Spy:
        self._patches = [mock.patch("os.fsync", self.fsync), mock.patch("os.replace", self.replace)]
        for patch in self._patches:
            patch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for patch in self._patches:
            patch.stop()


def test_a_private_file_is_0600_from_its_first_byte_and_the_rename_is_made_durable(
        tmp_path: Path, wide_umask: None) -> None:
    target = tmp_path / "token"
    with Spy() as spy:
        write_private(target, "monitoring@pve!exporter=s3cr3t\n")
    assert target.read_text() == "monitoring@pve!exporter=s3cr3t\n"
    assert mode_of(target) == PRIVATE
    assert spy.content_modes == [PRIVATE]  # the temp file held the secret at 0600
    assert spy.directory_fsyncs == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token"]


def test_a_public_file_gets_its_mode_only_once_complete(tmp_path: Path, wide_umask: None) -> None:
    target = tmp_path / "rules.yml"
    with Spy() as spy:
        write_atomic(target, b"groups: []\n")
    assert mode_of(target) == 0o644 and spy.content_modes == [PRIVATE]


def test_no_temp_name_is_ever_reused_and_an_old_wide_temp_file_changes_nothing(
        tmp_path: Path, wide_umask: None) -> None:
    target = tmp_path / "credentials.json"
    stale = tmp_path / "credentials.json.tmp"  # the name the sandbox used to reuse, left world-readable
    stale.write_text("old")
    stale.chmod(0o666)
    with Spy() as spy:
        write_private_json(target, {"tokens": {"admin": {"token_value": "a"}}})
        write_private_json(target, {"tokens": {"admin": {"token_value": "b"}}})
    first, second = spy.renamed_from
    assert first != second and "credentials.json.tmp" not in spy.renamed_from
    assert mode_of(target) == PRIVATE and json.loads(target.read_text())["tokens"]["admin"]["token_value"] == "b"
    assert stale.read_text() == "old"  # not ours: untouched, and it no longer decides the mode of anything


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "sandbox.json"
    write_private(target, "old")
    with mock.patch("os.replace", side_effect=OSError(28, "No space left on device")), \
            pytest.raises(OSError, match="No space left"):
        write_private(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["sandbox.json"]


def test_the_sandbox_credentials_and_tls_key_are_private_even_over_older_wider_files(
        tmp_path: Path, wide_umask: None) -> None:
    key = tmp_path / KEY_NAME
    key.write_text("an old key, world-readable")
    key.chmod(0o644)
    _, key_path, fingerprint = ensure_certificate(tmp_path, "pve1")  # the cert is missing: both are made
    assert key_path == key and mode_of(key) == PRIVATE and "PRIVATE KEY" in key.read_text()
    assert (tmp_path / CERT_NAME).is_file() and len(fingerprint.split(":")) == 32
    load_or_create_credentials(tmp_path)
    assert mode_of(tmp_path / "credentials.json") == PRIVATE
