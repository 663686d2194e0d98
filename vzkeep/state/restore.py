"""Making an older version of a state object current again, safely against every concurrent writer.

The chosen version is copied over the current object, so the restore is itself a new version and can be
undone the same way. In order:

1. refuse unless the bucket is versioned (without versions an overwrite could not be undone);
2. refuse while anyone holds a lock (Pulumi's lock directory of either layout, Terraform's `.tflock`);
3. read and parse the chosen version: a version Pulumi or Terraform would refuse is refused here;
4. take our own lock where the tool looks for locks (`vzkeep.state.locks.acquire`): a second restore, a
   `pulumi up` or a `terraform apply` starting now stops on it;
5. look for other locks again (Pulumi's protocol is "write, then look": of two writers, the later one
   to look always sees the other, so they never both proceed);
6. copy with `If-Match: <ETag of the version that was current at the start>` (`If-None-Match: *` when the
   current version was a delete marker): if anyone wrote in the meantime, the server refuses the copy and
   nothing is overwritten;
7. read the new current object back and check it holds the chosen bytes; release our lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vzkeep.state import locks
from vzkeep.state.checkpoint import CorruptStateError, StateSummary, parse_state
from vzkeep.state.s3 import (
    RestoreRefused,
    StateError,
    client_error_text,
    get_bytes,
    object_head,
    precondition_failed,
    transport_error_text,
    versioning_status,
)
from vzkeep.state.targets import StateTarget
from vzkeep.state.versions import StateVersion, raw_versions


@dataclass(frozen=True)
class RestoreResult:
    target: StateTarget
    restored_version: str
    previous_version: str | None
    new_version: str | None
    summary: StateSummary
    changed: bool


def restore_version(
    client: Any,
    bucket: str,
    target: StateTarget,
    version_id: str,
    *,
    before_copy: Callable[[], None] | None = None,
    now: datetime | None = None,
) -> RestoreResult:
    """Make `version_id` the current state again by copying it over the current object.

    Refuses (RestoreRefused) when versioning is off, when a lock is held, when the chosen version is not a
    valid state, or when the state changed while the restore ran. `before_copy` runs while our lock is
    held, right before the conditional copy (tests use it to race a writer); `now` stamps our lock.
    """
    status = versioning_status(client, bucket)
    if status != "Enabled":
        raise RestoreRefused(
            f"versioning is {status or 'not enabled'} on bucket {bucket}: without it the restore "
            "would overwrite the current state with no way back; enable versioning first"
        )
    locks.refuse_if_locked(client, bucket, target)
    versions = list(raw_versions(client, bucket, target.key))
    chosen = _chosen(versions, bucket, target, version_id)
    data = get_bytes(client, bucket, target.key, version_id)
    summary = _parse_or_refuse(target, version_id, data)
    current = next((v for v in versions if v.is_latest), None)
    if current is not None and current.version_id == chosen.version_id:
        return RestoreResult(target, version_id, version_id, None, summary, changed=False)
    held = locks.acquire(client, bucket, target, f"restoring version {version_id}", now)
    try:
        locks.refuse_if_locked(client, bucket, target, ignore=held.key)
        if before_copy is not None:
            before_copy()
        new_version = _copy_if_unchanged(client, bucket, target, version_id, current)
        _verify_restored(client, bucket, target, new_version, data)
    finally:
        locks.release(client, bucket, held)
    return RestoreResult(
        target, version_id, current.version_id if current else None, new_version, summary, changed=True
    )


def _chosen(versions: list[StateVersion], bucket: str, target: StateTarget, version_id: str) -> StateVersion:
    chosen = next((v for v in versions if v.version_id == version_id), None)
    if chosen is None:
        raise StateError(
            f"version {version_id!r} of s3://{bucket}/{target.key} does not exist; list them with "
            "`vzkeep state versions`"
        )
    if chosen.delete_marker:
        raise RestoreRefused(f"version {version_id} is a delete marker, not a state file; choose another version")
    return chosen


def _parse_or_refuse(target: StateTarget, version_id: str, data: bytes) -> StateSummary:
    try:
        return parse_state(target.kind, target.key, data)
    except CorruptStateError as exc:
        raise RestoreRefused(
            f"version {version_id} of {target.label} is not a valid {target.kind} state: "
            f"{exc.reason}; choose another version"
        ) from exc


def _copy_if_unchanged(
    client: Any, bucket: str, target: StateTarget, version_id: str, current: StateVersion | None
) -> str | None:
    """Copy `version_id` over the object only if its current version is still `current` (else refuse)."""
    condition = (
        {"IfMatch": f'"{current.etag}"'} if current is not None and not current.delete_marker and current.etag
        else {"IfNoneMatch": "*"}
    )
    try:
        response = client.copy_object(
            Bucket=bucket,
            Key=target.key,
            CopySource={"Bucket": bucket, "Key": target.key, "VersionId": version_id},
            **condition,
        )
    except ClientError as exc:
        if precondition_failed(exc):
            raise RestoreRefused(_changed_meanwhile(client, bucket, target, current)) from None
        raise StateError(client_error_text(exc, f"s3://{bucket}/{target.key}")) from exc
    except BotoCoreError as exc:
        raise StateError(transport_error_text(exc)) from exc
    return response.get("VersionId")


def _changed_meanwhile(client: Any, bucket: str, target: StateTarget, current: StateVersion | None) -> str:
    was = f"version {current.version_id}" if current is not None else "no version"
    now = object_head(client, bucket, target.key)
    is_now = f"version {now.get('VersionId')}, written {now['LastModified']:%Y-%m-%d %H:%M:%S} UTC" if now else "gone"
    return (
        f"{target.label} changed while the restore ran ({was} was current at the start; now it is {is_now}): "
        "a writer that took no lock got there first. Nothing was overwritten; list the versions again "
        "(`vzkeep state versions`) and choose again"
    )


def _verify_restored(client: Any, bucket: str, target: StateTarget, new_version: str | None, expected: bytes) -> None:
    data = get_bytes(client, bucket, target.key, new_version)
    if hashlib.sha256(data).digest() != hashlib.sha256(expected).digest():
        raise StateError(
            f"after the copy, s3://{bucket}/{target.key} does not hold the chosen version's bytes; "
            "inspect it with `vzkeep state versions` before running Pulumi"
        )
    parse_state(target.kind, target.key, data)
