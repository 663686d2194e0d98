"""Fixtures shared by several test files; the support code they build on lives in ``tests/helpers``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.s3server import S3Server, running_s3_server


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS) on loopback, one per test module."""
    with running_s3_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
