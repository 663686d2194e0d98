"""`vzkeep state`: IaC state on a versioned S3 bucket: check, versions, locks, restore, export."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from vzkeep.cli import output
from vzkeep.cli.common import sub_app
from vzkeep.connection import with_option_group
from vzkeep.errors import ExitStatus, FindingError, UsageError
from vzkeep.state.backend import (
    Backend,
    backend_url_from_env,
    make_client,
    parse_backend_url,
)
from vzkeep.state.check import CheckResult, check_backend
from vzkeep.state.export import export_backend
from vzkeep.state.locks import find_locks
from vzkeep.state.restore import RestoreResult, restore_version
from vzkeep.state.targets import (
    DEFAULT_PROJECT,
    DEFAULT_WORKSPACE_KEY_PREFIX,
    StateTarget,
    pulumi_target,
    terraform_target,
)
from vzkeep.state.versions import StateVersion, SummaryCache, default_cache_dir, list_versions

app = sub_app(
    "The IaC state on a self-hosted, versioned S3 bucket (Pulumi DIY backend, Terraform S3 backend).\n\n"
    "The backend is the URL `pulumi login` takes, from --backend or PULUMI_BACKEND_URL; credentials come "
    "from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or `profile=` in the URL)."
)

BackendOption = Annotated[
    str | None,
    typer.Option(
        "--backend",
        "-b",
        help="Backend URL, e.g. 's3://state?endpoint=s3.lan:8333&disableSSL=true&s3ForcePathStyle=true"
        "&region=us-east-1'. Default: $PULUMI_BACKEND_URL.",
        show_default=False,
    ),
]
StackOption = Annotated[str | None, typer.Option("--stack", "-s", help="Pulumi stack name, e.g. prod.")]
ProjectOption = Annotated[str, typer.Option("--project", help="Pulumi project of the stack.")]
TerraformKeyOption = Annotated[
    str | None,
    typer.Option(
        "--terraform-key", help="Terraform S3 backend `key` (instead of --stack), e.g. hcl/terraform.tfstate."
    ),
]
WorkspaceOption = Annotated[str, typer.Option("--workspace", help="Terraform workspace (with --terraform-key).")]
WorkspacePrefixOption = Annotated[
    str,
    typer.Option("--workspace-key-prefix", help="Terraform `workspace_key_prefix` (with --terraform-key)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


@dataclass(frozen=True)
class Where:
    """Which state object a command works on: a Pulumi stack, or a Terraform key (and workspace)."""

    stack: str | None = None
    terraform_key: str | None = None
    workspace: str = "default"
    workspace_key_prefix: str = DEFAULT_WORKSPACE_KEY_PREFIX
    project: str = DEFAULT_PROJECT
    backend: str | None = None


# The options that say which state object: defined once, added to each command by `with_where`.
with_where = with_option_group("where", Where, {
    "stack": (StackOption, None),
    "terraform_key": (TerraformKeyOption, None),
    "workspace": (WorkspaceOption, "default"),
    "workspace_key_prefix": (WorkspacePrefixOption, DEFAULT_WORKSPACE_KEY_PREFIX),
    "project": (ProjectOption, DEFAULT_PROJECT),
    "backend": (BackendOption, None),
})


@app.callback()
def state(ctx: typer.Context, backend: BackendOption = None) -> None:
    """Check the state bucket, list and restore versions of a stack's state, export everything offline."""
    ctx.obj = {"backend": backend}


# --- commands ------------------------------------------------------------------------------------------


@app.command()
def check(ctx: typer.Context, backend: BackendOption = None, as_json: JsonOption = False) -> None:
    """Check that the bucket can keep state safely: one verdict per point, exit 1 if any fails.

    Points: reachable with these credentials; versioning enabled; conditional writes (If-None-Match)
    honoured, probed with a temporary object that is removed afterwards; a lifecycle rule expiring
    noncurrent versions, and none expiring current ones.

    Examples:

        vzkeep state check

        vzkeep state check --backend 's3://state?endpoint=10.0.0.5:8333&disableSSL=true&s3ForcePathStyle=true'
    """
    parsed, client = _connect(ctx, backend)
    results = check_backend(client, parsed)
    if as_json:
        output.emit_json({"bucket": parsed.bucket, "ok": all(r.ok for r in results),
                          "checks": [vars(r) for r in results]})
    else:
        _print_checks(parsed, results)
    if not all(r.ok for r in results):
        raise typer.Exit(ExitStatus.FINDING)


@app.command()
@with_where
def versions(
    ctx: typer.Context,
    where: Where,
    as_json: JsonOption = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Download every version again instead of reusing summaries.")
    ] = False,
) -> None:
    """List every version of a stack's state: time, size, resource count and tool version, newest first.

    A version that is not a valid state is shown with the reason. Exit 1 when the *current* version is
    unusable (corrupt or deleted). A version's summary is kept in ~/.cache/vzkeep (an S3 version never
    changes), so later listings only download new versions; --no-cache reads everything again.

    Examples:

        vzkeep state versions --stack prod

        vzkeep state versions --terraform-key hcl/terraform.tfstate --workspace lab --json
    """
    parsed, client = _connect(ctx, where.backend)
    target = _target(client, parsed, where)
    cache = None if no_cache else SummaryCache.for_target(default_cache_dir(), parsed.endpoint, parsed.bucket, target)
    found = list_versions(client, parsed.bucket, target, cache=cache)
    if as_json:
        output.emit_json({"bucket": parsed.bucket, "key": target.key, "kind": target.kind,
                          "versions": [_version_document(v) for v in found]})
    else:
        _print_versions(target, found)
    current = next((v for v in found if v.is_latest), None)
    if current is None or current.delete_marker or current.error:
        raise typer.Exit(ExitStatus.FINDING)


@app.command()
@with_where
def restore(
    ctx: typer.Context,
    version: Annotated[str, typer.Option("--version", help="Version id to restore (from `versions`).")],
    where: Where,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask; required without a terminal.")] = False,
) -> None:
    """Make an older version of a stack's state current again, safely.

    Refuses while anyone holds a lock: Pulumi's (any object in .pulumi/locks/organization/PROJECT/STACK/,
    or .pulumi/locks/STACK/ in the legacy layout) or Terraform's KEY.tflock; it names whose it is and
    since when. Refuses too when the bucket is not versioned or the chosen version is not a valid state.
    While it works it holds a lock of its own where Pulumi and Terraform look for one, so no `pulumi up`,
    `terraform apply` or second restore can start meanwhile, and it copies only if the state is still the
    version that was current when it started (If-Match): a concurrent writer is never overwritten.
    The chosen version is copied over the current one, so the restore is itself a new version: undo it by
    restoring the version that was current before.

    Examples:

        vzkeep state versions --stack prod

        vzkeep state restore --stack prod --version 67144dfab7eac813001eea6c7634f6f0

        vzkeep state restore --terraform-key hcl/terraform.tfstate --version 3HL4kqtJ... --yes
    """
    parsed, client = _connect(ctx, where.backend)
    target = _target(client, parsed, where)
    _confirm(target, parsed, version, yes)
    result = restore_version(client, parsed.bucket, target, version)  # RestoreRefused: exit 1, the handler says why
    _print_restore(parsed, result, _undo_command(target, where))


@app.command("locks")
@with_where
def locks_cmd(
    ctx: typer.Context,
    where: Where,
    as_json: JsonOption = False,
) -> None:
    """Show who holds a lock on a stack's state now, and since when; exit 1 while any lock is held.

    Looks where the tools write their locks: Pulumi's lock directory for the bucket's layout
    (.pulumi/locks/organization/PROJECT/STACK/, or .pulumi/locks/STACK/ in the legacy layout; the other
    one is checked too), or Terraform's KEY.tflock (use_lockfile). Each lock is shown with its owner
    (user@host and pid, or Terraform's Who and lock ID), the time it gives, and when it was written.
    A Terraform lock kept in a DynamoDB table is not in the bucket and cannot be seen from here.

    Examples:

        vzkeep state locks --stack prod

        vzkeep state locks --terraform-key hcl/terraform.tfstate --json
    """
    parsed, client = _connect(ctx, where.backend)
    target = _target(client, parsed, where)
    held = find_locks(client, parsed.bucket, target)
    if as_json:
        output.emit_json({
            "key": target.key, "kind": target.kind, "layout": target.layout, "locked": bool(held),
            "locks": [{"key": lock.key, "owner": lock.owner, "since": lock.since,
                       "written": lock.written.isoformat() if lock.written else None, "content": lock.content}
                      for lock in held],
        })
    elif not held:
        typer.echo(f"no lock on {target.label} ({target.key})")
    else:
        typer.echo(f"{target.label} is locked by {len(held)} lock(s):")
        for lock in held:
            typer.echo(f"  {lock.key}: {lock.description}")
    if held:
        raise typer.Exit(ExitStatus.FINDING)


@app.command("export")
def export(
    ctx: typer.Context,
    to: Annotated[Path, typer.Option("--to", help="Empty or new directory to write the copy into.")],
    backend: BackendOption = None,
) -> None:
    """Copy every stack's checkpoint and its whole history (every object version) into a directory.

    DIR/current/ mirrors the backend as it is now, so `pulumi login file://DIR/current` can read it;
    DIR/versions/<name>/<time>_<version-id> holds every version; DIR/manifest.json lists them with sizes
    and sha256. Each single-part object is checked against its ETag (MD5) while copying.

    Examples:

        vzkeep state export --to /mnt/usb/state-$(date +%F)
    """
    parsed, client = _connect(ctx, backend)
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise UsageError(f"--to {to}: exists and is not an empty directory",
                         "choose a new one so exports never mix")
    to.mkdir(parents=True, exist_ok=True)
    result = export_backend(client, parsed, to)
    typer.echo(
        f"exported s3://{parsed.bucket}/{parsed.prefix} to {to}: {result.objects} current object(s), "
        f"{result.versions} version(s), {result.delete_markers} delete marker(s), {result.bytes} bytes"
    )
    for name in result.stacks:
        typer.echo(f"  stack {name}")


# --- helpers -------------------------------------------------------------------------------------------


def _connect(ctx: typer.Context, backend: str | None) -> tuple[Backend, Any]:
    group_backend = (ctx.obj or {}).get("backend") if ctx.obj else None
    parsed = parse_backend_url(backend_url_from_env(backend or group_backend))  # BackendURLError: exit 2
    return parsed, make_client(parsed)


def _target(client: Any, backend: Backend, where: Where) -> StateTarget:
    if bool(where.stack) == bool(where.terraform_key):
        raise UsageError("give exactly one of --stack (Pulumi) or --terraform-key (Terraform)")
    if where.terraform_key:
        return terraform_target(where.terraform_key, where.workspace, where.workspace_key_prefix)
    return pulumi_target(client, backend, where.stack or "", where.project)


def _confirm(target: StateTarget, backend: Backend, version: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("restore changes the live state and there is no terminal to confirm it",
                         "pass --yes to confirm when running without a terminal")
    question = f"Make version {version} the current state of {target.label} in s3://{backend.bucket}/{target.key}?"
    if not typer.confirm(question, default=False):
        raise FindingError("not confirmed: nothing changed")


def _undo_command(target: StateTarget, where: Where) -> str:
    if target.kind == "terraform":
        ws = f" --workspace {where.workspace}" if where.workspace != "default" else ""
        return f"vzkeep state restore --terraform-key {where.terraform_key}{ws} --version {{version}} --yes"
    proj = f" --project {where.project}" if where.project != DEFAULT_PROJECT else ""
    return f"vzkeep state restore --stack {where.stack}{proj} --version {{version}} --yes"


def _version_document(version: StateVersion) -> dict[str, Any]:
    summary = version.summary
    return {
        "version_id": version.version_id,
        "last_modified": version.last_modified.isoformat(),
        "size": version.size,
        "is_latest": version.is_latest,
        "delete_marker": version.delete_marker,
        "resource_count": summary.resource_count if summary else None,
        "tool_version": summary.tool_version if summary else None,
        "serial": summary.serial if summary else None,
        "lineage": summary.lineage if summary else None,
        "error": version.error,
    }


def _print_checks(backend: Backend, results: list[CheckResult]) -> None:
    table = Table(title=f"state bucket s3://{backend.bucket}/{backend.prefix}", title_justify="left")
    table.add_column("check")
    table.add_column("verdict")
    table.add_column("detail", overflow="fold")
    for result in results:
        table.add_row(result.name, Text("ok", style="green") if result.ok else Text("FAIL", style="red"),
                      result.detail)
    output.console().print(table)


def _print_versions(target: StateTarget, found: list[StateVersion]) -> None:
    tool = "Pulumi" if target.kind == "pulumi" else "Terraform"
    table = Table(title=f"{target.label}: {target.key}", title_justify="left")
    # Version ids are copied into `restore --version`: never wrap or shorten them.
    id_width = max(len(v.version_id) for v in found)
    table.add_column("version id", no_wrap=True, min_width=id_width)
    table.add_column("written (UTC)", no_wrap=True, min_width=19)
    table.add_column("bytes", justify="right", no_wrap=True)
    table.add_column("resources", justify="right", no_wrap=True)
    table.add_column(tool, no_wrap=True)
    if target.kind == "terraform":
        table.add_column("serial", justify="right")
    table.add_column("note", overflow="fold", min_width=12)
    for version in found:
        table.add_row(*_version_row(target, version))
    output.console().print(table)


def _version_row(target: StateTarget, version: StateVersion) -> list[str | Text]:
    summary = version.summary
    written = version.last_modified.strftime("%Y-%m-%d %H:%M:%S")
    notes = ["current"] if version.is_latest else []
    if version.delete_marker:
        notes.append("delete marker")
    if version.error:
        notes.append(f"corrupt: {version.error}")
    if summary and summary.pending_operations:
        notes.append(f"{summary.pending_operations} pending operation(s)")
    row = [
        version.version_id,
        written,
        str(version.size),
        str(summary.resource_count) if summary else "-",
        (summary.tool_version or "?") if summary else "-",
    ]
    if target.kind == "terraform":
        row.append(str(summary.serial) if summary else "-")
    return [*row, Text(", ".join(notes), style="red" if version.error else "")]


def _print_restore(backend: Backend, result: RestoreResult, undo: str) -> None:
    target, summary = result.target, result.summary
    if not result.changed:
        typer.echo(f"version {result.restored_version} is already the current state of {target.label}; nothing changed")
        return
    typer.echo(
        f"restored {target.label}: version {result.restored_version} "
        f"({summary.resource_count} resources, {target.kind} {summary.tool_version or '?'}) "
        f"is now current as new version {result.new_version}"
    )
    typer.echo("verified: the new current object holds the chosen bytes and parses as a valid state")
    if result.previous_version:
        typer.echo(f"undo: {undo.format(version=result.previous_version)}")
    typer.echo("confirm with the CLI, nothing running meanwhile:")
    for line in _confirm_steps(backend, target):
        typer.echo(f"  {line}")


def _confirm_steps(backend: Backend, target: StateTarget) -> list[str]:
    if target.kind == "terraform":
        return ["terraform init -reconfigure", "terraform state list", "terraform plan -refresh-only"]
    return [
        f"pulumi login '{backend.url}'",
        f"pulumi stack select {target.label}",
        "pulumi stack export --file /tmp/restored.json   # loads and integrity-checks the checkpoint",
        "pulumi refresh --preview-only   # shows how reality differs from the restored state",
    ]

