"""``/metrics`` follows Prometheus' conventions: promtool accepts it, prometheus_client's negotiation (OpenMetrics,
gzip) and HEAD work, build and process metrics are there, IPv6 listening works, a body is formatted once per
snapshot and always says what the current snapshot says, and each response leaves in one write.

The cluster is ``fake_pve.FakeApi`` (PVE's answer shapes, no server), so these tests need no sandbox.
"""

from __future__ import annotations

import gzip
import socketserver
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

from tests.helpers.fake_pve import NOW, FakeApi, fake_cluster
from tests.helpers.metrics import series
from tests.helpers.tools import require_tool
from tests.helpers.waits import wait_until
from vzkeep.exporter import Exporter, Poller
from vzkeep.exporter.exposition import PROMETHEUS_ACCEPT, Exposition, version
from vzkeep.exporter.snapshot import DrillInfo, Snapshot, StateInfo

AUDITOR = {"Sys.Audit": 1, "VM.Audit": 1, "Datastore.Audit": 1, "Pool.Audit": 1, "SDN.Audit": 1}


def cluster(**overrides: Any) -> FakeApi:
    return fake_cluster(12, **overrides)


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    """Every optional part present: drills, state bucket, a missing privilege, the cluster's clock."""
    auditor = {path: dict(AUDITOR) for path in ("/", "/nodes", "/pool", "/storage", "/vms")}
    poller = Poller(cluster(**{"access/permissions": auditor}),
                    state_reader=lambda: StateInfo(True, {"prod": NOW - 60.0}))
    polled = poller.poll()
    assert polled.up, polled.failed_parts
    return replace(polled, drills=(DrillInfo("prod", 100, True, 300.0, NOW - 86400.0),))


def test_promtool_accepts_the_exposition(snapshot: Snapshot) -> None:
    _, _, body = Exposition().body(snapshot, None, None)
    # `promtool check metrics` lints names, types and units (a `_count` gauge fails it).
    result = subprocess.run([require_tool("promtool"), "check", "metrics"], input=body, capture_output=True,
                            timeout=30, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    names = {name for name, _ in series(body.decode())}
    # every family this snapshot has data for is there, the renamed one too
    assert {"vzkeep_backup_archives", "vzkeep_cluster_time_seconds", "vzkeep_missing_privilege",
            "vzkeep_drill_last_status", "vzkeep_state_versioning_enabled", "vzkeep_build_info",
            "process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"} <= names
    assert "vzkeep_backup_count" not in names


def test_build_info_and_the_clusters_clock(snapshot: Snapshot) -> None:
    found = series(Exposition().body(snapshot, None, None)[2].decode())
    assert found[("vzkeep_build_info", frozenset({("version", version())}))] == 1
    assert found[("vzkeep_cluster_time_seconds", frozenset())] == NOW
    assert found[("vzkeep_cluster_timezone_info", frozenset({("node", "pve1"), ("timezone", "Europe/Paris")}))] == 1
    missing = {dict(labels)["path"]: dict(labels)["privilege"]
               for name, labels in found if name == "vzkeep_missing_privilege"}
    assert missing == {"/storage": "Datastore.AllocateSpace", "/vms": "VM.Backup"}


def test_openmetrics_and_the_text_format_say_the_same(snapshot: Snapshot) -> None:
    exposition = Exposition()
    om_type, om_zipped, om = exposition.body(snapshot, PROMETHEUS_ACCEPT, None)
    text_type, _, text = exposition.body(snapshot, "text/plain", None)
    assert om_type.startswith("application/openmetrics-text; version=1.0.0") and not om_zipped
    assert text_type.startswith("text/plain; version=0.0.4")
    assert om.endswith(b"# EOF\n") and om.count(b"# EOF") == 1
    assert b"# EOF" not in text
    # OpenMetrics names counters without _total in its families and marks it in the sample; compare samples
    # of the data families, which are gauges in both.
    om_samples = {k: v for k, v in series(om.decode(), openmetrics_families).items() if k[0].startswith("vzkeep_")}
    text_samples = {k: v for k, v in series(text.decode()).items() if k[0].startswith("vzkeep_")}
    assert om_samples == text_samples


def test_the_cached_body_is_what_prometheus_client_would_format(snapshot: Snapshot) -> None:
    from prometheus_client.exposition import generate_latest

    exposition = Exposition()
    ours = series(exposition.body(snapshot, None, None)[2].decode())
    reference = series(generate_latest(exposition.registry(snapshot)).decode())
    volatile = ("process_", "python_gc_")  # sampled at each formatting
    assert {k: v for k, v in ours.items() if not k[0].startswith(volatile)} == \
        {k: v for k, v in reference.items() if not k[0].startswith(volatile)}


def test_a_new_snapshot_is_served_with_its_changes_and_nothing_stale(snapshot: Snapshot) -> None:
    exposition = Exposition()
    first = series(exposition.body(snapshot, None, None)[2].decode())
    assert exposition.body(snapshot, None, None)[2] is exposition.body(snapshot, None, None)[2]  # formatted once
    newest = snapshot.archives[0]
    changed = replace(snapshot, archives=(replace(newest, last_size=newest.last_size + 1), *snapshot.archives[1:]),
                      up=False, poll_errors=snapshot.poll_errors + 1)
    second = series(exposition.body(changed, None, None)[2].decode())
    key = ("vzkeep_backup_last_size_bytes",
           frozenset({("env", newest.env), ("vmid", str(newest.vmid)), ("storage", newest.storage)}))
    assert second[key] == first[key] + 1
    assert second[("vzkeep_up", frozenset())] == 0 and first[("vzkeep_up", frozenset())] == 1
    assert second[("vzkeep_poll_errors_total", frozenset())] == first[("vzkeep_poll_errors_total", frozenset())] + 1
    unchanged = {k for k in first if k[0] in ("vzkeep_guest_info", "vzkeep_job_info")}
    assert all(second[k] == first[k] for k in unchanged)


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    with Exporter(Poller(cluster()), "[::1]:0", interval=3600) as running:
        wait_until(lambda: running.loop.polls > 0, 10, "the first poll")
        yield running


def fetch(url: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as reply:
        return reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()


def test_it_listens_on_ipv6_loopback(exporter: Exporter) -> None:
    assert exporter.address.startswith("[::1]:")
    status, _, body = fetch(exporter.url)
    assert status == 200 and b"vzkeep_up 1.0" in body


def test_head_answers_the_headers_of_get_without_a_body(exporter: Exporter) -> None:
    _, get_headers, body = fetch(exporter.url)
    status, headers, empty = fetch(exporter.url, "HEAD")
    assert status == 200 and empty == b""
    assert headers["content-length"] == get_headers["content-length"] == str(len(body))
    assert headers["content-type"] == get_headers["content-type"]


def test_gzip_is_negotiated(exporter: Exporter) -> None:
    _, plain_headers, plain = fetch(exporter.url)
    _, headers, zipped = fetch(exporter.url, **{"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain_headers
    assert headers["content-encoding"] == "gzip"
    data = {k: v for k, v in series(gzip.decompress(zipped).decode()).items() if k[0].startswith("vzkeep_")}
    assert data == {k: v for k, v in series(plain.decode()).items() if k[0].startswith("vzkeep_")}


def test_openmetrics_is_negotiated_as_prometheus_asks(exporter: Exporter) -> None:
    _, headers, body = fetch(exporter.url, Accept=PROMETHEUS_ACCEPT)
    assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")


def test_each_response_leaves_in_one_write(exporter: Exporter, monkeypatch: pytest.MonkeyPatch) -> None:
    # Headers and body in separate writes would wait for the client's delayed ACK (~40 ms) on a kept-alive
    # connection; the handler writes once, on a socket with TCP_NODELAY.
    writes: list[int] = []
    original = socketserver._SocketWriter.write  # type: ignore[attr-defined]

    def counting(self: Any, data: bytes) -> int:
        writes.append(len(data))
        return original(self, data)

    monkeypatch.setattr(socketserver._SocketWriter, "write", counting)  # type: ignore[attr-defined]
    for path in ("/metrics", "/", "/missing"):
        writes.clear()
        try:
            fetch(exporter.url.replace("/metrics", path))
        except urllib.error.HTTPError as error:
            assert error.code == 404
        assert len(writes) == 1, (path, writes)
