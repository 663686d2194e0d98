"""IaC state on a self-hosted, versioned S3 bucket: Pulumi DIY checkpoints and Terraform state.

Modules, one concept each: `backend` (the `pulumi login` URL and the boto3 client), `s3` (the S3 calls
and their errors), `targets` (where a stack's state and locks live, per layout), `checkpoint` (parsing a
state file), `versions` (listing versions with summaries), `locks` (reading Pulumi's and Terraform's
locks, taking our own), `restore` (making an old version current, safely), `check` (is the bucket safe),
`export` (an offline copy of everything), `metrics` (what the exporter publishes).
"""

from __future__ import annotations

from vzkeep.state.backend import (
    Backend,
    BackendURLError,
    backend_url_from_env,
    make_client,
    parse_backend_url,
)
from vzkeep.state.check import CheckResult, check_backend
from vzkeep.state.checkpoint import CorruptStateError, StateSummary, parse_state
from vzkeep.state.export import ExportResult, export_backend
from vzkeep.state.locks import Lock, find_locks
from vzkeep.state.metrics import StateMetrics, state_metrics
from vzkeep.state.restore import RestoreResult, restore_version
from vzkeep.state.s3 import RestoreRefused, StateError
from vzkeep.state.targets import StateTarget, pulumi_target, terraform_target
from vzkeep.state.versions import StateVersion, list_versions

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
