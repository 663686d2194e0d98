"""Operations on state kept in a versioned S3 bucket: check, versions, restore, export.

Object names follow Pulumi's DIY layout (reference/pulumi.md §4.2) and Terraform's S3 backend: the state
object is `KEY`, a workspace other than `default` lives at `<workspace_key_prefix>/<workspace>/KEY`
(prefix `env:` by default), and Terraform >= 1.10 with `use_lockfile = true` writes `KEY.tflock` while it
holds the lock. Only plain S3 calls are used, so SeaweedFS, MinIO and AWS behave the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import certifi
import urllib3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from vzkeep.errors import FindingError, UsageError
from vzkeep.state.backend import Backend
from vzkeep.state.checkpoint import CorruptStateError, Kind, StateSummary, parse_state

PULUMI_STACK_SUFFIXES = (".json", ".json.gz", ".json.zst")
DEFAULT_PROJECT = "vzkeep"
DEFAULT_WORKSPACE_KEY_PREFIX = "env:"
_READ_WORKERS = 16


class StateError(UsageError):
    """A problem the user must fix (exit 2): unreachable server, wrong credentials, unknown version..."""


class RestoreRefused(FindingError):
    """The restore would be unsafe (exit 1): a lock, a corrupt version, no versioning."""


@dataclass(frozen=True)
class StateTarget:
    """One state object and the locks that guard it."""

    kind: Kind
    label: str  # stack name or Terraform key/workspace, for messages
    key: str  # full bucket key of the state object
    lock_prefix: str | None = None  # Pulumi: every object under it is a lock
    lock_key: str | None = None  # Terraform: the single lock object


@dataclass(frozen=True)
class StateVersion:
    version_id: str
    last_modified: datetime
    size: int
    is_latest: bool
    etag: str = ""
    delete_marker: bool = False
    summary: StateSummary | None = None
    error: str | None = None  # why the content is unusable


@dataclass(frozen=True)
class Lock:
    key: str
    description: str


@dataclass(frozen=True)
class RestoreResult:
    target: StateTarget
    restored_version: str
    previous_version: str | None
    new_version: str | None
    summary: StateSummary
    changed: bool


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass
class ExportResult:
    directory: Path
    objects: int = 0
    versions: int = 0
    delete_markers: int = 0
    bytes: int = 0
    stacks: list[str] = field(default_factory=list)


# --- targets -------------------------------------------------------------------------------------------


def pulumi_target(client: Any, backend: Backend, stack: str, project: str = DEFAULT_PROJECT) -> StateTarget:
    """The stack's checkpoint object: `.json`, or the `.json.gz`/`.json.zst` variant that exists."""
    _check_name("stack", stack)
    _check_name("project", project)
    base = backend.key(f".pulumi/stacks/{project}/{stack}")
    # One listing finds whichever variant exists (and gives S3's error body, unlike HEAD, on bad credentials).
    present = {
        item["Key"]
        for page in paginate(client, "list_objects_v2", Bucket=backend.bucket, Prefix=base)
        for item in page.get("Contents", [])
    }
    key = next((base + suffix for suffix in PULUMI_STACK_SUFFIXES if base + suffix in present), base + ".json")
    return StateTarget("pulumi", stack, key, lock_prefix=backend.key(f".pulumi/locks/{project}/{stack}/"))


def terraform_target(
    key: str, workspace: str = "default", workspace_key_prefix: str = DEFAULT_WORKSPACE_KEY_PREFIX
) -> StateTarget:
    """Terraform S3 backend object for `key` in `workspace` (the bucket root, as Terraform sees it)."""
    if not key or key.startswith("/") or key.endswith("/"):
        raise StateError(f"--terraform-key {key!r}: give the backend's `key`, e.g. homelab/terraform.tfstate")
    _check_name("workspace", workspace)
    full = key if workspace == "default" else f"{workspace_key_prefix}/{workspace}/{key}"
    label = key if workspace == "default" else f"{key} (workspace {workspace})"
    return StateTarget("terraform", label, full, lock_key=full + ".tflock")


def _check_name(what: str, value: str) -> None:
    if not value or "/" in value or value in {".", ".."}:
        raise StateError(f"--{what} {value!r}: a plain name is expected (no '/')")


# --- versions ------------------------------------------------------------------------------------------


def list_versions(
    client: Any,
    bucket: str,
    target: StateTarget,
    *,
    read_content: bool = True,
    cache: SummaryCache | None = None,
) -> list[StateVersion]:
    """Every version of the state object, newest first, each with its parsed summary or error.

    With a `cache`, versions already summarized are not downloaded again.
    """
    raw = list(_raw_versions(client, bucket, target.key))
    if not raw:
        raise StateError(f"no state at s3://{bucket}/{target.key}: check --stack/--project or --terraform-key")
    if not read_content:
        return raw
    known = [cache.lookup(version) if cache else None for version in raw]
    missing = [version for version, hit in zip(raw, known, strict=True) if hit is None]
    reader = _VersionReader(client, bucket, target.key)
    with ThreadPoolExecutor(max_workers=_READ_WORKERS) as pool:
        fetched = iter(list(pool.map(lambda version: _with_summary(reader, target, version), missing)))
    result = [hit if hit is not None else next(fetched) for hit in known]
    if cache:
        cache.store(result)
    return result


class SummaryCache:
    """Summaries of state versions kept on disk, one JSON file per state object.

    An S3 object version never changes once written, so (version id, ETag) identifies its content and its
    summary can be reused: listing 1,000 versions then costs one listing instead of 1,000 downloads.
    The `null` version of an unversioned bucket *can* change and is never cached. Only summaries are
    stored (counts, versions, serial, lineage, error text), never state content.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                self._entries = loaded

    @classmethod
    def for_target(cls, directory: Path, endpoint: str | None, bucket: str, target: StateTarget) -> SummaryCache:
        name = hashlib.sha256(f"{endpoint}|{bucket}|{target.key}".encode()).hexdigest()[:32]
        return cls(directory / f"{name}.json")

    def lookup(self, version: StateVersion) -> StateVersion | None:
        entry = self._entries.get(self._key(version)) if self._cacheable(version) else None
        if entry is None:
            return None
        try:
            summary = StateSummary(**entry["summary"]) if entry.get("summary") else None
        except (TypeError, AttributeError):  # written by another vzkeep version: read the object again
            return None
        return replace(version, summary=summary, error=entry.get("error"))

    def store(self, versions: list[StateVersion]) -> None:
        entries = {
            self._key(v): {"summary": vars(v.summary) if v.summary else None, "error": v.error}
            for v in versions
            if self._cacheable(v)
        }
        if entries == self._entries:
            return
        # Keep only live versions, so the file does not grow with expired ones; replace atomically.
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{uuid.uuid4().hex}.tmp")
            temporary.write_text(json.dumps(entries))
            temporary.replace(self.path)
            self._entries = entries

    @staticmethod
    def _cacheable(version: StateVersion) -> bool:
        return not version.delete_marker and version.version_id != "null" and bool(version.etag)

    @staticmethod
    def _key(version: StateVersion) -> str:
        return f"{version.version_id}|{version.etag}"


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/vzkeep/state-versions` (default `~/.cache/...`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vzkeep" / "state-versions"


def _raw_versions(client: Any, bucket: str, key: str) -> Iterator[StateVersion]:
    # S3 lists each key's versions newest first; the prefix also matches `<key>.bak` and the like.
    for page in paginate(client, "list_object_versions", Bucket=bucket, Prefix=key):
        for item in page.get("Versions", []):
            if item["Key"] == key:
                yield StateVersion(
                    item["VersionId"],
                    item["LastModified"],
                    item["Size"],
                    item["IsLatest"],
                    etag=item.get("ETag", "").strip('"'),
                )
        for item in page.get("DeleteMarkers", []):
            if item["Key"] == key:
                yield StateVersion(item["VersionId"], item["LastModified"], 0, item["IsLatest"], delete_marker=True)


class _VersionReader:
    """Downloads many versions of one object, fast.

    botocore spends about 1.5 ms of CPU on each request (signing, hooks, response parsing); for
    1,000 versions that alone broke the 2 s budget. A presigned URL is signed locally in a fraction of
    that, and urllib3 (what botocore itself sends with) does the rest. Any non-200 answer is fetched
    again through boto3, so errors read exactly like every other call's.
    """

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        verify = client.meta.endpoint_url.startswith("https:")
        ca = os.environ.get("AWS_CA_BUNDLE") or certifi.where()
        self.http = urllib3.PoolManager(maxsize=_READ_WORKERS, cert_reqs="CERT_REQUIRED" if verify else "CERT_NONE",
                                        ca_certs=ca if verify else None, retries=False, timeout=30.0)

    def read(self, version_id: str | None) -> bytes:
        params = {"Bucket": self.bucket, "Key": self.key} | ({"VersionId": version_id} if version_id else {})
        url = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=300)
        try:
            reply = self.http.request("GET", url, preload_content=True)
        except urllib3.exceptions.HTTPError:
            reply = None
        if reply is not None and reply.status == 200:
            return reply.data
        return _get_bytes(self.client, self.bucket, self.key, version_id)


def _with_summary(reader: _VersionReader, target: StateTarget, version: StateVersion) -> StateVersion:
    if version.delete_marker:
        return version
    try:
        data = reader.read(version.version_id)
        summary = parse_state(target.kind, target.key, data)
    except CorruptStateError as exc:
        return replace(version, error=exc.reason)
    return replace(version, summary=summary)


# --- locks ---------------------------------------------------------------------------------------------


def find_locks(client: Any, bucket: str, target: StateTarget) -> list[Lock]:
    """Locks held on the target now: Pulumi lock files, or Terraform's `KEY.tflock`."""
    if target.lock_prefix:
        keys = [
            item["Key"]
            for page in paginate(client, "list_objects_v2", Bucket=bucket, Prefix=target.lock_prefix)
            for item in page.get("Contents", [])
            if item["Key"].endswith(".json")
        ]
        return [Lock(key, _describe_pulumi_lock(client, bucket, key)) for key in keys]
    if target.lock_key and _object_exists(client, bucket, target.lock_key):
        return [Lock(target.lock_key, _describe_terraform_lock(client, bucket, target.lock_key))]
    return []


def _describe_pulumi_lock(client: Any, bucket: str, key: str) -> str:
    # Same wording as Pulumi's own error (pp: `pkg/backend/diy/lock.go`).
    info = _read_json_quietly(client, bucket, key)
    return (
        f"created by {info.get('username', '?')}@{info.get('hostname', '?')} "
        f"(pid {info.get('pid', '?')}) at {info.get('timestamp', '?')}"
    )


def _describe_terraform_lock(client: Any, bucket: str, key: str) -> str:
    info = _read_json_quietly(client, bucket, key)
    return (
        f"lock {info.get('ID', '?')} held by {info.get('Who', '?')} for {info.get('Operation', '?')} "
        f"since {info.get('Created', '?')}"
    )


def _read_json_quietly(client: Any, bucket: str, key: str) -> dict[str, Any]:
    # A lock blocks whatever its content; the content only makes the message more helpful.
    with contextlib.suppress(StateError, ValueError):
        document = json.loads(_get_bytes(client, bucket, key))
        if isinstance(document, dict):
            return document
    return {}


# --- restore -------------------------------------------------------------------------------------------


def restore_version(
    client: Any,
    bucket: str,
    target: StateTarget,
    version_id: str,
    *,
    before_copy: Callable[[], None] | None = None,
) -> RestoreResult:
    """Make `version_id` the current state again by copying it over the current object.

    The copy is itself a new version, so the restore can be undone the same way. Refuses (RestoreRefused)
    when versioning is off, when a lock is held (checked again right before the copy), or when the chosen
    version is not a valid state; `before_copy` runs between the last check and the copy (tests use it).
    """
    status = versioning_status(client, bucket)
    if status != "Enabled":
        raise RestoreRefused(
            f"versioning is {status or 'not enabled'} on bucket {bucket}: without it the restore "
            "would overwrite the current state with no way back; enable versioning first"
        )
    _refuse_if_locked(client, bucket, target)
    versions = list(_raw_versions(client, bucket, target.key))
    chosen = next((v for v in versions if v.version_id == version_id), None)
    if chosen is None:
        raise StateError(
            f"version {version_id!r} of s3://{bucket}/{target.key} does not exist; list them with "
            "`vzkeep state versions`"
        )
    if chosen.delete_marker:
        raise RestoreRefused(f"version {version_id} is a delete marker, not a state file; choose another version")
    data = _get_bytes(client, bucket, target.key, version_id)
    summary = _parse_or_refuse(target, version_id, data)
    current = next((v for v in versions if v.is_latest), None)
    if current is not None and current.version_id == version_id:
        return RestoreResult(target, version_id, version_id, None, summary, changed=False)
    if before_copy is not None:
        before_copy()
    _refuse_if_locked(client, bucket, target)
    new_version = _copy_version(client, bucket, target.key, version_id)
    _verify_restored(client, bucket, target, new_version, data)
    return RestoreResult(
        target, version_id, current.version_id if current else None, new_version, summary, changed=True
    )


def _refuse_if_locked(client: Any, bucket: str, target: StateTarget) -> None:
    locks = find_locks(client, bucket, target)
    if locks:
        lines = "; ".join(f"{lock.key} {lock.description}" for lock in locks)
        tool = "`pulumi cancel`" if target.kind == "pulumi" else "`terraform force-unlock <ID>`"
        raise RestoreRefused(
            f"{target.label} is locked by {len(locks)} lock(s): {lines}. Wait for the running "
            f"operation to end; if it died, remove the lock with {tool} and retry"
        )


def _parse_or_refuse(target: StateTarget, version_id: str, data: bytes) -> StateSummary:
    try:
        return parse_state(target.kind, target.key, data)
    except CorruptStateError as exc:
        raise RestoreRefused(
            f"version {version_id} of {target.label} is not a valid {target.kind} state: "
            f"{exc.reason}; choose another version"
        ) from exc


def _copy_version(client: Any, bucket: str, key: str, version_id: str) -> str | None:
    response = _call(
        client.copy_object,
        Bucket=bucket,
        Key=key,
        CopySource={"Bucket": bucket, "Key": key, "VersionId": version_id},
    )
    return response.get("VersionId")


def _verify_restored(client: Any, bucket: str, target: StateTarget, new_version: str | None, expected: bytes) -> None:
    data = _get_bytes(client, bucket, target.key, new_version)
    if hashlib.sha256(data).digest() != hashlib.sha256(expected).digest():
        raise StateError(
            f"after the copy, s3://{bucket}/{target.key} does not hold the chosen version's bytes; "
            "inspect it with `vzkeep state versions` before running Pulumi"
        )
    parse_state(target.kind, target.key, data)


# --- check ---------------------------------------------------------------------------------------------


def versioning_status(client: Any, bucket: str) -> str | None:
    """'Enabled', 'Suspended' or None (never enabled)."""
    return _call(client.get_bucket_versioning, Bucket=bucket).get("Status")


def check_backend(client: Any, backend: Backend) -> list[CheckResult]:
    """A verdict per point: reachable, versioning, conditional writes, lifecycle for old versions."""
    bucket = backend.bucket
    try:
        # A listing, not HEAD: HEAD errors have no body, so a wrong secret would look like "403".
        _call(client.list_objects_v2, Bucket=bucket, Prefix=backend.prefix, MaxKeys=1)
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
    # Write a probe twice with If-None-Match: *; a server that honours it rejects the second write (412).
    key = backend.key(f".vzkeep-probe/{uuid.uuid4().hex}")
    try:
        client.put_object(Bucket=backend.bucket, Key=key, Body=b"probe", IfNoneMatch="*")
        try:
            client.put_object(Bucket=backend.bucket, Key=key, Body=b"probe", IfNoneMatch="*")
            verdict = CheckResult(
                "conditional-writes",
                False,
                "If-None-Match: * was ignored (second write "
                "succeeded); Terraform's use_lockfile and safe concurrent writers need it",
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            ok = status == 412 or code == "PreconditionFailed"
            verdict = CheckResult(
                "conditional-writes",
                ok,
                "If-None-Match: * honoured (412 on existing object)"
                if ok
                else f"unexpected answer to If-None-Match: {code} {status}",
            )
    except ClientError as exc:
        return CheckResult("conditional-writes", False, f"probe write refused: {_client_error_text(exc)}")
    finally:
        _delete_all_versions(client, backend.bucket, key)
    return verdict


def _delete_all_versions(client: Any, bucket: str, key: str) -> None:
    with contextlib.suppress(ClientError, BotoCoreError):
        for page in paginate(client, "list_object_versions", Bucket=bucket, Prefix=key):
            for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                if item["Key"] == key:
                    client.delete_object(Bucket=bucket, Key=key, VersionId=item["VersionId"])


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
        return CheckResult("lifecycle", False, f"cannot read lifecycle: {_client_error_text(exc)}")
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


# --- export --------------------------------------------------------------------------------------------


def export_backend(client: Any, backend: Backend, directory: Path) -> ExportResult:
    """Copy every version of every object under the backend prefix into `directory`.

    `current/` mirrors the backend as it is now (so `pulumi login file://<dir>/current` reads it), `versions/`
    holds every version by key, and `manifest.json` lists them with version id, time, size and sha256.
    """
    result = ExportResult(directory)
    entries: list[dict[str, Any]] = []
    for page in paginate(client, "list_object_versions", Bucket=backend.bucket, Prefix=backend.prefix):
        for item in page.get("DeleteMarkers", []):
            result.delete_markers += 1
            entries.append(_manifest_entry(backend, item, delete_marker=True))
        with ThreadPoolExecutor(max_workers=_READ_WORKERS) as pool:
            entries.extend(
                pool.map(lambda item: _export_version(client, backend, directory, item), page.get("Versions", []))
            )
    for entry in entries:
        if entry["delete_marker"]:
            continue
        result.versions += 1
        result.bytes += entry["size"]
        if entry["is_latest"]:
            result.objects += 1
            name = entry["name"]
            if name.startswith(".pulumi/stacks/") and name.endswith(PULUMI_STACK_SUFFIXES):
                result.stacks.append(name.removeprefix(".pulumi/stacks/"))
    manifest = {
        "backend": _url_without_query(backend.url),
        "bucket": backend.bucket,
        "prefix": backend.prefix,
        "entries": sorted(entries, key=lambda e: (e["name"], e["last_modified"])),
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    result.stacks.sort()
    return result


def _export_version(client: Any, backend: Backend, directory: Path, item: dict[str, Any]) -> dict[str, Any]:
    entry = _manifest_entry(backend, item, delete_marker=False)
    data = _get_bytes(client, backend.bucket, item["Key"], item["VersionId"])
    _verify_etag(item, data)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    stamp = item["LastModified"].strftime("%Y%m%dT%H%M%SZ")
    _write_inside(directory, f"versions/{entry['name']}/{stamp}_{item['VersionId']}", data)
    if item["IsLatest"]:
        _write_inside(directory, f"current/{entry['name']}", data)
    return entry


def _manifest_entry(backend: Backend, item: dict[str, Any], *, delete_marker: bool) -> dict[str, Any]:
    return {
        "name": backend.relative(item["Key"]),
        "version_id": item["VersionId"],
        "last_modified": item["LastModified"].isoformat(),
        "is_latest": item["IsLatest"],
        "size": item.get("Size", 0),
        "delete_marker": delete_marker,
    }


def _verify_etag(item: dict[str, Any], data: bytes) -> None:
    # A single-part upload's ETag is the MD5 of its bytes; multipart ETags ("...-N") cannot be checked.
    etag = item.get("ETag", "").strip('"')
    if len(etag) == 32 and "-" not in etag and hashlib.md5(data, usedforsecurity=False).hexdigest() != etag:
        raise StateError(
            f"s3 object {item['Key']} version {item['VersionId']} read back with a different MD5 "
            f"than its ETag {etag}: the copy is not trustworthy"
        )


def _write_inside(directory: Path, relative: str, data: bytes) -> None:
    # Object keys are untrusted: refuse any that would land outside the export directory.
    parts = PurePosixPath(relative).parts
    if any(part in {"..", ""} for part in parts) or relative.startswith("/"):
        raise StateError(f"refusing to export object name {relative!r}: it would escape {directory}")
    path = directory.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _url_without_query(url: str) -> str:
    return url.split("?", 1)[0]


# --- S3 plumbing ---------------------------------------------------------------------------------------


def _object_exists(client: Any, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return False
        raise StateError(_client_error_text(exc, f"s3://{bucket}/{key}")) from exc
    except BotoCoreError as exc:
        raise StateError(_transport_error_text(exc)) from exc
    return True


def _get_bytes(client: Any, bucket: str, key: str, version_id: str | None = None) -> bytes:
    args = {"Bucket": bucket, "Key": key}
    if version_id:
        args["VersionId"] = version_id
    response = _call(client.get_object, what=f"s3://{bucket}/{key}", **args)
    return response["Body"].read()


def paginate(client: Any, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Pages of a boto3 list operation; S3 and connection errors become StateError."""
    try:
        yield from client.get_paginator(operation).paginate(**kwargs)
    except ClientError as exc:
        raise StateError(_client_error_text(exc, f"s3://{kwargs.get('Bucket')}")) from exc
    except BotoCoreError as exc:
        raise StateError(_transport_error_text(exc)) from exc


def _call(method: Callable[..., Any], what: str | None = None, **kwargs: Any) -> Any:
    try:
        return method(**kwargs)
    except ClientError as exc:
        raise StateError(_client_error_text(exc, what or f"s3://{kwargs.get('Bucket')}")) from exc
    except BotoCoreError as exc:
        raise StateError(_transport_error_text(exc)) from exc


def _transport_error_text(exc: BotoCoreError) -> str:
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


def _client_error_text(exc: ClientError, what: str = "") -> str:
    error = exc.response.get("Error", {})
    code = error.get("Code", "") or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
    if code in {"403", "Forbidden"}:
        code = "AccessDenied"
    if code in {"404", "NotFound"} and "Bucket" in exc.operation_name:
        code = "NoSuchBucket"
    advice = _ADVICE.get(code, error.get("Message", ""))
    where = f"{what}: " if what else ""
    return f"{where}{exc.operation_name} failed with {code}: {advice}"
