"""`vzkeep preview`: what a stack declares, without Pulumi CLI, provider or credentials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from vzkeep.cli import output
from vzkeep.config import project_root, stack_file, stack_names
from vzkeep.errors import ExitStatus, UsageError
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
        raise UsageError(f"vzkeep preview runs the Pulumi program, which needs the Pulumi SDKs ({err.name} is "
                         "missing)", "pip install 'vzkeep[pulumi]'") from None
    root = root or project_root()
    names = stack or stack_names(root)
    if not names:
        raise UsageError(f"no Pulumi.<stack>.yaml in {root}", "run it in the project directory, or give --root DIR")
    report = output.Reporter(as_json=as_json)
    documents = []
    violated = False
    for name in names:
        path = stack_file(name, root)
        if not path.is_file():
            known = ", ".join(stack_names(root)) or "none"
            raise UsageError(f"--stack {name}: no {path.name} in {root}", f"stacks found there: {known}")
        run = run_stack_file(path)
        pack = load_pack(program_root(path))
        verdicts = evaluate(run, pack.POLICIES)
        summary = pack.coverage(policy_resources(run)).summary()
        violated = violated or bool(mandatory_failures(verdicts))
        for warning in run.warnings:
            report.warn(f"stack {run.stack}: {warning}")
        if as_json:
            documents.append(_as_document(run, verdicts, summary))
        else:
            _print_run(report.out, run)
            _print_verdicts(report.out, verdicts, summary)
    report.result_json(documents[0] if len(documents) == 1 else documents)
    if violated:
        raise typer.Exit(ExitStatus.FINDING)


def _print_verdicts(console: Console, verdicts: list[Verdict], coverage_summary: str) -> None:
    console.print(output.styled(("policy pack", "bold"), f": {coverage_summary}"))
    for verdict in verdicts:
        if verdict.passed:
            console.print(output.styled("  ", ("pass", "green"), f" {verdict.policy}"))
            continue
        mark = ("FAIL", "red") if verdict.level == "mandatory" else ("warn", "yellow")
        console.print(output.styled("  ", mark, f" {verdict.policy} ({verdict.level})"))
        for violation in verdict.violations:
            console.print(f"       {violation.message}")


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
        "nextRuns": {job.id: [output.format_time(t, tz, seconds=False, weekday=True)
                              for t in job.next_runs(NEXT_RUNS)] for job in _jobs(plan)},
        "coverage": coverage_summary,
        "warnings": run.warnings,
        "policies": [
            {"policy": v.policy, "level": v.level, "passed": v.passed,
             "violations": [{"message": x.message, "urn": x.urn} for x in v.violations]}
            for v in verdicts
        ],
    }


def _print_run(console: Console, run: ProgramRun) -> None:
    plan = plan_stack(run.settings)
    output.heading(console, output.styled((f"stack {run.stack}", "bold"), f"  ({run.settings.source})"))
    console.print(output.styled("Offline preview under Pulumi's mocks: ", ("no provider was called", "bold"),
                                ", no secret was decrypted."))
    console.print(_resource_tree(run))
    for job in _jobs(plan):
        console.print(output.styled((job.id, "bold"), f" runs `{job.schedule}`; next 5 ({job.timezone}):"))
        for epoch in job.next_runs(NEXT_RUNS):
            console.print(f"  {output.format_time(epoch, job.timezone, seconds=False, weekday=True)}")
    console.print(f"inventory: {len(plan.guests)} guests; window {plan.thresholds.window_start}–"
                  f"{plan.thresholds.window_end} ({plan.job.timezone}); retention {plan.job.prune_backups_text}")


def _resource_tree(run: ProgramRun) -> Tree:
    """Resources nested under their parent component, each custom resource with its key inputs."""
    from vzkeep.preview import masked

    tree = Tree(output.styled((run.stack, "bold"), f" ({len(run.registrations)} resources)"))
    children: dict[str, list[Any]] = {}
    for reg in run.registrations:
        children.setdefault(reg.parent, []).append(reg)
    known = {reg.urn for reg in run.registrations}

    def add(branch: Tree, reg: Any) -> None:
        label = output.styled((reg.type.rsplit(":", 1)[-1], "cyan"), f" {reg.name}", (" (read)" if reg.read else "",
                                                                                     "dim"))
        node = branch.add(label)
        keys = KEY_INPUTS.get(reg.type, ())
        for key, value in masked({k: reg.inputs[k] for k in keys if k in reg.inputs}).items():
            node.add(Text.assemble((key, "dim"), " = ", _short(value)))
        for child in children.get(reg.urn, []):
            add(node, child)

    for reg in run.registrations:
        if reg.parent not in known:
            add(tree, reg)
    return tree


def _jobs(plan: Any) -> list[Any]:
    return [plan.job] + ([plan.offsite.job] if plan.offsite else [])


def _short(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
