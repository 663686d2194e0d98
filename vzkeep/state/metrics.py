"""The two state metrics the exporter publishes, read with plain S3 calls.

`vzkeep_state_versioning_enabled` is 1 only when the bucket's versioning status is `Enabled` (a
`Suspended` bucket keeps old versions but no longer protects new writes).
`vzkeep_state_last_write_timestamp_seconds{stack}` is the LastModified time of each stack's current
checkpoint object, so an alert can say when a stack was last deployed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vzkeep.state.s3 import paginate, versioning_status
from vzkeep.state.targets import DEFAULT_PROJECT, PULUMI_STACK_SUFFIXES


@dataclass(frozen=True)
class StateMetrics:
    versioning_enabled: bool
    last_write: dict[str, float] = field(default_factory=dict)  # stack -> unix seconds


def state_metrics(client: Any, bucket: str, prefix: str = "", project: str = DEFAULT_PROJECT) -> StateMetrics:
    """Versioning status and, per stack of `project`, the time its checkpoint was last written.

    `prefix` is the backend's key prefix (`Backend.prefix`, "" for a bucket root). Raises
    `vzkeep.state.s3.StateError` when the bucket cannot be read; the exporter decides what to publish then.
    """
    enabled = versioning_status(client, bucket) == "Enabled"
    stacks_prefix = f"{prefix}.pulumi/stacks/{project}/"
    last_write: dict[str, float] = {}
    for page in paginate(client, "list_objects_v2", Bucket=bucket, Prefix=stacks_prefix):
        for item in page.get("Contents", []):
            stack = _stack_name(item["Key"][len(stacks_prefix) :])
            if stack is not None:
                # With both `.json` and `.json.gz` present, the newest write is the one that counts.
                seconds = item["LastModified"].timestamp()
                last_write[stack] = max(seconds, last_write.get(stack, 0.0))
    return StateMetrics(enabled, last_write)


def _stack_name(name: str) -> str | None:
    # `.json.bak` and nested keys are not checkpoints.
    if "/" in name:
        return None
    for suffix in PULUMI_STACK_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return None
