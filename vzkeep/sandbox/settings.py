"""How the sandbox scales reality, fixed when a sandbox is created (``engine.json``)."""

from __future__ import annotations

from dataclasses import dataclass

from vzkeep.sandbox.diskdata import DEFAULT_BYTES_PER_GIB


@dataclass
class Settings:
    """Archive bytes per GiB of guest disk, simulated read speed, zstd level."""

    bytes_per_gib: int = DEFAULT_BYTES_PER_GIB
    throughput: float = 200 * 1024**2  # bytes of (unscaled) guest disk per simulated second
    zstd_level: int = 3  # `zstd --threads=N` without a level = 3
