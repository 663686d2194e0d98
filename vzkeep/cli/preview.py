"""`vzkeep preview`: what a stack declares, without Pulumi CLI, provider or credentials."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from vzkeep.cli.common import EXIT_FINDING, fail
from vzkeep.config import ConfigError, project_root, stack_file, stack_names
from vzkeep.plan import plan_stack

if TYPE_CHECKING:  # the Pulumi SDKs are the `pulumi` extra: imported only when `preview` runs
    from vzkeep.policy_check import Verdict
    from vzkeep.preview import ProgramRun

NEXT_RUNS = 5
# The inputs worth showing per resource type; everything else is in --json.
KEY_INPUTS = {
    "proxmoxve:index/poolLegacy:PoolLegacy": ("poolId", "comment"),
    "proxmoxve:storage/directory:Directory": ("resourceId", "path", "nodes", "contents"),
    "proxmoxve:storage/nfs:Nfs": ("resourceId", "server", "export", "nodes", "contents"),
    "proxmoxve:backup/job:Job": ("resourceId", "schedule", "pool", "storage", "mode", "compress",
                                 "pruneBackups", "repeatMissed", "enabled", "notesTemplate"),
    "pulumi:providers:proxmoxve": ("endpoint", "insecure", "apiToken"),
    "command:remote:Command": ("create",),
    "command:local:Command": ("create",),
}


def register(app: typer.Typer) -> None:
    app.command("preview")(preview)


def preview(
    stack: Annotated[list[str] | None, typer.Option("--stack", "-s", help="Stack name (Pulumi.<name>.yaml); "
                                                    "repeat it, or leave it out for every stack.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the declared resources as JSON.")] = False,
    root: Annotated[Path | None, typer.Option(help="Directory holding Pulumi.yaml (default: found upwards).")]
    = None,
) -> None:
    """Show what a stack declares and judge it with the policy pack, under Pulumi's mocks.

    Runs the real program with the stack file's config: nothing is sent to a provider and no
    secret is decrypted (secure values become placeholders), so this works in a pull request from a
    fork, without credentials. Then evaluates the vzkeep-backup-policies pack and prints each
    policy's verdict and the coverage ("12/12 guests covered").

    Exit codes: 0 every mandatory policy passed, 1 a mandatory policy is violated, 2 bad config.

    Examples:

        vzkeep preview --stack prod

        vzkeep preview --json -s lab | jq '.resources[] | .type'
    """
    try:
        from vzkeep.policy_check import evaluate, load_pack, mandatory_failures, policy_resources
        from vzkeep.preview import program_root, run_stack_file
    except ImportError as err:
        fail(f"vzkeep preview runs the Pulumi program, which needs the Pulumi SDKs ({err.name} is missing): "
             f"pip install 'vzkeep[pulumi]'")
    root = root or project_root()
    names = stack or stack_names(root)
    if not names:
        fail(f"no Pulumi.<stack>.yaml in {root}")
    console = Console()
    documents = []
    violated = False
    for name in names:
        try:
            run = run_stack_file(stack_file(name, root))
        except ConfigError as err:
            fail(str(err))
        pack = load_pack(program_root(stack_file(name, root)))
        verdicts = evaluate(run, pack.POLICIES)
        summary = pack.coverage(policy_resources(run)).summary()
        violated = violated or bool(mandatory_failures(verdicts))
        if as_json:
            documents.append(_as_document(run, verdicts, summary))
        else:
            _print_run(console, run)
            _print_verdicts(console, verdicts, summary)
    if as_json:
        typer.echo(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2, default=str))
    if violated:
        raise typer.Exit(EXIT_FINDING)


def _print_verdicts(console: Console, verdicts: list[Verdict], coverage_summary: str) -> None:
    console.print(f"[bold]policy pack[/]: {coverage_summary}", highlight=False)
    for verdict in verdicts:
        if verdict.passed:
            console.print(f"  [green]pass[/] {verdict.policy}", highlight=False)
            continue
        mark = "[red]FAIL[/]" if verdict.level == "mandatory" else "[yellow]warn[/]"
        console.print(f"  {mark} {verdict.policy} ({verdict.level})", highlight=False)
        for violation in verdict.violations:
            console.print(f"       {escape(violation.message)}", highlight=False)


def _as_document(run: ProgramRun, verdicts: list[Verdict], coverage_summary: str) -> dict[str, Any]:
    from vzkeep.preview import masked

    plan = plan_stack(run.settings)
    tz = plan.job.timezone
    return {
        "stack": run.stack,
        "providerCalled": False,
        "resources": [
            {"type": r.type, "name": r.name, "urn": r.urn, "read": r.read, "inputs": masked(r.inputs)}
            for r in run.registrations
        ],
        "outputs": masked(run.outputs),
        "nextRuns": {job.id: [_local(t, tz) for t in job.next_runs(NEXT_RUNS)] for job in _jobs(plan)},
        "coverage": coverage_summary,
        "policies": [
            {"policy": v.policy, "level": v.level, "passed": v.passed,
             "violations": [{"message": x.message, "urn": x.urn} for x in v.violations]}
            for v in verdicts
        ],
    }


def _print_run(console: Console, run: ProgramRun) -> None:
    plan = plan_stack(run.settings)
    console.rule(f"[bold]stack {run.stack}[/]  ({run.settings.source})")
    console.print("Offline preview under Pulumi's mocks: [bold]no provider was called[/], "
                  "no secret was decrypted.", highlight=False)
    console.print(_resource_tree(run))
    for job in _jobs(plan):
        console.print(f"[bold]{job.id}[/] runs `{job.schedule}`; next 5 ({job.timezone}):", highlight=False)
        for epoch in job.next_runs(NEXT_RUNS):
            console.print(f"  {_local(epoch, job.timezone)}", highlight=False)
    console.print(f"inventory: {len(plan.guests)} guests; window {plan.thresholds.window_start}–"
                  f"{plan.thresholds.window_end}; retention {plan.job.prune_backups_text}", highlight=False)


def _resource_tree(run: ProgramRun) -> Tree:
    from vzkeep.preview import masked

    """Resources nested under their parent component, each custom resource with its key inputs."""
    tree = Tree(f"[bold]{run.stack}[/] ({len(run.registrations)} resources)")
    children: dict[str, list[Any]] = {}
    for reg in run.registrations:
        children.setdefault(reg.parent, []).append(reg)
    known = {reg.urn for reg in run.registrations}

    def add(branch: Tree, reg: Any) -> None:
        label = f"[cyan]{reg.type.rsplit(':', 1)[-1]}[/] {reg.name}" + (" [dim](read)[/]" if reg.read else "")
        node = branch.add(label)
        keys = KEY_INPUTS.get(reg.type, ())
        for key, value in masked({k: reg.inputs[k] for k in keys if k in reg.inputs}).items():
            node.add(f"[dim]{key}[/] = {escape(_short(value))}")
        for child in children.get(reg.urn, []):
            add(node, child)

    for reg in run.registrations:
        if reg.parent not in known:
            add(tree, reg)
    return tree


def _jobs(plan: Any) -> list[Any]:
    return [plan.job] + ([plan.offsite.job] if plan.offsite else [])


def _local(epoch: int, tz: str) -> str:
    return datetime.fromtimestamp(epoch, ZoneInfo(tz)).strftime("%a %Y-%m-%d %H:%M %z")


def _short(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
