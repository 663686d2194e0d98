"""Prometheus expositions in tests: parse one into samples, and write a realistic one for three environments
(what the vzkeep exporter serves for a small homelab), for a real Prometheus to scrape."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]
Samples = dict[str, dict[Labels, float]]
Series = dict[tuple[str, Labels], float]
Parser = Callable[[str], Iterable[Any]]


def samples(exposition: bytes | str, parser: Parser = text_string_to_metric_families) -> Samples:
    """name -> {frozenset(labels): value} for every sample of an exposition."""
    text = exposition.decode() if isinstance(exposition, bytes) else exposition
    out: Samples = collections.defaultdict(dict)
    for family in parser(text):
        for sample in family.samples:
            out[sample.name][frozenset(sample.labels.items())] = sample.value
    return out


def series(exposition: bytes | str, parser: Parser = text_string_to_metric_families) -> Series:
    """(name, frozenset(labels)) -> value for every sample of an exposition: one key per series."""
    return {(name, labels): v for name, rows in samples(exposition, parser).items() for labels, v in rows.items()}


def value(found: Samples, metric: str, /, **labels: str) -> float:
    """The value of one series of ``samples``' result (KeyError when the exposition lacks it)."""
    return found[metric][frozenset(labels.items())]


# --- a static exposition ----------------------------------------------------------------------------------

ALL_ENVS = "prod|lab|monitoring"  # what Grafana puts in $env for "All" with a regex matcher
GUESTS = [  # env, vmid, name, type, node, covered, last status, hours since last success (None: never)
    ("prod", "100", "web", "qemu", "pve1", 1, 1, 20),
    ("prod", "101", "db", "qemu", "pve1", 1, 0, 44),
    ("prod", "102", "dns", "lxc", "pve2", 1, 1, 20),
    ("lab", "200", "k3s", "qemu", "pve2", 1, 1, 21),
    ("lab", "201", "scratch", "lxc", "pve2", 0, None, None),
    ("monitoring", "300", "prometheus", "lxc", "pve1", 1, 1, 22),
    ("", "900", "tmp", "lxc", "pve1", 0, None, None),
]
STORAGES = [  # storage, node, size, used
    ("backup-prod", "pve1", 2_000_000_000_000, 1_500_000_000_000),
    ("backup-prod", "pve2", 2_000_000_000_000, 1_500_000_000_000),  # shared: seen by both nodes
    ("backup-lab", "pve2", 1_000_000_000_000, 300_000_000_000),
    ("backup-monitoring", "pve1", 500_000_000_000, 100_000_000_000),
    ("offsite-prod", "pve1", 8_000_000_000_000, 2_000_000_000_000),
    ("local", "pve1", 100_000_000_000, 90_000_000_000),
]
JOBS = [  # job, env, schedule, storage, last status
    ("vzkeep-prod", "prod", "02:00", "backup-prod", 0),
    ("vzkeep-prod-offsite", "prod", "sat 04:00", "offsite-prod", 1),
    ("vzkeep-lab", "lab", "03:00", "backup-lab", 1),
    ("vzkeep-monitoring", "monitoring", "01:30", "backup-monitoring", 1),
]


def _labels(**labels: str) -> str:
    return ",".join(f'{key}="{value}"' for key, value in labels.items())


def exposition(now: float) -> str:
    """What the vzkeep exporter would serve for the inventory above (metric names from issue 5)."""
    samples: dict[str, list[str]] = {}

    def add(metric: str, value: float, **labels: str) -> None:
        samples.setdefault(metric, []).append(f"{metric}{{{_labels(**labels)}}} {value}")

    add("vzkeep_up", 1)
    add("vzkeep_poll_timestamp_seconds", round(now - 5))
    add("vzkeep_poll_duration_seconds", 0.42)
    add("vzkeep_poll_errors_total", 0)
    for env, vmid, name, type_, node, covered, status, hours in GUESTS:
        add("vzkeep_guest_info", 1, env=env, vmid=vmid, name=name, type=type_, node=node)
        add("vzkeep_guest_covered", covered, env=env, vmid=vmid)
        if status is None or hours is None:
            continue
        storages = [f"backup-{env}"] + (["offsite-prod"] if env == "prod" else [])
        for storage in storages:
            add("vzkeep_backup_last_success_timestamp_seconds", round(now - hours * 3600), env=env, vmid=vmid,
                storage=storage)
            add("vzkeep_backup_last_size_bytes", 4_000_000_000 + int(vmid), env=env, vmid=vmid, storage=storage)
            add("vzkeep_backup_archives", 7, env=env, vmid=vmid, storage=storage)
        add("vzkeep_backup_last_attempt_timestamp_seconds", round(now - 3 * 3600), env=env, vmid=vmid)
        add("vzkeep_backup_last_status", status, env=env, vmid=vmid)
    for job, env, schedule, storage, status in JOBS:
        add("vzkeep_job_info", 1, job=job, env=env, schedule=schedule, storage=storage)
        add("vzkeep_job_enabled", 1, job=job)
        add("vzkeep_job_next_run_timestamp_seconds", round(now + 6 * 3600), job=job)
        add("vzkeep_job_last_run_timestamp_seconds", round(now - 18 * 3600), job=job)
        add("vzkeep_job_last_status", status, job=job)
        add("vzkeep_job_expected_interval_seconds", 86400, job=job)
        add("vzkeep_env_backup_bytes", 60_000_000_000, env=env, storage=storage)
    for storage, node, size, used in STORAGES:
        add("vzkeep_storage_size_bytes", size, storage=storage, node=node)
        add("vzkeep_storage_used_bytes", used, storage=storage, node=node)
    lines = []
    for metric, rows in samples.items():
        kind = "counter" if metric.endswith("_total") else "gauge"
        lines += [f"# HELP {metric} vzkeep test series", f"# TYPE {metric} {kind}", *rows]
    return "\n".join(lines) + "\n"
