"""Where a stack's state and its locks live in the bucket, exactly as Pulumi and Terraform lay them out.

Pulumi's self-managed (DIY) backend has two layouts, chosen by `.pulumi/meta.yaml` (pulumi
`pkg/backend/diy/meta.go`: `version: 1` is project mode, `version: 0` or, for a bucket that already
holds top-level stacks, no file at all, is the legacy layout):

| layout  | checkpoint                                  | locks (any object directly inside)                 |
|---------|---------------------------------------------|----------------------------------------------------|
| project | `.pulumi/stacks/<project>/<stack>.json`     | `.pulumi/locks/organization/<project>/<stack>/`    |
| legacy  | `.pulumi/stacks/<stack>.json`               | `.pulumi/locks/<stack>/`                           |

(pulumi `pkg/backend/diy/store.go` `StackBasePath`; `pkg/backend/diy/lock.go` `lockPath` →
`stackLockDir(stackRef.FullyQualifiedName())`, where `FullyQualifiedName` is
`organization/<project>/<stack>` in project mode and `<stack>` in legacy mode, `backend.go`). A checkpoint
may also be `.json.gz` or `.json.zst`.

Terraform's S3 backend keeps the state at `key` (or `<workspace_key_prefix>/<workspace>/<key>` for a
workspace other than `default`) and, with `use_lockfile = true` (Terraform >= 1.10, no DynamoDB needed),
its lock at `<that path>.tflock` (terraform `internal/backend/remote-state/s3/backend_state.go`
`getLockFilePath`). A DynamoDB lock table is outside the bucket: it cannot be seen from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import yaml

from vzkeep.state.backend import Backend
from vzkeep.state.checkpoint import Kind
from vzkeep.state.s3 import StateError, get_bytes, paginate

PULUMI_STACK_SUFFIXES = (".json", ".json.gz", ".json.zst")
DEFAULT_PROJECT = "vzkeep"
DEFAULT_WORKSPACE_KEY_PREFIX = "env:"
META_PATH = ".pulumi/meta.yaml"
# Our own lock's name inside Pulumi's lock directory. Pulumi names its locks `<uuid>.json` and treats every
# other object there as someone else's lock; a fixed name lets If-None-Match make two restores exclusive.
RESTORE_LOCK_NAME = "vzkeep-state-restore.json"

Layout = Literal["project", "legacy", "terraform"]


@dataclass(frozen=True)
class StateTarget:
    """One state object and the locks that guard it."""

    kind: Kind
    label: str  # stack name or Terraform key/workspace, for messages
    key: str  # full bucket key of the state object
    layout: Layout = "project"
    # Pulumi: directories whose direct children are locks. The first is where Pulumi writes them for this
    # layout; the other layout's is checked too, so a lock is never missed if the layout was misread.
    lock_dirs: tuple[str, ...] = ()
    lock_key: str | None = None  # Terraform: the single lock object

    @property
    def restore_lock_key(self) -> str:
        """Where `vzkeep state restore` writes its own lock, so that Pulumi or Terraform respects it."""
        if self.lock_key:
            return self.lock_key
        return self.lock_dirs[0] + RESTORE_LOCK_NAME


def pulumi_layout(client: Any, backend: Backend) -> Layout:
    """Project or legacy layout, decided as `pulumi login` decides it (pulumi `diy/meta.go` ensurePulumiMeta)."""
    key = backend.key(META_PATH)
    # A listing rather than HEAD: HEAD errors have no body, so a wrong secret would only read "403".
    listed = (item["Key"] for page in paginate(client, "list_objects_v2", Bucket=backend.bucket, Prefix=key)
              for item in page.get("Contents", []))
    if key not in listed:
        # No meta.yaml: Pulumi uses the legacy layout when the bucket already holds top-level stacks.
        return "legacy" if _has_legacy_stacks(client, backend) else "project"
    try:
        document = yaml.safe_load(get_bytes(client, backend.bucket, key))
    except yaml.YAMLError as exc:
        raise StateError(
            f"s3://{backend.bucket}/{key} is not valid YAML ({exc}); Pulumi cannot read it either"
        ) from exc
    version = document.get("version") if isinstance(document, dict) else None
    if version == 0:
        return "legacy"
    if version == 1:
        return "project"
    raise StateError(
        f"s3://{backend.bucket}/{key}: version {version!r} is not a state layout vzkeep knows (0: legacy, 1: "
        "project); upgrade vzkeep"
    )


def _has_legacy_stacks(client: Any, backend: Backend) -> bool:
    prefix = backend.key(".pulumi/stacks/")
    for page in paginate(client, "list_objects_v2", Bucket=backend.bucket, Prefix=prefix, Delimiter="/"):
        if any(item["Key"].endswith(PULUMI_STACK_SUFFIXES) for item in page.get("Contents", [])):
            return True
    return False


def pulumi_target(client: Any, backend: Backend, stack: str, project: str = DEFAULT_PROJECT) -> StateTarget:
    """The stack's checkpoint object (`.json`, or the `.json.gz`/`.json.zst` variant that exists) and lock dirs."""
    _check_name("stack", stack)
    _check_name("project", project)
    layout = pulumi_layout(client, backend)
    project_dir = backend.key(f".pulumi/locks/organization/{project}/{stack}/")
    legacy_dir = backend.key(f".pulumi/locks/{stack}/")
    if layout == "project":
        base = backend.key(f".pulumi/stacks/{project}/{stack}")
        lock_dirs = (project_dir, legacy_dir)
        label = stack
    else:
        base = backend.key(f".pulumi/stacks/{stack}")
        lock_dirs = (legacy_dir, project_dir)
        label = f"{stack} (legacy layout)"
    # One listing finds whichever variant exists (and gives S3's error body, unlike HEAD, on bad credentials).
    present = {
        item["Key"]
        for page in paginate(client, "list_objects_v2", Bucket=backend.bucket, Prefix=base)
        for item in page.get("Contents", [])
    }
    key = next((base + suffix for suffix in PULUMI_STACK_SUFFIXES if base + suffix in present), base + ".json")
    return StateTarget("pulumi", label, key, layout, lock_dirs=lock_dirs)


def terraform_target(
    key: str, workspace: str = "default", workspace_key_prefix: str = DEFAULT_WORKSPACE_KEY_PREFIX
) -> StateTarget:
    """Terraform S3 backend object for `key` in `workspace` (the bucket root, as Terraform sees it)."""
    if not key or key.startswith("/") or key.endswith("/"):
        raise StateError(f"--terraform-key {key!r}: give the backend's `key`, e.g. homelab/terraform.tfstate")
    _check_name("workspace", workspace)
    full = key if workspace == "default" else f"{workspace_key_prefix}/{workspace}/{key}"
    label = key if workspace == "default" else f"{key} (workspace {workspace})"
    return StateTarget("terraform", label, full, "terraform", lock_key=full + ".tflock")


def _check_name(what: str, value: str) -> None:
    if not value or "/" in value or value in {".", ".."}:
        raise StateError(f"--{what} {value!r}: a plain name is expected (no '/')")
