"""IaC state on a self-hosted, versioned S3 bucket: Pulumi DIY checkpoints and Terraform state.

Public API (see each module): `parse_backend_url`/`make_client` (backend), `parse_state` (checkpoint),
`check_backend`, `list_versions`, `restore_version`, `export_backend`, `find_locks` (store),
`state_metrics` (metrics).
"""

from __future__ import annotations

from vzkeep.state.backend import (
    Backend,
    BackendURLError,
    backend_url_from_env,
    make_client,
    parse_backend_url,
)
from vzkeep.state.checkpoint import CorruptStateError, StateSummary, parse_state
from vzkeep.state.metrics import StateMetrics, state_metrics
from vzkeep.state.store import (
    CheckResult,
    ExportResult,
    Lock,
    RestoreRefused,
    RestoreResult,
    StateError,
    StateTarget,
    StateVersion,
    check_backend,
    export_backend,
    find_locks,
    list_versions,
    pulumi_target,
    restore_version,
    terraform_target,
)

__all__ = [
    "Backend",
    "BackendURLError",
    "CheckResult",
    "CorruptStateError",
    "ExportResult",
    "Lock",
    "RestoreRefused",
    "RestoreResult",
    "StateError",
    "StateMetrics",
    "StateSummary",
    "StateTarget",
    "StateVersion",
    "backend_url_from_env",
    "check_backend",
    "export_backend",
    "find_locks",
    "list_versions",
    "make_client",
    "parse_backend_url",
    "parse_state",
    "pulumi_target",
    "restore_version",
    "state_metrics",
    "terraform_target",
]
