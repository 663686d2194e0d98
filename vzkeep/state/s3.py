"""The plain S3 calls the state tools make, and how their failures read.

Only calls every S3 server implements (listings, get, put, copy, delete; conditional writes where the
server honours them), so SeaweedFS, MinIO and AWS behave the same. Every S3 or transport failure becomes
a `StateError` whose text names the object and says what to check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from vzkeep.errors import FindingError, UsageError


class StateError(UsageError):
    """A problem the user must fix (exit 2): unreachable server, wrong credentials, unknown version..."""


class RestoreRefused(FindingError):
    """The restore would be unsafe (exit 1): a lock, a corrupt version, no versioning, a concurrent write."""


def versioning_status(client: Any, bucket: str) -> str | None:
    """'Enabled', 'Suspended' or None (never enabled)."""
    return call(client.get_bucket_versioning, Bucket=bucket).get("Status")


def object_head(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """HEAD of the current version of `key`, or None when there is none (absent, or a delete marker)."""
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if status_of(exc) == 404:
            return None
        raise StateError(client_error_text(exc, f"s3://{bucket}/{key}")) from exc
    except BotoCoreError as exc:
        raise StateError(transport_error_text(exc)) from exc


def get_bytes(client: Any, bucket: str, key: str, version_id: str | None = None) -> bytes:
    args = {"Bucket": bucket, "Key": key}
    if version_id:
        args["VersionId"] = version_id
    response = call(client.get_object, what=f"s3://{bucket}/{key}", **args)
    return response["Body"].read()


def paginate(client: Any, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Pages of a boto3 list operation; S3 and connection errors become StateError."""
    try:
        yield from client.get_paginator(operation).paginate(**kwargs)
    except ClientError as exc:
        raise StateError(client_error_text(exc, f"s3://{kwargs.get('Bucket')}")) from exc
    except BotoCoreError as exc:
        raise StateError(transport_error_text(exc)) from exc


def call(method: Callable[..., Any], what: str | None = None, **kwargs: Any) -> Any:
    """One S3 call; S3 and connection errors become StateError naming `what` (default: the bucket)."""
    try:
        return method(**kwargs)
    except ClientError as exc:
        raise StateError(client_error_text(exc, what or f"s3://{kwargs.get('Bucket')}")) from exc
    except BotoCoreError as exc:
        raise StateError(transport_error_text(exc)) from exc


def delete_all_versions(client: Any, bucket: str, key: str) -> None:
    """Remove every version and delete marker of `key` (best effort: used to tidy up probes)."""
    with contextlib.suppress(ClientError, BotoCoreError):
        for page in paginate(client, "list_object_versions", Bucket=bucket, Prefix=key):
            for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                if item["Key"] == key:
                    client.delete_object(Bucket=bucket, Key=key, VersionId=item["VersionId"])


def status_of(exc: ClientError) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def code_of(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def precondition_failed(exc: ClientError) -> bool:
    """The server refused a conditional write: 412 PreconditionFailed, or AWS's 409 when two raced."""
    return status_of(exc) == 412 or code_of(exc) in {"PreconditionFailed", "ConditionalRequestConflict"}


def transport_error_text(exc: BotoCoreError) -> str:
    if isinstance(exc, NoCredentialsError):
        return "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or profile= in the URL)"
    return f"cannot reach the S3 endpoint: {exc}"


_ADVICE = {
    "SignatureDoesNotMatch": "the secret key is wrong: check AWS_SECRET_ACCESS_KEY (or the profile)",
    "InvalidAccessKeyId": "the access key is unknown to the server: check AWS_ACCESS_KEY_ID (or the profile)",
    "AccessDenied": "these credentials may not do this; check the user's policy on the bucket",
    "NoSuchBucket": "the bucket does not exist: check the bucket name in the backend URL",
    "NoSuchVersion": "no such version: list them with `vzkeep state versions`",
    "NoSuchKey": "no such object",
}


def client_error_text(exc: ClientError, what: str = "") -> str:
    error = exc.response.get("Error", {})
    code = error.get("Code", "") or str(status_of(exc) or "?")
    if code in {"403", "Forbidden"}:
        code = "AccessDenied"
    if code in {"404", "NotFound"} and "Bucket" in exc.operation_name:
        code = "NoSuchBucket"
    advice = _ADVICE.get(code, error.get("Message", ""))
    where = f"{what}: " if what else ""
    return f"{where}{exc.operation_name} failed with {code}: {advice}"
