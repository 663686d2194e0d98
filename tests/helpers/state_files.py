"""State files in Pulumi's and Terraform's real formats, and buckets holding them on the test S3 server."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from tests.helpers.s3server import S3Server

PULUMI_CLI = "v3.200.0"

# --- state files in the tools' real formats -----------------------------------------------------------


def pulumi_checkpoint(
    stack: str,
    jobs: int,
    cli_version: str = PULUMI_CLI,
    project: str = "vzkeep",
    updated: str = "2026-11-20T02:00:00.000000001Z",
) -> bytes:
    """A DIY checkpoint as `pulumi up` writes it: stack resource, default provider, then `jobs` children."""
    urn = f"urn:pulumi:{stack}::{project}::"
    stack_urn = f"{urn}pulumi:pulumi:Stack::{project}-{stack}"
    provider_urn = f"{urn}pulumi:providers:proxmoxve::default_8_6_0"
    provider_ref = f"{provider_urn}::0b7c5e4e-5d2c-4f43-9d7a-3c3f5f1b2a10"
    resources: list[dict[str, Any]] = [
        {"urn": stack_urn, "custom": False, "type": "pulumi:pulumi:Stack", "outputs": {}},
        {
            "urn": provider_urn,
            "custom": True,
            "id": provider_ref.rsplit("::", 1)[1],
            "type": "pulumi:providers:proxmoxve",
            "inputs": {"version": "8.6.0"},
            "outputs": {"version": "8.6.0"},
        },
    ]
    for index in range(jobs):
        resources.append(
            {
                "urn": f"{urn}proxmoxve:backup/job:Job::vzkeep-{stack}-{index}",
                "custom": True,
                "id": f"vzkeep-{stack}-{index}",
                "type": "proxmoxve:backup/job:Job",
                "parent": stack_urn,
                "provider": provider_ref,
                "dependencies": [],
                "inputs": {"schedule": "02:00"},
                "outputs": {},
            }
        )
    deployment = {
        "manifest": {
            "time": updated,
            "magic": hashlib.sha256(cli_version.encode()).hexdigest(),
            "version": cli_version,
        },
        "secrets_providers": {"type": "passphrase", "state": {"salt": "v1:c2FsdA==:v1:aXY=:Y2lwaGVy"}},
        "resources": resources,
    }
    document = {
        "version": 3,
        "checkpoint": {"stack": f"organization/{project}/{stack}", "config": {}, "latest": deployment},
    }
    return json.dumps(document, indent=4).encode()


def terraform_state(serial: int, instances: int, lineage: str = "5f2c8a6e-0d1b-4e57-9a43-6d8c1f0b7e21") -> bytes:
    resources = [
        {
            "mode": "managed",
            "type": "proxmox_virtual_environment_vm",
            "name": "vm",
            "provider": 'provider["registry.terraform.io/bpg/proxmox"]',
            "instances": [
                {"index_key": i, "schema_version": 0, "attributes": {"vm_id": 100 + i}} for i in range(instances)
            ],
        }
    ]
    return json.dumps(
        {
            "version": 4,
            "terraform_version": "1.9.8",
            "serial": serial,
            "lineage": lineage,
            "outputs": {},
            "resources": resources,
            "check_results": None,
        }
    ).encode()


def pulumi_lock(user: str = "alice", host: str = "laptop", pid: int = 4242) -> bytes:
    """A lock file byte for byte as `pulumi up` writes it: Go's `json.Marshal(lockContent)` (pulumi
    `pkg/backend/diy/lock.go`): no spaces, no newline, `time.Now()` as RFC 3339 with nanoseconds and offset."""
    return (
        b'{"pid":%d,"username":"%s","hostname":"%s","timestamp":"2026-11-26T21:14:07.318274912+01:00"}'
        % (pid, user.encode(), host.encode())
    )


def pulumi_lock_key(stack: str = "prod", project: str = "vzkeep", lock_id: str = "") -> str:
    """Where Pulumi's DIY backend in project mode writes a stack's lock: `.pulumi/locks/organization/<project>/
    <stack>/<uuid>.json` (pulumi `diy/lock.go` lockPath → stackLockDir(FullyQualifiedName))."""
    return f".pulumi/locks/organization/{project}/{stack}/{lock_id or uuid.uuid4()}.json"


def new_bucket(s3: S3Server, *, versioning: bool = True, lifecycle: bool = True) -> str:
    client = s3.client()
    name = f"state-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    if versioning:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    if lifecycle:
        client.put_bucket_lifecycle_configuration(
            Bucket=name,
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": "old-state",
                        "Status": "Enabled",
                        "Filter": {"Prefix": ""},
                        "NoncurrentVersionExpiration": {"NoncurrentDays": 90},
                    }
                ]
            },
        )
    return name


def put_versions(s3: S3Server, bucket: str, key: str, bodies: list[bytes]) -> list[str]:
    """Write each body in turn; returns the version ids, oldest first."""
    client = s3.client()
    return [client.put_object(Bucket=bucket, Key=key, Body=body)["VersionId"] for body in bodies]


def stack_key(stack: str) -> str:
    return f".pulumi/stacks/vzkeep/{stack}.json"
