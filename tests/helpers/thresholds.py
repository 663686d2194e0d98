"""Alert thresholds as a stack's plan hands them to the rule and Alertmanager renderers, written by hand for
tests (the renderers read these attributes only), with prod's values."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    env: str = "prod"
    job_id: str = "vzkeep-prod"
    storage_id: str = "backup-prod"
    schedule: str = "02:00"
    timezone: str = "Europe/Vienna"
    window_start: str = "01:00"
    window_end: str = "05:00"
    expected_interval_seconds: int = 86400
    missing_after_seconds: int = 48 * 3600
    storage_used_ratio: float = 0.8
    storage_full_horizon_seconds: int = 7 * 86400
    offsite_job_id: str | None = "vzkeep-prod-offsite"
    offsite_storage_id: str | None = "offsite-prod"
    offsite_missing_after_seconds: int | None = 2 * 86400
    drill_stale_after_seconds: int = 2 * 86400
    drill_max_duration_seconds: int = 900


PROD = Thresholds()
