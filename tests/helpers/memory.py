"""The peak memory of this process's own address space, for tests that bound it.

`getrusage().ru_maxrss` is the wrong figure in a test: Linux carries it across fork and exec (fs/exec.c,
`exec_mmap`, keeps the larger of the old and the new peak), so an interpreter spawned by a pytest worker
starts with the worker's peak, and a worker's peak includes every test that ran in it before. `VmHWM` in
/proc/self/status belongs to the current address space, and writing 5 to /proc/self/clear_refs resets it to
the current resident size (proc(5), Linux 4.0 and later).
"""

from __future__ import annotations

from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def peak_rss_kib() -> int:
    """The highest resident set size (KiB) of this address space since it began or since `reset_peak_rss`."""
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"{STATUS} has no VmHWM line: not a Linux kernel this test can measure on")


def reset_peak_rss() -> int:
    """Start a new peak at the current resident size; returns it (KiB)."""
    CLEAR_REFS.write_text("5")
    return peak_rss_kib()
