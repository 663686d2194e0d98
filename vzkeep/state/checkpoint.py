"""Read Pulumi checkpoint files and Terraform state files: what they hold, or why they are unusable.

A Pulumi DIY checkpoint is `{"version": N, "checkpoint": {"stack", "config", "latest": deployment}}`
(pulumi `sdk/go/common/apitype/core.go` VersionedCheckpoint / CheckpointV3), where the
deployment holds `manifest {time, magic, version}`, `secrets_providers`, `resources` and
`pending_operations`. A stack that was created but never deployed has `latest: null`. Pulumi checks a
snapshot's integrity when it loads it (parents, dependencies and providers must refer to resources listed
before them, no duplicate live URN); we apply the same rules so a version that Pulumi would refuse is
refused here before it is restored.

A Terraform state is `{"version": 4, "terraform_version", "serial", "lineage", "outputs", "resources"}`;
version 3 (Terraform < 0.12) keeps resources under `modules[].resources`.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from typing import Any, Literal

import zstandard

Kind = Literal["pulumi", "terraform"]

# VersionedCheckpoint versions Pulumi reads: 1 and 2 are upgraded on load, 3 is written today, 4 adds the
# `features` list (pulumi apitype DeploymentSchemaVersionCurrent/Latest).
PULUMI_CHECKPOINT_VERSIONS = range(1, 5)
TERRAFORM_STATE_VERSIONS = (3, 4)
_MAX_DECOMPRESSED = 512 * 1024 * 1024


class CorruptStateError(ValueError):
    """The bytes are not a usable state file; `reason` says what is wrong and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class StateSummary:
    """What a valid state file holds, as shown by `vzkeep state versions`."""

    kind: Kind
    format_version: int
    resource_count: int
    tool_version: str | None  # Pulumi CLI version from the manifest, or terraform_version
    stack: str | None = None  # Pulumi: organization/project/stack
    updated: str | None = None  # Pulumi: manifest time
    serial: int | None = None  # Terraform
    lineage: str | None = None  # Terraform
    pending_operations: int = 0  # Pulumi: operations interrupted by a crash


def decode_object(name: str, data: bytes) -> bytes:
    """The JSON bytes of a state object; `.gz`/`.zst` names are decompressed as Pulumi writes them."""
    try:
        if name.endswith(".gz"):
            return gzip.decompress(data)
        if name.endswith(".zst"):
            return zstandard.ZstdDecompressor().decompress(data, max_output_size=_MAX_DECOMPRESSED)
    except (OSError, EOFError, zstandard.ZstdError) as exc:
        raise CorruptStateError(f"cannot decompress {name.rsplit('.', 1)[-1]} data: {exc}") from exc
    return data


def parse_state(kind: Kind, name: str, data: bytes) -> StateSummary:
    """Parse a Pulumi checkpoint or Terraform state object named `name`, or raise CorruptStateError."""
    document = _load_json(decode_object(name, data))
    if kind == "pulumi":
        return summarize_pulumi_checkpoint(document)
    return summarize_terraform_state(document)


def _load_json(data: bytes) -> dict[str, Any]:
    if not data.strip():
        raise CorruptStateError("the file is empty")
    try:
        document = json.loads(data)
    except UnicodeDecodeError as exc:
        raise CorruptStateError(f"not UTF-8 text: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise CorruptStateError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(document, dict):
        raise CorruptStateError(f"top level is a JSON {type(document).__name__}, expected an object")
    return document


def summarize_pulumi_checkpoint(document: dict[str, Any]) -> StateSummary:
    """Validate a decoded Pulumi checkpoint and summarize it."""
    version = _int_field(document, "version", "checkpoint file")
    if version not in PULUMI_CHECKPOINT_VERSIONS:
        raise CorruptStateError(
            f"checkpoint version {version} is not one Pulumi reads "
            f"({PULUMI_CHECKPOINT_VERSIONS.start}..{PULUMI_CHECKPOINT_VERSIONS.stop - 1})"
        )
    checkpoint = document.get("checkpoint")
    if not isinstance(checkpoint, dict):
        hint = " (this looks like a `pulumi stack export` file)" if "deployment" in document else ""
        raise CorruptStateError(f"'checkpoint' is missing or not an object{hint}")
    latest = checkpoint.get("latest")
    stack = checkpoint.get("stack") if isinstance(checkpoint.get("stack"), str) else None
    if latest is None:
        return StateSummary("pulumi", version, 0, None, stack=stack)
    if not isinstance(latest, dict):
        raise CorruptStateError("'checkpoint.latest' is not an object")
    manifest = latest.get("manifest") if isinstance(latest.get("manifest"), dict) else {}
    resources = _pulumi_resources(latest)
    verify_pulumi_integrity(resources)
    pending = latest.get("pending_operations") or []
    return StateSummary(
        "pulumi",
        version,
        len(resources),
        _str_or_none(manifest.get("version")),
        stack=stack,
        updated=_str_or_none(manifest.get("time")),
        pending_operations=len(pending) if isinstance(pending, list) else 0,
    )


def _pulumi_resources(latest: dict[str, Any]) -> list[dict[str, Any]]:
    resources = latest.get("resources")
    if resources is None:
        return []
    if not isinstance(resources, list):
        raise CorruptStateError("'checkpoint.latest.resources' is not a list")
    for index, resource in enumerate(resources):
        if not isinstance(resource, dict):
            raise CorruptStateError(f"resource #{index} is not an object")
        for field in ("urn", "type"):
            if not isinstance(resource.get(field), str) or not resource[field]:
                raise CorruptStateError(f"resource #{index} has no '{field}'")
    return resources


def verify_pulumi_integrity(resources: list[dict[str, Any]]) -> None:
    """Pulumi's snapshot integrity rules (pulumi `pkg/resource/deploy/snapshot.go` VerifyIntegrity, subset).

    References must point *backwards*: Pulumi writes resources in dependency order and refuses a
    snapshot where a parent, dependency or provider appears later or not at all.
    """
    seen: set[str] = set()
    live: set[str] = set()
    providers: set[str] = set()
    for index, resource in enumerate(resources):
        urn = resource["urn"]
        where = f"resource #{index} ({urn})"
        parent = resource.get("parent")
        if parent and parent not in seen:
            raise CorruptStateError(f"{where} refers to unknown parent {parent}")
        for dependency in resource.get("dependencies") or []:
            if dependency not in seen:
                raise CorruptStateError(
                    f"{where} has a dependency on {dependency}, which is not listed before it"
                )
        provider = resource.get("provider")
        if provider and provider not in providers:
            raise CorruptStateError(f"{where} refers to unknown provider {provider}")
        if not resource.get("delete"):
            if urn in live:
                raise CorruptStateError(f"{where} is a duplicate (not marked for deletion)")
            live.add(urn)
        seen.add(urn)
        if resource["type"].startswith("pulumi:providers:") and resource.get("id"):
            # A provider reference is "<urn>::<id>" (pulumi `resource/deploy/providers/reference.go`).
            providers.add(f"{urn}::{resource['id']}")


def summarize_terraform_state(document: dict[str, Any]) -> StateSummary:
    """Validate a decoded Terraform state and summarize it."""
    version = _int_field(document, "version", "state file")
    if version not in TERRAFORM_STATE_VERSIONS:
        raise CorruptStateError(f"state version {version} is not supported (expected 3 or 4)")
    serial = _int_field(document, "serial", "state file")
    lineage = document.get("lineage")
    if not isinstance(lineage, str) or not lineage:
        raise CorruptStateError("'lineage' is missing: not a Terraform state")
    count = _terraform_v4_instances(document) if version == 4 else _terraform_v3_resources(document)
    return StateSummary(
        "terraform",
        version,
        count,
        _str_or_none(document.get("terraform_version")),
        serial=serial,
        lineage=lineage,
    )


def _terraform_v4_instances(document: dict[str, Any]) -> int:
    # One per instance, data sources included: the number of lines `terraform state list` prints.
    resources = document.get("resources") or []
    if not isinstance(resources, list):
        raise CorruptStateError("'resources' is not a list")
    count = 0
    for index, resource in enumerate(resources):
        if not isinstance(resource, dict) or not isinstance(resource.get("instances", []), list):
            raise CorruptStateError(f"resource #{index} is not an object with an 'instances' list")
        count += len(resource.get("instances", []))
    return count


def _terraform_v3_resources(document: dict[str, Any]) -> int:
    modules = document.get("modules") or []
    if not isinstance(modules, list):
        raise CorruptStateError("'modules' is not a list")
    return sum(len(module.get("resources") or {}) for module in modules if isinstance(module, dict))


def _int_field(document: dict[str, Any], field: str, what: str) -> int:
    value = document.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CorruptStateError(f"{what} has no integer '{field}' (found {value!r})")
    return value


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
