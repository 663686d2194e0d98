"""`vzkeep state export`: every version of every object of the backend, copied into a directory.

State content holds secrets (Terraform keeps them in clear, Pulumi keeps its encrypted ones and the
passphrase salt), so every exported file is private (mode 0600) from its creation, written atomically.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from vzkeep.atomic import write_private
from vzkeep.state.backend import Backend
from vzkeep.state.s3 import StateError, get_bytes, paginate
from vzkeep.state.targets import PULUMI_STACK_SUFFIXES
from vzkeep.state.versions import READ_WORKERS


@dataclass
class ExportResult:
    directory: Path
    objects: int = 0
    versions: int = 0
    delete_markers: int = 0
    bytes: int = 0
    stacks: list[str] = field(default_factory=list)




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
        with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
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
    write_private(directory / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    result.stacks.sort()
    return result


def _export_version(client: Any, backend: Backend, directory: Path, item: dict[str, Any]) -> dict[str, Any]:
    entry = _manifest_entry(backend, item, delete_marker=False)
    data = get_bytes(client, backend.bucket, item["Key"], item["VersionId"])
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
    write_private(directory.joinpath(*parts), data)


def _url_without_query(url: str) -> str:
    return url.split("?", 1)[0]
