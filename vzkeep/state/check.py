"""`vzkeep state check`: can this bucket keep state safely? One verdict per point.

Reachable with these credentials; versioning enabled (every write keeps the previous state); conditional
writes honoured (Terraform's `use_lockfile` and `vzkeep state restore` rely on If-None-Match and If-Match);
a lifecycle rule that expires noncurrent versions, and none that expires current ones.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from vzkeep.state.backend import Backend
from vzkeep.state.s3 import (
    StateError,
    call,
    client_error_text,
    delete_all_versions,
    precondition_failed,
    versioning_status,
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def check_backend(client: Any, backend: Backend) -> list[CheckResult]:
    """A verdict per point: reachable, versioning, conditional writes, lifecycle for old versions."""
    bucket = backend.bucket
    try:
        # A listing, not HEAD: HEAD errors have no body, so a wrong secret would look like "403".
        call(client.list_objects_v2, Bucket=bucket, Prefix=backend.prefix, MaxKeys=1)
    except StateError as exc:
        return [CheckResult("reachable", False, str(exc))]
    results = [CheckResult("reachable", True, f"bucket {bucket} answers at {backend.endpoint or 'AWS S3'}")]
    status = versioning_status(client, bucket)
    results.append(
        CheckResult(
            "versioning",
            status == "Enabled",
            "enabled: every write keeps the previous state as a version"
            if status == "Enabled"
            else f"{status or 'never enabled'}: an overwritten state is lost; enable versioning",
        )
    )
    results.append(_check_conditional_writes(client, backend))
    results.append(_check_lifecycle(client, backend))
    return results


def _check_conditional_writes(client: Any, backend: Backend) -> CheckResult:
    """Probe both conditions the lock and the restore rely on, on a temporary object removed afterwards.

    A server that honours them refuses (412) a second `If-None-Match: *` write of an existing object, and an
    `If-Match` write whose ETag is not the current one.
    """
    key = backend.key(f".vzkeep-probe/{uuid.uuid4().hex}")
    try:
        client.put_object(Bucket=backend.bucket, Key=key, Body=b"probe", IfNoneMatch="*")
        ignored = [name for name, condition in (("If-None-Match: *", {"IfNoneMatch": "*"}),
                                                ("If-Match", {"IfMatch": '"00000000000000000000000000000000"'}))
                   if not _refused(client, backend.bucket, key, condition)]
    except ClientError as exc:
        return CheckResult("conditional-writes", False, f"probe write refused: {client_error_text(exc)}")
    finally:
        delete_all_versions(client, backend.bucket, key)
    if ignored:
        return CheckResult(
            "conditional-writes",
            False,
            f"{' and '.join(ignored)} ignored (the write succeeded): Terraform's use_lockfile and "
            "`vzkeep state restore` cannot exclude concurrent writers on this server",
        )
    return CheckResult("conditional-writes", True, "If-None-Match: * and If-Match honoured (412 when not met)")


def _refused(client: Any, bucket: str, key: str, condition: dict[str, str]) -> bool:
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"probe", **condition)
    except ClientError as exc:
        if precondition_failed(exc):
            return True
        raise
    return False


def _check_lifecycle(client: Any, backend: Backend) -> CheckResult:
    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=backend.bucket).get("Rules", [])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return CheckResult(
                "lifecycle",
                False,
                "no lifecycle rule: noncurrent state versions pile up forever; add NoncurrentVersionExpiration",
            )
        return CheckResult("lifecycle", False, f"cannot read lifecycle: {client_error_text(exc)}")
    state_key = backend.key(".pulumi/stacks/")
    active = [rule for rule in rules if rule.get("Status") == "Enabled" and state_key.startswith(_rule_prefix(rule))]
    dangerous = [
        rule.get("ID", "?")
        for rule in active
        if "Expiration" in rule and not rule["Expiration"].get("ExpiredObjectDeleteMarker")
    ]
    if dangerous:
        return CheckResult(
            "lifecycle",
            False,
            f"rule(s) {', '.join(dangerous)} expire *current* objects under "
            f"{state_key}: the live state would be deleted",
        )
    noncurrent = [rule for rule in active if rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays")]
    if not noncurrent:
        return CheckResult("lifecycle", False, f"no enabled NoncurrentVersionExpiration rule covers {state_key}")
    days = min(rule["NoncurrentVersionExpiration"]["NoncurrentDays"] for rule in noncurrent)
    return CheckResult("lifecycle", True, f"noncurrent versions expire after {days} day(s)")


def _rule_prefix(rule: dict[str, Any]) -> str:
    rule_filter = rule.get("Filter") or {}
    if "Prefix" in rule_filter:
        return rule_filter["Prefix"] or ""
    if "And" in rule_filter:
        return rule_filter["And"].get("Prefix", "") or ""
    return rule.get("Prefix", "") or ""
