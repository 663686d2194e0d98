"""What other vzkeep commands recorded, read on every poll: verify results, drill results, the state bucket."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vzkeep.exporter.snapshot import DrillInfo, StateInfo


def file_stamp(path: Path) -> tuple[int, ...] | None:
    """What changes when ``vzkeep verify`` writes its SQLite store (the file and its write-ahead log: mtime
    in ns and size of each); None when it does not exist."""
    from vzkeep.verify import store_stamp

    return store_stamp(path)


def read_verify_results(path: Path) -> dict[str, tuple[int, bool, int]]:
    """volid -> (verified_at, ok, size of the file that was read) of ``vzkeep verify``'s results store; a
    missing store is nothing verified. The size lets the listing tell the verified file from a later one
    under the same volid."""
    if not path.exists():
        return {}
    from vzkeep.verify import results_by_volid

    return {volid: (int(r.verified_at), bool(r.ok), int(r.size)) for volid, r in results_by_volid(path).items()}


def read_drill_results(path: Path) -> tuple[DrillInfo, ...]:
    """The newest drill of each guest (``vzkeep drill``'s results store); a missing file is no drill yet."""
    from vzkeep.drill import DrillResultStore

    return tuple(
        DrillInfo(env=r.env, vmid=r.vmid, ok=r.ok, duration_seconds=r.duration_seconds,
                  last_success=r.last_success_at)
        for _, r in sorted(DrillResultStore(path).load().items())
    )


def state_reader_for(url: str) -> Callable[[], StateInfo]:
    """Read the state bucket's metrics (``--state-backend``); raises BackendURLError for a bad URL at once."""
    from vzkeep.state.backend import make_client, parse_backend_url
    from vzkeep.state.metrics import state_metrics

    backend = parse_backend_url(url)
    client = make_client(backend)

    def read() -> StateInfo:
        metrics = state_metrics(client, backend.bucket, backend.prefix)
        return StateInfo(metrics.versioning_enabled, dict(metrics.last_write))

    return read
